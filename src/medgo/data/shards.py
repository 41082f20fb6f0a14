"""Shards of a corpus run: the plan, the work directory, atomic per-unit outputs and the process pool.

A run of a sharded stage lives in a *work directory* (``<output>/_work`` locally, a PVC path on the
cluster). :func:`write_plan` lists the input once and cuts it into shards (whole files, grouped up
to ``shard_size_mb``; big plain JSONL files cut at line starts, Parquet at row groups), in input
order, so a document's global key ``(shard << 32) | row`` orders documents as they were read.

Every unit of work (a shard of one phase, a band group) writes into a hidden temporary directory
and renames it into place when done, together with a ``summary.json`` that records what it was
computed from (:func:`unit_done`). A re-run recomputes only units whose summary is missing or
was computed from something else, so a killed run costs only the units that were in flight, and
its debris (hidden temporaries) is removed by the next plan.

:func:`run_units` is the local process pool. On the cluster the same unit functions run as KFP
``ParallelFor`` tasks over shard groups (``shard % groups``), so there is one implementation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm.auto import tqdm

from medgo.data.readers import FilePart, parquet_row_groups, split_jsonl
from medgo.data.sources import InputFile, InputListing
from medgo.errors import MedgoError
from medgo.logs import fields
from medgo.storage import atomic_write_json

log = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
SUMMARY_NAME = "summary.json"
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def doc_key(shard: int, row: int) -> int:
    return (shard << ROW_BITS) | row


def split_key(key: int) -> tuple[int, int]:
    return key >> ROW_BITS, key & ROW_MASK


def digest_of(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable value (what a unit was computed from)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


@dataclass(frozen=True)
class ShardSpec:
    """One shard: the file parts it reads, in order, and a fingerprint of exactly those bytes."""

    index: int
    parts: list[dict[str, Any]]
    fingerprint: str

    def file_parts(self) -> list[FilePart]:
        return [FilePart(InputFile(**p["file"]), p["start"], p["stop"], p["first_line"]) for p in self.parts]


@dataclass
class CorpusPlan:
    """The input cut into shards, the number of groups tasks handle, and the run's configuration."""

    input_uri: str
    shards: list[ShardSpec]
    groups: int
    band_groups: int
    config: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    files: int = 0

    def shards_of_group(self, group: int) -> list[int]:
        return [s.index for s in self.shards if s.index % self.groups == group]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_uri": self.input_uri,
            "groups": self.groups,
            "band_groups": self.band_groups,
            "config": self.config,
            "skipped": self.skipped,
            "files": self.files,
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorpusPlan:
        shards = [ShardSpec(**s) for s in data["shards"]]
        return cls(
            data["input_uri"],
            shards,
            data["groups"],
            data["band_groups"],
            data["config"],
            data["skipped"],
            data["files"],
        )


def cut_into_shards(listing: InputListing, shard_bytes: int) -> list[ShardSpec]:
    """Group the listed files into shards of about ``shard_bytes`` input bytes, in input order."""
    parts: list[FilePart] = []
    for file in listing.files:
        if file.format == "jsonl":
            parts.extend(split_jsonl(file, shard_bytes))
        elif file.format == "parquet" and not file.is_s3 and file.size > shard_bytes * 3 // 2:
            parts.extend(_split_parquet(file, shard_bytes))
        else:
            parts.append(FilePart(file))
    shards: list[list[FilePart]] = []
    size = 0
    for part in parts:
        part_size = _part_size(part)
        if not shards or size + part_size > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(part)
        size += part_size
    specs = []
    for index, shard in enumerate(shards):
        described = [
            {"file": asdict(p.file), "start": p.start, "stop": p.stop, "first_line": p.first_line}
            for p in shard
        ]
        specs.append(ShardSpec(index, described, digest_of(described)))
    return specs


def _part_size(part: FilePart) -> int:
    if part.file.format == "jsonl" and not part.whole:
        return (part.stop if part.stop is not None else part.file.size) - part.start
    return max(part.file.size, 1)


def _split_parquet(file: InputFile, shard_bytes: int) -> list[FilePart]:
    groups = parquet_row_groups(file)
    if len(groups) < 2:
        return [FilePart(file)]
    parts: list[FilePart] = []
    start, row, size, first_row = 0, 1, 0, 1
    for index, (rows, nbytes) in enumerate(groups):
        if size and size + nbytes > shard_bytes:
            parts.append(FilePart(file, start, index, first_row))
            start, size, first_row = index, 0, row
        size += nbytes
        row += rows
    parts.append(FilePart(file, start, None, first_row))
    return parts


