"""Decontamination: training text that shares a character n-gram with an evaluation item is removed.

The index is built from *every string value* of every JSON / JSONL file under the evaluation data
directory, whatever its layout (CBLUE tasks, CMB, safety prompts, and any task added later), and from
every field of every line of its TSV / TXT / CSV files (KUAKE-IR's queries and passages, CMExam), so a
new evaluation set is covered without code. A file belongs to the task named by its first folder
under the root (``CMeEE/CMeEE_dev.json`` → ``CMeEE``), or by its name for files at the top.
Strings are normalised like training text and compared as :func:`~medgo.data.minhash.comparison_text`
(no whitespace, lower case). A string shorter than ``n`` but at least ``min_item_chars`` long (a
KUAKE search query, a short MCQ question) is indexed whole, and a training text that contains it is a
hit; shorter ones (labels such as ``"0"``, ``"病情诊断"``) are not indexed.

The index is a sorted array of n-gram hashes with a bit mask of the tasks each occurs in; it is saved
as one ``.npz`` file so the parallel workers of a stage load it instead of rebuilding it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgo.data.minhash import batch_ngram_hashes, comparison_text
from medgo.data.normalize import normalize_text
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import atomic_path, localize

log = logging.getLogger(__name__)

EVAL_SUFFIXES = (".json", ".jsonl", ".tsv", ".txt", ".csv")
_BATCH = 2048


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _task_of(root: Path, path: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    name = rel.name
    for suffix in EVAL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def iter_eval_strings(eval_dir: Path) -> Iterator[tuple[str, str]]:
    """``(task, string)`` for every string value in the evaluation files under ``eval_dir``."""
    files = sorted(
        p
        for p in ([eval_dir] if eval_dir.is_file() else eval_dir.rglob("*"))
        if p.is_file()
        and p.name.endswith(EVAL_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(eval_dir.parent).parts)
    )
    if not files:
        raise InputError(f"no evaluation files ({', '.join(EVAL_SUFFIXES)}) under {eval_dir}")
    root = eval_dir.parent if eval_dir.is_file() else eval_dir
    for path in files:
        task = _task_of(root, path)
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        for string in _file_strings(path.name, text):
            yield task, string


def _file_strings(name: str, text: str) -> Iterator[str]:
    if name.endswith(".csv"):
        import csv
        import io

        for row in csv.reader(io.StringIO(text)):
            yield from row
        return
    if name.endswith((".tsv", ".txt")):
        for line in text.splitlines():
            yield from line.split("\t")
        return
    try:
        documents = [json.loads(text)]
    except json.JSONDecodeError:
        documents = []
        for line in text.splitlines():
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    for document in documents:
        yield from _strings(document)


@dataclass
class EvalIndex:
    """Character n-gram hashes of the evaluation sets, each with the tasks it occurs in."""

    ngram_chars: int
    tasks: list[str]
    hashes: np.ndarray  # uint64, sorted, unique
    masks: np.ndarray  # uint64[len(hashes), words]: bit t set when task t has the n-gram
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Lengths (< ngram_chars) of the short strings indexed whole; their hashes are in ``hashes`` too.
    whole_lengths: list[int] = field(default_factory=list)

    def hits(self, text: str) -> list[str]:
        """The evaluation tasks ``text`` shares at least one n-gram with (sorted; empty when clean)."""
        return self.hits_many([text])[0]

    def hits_many(self, texts: list[str]) -> list[list[str]]:
        if not self.hashes.size:
            return [[] for _ in texts]
        prepared = [comparison_text(t) for t in texts]
        masks: list[np.ndarray | None] = [None] * len(prepared)
        for n in (self.ngram_chars, *self.whole_lengths):
            hashes, offsets = batch_ngram_hashes(prepared, n)  # every text has at least one n-gram
            pos = np.searchsorted(self.hashes, hashes).clip(max=self.hashes.size - 1)
            found = self.hashes[pos] == hashes
            if not found.any():
                continue
            for i in np.flatnonzero(np.add.reduceat(found, offsets[:-1].astype(np.int64))):
                lo, hi = int(offsets[i]), int(offsets[i + 1])
                if len(prepared[i]) < n:  # its one padded n-gram is no real string
                    continue
                mask = np.bitwise_or.reduce(self.masks[pos[lo:hi][found[lo:hi]]], axis=0)
                masks[i] = mask if masks[i] is None else masks[i] | mask
        return [
            []
            if mask is None
            else [task for t, task in enumerate(self.tasks) if int(mask[t // 64]) >> (t % 64) & 1]
            for mask in masks
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "ngram_chars": self.ngram_chars,
            "whole_item_lengths": self.whole_lengths,
            "ngrams": int(self.hashes.size),
            "tasks": self.stats,
        }

    def save(self, path: str | os.PathLike) -> None:
        meta = json.dumps(
            {"n": self.ngram_chars, "tasks": self.tasks, "stats": self.stats, "whole": self.whole_lengths}
        )
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, hashes=self.hashes, masks=self.masks, meta=np.array(meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvalIndex:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                meta["n"], meta["tasks"], data["hashes"], data["masks"], meta["stats"], meta.get("whole", [])
            )


def build_eval_index(
    eval_uri: str | os.PathLike,
    ngram_chars: int,
    *,
    max_strings_per_ngram: int = 20,
    min_item_chars: int = 8,
) -> EvalIndex:
    """Index every string of every evaluation file under ``eval_uri`` (local, PVC or ``s3://``).

    Strings of ``min_item_chars`` up to ``ngram_chars - 1`` characters are indexed whole (none when
    ``min_item_chars >= ngram_chars``).

    An n-gram that more than ``max_strings_per_ngram`` different strings contain is left out: it is
    how the evaluation set phrases its items (``请问医生``, a prompt template), and matching it would
    remove every training text that happens to use the same phrase.
    """
    root = localize(eval_uri, what="evaluation data")
    tasks: list[str] = []
    stats: dict[str, dict[str, int]] = {}
    pieces: list[np.ndarray] = []
    task_ids: list[np.ndarray] = []
    batch: list[tuple[int, str]] = []

    string_ids: list[np.ndarray] = []
    strings_seen = 0

    min_chars = min(min_item_chars, ngram_chars)
    short: dict[int, list[tuple[int, str]]] = {}

    def flush(items: list[tuple[int, str]] = batch, n: int = ngram_chars) -> None:
        nonlocal strings_seen
        if not items:
            return
        texts = [s for _, s in items]
        hashes, offsets = batch_ngram_hashes(texts, n)
        counts = np.diff(offsets).astype(np.int64)
        pieces.append(hashes)
        task_ids.append(np.repeat(np.array([t for t, _ in items], dtype=np.int64), counts))
        string_ids.append(
            np.repeat(np.arange(strings_seen, strings_seen + len(items), dtype=np.int64), counts)
        )
        strings_seen += len(items)
        items.clear()

    for task, string in iter_eval_strings(root):
        if task not in stats:
            stats[task] = {"strings": 0, "indexed": 0}
            tasks.append(task)
        stats[task]["strings"] += 1
        text = comparison_text(normalize_text(string))
        if len(text) < min_chars:
            continue
        stats[task]["indexed"] += 1
        if len(text) < ngram_chars:
            short.setdefault(len(text), []).append((tasks.index(task), text))
            continue
        batch.append((tasks.index(task), text))
        if len(batch) >= _BATCH:
            flush()
    flush()
    for length, items in sorted(short.items()):
        flush(items, length)
    words = max(1, (len(tasks) + 63) // 64)
    dropped_common = 0
    if pieces:
        all_hashes = np.concatenate(pieces)
        all_tasks = np.concatenate(task_ids)
        all_strings = np.concatenate(string_ids)
        order = np.lexsort((all_strings, all_hashes))
        h_sorted, s_sorted = all_hashes[order], all_strings[order]
        first = np.ones(h_sorted.size, dtype=bool)
        first[1:] = (h_sorted[1:] != h_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])
        distinct_hashes, strings_per_hash = np.unique(h_sorted[first], return_counts=True)
        common = distinct_hashes[strings_per_hash > max_strings_per_ngram]
        dropped_common = int(common.size)
        keep = ~np.isin(all_hashes, common)
        all_hashes, all_tasks = all_hashes[keep], all_tasks[keep]
        hashes, inverse = np.unique(all_hashes, return_inverse=True)
        masks = np.zeros((hashes.size, words), dtype=np.uint64)
        for t in range(len(tasks)):
            rows = np.unique(inverse[all_tasks == t])
            masks[rows, t // 64] |= np.uint64(1 << (t % 64))
    else:
        hashes, masks = np.empty(0, dtype=np.uint64), np.zeros((0, words), dtype=np.uint64)
    log.info(
        "evaluation n-gram index built",
        extra=fields(
            eval_dir=str(eval_uri),
            tasks=len(tasks),
            ngrams=int(hashes.size),
            common_ngrams_left_out=dropped_common,
            n=ngram_chars,
        ),
    )
    return EvalIndex(ngram_chars, tasks, hashes, masks, stats, sorted(short))


def load_eval_index(config) -> EvalIndex | None:
    """The index a :class:`~medgo.config.DecontaminationConfig` asks for, or None when it is off."""
    if not config.eval_dir:
        return None
    return build_eval_index(
        config.eval_dir,
        config.ngram_chars,
        max_strings_per_ngram=config.max_strings_per_ngram,
        min_item_chars=config.min_item_chars,
    )
