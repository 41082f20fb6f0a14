"""Local storage, atomic writes and manifests (S3 is exercised against a real server in test_storage_s3.py)."""

import json

import pytest

from medgo.errors import InputError
from medgo.storage import (
    atomic_write_text,
    is_s3,
    localize,
    publish,
    read_manifest,
    split_s3,
    verify_manifest,
    write_jsonl,
    write_manifest,
)


def test_uri_helpers():
    assert is_s3("s3://b/k") and is_s3("minio://mlpipeline/v2/x") and not is_s3("/data/s3://x")
    assert split_s3("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_s3("minio://mlpipeline/v2/art") == ("mlpipeline", "v2/art")
    with pytest.raises(InputError, match="no bucket"):
        split_s3("s3:///key")


def test_localize_missing_names_what(tmp_path):
    with pytest.raises(InputError, match="corpus not found"):
        localize(tmp_path / "nope", what="corpus")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "d" / "f.txt"
    atomic_write_text(target, "a")
    atomic_write_text(target, "b")
    assert target.read_text() == "b"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    assert target.stat().st_mode & 0o777 == 0o644  # artifacts are readable by other pods' users


def test_atomic_path_leaves_the_old_file_when_the_write_fails(tmp_path):
    from medgo.storage import atomic_path

    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_manifest_records_files_lineage_and_detects_tampering(tmp_path):
    upstream = tmp_path / "up"
    upstream.mkdir()
    write_jsonl(upstream / "x.jsonl", [{"a": 1}])
    write_manifest(upstream, stage="up", counts={"n": 1})
    out = tmp_path / "out"
    out.mkdir()
    assert write_jsonl(out / "train.jsonl", [{"id": "1"}, {"id": "2"}]) == 2
    manifest = write_manifest(out, stage="s", counts={"kept": 2}, config={"k": 1}, inputs={"data": upstream})
    assert manifest["files"]["train.jsonl"]["bytes"] == (out / "train.jsonl").stat().st_size
    assert manifest["inputs"]["data"]["manifest"]["stage"] == "up"
    assert read_manifest(out)["counts"] == {"kept": 2}
    verify_manifest(out)
    (out / "train.jsonl").write_text(json.dumps({"id": "evil"}) + "\n")
    with pytest.raises(InputError, match="checksum mismatch for train.jsonl"):
        verify_manifest(out)


def test_publish_local_copies_tree(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    publish(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "sub" / "f").read_text() == "x"
