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
from medgo.data.accounting import Ledger
from medgo.data.io import JsonlWriter, Quarantined, Record, iter_records, output_directory
from medgo.data.normalize import normalize_text
from medgo.data.pii import scrub_pii, scrub_pii_values
from medgo.data.validate import RecordError, optional_str, record_id, record_number_prefixes, require_str
from medgo.logs import fields
from medgo.storage import atomic_write_json, is_s3, localize, write_manifest

log = logging.getLogger(__name__)

STAGE = "data.prepare"
CLEAN_DIR = "clean"
CLEAN_SHARD = "part-00000.jsonl"
_CATEGORY_REASON_MAX = 40


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
class _CorpusRun:
    """State of one preparation pass: the ledger, the dedup index and the per-record routing."""

    config: PrepareConfig
    ledger: Ledger
    clean: JsonlWriter
    allowed: frozenset[str] = field(init=False)
    chars_kept: Counter = field(default_factory=Counter)
    pii_counts: Counter = field(default_factory=Counter)
    survivors: dict[bytes, str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.allowed = frozenset(self.config.categories)

    def route(self, item: Record | Quarantined) -> None:
        """Send one input line to exactly one of clean, quarantine or dropped, counting it."""
        if isinstance(item, Quarantined):
            self.ledger.quarantined(item)
            return
        try:
            rec = _validate(item, self.allowed)
        except RecordError as err:
            self.ledger.quarantined(Quarantined.of(item, err.reason))
            return
        text = normalize_text(rec.text, t2s=self.config.traditional_to_simplified)
        failed = quality_filter(text, self.config)
        if failed:
            self.ledger.filtered(failed, _dropped_entry(rec, item, "filter"), rec.category)
            return
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if digest in self.survivors:
            self.ledger.duplicate(self.survivors[digest], _dropped_entry(rec, item, "dedup"), rec.category)
            return
        if rec.id in self.seen_ids:
            self.ledger.quarantined(Quarantined.of(item, "duplicate_id"), rec.category)
            return
        self.survivors[digest] = rec.id
        self.seen_ids.add(rec.id)
        found: Counter = Counter()
        meta = rec.meta
        if self.config.scrub_pii:
            prefixes = record_number_prefixes(self.config)
            text, found = scrub_pii(text, record_number_prefixes=prefixes)
            meta, found_in_meta = scrub_pii_values(meta, record_number_prefixes=prefixes)
            found.update(found_in_meta)
            self.pii_counts.update(found)
        meta = {**meta, "pii": dict(sorted(found.items())), "source_file": item.source, "line": item.line}
        if item.encoding != "utf-8":
            meta["source_encoding"] = item.encoding
        self.clean.write(
            {"id": rec.id, "text": text, "category": rec.category, "source": rec.source, "meta": meta}
        )
        self.ledger.kept(rec.category)
        self.chars_kept[rec.category] += len(text)

    def data_card(self) -> dict:
        config = self.config
        return {
            "stage": STAGE,
            "totals": self.ledger.total.as_counts(),
            "categories": {
                name: {**counts, "chars_kept": self.chars_kept[name]}
                for name, counts in self.ledger.slice_counts().items()
            },
            "pii": dict(sorted(self.pii_counts.items())),
            "reasons": dict(sorted(self.ledger.total.reasons.items())),
            "filters": {
                "min_chars": config.min_chars,
                "max_chars": config.max_chars,
                "min_chinese_ratio": config.min_chinese_ratio,
            },
        }


def _dropped_entry(rec: _ValidRecord, where: Record, stage: str) -> dict[str, Any]:
    return {
        "id": rec.id,
        "category": rec.category,
        "source_file": where.source,
        "line": where.line,
        "stage": stage,
    }


def prepare_corpus(input_uri: str, output_dir: str | os.PathLike, config: PrepareConfig) -> dict:
    """Clean the raw corpus shards at ``input_uri`` into ``output_dir``; returns the counts.

    Duplicates are exact matches of the normalised text (sha1); the first occurrence in
    sorted file order survives and each duplicate names its survivor. Raises if the counts
    do not reconcile (``in == kept + filtered + duplicates + quarantined``).
    """
    local_input = [] if is_s3(input_uri) else [localize(input_uri, what="corpus")]
    with output_directory(output_dir, inputs=local_input) as out:
        with (
            JsonlWriter(out / CLEAN_DIR / CLEAN_SHARD) as clean,
            JsonlWriter(out / "quarantine.jsonl") as quarantine,
            JsonlWriter(out / "dropped.jsonl") as dropped,
        ):
            ledger = Ledger(STAGE, config.categories, quarantine=quarantine, dropped=dropped)
            run = _CorpusRun(config, ledger, clean)
            for item in tqdm(iter_records(input_uri, what="corpus"), desc=STAGE, unit="rec", disable=None):
                run.route(item)
        ledger.check()
        counts = {**ledger.total.as_counts(), "pii": sum(run.pii_counts.values())}
        atomic_write_json(out / "data_card.json", run.data_card())
        write_manifest(out, stage=STAGE, counts=counts, config=config, inputs={"raw": str(input_uri)})
    if ledger.total.kept == 0:
        log.warning("no records survived preparation", extra=fields(**ledger.total.as_counts()))
    log.info("corpus prepared", extra=fields(**counts, output=str(output_dir)))
    return counts
