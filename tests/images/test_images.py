"""Smoke tests inside the images `make images` built, run the way the cluster runs them (`make images-test`).

Every container runs as the image's own user (the non-root ``medgo``, UID 1000, that the manifests expect)
with the manifests' security settings: all capabilities dropped, no privilege escalation, and a read-only
root filesystem where the manifest sets one (the ServingRuntime), with its emptyDir volumes as tmpfs.

- the CLI answers ``--help`` in every image, with nothing writable at all;
- the compiled pipeline's ``prepare-corpus`` executor runs as KFP's v2 launcher would run it: its command and
  args from pipelines/medgo_pipeline.yaml, ``{{$}}`` replaced by the executor input JSON, outputs under
  ``/s3`` (the emptyDir KFP mounts for s3:// artifacts), and produces exactly what the library produces here;
- two trainer-cpu containers are the master and worker pods of a PyTorchJob: the operator's env contract,
  ``python -m medgo.train.node``, DeepSpeed ZeRO-2 over gloo (its CPU op JIT-built by the image's g++);
- the serving image starts the ServingRuntime's command on loopback and answers an OpenAI chat request;
- the image file systems hold no credentials, no compiler where none is needed, and nothing writable by the
  pods' user beyond the standard scratch directories.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from images import build
from medgo.train.launch import DATA_MOUNT
from tests.images.conftest import REQUESTED, SKIP_REASON, chown_tree
from tests.images.image_fs import SCRATCH_DIRS, image_entries, scan
from tests.images.kfp_launcher import (
    KFP_OUTPUT_FILE,
    KFP_S3_MOUNT,
    compiled_task,
    executor_input,
    substitute_placeholders,
)

if not REQUESTED:
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SERVING_RUNTIME = REPO / "manifests" / "base" / "serving-runtime.yaml"
KFP_LAUNCHER = REPO / "manifests" / "base" / "kfp-launcher.yaml"
SAMPLES = REPO / "samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_only(engine) -> list[str]:
    """A read-only root and no implicit tmpfs (podman otherwise mounts /tmp, /run, /var/tmp writable)."""
    return ["--read-only", "--read-only-tmpfs=false"] if engine.command == "podman" else ["--read-only"]


def locked_down(security: dict) -> list[str]:
    """podman flags for a Kubernetes container securityContext."""
    flags = []
    if "runAsUser" in security:
        flags += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        flags.append("--cap-drop=ALL")
    if security.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    return flags


@pytest.mark.parametrize("name", [image.name for image in build.IMAGES])
def test_cli_help_runs_as_medgo_with_nothing_writable(engine, built, name):
    out = engine(
        "run",
        "--rm",
        *read_only(engine),
        "--cap-drop=ALL",
        "--entrypoint",
        "sh",
        built[name],
        "-c",
        "id -u; id -g; medgo --help",
    ).stdout
    uid, gid, help_text = out.split("\n", 2)
    assert (uid, gid) == ("1000", "1000")
    assert "Usage: medgo" in help_text
    for command in ("data", "train", "eval", "serve", "deploy", "pipeline"):
        assert re.search(rf"^\s+{command}\s", help_text, flags=re.M), command


# ------------------------------------------------------------------------------------ KFP component
def test_prepare_corpus_component_runs_as_the_kfp_launcher_runs_it(engine, built, uid1000_dir, tmp_path):
    component_spec, container = compiled_task("prepare-corpus")
    assert container["image"] == build.image_ref("runtime")
    pipeline_root = yaml.safe_load(KFP_LAUNCHER.read_text())["data"]["defaultPipelineRoot"]
    assert pipeline_root.startswith("s3://")
    run_root = f"{pipeline_root}/medgo/smoke-run/prepare-corpus"
    uris = {name: f"{run_root}/{name}" for name in component_spec["outputDefinitions"]["artifacts"]}
    corpus = f"{DATA_MOUNT}/corpus"
    executor = executor_input(component_spec, {"corpus_uri": corpus}, uris)
    command = substitute_placeholders(container["command"] + container["args"], json.dumps(executor))

    s3, outputs = uid1000_dir("kfp-s3"), uid1000_dir("kfp-outputs")
    result = engine(
        "run",
        "--rm",
        "--network=none",
        "--cap-drop=ALL",
        "-v",
        f"{s3}:{KFP_S3_MOUNT}",
        "-v",
        f"{outputs}:{Path(KFP_OUTPUT_FILE).parent}",
        "-v",
        f"{SAMPLES / 'corpus'}:{corpus}:ro",
        "--entrypoint",
        command[0],
        built["runtime"],
        *command[1:],
        timeout=300,
    )
    lines = [
        line
        for f in sorted((SAMPLES / "corpus").glob("*.jsonl"))
        for line in f.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    texts = [m[1] for m in (re.search(r'"text":\s*"([^"]{12})', line) for line in lines) if m]
    logs = result.stdout + result.stderr
    assert texts and not [t for t in texts if t in logs]  # the logs hold counts, never record text

    clean = s3 / uris["clean"].removeprefix("s3://")
    manifest = json.loads((clean / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert counts["kept"] > 0 and counts["in"] == len(lines)
    shards = sorted((clean / "clean").glob("*.jsonl"))
    assert shards and sum(len(s.read_text().splitlines()) for s in shards) == counts["kept"]
    assert clean.stat().st_uid == 1000  # written by the image's user, as on a pod's volume

    # The container produced what the library produces on the host from the same input and defaults.
    from medgo.config import PrepareConfig
    from medgo.data.prepare import prepare_corpus

    defaults = executor["inputs"]["parameterValues"]
    host_counts = prepare_corpus(
        str(SAMPLES / "corpus"),
        tmp_path / "host",
        PrepareConfig(
            min_chars=defaults["min_chars"],
            min_chinese_ratio=defaults["min_chinese_ratio"],
            scrub_pii=defaults["scrub_pii"],
        ),
    )
    assert host_counts == counts
    for shard in shards:
        host_shard = tmp_path / "host" / "clean" / shard.name
        assert shard.read_bytes() == host_shard.read_bytes()

    # What the launcher reads back: the Metrics artifact's values.
    metadata = json.loads((outputs / Path(KFP_OUTPUT_FILE).name).read_text())
    metrics = metadata["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {k: v for k, v in metrics.items() if k.startswith("prepare/")} == {
        f"prepare/{k}": float(v) for k, v in counts.items()
    }


# ---------------------------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny Qwen2 model and tokenizer, built on the host with the CLI (`medgo model tiny`)."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run(
        [sys.executable, "-m", "medgo.cli", "model", "tiny", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture
def training_inputs(uid1000_dir, tiny_model):
    """A data volume with the tiny model (built with `medgo model tiny`) and SFT data, and the train config."""
    data = uid1000_dir("pvc-data")
    shutil.copytree(tiny_model, data / "model")
    from medgo.config import SftBuildConfig
    from medgo.data.sft import build_sft

    build_sft(SAMPLES / "sft", data / "sft", SftBuildConfig())
    chown_tree(data)
    config = uid1000_dir("train-config")
    (config / "train.yaml").write_text(
        yaml.safe_dump(
            {
                "stage": "sft",
                "model_uri": "/mnt/data/model",
                "data_uri": "/mnt/data/sft",
                "output_uri": "/mnt/checkpoints/sft",
                "max_steps": 3,
                "per_device_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "learning_rate": 5e-3,
                "max_seq_len": 128,
                "deepspeed": "zero2",
            }
        )
    )
    chown_tree(config)
    return data, config


@pytest.fixture
def torch_extensions(engine, built) -> Path:
    """Where both trainer containers find DeepSpeed's JIT-built CPU op, as a shared volume would hold it.

    The build depends only on the trainer's system and dependency layers (compiler, Python headers, torch,
    DeepSpeed), so it is kept on this machine per trainer Dockerfile, lock and base: the first run after any
    of them changes compiles it with the image's g++ (minutes on two busy cores), later runs load it.
    """
    spec = next(s for s in build.IMAGES if s.name == "trainer-cpu")
    base = json.loads(build.RECORD.read_text())["images"]["trainer-cpu"]["base"]
    base_id = json.loads(engine("image", "inspect", base).stdout)[0]["Id"]
    key = build.sha256_of((REPO / spec.dockerfile).read_bytes(), build.LOCK.read_bytes(), base_id.encode())[
        :16
    ]
    path = build.cache_dir() / f"torch-extensions-{key}"
    for old in build.cache_dir().glob("torch-extensions-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    path.mkdir(exist_ok=True)
    chown_tree(path)
    return path


def test_trainer_runs_as_two_pytorchjob_nodes(engine, built, training_inputs, torch_extensions, uid1000_dir):
    from medgo.k8s.pytorchjob import build_pytorchjob

    data, config = training_inputs
    checkpoints = uid1000_dir("pvc-checkpoints")
    job = build_pytorchjob(
        name="smoke",
        namespace="medgo",
        image=build.image_ref("trainer-cpu"),
        args=["--config", "/config/train.yaml"],
        nnodes=2,
        nproc_per_node=1,
    )
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    # The operator's env contract; both "pods" share one network namespace, so the master is 127.0.0.1.
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(container["ports"][0]["containerPort"]),
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": job["spec"]["nprocPerNode"],
        "WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "1",
    }
    security = {**pod["securityContext"], **container["securityContext"]}
    common = [
        *locked_down(security),
        "--shm-size=256m",
        "-v",
        f"{data}:/mnt/data:ro",
        "-v",
        f"{checkpoints}:/mnt/checkpoints",
        "-v",
        f"{config}:/config:ro",
        "-v",
        f"{torch_extensions}:/tmp/.cache/torch_extensions",
    ]
    suffix = hashlib.sha1(str(checkpoints).encode()).hexdigest()[:8]
    master, worker = f"medgo-smoke-master-{suffix}", f"medgo-smoke-worker-{suffix}"

    def node_args(rank: int) -> list[str]:
        return [f"--env={k}={v}" for k, v in {**env, "PET_NODE_RANK": str(rank), "RANK": str(rank)}.items()]

    command = container["command"]  # python -m medgo.train.node --config …, as the pod's command
    image = ["--entrypoint", command[0], built["trainer-cpu"], *command[1:]]
    try:
        engine("run", "-d", "--name", master, "--network=none", *common, *node_args(0), *image)
        engine("run", "-d", "--name", worker, f"--network=container:{master}", *common, *node_args(1), *image)
        codes = {name: engine("wait", name, timeout=900).stdout.strip() for name in (worker, master)}
        logs = {name: (lambda r: r.stdout + r.stderr)(engine("logs", name)) for name in (master, worker)}
    finally:
        engine("rm", "-f", worker, check=False)
        engine("rm", "-f", master, check=False)
    assert codes == {master: "0", worker: "0"}, logs[master][-3000:] + logs[worker][-3000:]
    assert "world_size=2" in logs[master]
    assert "deepspeed_shm_comm_op built successfully" in logs[master] + logs[worker]

    out = checkpoints / "sft"
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["kind"] == "lora_adapter" and counts["steps"] == 3
    assert (out / "adapter_model.safetensors").stat().st_size > 10_000
    assert out.stat().st_uid == 1000


# ---------------------------------------------------------------------------------------- serving
def test_serving_runtime_command_answers_a_chat_request(engine, built, uid1000_dir, tiny_model):
    runtime = yaml.safe_load(SERVING_RUNTIME.read_text())["spec"]
    (container,) = runtime["containers"]
    model_dir = uid1000_dir("storage-initializer") / "model"
    shutil.copytree(tiny_model, model_dir)
    chown_tree(model_dir)  # files as KServe's storage initializer leaves them for the server's user

    port, grpc_port = free_port(), free_port()
    args = [a.replace("{{.Name}}", "medgo") for a in container["args"]]
    assert "--http_port=8080" in args
    args = [f"--http_port={port}" if a == "--http_port=8080" else a for a in args]
    args += ["--http_host=127.0.0.1", f"--grpc_port={grpc_port}"]  # loopback only, on the host's network

    security = container["securityContext"]
    flags = locked_down(security)
    if security.get("readOnlyRootFilesystem"):
        flags += read_only(engine)
    empty_dirs = {v["name"] for v in runtime.get("volumes", []) if "emptyDir" in v}
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in empty_dirs, f"volume {mount['name']} is not emulated"
        flags += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
    name = f"medgo-smoke-serving-{port}"
    engine(
        "run",
        "-d",
        "--name",
        name,
        "--network=host",
        *flags,
        "-v",
        f"{model_dir}:/mnt/models:ro",
        "--entrypoint",
        container["command"][0],
        built["serving"],
        *container["command"][1:],
        *args,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            state = json.loads(engine("inspect", name).stdout)[0]["State"]
            assert state["Running"], engine("logs", name).stderr[-3000:]
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                "server not ready in 180 s:\n" + engine("logs", name).stderr[-3000:]
            )
            time.sleep(0.5)

        reply = httpx.post(
            f"{base}/openai/v1/chat/completions",
            timeout=60,
            json={
                "model": "medgo",
                "messages": [{"role": "user", "content": "高血压患者日常生活中需要注意什么？"}],
                "max_tokens": 8,
            },
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"] == "medgo" and body["choices"][0]["message"]["role"] == "assistant"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["completion_tokens"] > 0
        bad = httpx.post(f"{base}/openai/v1/chat/completions", timeout=30, json={"model": "medgo"})
        assert 400 <= bad.status_code < 500, bad.text
        logs = engine("logs", name)
        assert "高血压" not in logs.stdout + logs.stderr  # no patient text in the logs
    finally:
        engine("rm", "-f", name, check=False, timeout=60)


# ------------------------------------------------------------------------------------ image content
@pytest.mark.parametrize("name", [image.name for image in build.IMAGES])
def test_image_holds_no_credentials_stray_tools_or_writable_paths(engine, built, name):
    info = json.loads(engine("image", "inspect", built[name]).stdout)[0]
    config = info.get("Config") or {}
    secret_env = [
        e
        for e in config.get("Env") or []
        if re.search(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY|CREDENTIAL", e.split("=", 1)[0])
    ]
    assert not secret_env
    history = engine("history", "--no-trunc", "--format", "{{.CreatedBy}}", built[name]).stdout
    assert not re.search(r"AWS_SECRET|AKIA[0-9A-Z]{16}|PIP_INDEX_URL=https?://[^ ]*@", history)

    found = scan(image_entries(engine, built[name]))
    assert not found["credential"], found["credential"]
    assert not found["writable"], (
        f"writable by the pods' user beyond {sorted(SCRATCH_DIRS)}: {found['writable']}"
    )
    assert not found["wheel"], f"wheels or pip caches left in a layer: {found['wheel'][:5]}"
    files = set(found["files"])
    if name == "trainer-cpu":
        # DeepSpeed compiles its ops on first use: a C++ compiler, Python's headers and ninja belong here.
        assert {"usr/bin/g++", "usr/include/python3.11/Python.h", "opt/venv/bin/ninja"} <= files
    else:
        assert not found["compiler"], f"build tools the runtime does not need: {found['compiler']}"
    print(f"{name}: {info['Size'] / 1e6:.0f} MB, {len(files)} paths")
