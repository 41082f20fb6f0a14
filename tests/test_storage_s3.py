"""Storage and model loading against a real S3 server (the ``s3_server`` fixture: SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def s3_endpoint(s3_server) -> str:
    return s3_server


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


def test_cache_is_reused_until_the_objects_change(s3_endpoint, tmp_path, monkeypatch):
    from medgo import storage

    monkeypatch.setenv("MEDGO_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "v"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"v1")
    storage.publish(src, "s3://medgo-test/cache/model")
    downloads = []
    real_client = storage.s3_client

    def counting_client():
        client = real_client()
        original = client.download_file
        client.download_file = lambda *a, **k: (downloads.append(a[1]), original(*a, **k))[1]
        return client

    monkeypatch.setattr(storage, "s3_client", counting_client)
    first = storage.localize("s3://medgo-test/cache/model")
    again = storage.localize("s3://medgo-test/cache/model")
    assert first == again and downloads == ["cache/model/weights.bin"]  # second call: ETags unchanged
    (src / "weights.bin").write_bytes(b"v2")
    storage.publish(src, "s3://medgo-test/cache/model")
    assert (storage.localize("s3://medgo-test/cache/model") / "weights.bin").read_bytes() == b"v2"
    assert len(downloads) == 2
