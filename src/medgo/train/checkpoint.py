"""Periodic checkpoints on shared storage, written atomically, and the resume decision.

A checkpoint is ``<checkpoint root>/checkpoint-<step>/``: what ``transformers.Trainer`` saves (model or
adapter, optimizer and scheduler state, every rank's RNG state, the trainer state that fixes the data
position, and under DeepSpeed every rank's ZeRO shards) plus medgo's marker ``medgo-checkpoint.json``.
The marker is written last, by global rank 0, after a barrier that every rank passes only once its own
files are written (and, on S3, uploaded); a directory without it is incomplete, is never resumed from,
and is removed. The newest ``save_total_limit`` complete checkpoints are kept.

The root is a path on shared storage (the checkpoint PVC: every node sees every rank's files) or an
``s3://`` prefix: then each node writes into a node-local staging directory and its local rank 0
uploads it after each save; resuming downloads the whole checkpoint on every node.

The marker records the run's fingerprint (every config field that changes what is trained, and the
world size that the ZeRO shards are cut for); a checkpoint with another fingerprint is a
:class:`~medgo.errors.ConfigError` naming the fields that differ, before any weight is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medgo.config import TrainConfig
from medgo.errors import ConfigError, MedgoError
from medgo.logs import fields
from medgo.storage import _cache_root, atomic_write_json, is_s3, localize, s3_client, split_s3

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
MARKER = "medgo-checkpoint.json"
_STEP_DIR = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")

#: Fields that say where things go or how often, not what is trained: a restart may change them.
NOT_FINGERPRINTED = frozenset(
    {"output_uri", "checkpoint_uri", "save_steps", "save_total_limit", "logging_steps", "export_merged"}
)


def checkpoint_root_uri(cfg: TrainConfig) -> str:
    """Where this run's checkpoints live: ``checkpoint_uri``, else ``<output_uri>.checkpoints``."""
    return cfg.checkpoint_uri or f"{str(cfg.output_uri).rstrip('/')}.checkpoints"


