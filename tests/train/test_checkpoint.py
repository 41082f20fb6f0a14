"""Checkpoint store: a checkpoint counts only once its marker exists, the newest N are kept, a different config
is refused with the fields that differ; the same on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import pytest

from medgo.config import TrainConfig
from medgo.errors import ConfigError, MedgoError
from medgo.train.checkpoint import (
    MARKER,
    CheckpointStore,
    check_writable,
    checkpoint_root_uri,
    resume_step,
    run_fingerprint,
)

CFG = TrainConfig(stage="sft", model_uri="m", data_uri="d", output_uri="/out/sft", save_steps=2)


def _save(store: CheckpointStore, step: int, complete: bool = True, fingerprint=None, rank_files=2):
    d = store.local_root / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    for rank in range(rank_files):
        (d / f"rng_state_{rank}.pth").write_bytes(b"rng")
    store.upload(step)
    if complete:
        store.mark_complete(step, fingerprint or run_fingerprint(CFG, 2))


def test_default_location_is_beside_the_output():
    assert checkpoint_root_uri(CFG) == "/out/sft.checkpoints"
    assert checkpoint_root_uri(CFG.model_copy(update={"checkpoint_uri": "s3://b/c"})) == "s3://b/c"


def test_only_marked_checkpoints_count_and_the_newest_n_are_kept(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    for step in (2, 4, 6):
        _save(store, step)
    _save(store, 8, complete=False)  # a save cut off half-way
    assert store.complete_steps() == [2, 4, 6] and store.latest_complete() == 6
    assert resume_step(store, run_fingerprint(CFG, 2)) == 6
    store.rotate(keep=2)
    assert store.complete_steps() == [4, 6] and (tmp_path / "ckpt" / "checkpoint-8").exists()
    assert store.remove_incomplete() == ["checkpoint-8"] and not (tmp_path / "ckpt" / "checkpoint-8").exists()


def test_a_checkpoint_of_another_config_or_world_size_is_refused(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    _save(store, 2)
    other = CFG.model_copy(update={"learning_rate": 1e-4, "output_uri": "/elsewhere"})
    with pytest.raises(ConfigError, match=r"another config \(learning_rate: 2e-05 → 0.0001\)"):
        resume_step(store, run_fingerprint(other, 2))
    with pytest.raises(ConfigError, match="world_size: 2 → 4"):
        resume_step(store, run_fingerprint(CFG, 4))
    # where the output goes and how often it saves do not change what is trained
    assert (
        resume_step(store, run_fingerprint(CFG.model_copy(update={"save_steps": 5, "output_uri": "/x"}), 2))
        == 2
    )


def test_an_unwritable_location_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(MedgoError, match="not writable"):
        check_writable(CheckpointStore(str(blocker / "ckpt")))


def test_an_unreachable_s3_endpoint_fails_before_training(monkeypatch):
    from medgo.processes import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(MedgoError, match=r"cannot write to s3://medgo-nowhere/out"):
        check_writable(CheckpointStore("s3://medgo-nowhere/out"))


def test_checkpoints_on_s3_are_synced_marked_rotated_and_fetched(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGO_CACHE_DIR", str(tmp_path / "cache"))
    store = CheckpointStore(f"{s3_server}/checkpoint-test/run-1")
    check_writable(store)
    for step in (2, 4):
        _save(store, step)
    _save(store, 6, complete=False)
    assert store.complete_steps() == [2, 4]
    assert resume_step(store, run_fingerprint(CFG, 2)) == 4
    local = store.local_checkpoint(4)  # what a node resuming on another machine downloads
    assert (local / "trainer_state.json").read_text() == '{"global_step": 4}'
    assert (local / "rng_state_1.pth").exists() and (local / MARKER).exists()
    store.rotate(keep=1)
    assert store.complete_steps() == [4]
    assert store.remove_incomplete() == ["checkpoint-6"]
    store.delete_all()
    assert store.complete_steps() == []
