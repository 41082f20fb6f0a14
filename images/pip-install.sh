#!/bin/sh
# The Python half of the image builds, in the Dockerfiles' build stages. Two steps, so that the large,
# rarely changing dependency layer stays cached while medgo's own code changes:
#   medgo-pip-install dependencies [EXTRAS]  medgo's dependencies (pyproject.toml + EXTRAS such as "gpu")
#                                            into the venv /opt/venv
#   medgo-pip-install wheel                  the medgo wheel into /dist (the final stage installs it)
# PIP_OFFLINE=1: hermetic, from the wheelhouse only (images/build.py wheelhouse): /wheels/deps holds the
#   locked third-party wheels, /wheels/medgo the medgo wheel of the tree being built; no index is contacted.
# Otherwise online: torch from $TORCH_INDEX_URL (pip's default index when empty), the rest from the index,
#   constrained by requirements/lock-cpu.txt; the medgo wheel is built from the source tree in the current
#   directory.
# Extra pip options (e.g. --no-build-isolation for flash-attn) come from $PIP_EXTRA_OPTIONS.
set -eu
step="$1"
extras="${2:-}"
python=/opt/venv/bin/python
pip="$python -m pip --no-cache-dir --disable-pip-version-check"
site=$($python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

case "$step" in
dependencies)
  reqs=$(mktemp)
  EXTRAS="$extras" $python - "$reqs" <<'EOF'
import os, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in filter(None, os.environ["EXTRAS"].split(",")):
    reqs += project["optional-dependencies"][extra]
open(sys.argv[1], "w").write("\n".join(reqs) + "\n")
EOF
  if [ "${PIP_OFFLINE:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    $pip install --no-index --find-links /wheels/deps --constraint requirements/lock-cpu.txt \
      ${PIP_EXTRA_OPTIONS:-} --requirement "$reqs"
  else
    $pip install --upgrade "pip>=24" "setuptools>=69" wheel packaging
    # What source builds without isolation (flash-attn) import before they are built.
    $pip install --constraint requirements/lock-cpu.txt ninja psutil
    # shellcheck disable=SC2086
    $pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"
    # shellcheck disable=SC2086
    $pip install --constraint requirements/lock-cpu.txt ${PIP_EXTRA_OPTIONS:-} --requirement "$reqs"
  fi
  rm -f "$reqs"
  # Test suites and C++ test binaries that wheels ship and nothing here runs (~170 MB).
  rm -rf "$site/torch/test" "$site/pandas/tests" "$site/pyarrow/tests"
  find "$site/torch/bin" -type f \( -name 'test_*' -o -name '*Test' \) -delete
  ;;
wheel)
  mkdir -p /dist
  if [ "${PIP_OFFLINE:-0}" = 1 ]; then
    wheel=$(ls /wheels/medgo/medgo-"${MEDGO_VERSION}"-*.whl 2>/dev/null | head -n 1)
    [ -n "$wheel" ] || {
      echo "error: no medgo-${MEDGO_VERSION} wheel in images/wheelhouse/medgo; run: python images/build.py wheelhouse" >&2
      exit 2
    }
    cp "$wheel" /dist/
  else
    $pip wheel --no-deps --wheel-dir /dist .
  fi
  ;;
*)
  echo "usage: medgo-pip-install dependencies [EXTRAS] | wheel" >&2
  exit 2
  ;;
esac