# --------------------------------------------------------------------------------- work directory
def read_plan(work: str | os.PathLike) -> CorpusPlan:
    path = Path(work) / PLAN_NAME
    if not path.is_file():
        raise MedgoError(f"{work} is not a corpus work directory (no {PLAN_NAME}); run the plan step first")
    return CorpusPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))


def save_plan(work: str | os.PathLike, plan: CorpusPlan) -> None:
    Path(work).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(work) / PLAN_NAME, plan.to_dict())


def remove_debris(work: Path) -> None:
    """Delete hidden temporaries left by killed units (no unit of this run is running yet)."""
    if not work.is_dir():
        return
    for path in work.rglob(".*.tmp-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def read_summary(unit_dir: Path) -> dict[str, Any] | None:
    path = unit_dir / SUMMARY_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def unit_done(unit_dir: Path, inputs_digest: str) -> dict[str, Any] | None:
    """The summary of a finished unit computed from ``inputs_digest``, or None if it must be (re)done."""
    summary = read_summary(unit_dir)
    if summary is not None and summary.get("inputs_digest") == inputs_digest:
        return summary
    return None


@contextmanager
def unit_output(unit_dir: Path) -> Iterator[Path]:
    """A temporary directory that becomes ``unit_dir`` (replacing an outdated one) when the block succeeds."""
    unit_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = unit_dir.parent / f".{unit_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if unit_dir.exists():
            stale = unit_dir.parent / f".{unit_dir.name}.tmp-old-{uuid.uuid4().hex[:8]}"
            os.replace(unit_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, unit_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_summary(unit_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(unit_dir / SUMMARY_NAME, summary)


# ----------------------------------------------------------------------------- documents on disk
class DocStore:
    """Random access to the candidate documents the first phase wrote (``docs.jsonl`` + ``offsets.npy``).

    The work files are written and read with orjson (about 5× faster than the json module); only
    medgo reads them, so their compact formatting does not matter.
    """

    def __init__(self, signed_dir: Path) -> None:
        self._dir = signed_dir
        self._files: dict[int, tuple[Any, np.ndarray]] = {}

    def _open(self, shard: int):
        if shard not in self._files:
            shard_dir = self._dir / shard_name(shard)
            offsets = np.load(shard_dir / "offsets.npy", mmap_mode="r")
            self._files[shard] = (open(shard_dir / "docs.jsonl", "rb"), offsets)
        return self._files[shard]

    def record(self, key: int) -> dict[str, Any]:
        shard, row = split_key(key)
        fh, offsets = self._open(shard)
        start, end = int(offsets[row]), int(offsets[row + 1])
        fh.seek(start)
        return orjson.loads(fh.read(end - start))

    def close(self) -> None:
        for fh, _ in self._files.values():
            fh.close()
        self._files.clear()


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def load_array(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


# ---------------------------------------------------------------------------------- process pool
def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(level: int) -> None:
    from medgo.logs import setup_logging

    setup_logging(logging.getLevelName(level))


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` spawned processes shared by several :func:`run_units` calls (None for one worker).

    Starting a process costs about a second of imports, so a run starts its workers once, not per phase.
    """
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(level,)
    ) as pool:
        yield pool


def run_units(
    fn: Callable[..., dict[str, Any]],
    args: Sequence[tuple],
    workers: int,
    desc: str,
    pool: ProcessPoolExecutor | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn(*a)`` for every ``a`` in ``args`` on a process pool; results in order.

    The pool is ``pool`` if given, else one of ``workers`` processes started for this call; a single
    unit, or a single worker, runs in this process. A worker that dies (killed, out of memory) fails
    the run with a :class:`MedgoError`; the units that finished are kept and a re-run resumes.
    """
    results: list[dict[str, Any] | None] = [None] * len(args)
    progress = tqdm(total=len(args), desc=desc, unit="unit", disable=None)
    if workers <= 1 or len(args) <= 1:
        for i, a in enumerate(args):
            results[i] = fn(*a)
            progress.update()
        progress.close()
        return results  # type: ignore[return-value]
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(worker_pool(min(workers, len(args))))
        futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    results[futures[future]] = future.result()
                    progress.update()
        except BrokenProcessPool:
            for future in pending:
                future.cancel()
            raise MedgoError(
                f"{desc}: a worker process died (killed or out of memory); the finished units are kept, "
                "re-run the same command to resume"
            ) from None
        finally:
            progress.close()
    log.debug("units finished", extra=fields(step=desc, units=len(args)))
    return results  # type: ignore[return-value]
