"""What the Dockerfiles promise the manifests and the compiled pipeline, checked without a container engine.

The images are built by ``make images`` (images/build.py) and run by the cluster objects in manifests/ and
the compiled pipeline; these tests fail when one side drifts: an image name or tag, a Dockerfile's base
argument, its user, or its entry point. The container smoke tests are in test_images.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import medgo
from components import _image
from images import build
from medgo.config import ServeConfig
from medgo.k8s.pytorchjob import build_pytorchjob
from medgo.train.launch import node_command

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
PIPELINE = REPO / "pipelines" / "medgo_pipeline.yaml"
SERVING_RUNTIME = MANIFESTS / "base" / "serving-runtime.yaml"
PYTORCHJOB_TEMPLATE = MANIFESTS / "base" / "templates" / "pytorchjob.yaml"
IMAGE_REF = re.compile(r"ghcr\.io/medgo/[a-z0-9._-]+(?::[A-Za-z0-9._-]+)?(?:@sha256:[0-9a-f]{64})?")
#: Environment variables that name a directory programs write caches or scratch files to.
CACHE_VARIABLES = (
    "XDG_CACHE_HOME",
    "HF_HOME",
    "MEDGO_CACHE_DIR",
    "TORCH_EXTENSIONS_DIR",
    "TRITON_CACHE_DIR",
    "CUDA_CACHE_PATH",
)
#: The non-root identity every medgo pod runs as.
MEDGO_USER = "1000:1000"


def spec(name: str) -> build.ImageSpec:
    return next(s for s in build.IMAGES if s.name == name)


def dockerfile(name: str) -> build.Dockerfile:
    return build.parse_dockerfile(REPO / spec(name).dockerfile)


def refs() -> dict[str, str]:
    return {s.name: build.image_ref(s.name) for s in build.IMAGES}


#: The CUDA trainer the cluster runs; `make images` builds its CPU variant from the same Dockerfile.
TRAINER_REF = f"{spec('trainer-cpu').repository}:{build.version()}"


def serving_container() -> dict:
    runtime = yaml.safe_load(SERVING_RUNTIME.read_text())
    (container,) = runtime["spec"]["containers"]
    return container


def pipeline_containers() -> list[dict]:
    """The container spec of every executor in the compiled pipeline (importers run no container)."""
    executors = list(yaml.safe_load_all(PIPELINE.read_text()))[0]["deploymentSpec"]["executors"]
    return [e["container"] for e in executors.values() if "container" in e]


def final_env(df: build.Dockerfile) -> dict[str, str]:
    env = {}
    for key, value in df.final.instructions:
        if key == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", value))
    return env


def test_version_tag_is_the_package_version():
    assert build.version() == medgo.__version__
    assert refs() == {
        "runtime": f"ghcr.io/medgo/medgo-runtime:{medgo.__version__}",
        "serving": f"ghcr.io/medgo/medgo-serving:{medgo.__version__}",
        "trainer-cpu": f"ghcr.io/medgo/medgo-trainer:{medgo.__version__}-cpu",
    }


def test_components_run_in_the_images_make_images_tags():
    assert _image.RUNTIME_IMAGE == refs()["runtime"]
    assert _image.TRAINER_IMAGE == TRAINER_REF


def test_compiled_pipeline_names_only_built_images():
    assert {c["image"] for c in pipeline_containers()} == {refs()["runtime"], TRAINER_REF}
    docs = list(yaml.safe_load_all(PIPELINE.read_text()))
    assert docs[0]["root"]["inputDefinitions"]["parameters"]["train_image"]["defaultValue"] == TRAINER_REF
    # Any other mention (docstrings, defaults) names the same images.
    assert set(IMAGE_REF.findall(PIPELINE.read_text())) <= {refs()["runtime"], TRAINER_REF}


def test_manifests_name_only_built_images():
    allowed = {refs()["serving"], TRAINER_REF}
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for ref in IMAGE_REF.findall(path.read_text()):
            if ":" in ref.rsplit("/", 1)[-1]:
                assert ref in allowed, (
                    f"{path.relative_to(REPO)} names {ref}; make images tags {sorted(allowed)}"
                )
        for doc in yaml.safe_load_all(path.read_text()):
            for image in (doc or {}).get("images", []) if isinstance(doc, dict) else []:
                ref = f"{image['name']}:{image['newTag']}"
                assert ref in allowed, (
                    f"{path.relative_to(REPO)} pins {ref}; make images tags {sorted(allowed)}"
                )
    assert serving_container()["image"] == refs()["serving"]
    template = yaml.safe_load(PYTORCHJOB_TEMPLATE.read_text())
    for replica in template["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["image"] == TRAINER_REF


def test_bases_are_pinned_upstream_images_matching_the_local_stand_in():
    python = re.search(
        r"python:(\d+)\.(\d+)\.\d+-slim-(\w+)$", dockerfile("runtime").global_args["BASE_IMAGE"]
    )
    assert python, "runtime's BASE_IMAGE default must pin python:X.Y.Z-slim-<debian>"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={python[1]}.{python[2]}" in requires
    # The local base is the same Debian release with the same Python minor (bookworm: 3.11).
    assert python[3] == build.DEBIAN_SUITE and build.LOCAL_BASE.endswith(f":{build.DEBIAN_SUITE}")

    trainer = dockerfile("trainer-cpu")
    cuda = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-devel-ubuntu\d+\.\d+", trainer.global_args["BASE_IMAGE"]
    )
    assert cuda, "trainer's BASE_IMAGE default must pin an nvidia/cuda X.Y.Z cudnn devel image"
    torch_index = next(
        v for k, v in trainer.stages[1].instructions if k == "ARG" and v.startswith("TORCH_INDEX_URL=")
    )
    assert torch_index.endswith(f"/cu{cuda[1]}{cuda[2]}"), "the CUDA torch index must match the base's CUDA"
    assert "python3.11-dev" in trainer.stages[0].last("RUN")

    serving = dockerfile("serving")
    assert serving.global_args["RUNTIME_IMAGE"] == refs()["runtime"]
    assert [s.base for s in serving.stages] == ["${RUNTIME_IMAGE}"]


def test_every_image_runs_as_the_uid_the_manifests_expect():
    container = serving_container()["securityContext"]
    pod = build_pytorchjob(
        name="j", namespace="medgo", image=TRAINER_REF, command=node_command([]), nnodes=1, nproc_per_node=1
    )
    pod_security = pod["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["securityContext"]
    assert f"{container['runAsUser']}:{container['runAsUser']}" == MEDGO_USER
    assert f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}" == MEDGO_USER
    for name in refs():
        assert dockerfile(name).final.last("USER") == MEDGO_USER, (
            f"{spec(name).dockerfile}: USER must be {MEDGO_USER}"
        )


def test_entry_points_are_the_commands_the_cluster_runs():
    serving, container = dockerfile("serving").final, serving_container()
    assert build.exec_form(serving.last("ENTRYPOINT")) == container["command"]
    default_name = ServeConfig.model_fields["model_name"].default
    runtime_args = [a.replace("{{.Name}}", default_name) for a in container["args"]]
    image_args = build.exec_form(serving.last("CMD"))
    # The runtime passes the image's own defaults first, then the cluster's wiring (the feedback service).
    assert runtime_args[: len(image_args)] == image_args
    assert all(a.startswith("--feedback_") for a in runtime_args[len(image_args) :])

    trainer = build.exec_form(dockerfile("trainer-cpu").final.last("ENTRYPOINT"))
    assert trainer == node_command([])
    template = yaml.safe_load(PYTORCHJOB_TEMPLATE.read_text())
    for replica in template["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["command"][: len(trainer)] == trainer

    # KFP replaces the command of component pods; an ENTRYPOINT would only get in the way of `docker run`.
    assert dockerfile("runtime").final.last("ENTRYPOINT") is None
    assert {c["command"][0] for c in pipeline_containers()} == {"sh"}


def test_pinned_versions_agree_with_the_lock_and_the_package():
    pins = build.locked_versions()
    for name in refs():
        args = dict(_arg_defaults(dockerfile(name)))
        if "TORCH_VERSION" in args:
            assert args["TORCH_VERSION"] == pins["torch"], f"{spec(name).dockerfile}: TORCH_VERSION"
        if "MEDGO_VERSION" in args:
            assert args["MEDGO_VERSION"] == build.version(), f"{spec(name).dockerfile}: MEDGO_VERSION"
        if "KSERVE_VERSION" in args:
            assert args["KSERVE_VERSION"] == pins["kserve"], f"{spec(name).dockerfile}: KSERVE_VERSION"


def _arg_defaults(df: build.Dockerfile):
    yield from ((k, v) for k, v in df.global_args.items() if v is not None)
    for stage in df.stages:
        for key, value in stage.instructions:
            if key == "ARG" and "=" in value:
                name, default = value.split("=", 1)
                yield name, default.strip('"')


def test_make_images_passes_only_declared_build_args():
    for image in build.IMAGES:
        declared = build.parse_dockerfile(REPO / image.dockerfile).declared_args()
        assert set(image.build_args) <= declared, image.name


def test_caches_point_at_tmp_which_a_read_only_pod_mounts():
    for name in refs():
        env = final_env(dockerfile(name))
        for variable in CACHE_VARIABLES:
            if variable in env:
                assert env[variable].startswith("/tmp/"), (
                    f"{spec(name).dockerfile}: {variable}={env[variable]}"
                )
    container = serving_container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    runtime = yaml.safe_load(SERVING_RUNTIME.read_text())["spec"]
    empty_dirs = {v["name"] for v in runtime["volumes"] if "emptyDir" in v}
    assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs} >= {"/tmp"}


def test_build_context_holds_what_the_dockerfiles_copy():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore must start by excluding everything (.venv, .git, build outputs)"
    included = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for name in refs():
        for stage in dockerfile(name).stages:
            for key, value in stage.instructions:
                if key == "COPY" and not value.startswith("--from"):
                    source = value.split()[0].rstrip("/")
                    assert any(source == p or source.startswith(p + "/") for p in included), (name, source)
                    assert (REPO / source).exists(), f"{spec(name).dockerfile} copies missing {source}"


def test_wheelhouse_check_rejects_unlocked_and_cuda_wheels(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# frozen\ntorch==2.13.0\nPyYAML==6.0.4\n")
    for wheel in (
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "pyyaml-6.0.4-cp311-cp311-any.whl",
    ):
        (tmp_path / wheel).touch()
    assert build.check_wheelhouse(tmp_path, lock) == ["pyyaml", "torch"]
    (tmp_path / "nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl").touch()
    (tmp_path / "rich-15.0.0-py3-none-any.whl").touch()
    (tmp_path / "pyyaml-6.0.3-cp311-cp311-any.whl").touch()
    with pytest.raises(build.BuildError) as err:
        build.check_wheelhouse(tmp_path, lock)
    message = str(err.value)
    assert "nvidia_cublas_cu12" in message and "CPU wheel index" in message
    assert "rich is not pinned" in message and "pins pyyaml==6.0.4" in message


def test_dockerfile_parser_reads_stages_arguments_and_exec_forms(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text(
        '# comment\nARG BASE=debian:12\nARG NOVALUE\nfrom ${BASE} AS build\nARG X="a;b"\n'
        "RUN echo one \\\n  # a comment inside a continued RUN\n && echo two\n"
        'FROM ${BASE}\nUSER 1000:1000\nENTRYPOINT ["python", "-m", "x"]\n'
    )
    parsed = build.parse_dockerfile(path)
    assert parsed.global_args == {"BASE": "debian:12", "NOVALUE": None}
    assert [(s.base, s.alias) for s in parsed.stages] == [("${BASE}", "build"), ("${BASE}", None)]
    assert parsed.stages[0].last("RUN") == "echo one  && echo two"
    assert parsed.declared_args() == {"BASE", "NOVALUE", "X"}
    assert build.exec_form(parsed.final.last("ENTRYPOINT")) == ["python", "-m", "x"]
    with pytest.raises(build.BuildError, match="exec"):
        build.exec_form("python -m x")


def test_debian_mirror_is_read_from_apt_sources(tmp_path, monkeypatch):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    monkeypatch.setenv("MEDGO_APT_DIR", str(tmp_path))
    assert build.debian_mirror()[0] == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert build.debian_mirror()[0] == "http://old.example/debian"
    (tmp_path / "sources.list").write_text("deb http://old.example/debian bullseye main\n")
    with pytest.raises(build.BuildError, match="no Debian 'bookworm' source"):
        build.debian_mirror()


def test_build_inputs_follow_the_copied_files_but_not_bytecode(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "REPO", tmp_path)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "other.txt").write_text("not copied")
    dockerfile_path = tmp_path / "Dockerfile"
    dockerfile_path.write_text("FROM base AS a\nCOPY src/ /src/\nFROM base\nCOPY --from=a /src /src\n")
    df = build.parse_dockerfile(dockerfile_path)

    def inputs(args=None, bases=("sha256:1",)):
        return build.build_inputs(dockerfile_path, df, args or {"A": "1"}, list(bases))

    first = inputs()
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "other.txt").write_text("changed, still not copied")
    assert inputs() == first
    assert inputs(args={"A": "2"}) != first and inputs(bases=("sha256:2",)) != first
    (tmp_path / "src" / "pkg" / "mod.py").chmod(0o755)
    assert inputs() != first
    (tmp_path / "src" / "pkg" / "mod.py").chmod(0o644)
    assert inputs() == first
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 2\n")
    assert inputs() != first
