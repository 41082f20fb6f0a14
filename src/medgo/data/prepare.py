"""Raw corpus shards → clean, deduplicated, privacy-scrubbed corpus records and a data card.

Per record, in order: validate the fields (else quarantine), normalise the text, apply the
quality filters, drop exact duplicates of an earlier record, mask patient identifiers.
Identifiers are masked in the text and in every string of the record's ``meta`` (which is
passed through as free-form metadata), and ``meta.pii`` counts both; quarantine entries
carry only a scrubbed preview.
Every input line ends up in exactly one of the outputs, and the counts prove it::

    out/
      clean/part-00000.jsonl   corpus records {"id", "text", "category", "source", "meta"}
      quarantine.jsonl         unusable lines and records: source, line, reason, raw preview
      dropped.jsonl            filtered and duplicate records: id, stage, reason, survivor (no text)
      data_card.json           per-category counts and characters, PII counts, reasons
      manifest.json            counts, file hashes, config, input lineage
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medgo.config import PrepareConfig
from medgo.data.accounting import Tally
from medgo.data.io import JsonlWriter, Quarantined, Record, iter_records, output_directory
from medgo.data.normalize import normalize_text
from medgo.data.pii import scrub_pii, scrub_pii_values
from medgo.data.validate import RecordError, optional_str, record_id, require_str
from medgo.logs import fields
from medgo.storage import atomic_write_json, is_s3, localize, write_manifest

log = logging.getLogger(__name__)

STAGE = "data.prepare"
CLEAN_DIR = "clean"
CLEAN_SHARD = "part-00000.jsonl"
_CATEGORY_REASON_MAX = 40


@dataclass
class _CategoryStats:
    tally: Tally = field(default_factory=Tally)
    chars_kept: int = 0


@dataclass
class _ValidRecord:
    id: str
    text: str
    category: str
    source: str
    meta: dict[str, Any]


_CJK_IDEOGRAPH = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WHITESPACE = re.compile(r"\s")


def chinese_ratio(text: str) -> float:
    """Share of CJK ideographs among the non-whitespace characters of ``text``."""
    visible = len(text) - len(_WHITESPACE.findall(text))
    return len(_CJK_IDEOGRAPH.findall(text)) / visible if visible else 0.0


def quality_filter(text: str, config: PrepareConfig) -> str | None:
    """The name of the first quality filter ``text`` fails, or None if it passes all."""
    if len(text) < config.min_chars:
        return "too_short"
    if len(text) > config.max_chars:
        return "too_long"
    if chinese_ratio(text) < config.min_chinese_ratio:
        return "low_chinese_ratio"
    return None


def _validate(record: Record, allowed: frozenset[str]) -> _ValidRecord:
    data = record.data
    text = require_str(data, "text")
    category = require_str(data, "category")
    if category not in allowed:
        raise RecordError(f"unknown_category:{category[:_CATEGORY_REASON_MAX]}")
    source = optional_str(data, "source") or _source_name(record.source)
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise RecordError("wrong_type:meta")
    return _ValidRecord(record_id(data, record.source, record.line), text, category, source, dict(meta))


def _source_name(relative_path: str) -> str:
    name = Path(relative_path).name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class _Outputs:
    clean: JsonlWriter
    quarantine: JsonlWriter
    dropped: JsonlWriter


@dataclass
class _CorpusRun:
    """State of one preparation pass: counts, dedup index and the per-record routing."""

    config: PrepareConfig
    allowed: frozenset[str] = field(init=False)
    total: Tally = field(default_factory=Tally)
    per_category: dict[str, _CategoryStats] = field(init=False)
    pii_counts: Counter = field(default_factory=Counter)
    survivors: dict[bytes, str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.allowed = frozenset(self.config.categories)
        self.per_category = {name: _CategoryStats() for name in self.config.categories}

    def route(self, item: Record | Quarantined, out: _Outputs) -> None:
        """Send one input line to exactly one of clean, quarantine or dropped, counting it."""
        if isinstance(item, Quarantined):
            self.total.add_quarantined(item.reason)
            out.quarantine.write(item)
            return
        try:
            rec = _validate(item, self.allowed)
        except RecordError as err:
            self.total.add_quarantined(err.reason)
            out.quarantine.write(Quarantined.of(item, err.reason))
            return
        stats = self.per_category[rec.category]
        text = normalize_text(rec.text, t2s=self.config.traditional_to_simplified)
        failed = quality_filter(text, self.config)
        if failed:
            self.total.add_filtered(failed)
            stats.tally.add_filtered(failed)
            out.dropped.write(_dropped_entry(rec, item, "filter", failed))
            return
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if digest in self.survivors:
            self.total.add_duplicate()
            stats.tally.add_duplicate()
            out.dropped.write(
                _dropped_entry(rec, item, "dedup", "duplicate", survivor=self.survivors[digest])
            )
            return
        if rec.id in self.seen_ids:
            self.total.add_quarantined("duplicate_id")
            stats.tally.add_quarantined("duplicate_id")
            out.quarantine.write(Quarantined.of(item, "duplicate_id"))
            return
        self.survivors[digest] = rec.id
        self.seen_ids.add(rec.id)
        found: Counter = Counter()
        meta = rec.meta
        if self.config.scrub_pii:
            prefixes = self.config.record_number_prefixes
            text, found = scrub_pii(text, record_number_prefixes=prefixes)
            meta, found_in_meta = scrub_pii_values(meta, record_number_prefixes=prefixes)
            found.update(found_in_meta)
            self.pii_counts.update(found)
        meta = {**meta, "pii": dict(sorted(found.items())), "source_file": item.source, "line": item.line}
        if item.encoding != "utf-8":
            meta["source_encoding"] = item.encoding
        out.clean.write(
            {"id": rec.id, "text": text, "category": rec.category, "source": rec.source, "meta": meta}
        )
        self.total.add_kept()
        stats.tally.add_kept()
        stats.chars_kept += len(text)

    def check(self) -> None:
        """Raise unless every record is accounted for, overall and within each category."""
        self.total.check(STAGE)
        for name, stats in self.per_category.items():
            stats.tally.check(f"{STAGE}:{name}")

    def data_card(self) -> dict:
        config = self.config
        return {
            "stage": STAGE,
            "totals": self.total.as_counts(),
            "categories": {
                name: {**stats.tally.as_counts(), "chars_kept": stats.chars_kept}
                for name, stats in self.per_category.items()
            },
            "pii": dict(sorted(self.pii_counts.items())),
            "reasons": dict(sorted(self.total.reasons.items())),
            "filters": {
                "min_chars": config.min_chars,
                "max_chars": config.max_chars,
                "min_chinese_ratio": config.min_chinese_ratio,
            },
        }


def _dropped_entry(
    rec: _ValidRecord, where: Record, stage: str, reason: str, survivor: str | None = None
) -> dict[str, Any]:
    entry = {
        "id": rec.id,
        "category": rec.category,
        "source_file": where.source,
        "line": where.line,
        "stage": stage,
        "reason": reason,
    }
    if survivor is not None:
        entry["survivor"] = survivor
    return entry


def prepare_corpus(input_uri: str, output_dir: str | os.PathLike, config: PrepareConfig) -> dict:
    """Clean the raw corpus shards at ``input_uri`` into ``output_dir``; returns the counts.

    Duplicates are exact matches of the normalised text (sha1); the first occurrence in
    sorted file order survives and each duplicate names its survivor. Raises if the counts
    do not reconcile (``in == kept + filtered + duplicates + quarantined``).
    """
    run = _CorpusRun(config)
    local_input = [] if is_s3(input_uri) else [localize(input_uri, what="corpus")]
    with output_directory(output_dir, inputs=local_input) as out:
        with (
            JsonlWriter(out / CLEAN_DIR / CLEAN_SHARD) as clean,
            JsonlWriter(out / "quarantine.jsonl") as quarantine,
            JsonlWriter(out / "dropped.jsonl") as dropped,
        ):
            outputs = _Outputs(clean, quarantine, dropped)
            for item in tqdm(iter_records(input_uri, what="corpus"), desc=STAGE, unit="rec", disable=None):
                run.route(item, outputs)
        run.check()
        counts = {**run.total.as_counts(), "pii": sum(run.pii_counts.values())}
        atomic_write_json(out / "data_card.json", run.data_card())
        write_manifest(out, stage=STAGE, counts=counts, config=config, inputs={"raw": str(input_uri)})
    if run.total.kept == 0:
        log.warning("no records survived preparation", extra=fields(**run.total.as_counts()))
    log.info("corpus prepared", extra=fields(**counts, output=str(output_dir)))
    return counts
