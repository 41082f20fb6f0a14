# medgo developer entry points. `make demo` and `make test` create or refresh .venv from the
# repo's own files (pyproject.toml + requirements/lock-cpu.txt) and then run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medgo-installed
# CPU path: torch is pinned to 2.13.0 CPU; GPU images install the CUDA build themselves. Where pip's
# index would serve a CUDA build for plain torch==2.13.0, point TORCH_INDEX_URL at the CPU wheels:
#   make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -c requirements/lock-cpu.txt
PYTEST_ARGS ?=
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/medgo/torch_extensions

.PHONY: venv demo test lint format compile check-compiled bench images images-test clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements/lock-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade "pip>=24" "setuptools>=69" wheel
	$(PIP_INSTALL) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	$(PIP_INSTALL) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create/refresh the virtual environment

demo: venv  ## run the whole pipeline locally (kfp.local, tiny model, bundled samples)
	$(BIN)/medgo demo

test: venv  ## run the test suite (fails if no test ran)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

LINT_PATHS := src components pipelines tests benchmarks images

lint: venv  ## ruff check and ruff format --check
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: venv  ## apply ruff format and ruff's safe fixes
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

compile: venv  ## recompile pipelines/medgo_pipeline.yaml
	$(BIN)/medgo pipeline compile

bench: venv  ## run the benchmarks (each prints one JSON line last)
	@set -e; found=0; for b in benchmarks/*.py; do [ -e "$$b" ] || continue; found=1; \
	  echo "== $$b"; $(BIN)/python "$$b"; done; [ $$found = 1 ] || echo "no benchmarks yet (see benchmarks/README.md)"

# Container images with podman (docker where podman is absent); see images/README.md. images/setup.sh
# installs podman, buildah and debootstrap on Debian; images/containers.conf is used unless CONTAINERS_CONF is
# set. Base and wheelhouse are cached in ~/.cache/medgo/images.

images: venv  ## build runtime, serving, trainer-cpu hermetically; IDs/digests/sizes in build/images/images.json
	$(BIN)/python images/build.py all $(if $(TORCH_INDEX_URL),--torch-index-url $(TORCH_INDEX_URL))

images-test: venv  ## run the images' smoke tests in containers (after make images) and report their sizes
	MEDGO_IMAGES_TEST=1 $(BIN)/python -m pytest tests/images
	@$(BIN)/python images/build.py sizes

clean:  ## remove demo outputs and caches (keeps .venv)
	rm -rf demo-out local_outputs .pytest_cache .ruff_cache