def run_fingerprint(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the training-relevant config and the world size."""
    config = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in NOT_FINGERPRINTED}
    digest = hashlib.sha256(
        json.dumps({"config": config, "world_size": world_size}, sort_keys=True).encode()
    ).hexdigest()
    return {"sha256": digest, "config": config, "world_size": world_size}


def fingerprint_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``field: recorded → current`` for every fingerprinted value that differs."""
    diffs = []
    if recorded.get("world_size") != current["world_size"]:
        diffs.append(f"world_size: {recorded.get('world_size')} → {current['world_size']}")
    old, new = recorded.get("config") or {}, current["config"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(
                f"{key}: {json.dumps(old.get(key), ensure_ascii=False)} → {json.dumps(new.get(key))}"
            )
    return diffs


def step_of(name: str) -> int | None:
    match = _STEP_DIR.match(name)
    return int(match.group(1)) if match else None


@dataclass
class CheckpointStore:
    """The checkpoints of one run under ``uri`` (a shared path or ``s3://``)."""

    uri: str

    @property
    def remote(self) -> bool:
        return is_s3(self.uri)

    @property
    def local_root(self) -> Path:
        """Where the trainer writes: the shared path itself, or this node's staging directory for S3."""
        if not self.remote:
            return Path(self.uri)
        key = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        return _cache_root() / "checkpoint-staging" / key

    # -- reading ---------------------------------------------------------------------------------------
    def _markers(self) -> dict[int, str]:
        """``{step: marker location}`` of every complete checkpoint."""
        if not self.remote:
            root = Path(self.uri)
            if not root.is_dir():
                return {}
            return {
                step: str(p / MARKER)
                for p in root.iterdir()
                if (step := step_of(p.name)) is not None and (p / MARKER).is_file()
            }
        bucket, prefix = split_s3(self.uri)
        found: dict[int, str] = {}
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(prefix) :].strip("/").split("/")
                if len(parts) == 2 and parts[1] == MARKER and (step := step_of(parts[0])) is not None:
                    found[step] = obj["Key"]
        return found

    def complete_steps(self) -> list[int]:
        return sorted(self._markers())

    def latest_complete(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def read_marker(self, step: int) -> dict[str, Any]:
        location = self._markers()[step]
        try:
            if not self.remote:
                return json.loads(Path(location).read_text(encoding="utf-8"))
            bucket, _ = split_s3(self.uri)
            body = s3_client().get_object(Bucket=bucket, Key=location)["Body"].read()
            return json.loads(body)
        except (OSError, json.JSONDecodeError) as exc:
            raise MedgoError(f"checkpoint marker {location} is unreadable: {exc}") from None

    def local_checkpoint(self, step: int) -> Path:
        """A local directory holding checkpoint ``step`` (downloaded once per node from S3)."""
        name = f"{CHECKPOINT_PREFIX}{step}"
        if not self.remote:
            return Path(self.uri) / name
        return localize(f"{self.uri.rstrip('/')}/{name}", what="checkpoint")

    # -- writing (global rank 0 unless said otherwise) ---------------------------------------------------
    def upload(self, step: int) -> int:
        """S3: upload this node's files of checkpoint ``step`` (call on each node's local rank 0)."""
        if not self.remote:
            return 0
        local = self.local_root / f"{CHECKPOINT_PREFIX}{step}"
        bucket, prefix = split_s3(self.uri)
        client = s3_client()
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != MARKER)
        for path in files:
            key = f"{prefix}/{CHECKPOINT_PREFIX}{step}/{path.relative_to(local).as_posix()}".lstrip("/")
            client.upload_file(str(path), bucket, key)
        return len(files)

    def mark_complete(
        self, step: int, fingerprint: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> None:
        """Write the marker that makes checkpoint ``step`` complete (after every rank's files are in place)."""
        marker = {"step": step, "fingerprint": fingerprint, **(extra or {})}
        local = self.local_root / f"{CHECKPOINT_PREFIX}{step}" / MARKER
        atomic_write_json(local, marker)
        if self.remote:
            bucket, prefix = split_s3(self.uri)
            key = f"{prefix}/{CHECKPOINT_PREFIX}{step}/{MARKER}".lstrip("/")
            s3_client().put_object(Bucket=bucket, Key=key, Body=json.dumps(marker).encode())
        log.info("checkpoint complete", extra=fields(step=step, uri=self.uri))

    def rotate(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` complete checkpoints and every incomplete one older than them."""
        steps = self.complete_steps()
        doomed = steps[:-keep] if keep else steps
        newest = steps[-1] if steps else None
        if not self.remote:
            for path in Path(self.uri).iterdir() if Path(self.uri).is_dir() else []:
                step = step_of(path.name)
                if step is None:
                    continue
                incomplete_and_old = not (path / MARKER).exists() and newest is not None and step < newest
                if step in doomed or incomplete_and_old:
                    shutil.rmtree(path, ignore_errors=True)
        else:
            for step in doomed:
                self._delete_remote_prefix(f"{CHECKPOINT_PREFIX}{step}/")
            for path in self.local_root.iterdir() if self.local_root.is_dir() else []:
                step = step_of(path.name)
                if step is not None and step != newest:
                    shutil.rmtree(path, ignore_errors=True)
        return doomed

    def remove_incomplete(self) -> list[str]:
        """Delete checkpoint directories without a marker (a save that was interrupted)."""
        removed = []
        if not self.remote:
            root = Path(self.uri)
            for path in root.iterdir() if root.is_dir() else []:
                if step_of(path.name) is not None and not (path / MARKER).exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        else:
            complete = set(self.complete_steps())
            bucket, prefix = split_s3(self.uri)
            paginator = s3_client().get_paginator("list_objects_v2")
            dirs = set()
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
                for obj in page.get("Contents", []):
                    head = obj["Key"][len(prefix) :].strip("/").split("/")[0]
                    step = step_of(head)
                    if step is not None and step not in complete:
                        dirs.add(head)
            for head in sorted(dirs):
                self._delete_remote_prefix(f"{head}/")
                removed.append(head)
            shutil.rmtree(self.local_root, ignore_errors=True)
        if removed:
            log.warning("removed incomplete checkpoints", extra=fields(uri=self.uri, dirs=",".join(removed)))
        return removed

    def delete_all(self) -> None:
        """Remove every checkpoint of the run (once its result is published)."""
        if self.remote:
            self._delete_remote_prefix("")
            shutil.rmtree(self.local_root, ignore_errors=True)
        else:
            shutil.rmtree(self.uri, ignore_errors=True)

    def _delete_remote_prefix(self, sub: str) -> None:
        bucket, prefix = split_s3(self.uri)
        client = s3_client()
        paginator = client.get_paginator("list_objects_v2")
        full = f"{prefix}/{sub}".lstrip("/")
        for page in paginator.paginate(Bucket=bucket, Prefix=full):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def check_writable(store: CheckpointStore) -> None:
    """Fail before training when the checkpoint root cannot be written (an unreachable S3 endpoint,
    a missing bucket, a read-only mount), instead of at the first save hours later."""
    if not store.remote:
        root = Path(store.uri)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise MedgoError(f"checkpoint location {store.uri} is not writable: {exc}") from None
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(store.uri)
    key = f"{prefix}/.write-probe-{os.getpid()}".lstrip("/")
    try:
        client = s3_client()
        client.put_object(Bucket=bucket, Key=key, Body=b"ok")
        client.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise MedgoError(f"cannot write to {store.uri}: {exc}") from None


def resume_step(store: CheckpointStore, fingerprint: dict[str, Any]) -> int | None:
    """The step to resume from (newest complete checkpoint), or None to start fresh.

    Raises :class:`ConfigError` when that checkpoint was written by a run with another fingerprint.
    """
    step = store.latest_complete()
    if step is None:
        return None
    recorded = store.read_marker(step).get("fingerprint") or {}
    if recorded.get("sha256") != fingerprint["sha256"]:
        diffs = fingerprint_differences(recorded, fingerprint)
        raise ConfigError(
            f"checkpoint {store.uri}/{CHECKPOINT_PREFIX}{step} was written by a run with another config "
            f"({'; '.join(diffs) or 'fingerprint differs'}); use the same config to resume, or another "
            "checkpoint_uri (or output) to start afresh"
        )
    return step
