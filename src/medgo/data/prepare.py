"""Raw corpus → clean, deduplicated, decontaminated, privacy-scrubbed, mixed corpus and a data card.

The stage runs in phases over shards of the input; each phase is a plain function of the work
directory and a shard or group index, called by the local process pool (:func:`prepare_corpus`)
or, on the cluster, by one KFP task per shard group inside ``dsl.ParallelFor``:

1. :func:`plan_corpus` — list the input (skipped files and why), cut it into shards, index the
   evaluation sets for decontamination.
2. :func:`clean_and_sign_shard` — read (encoding per file), validate, categorise, normalise,
   quality-filter; write each candidate document with its MinHash band keys, digest and tokens.
3. :func:`bucket_group` — LSH buckets of a band group → verified duplicate edges.
4. :func:`global_clusters` — union-find over all edges; the earliest document of a cluster survives.
5. :func:`filter_shard` — drop duplicates and evaluation overlaps, mask patient identifiers,
   resample categories, write the shard's clean records.
6. :func:`finalize_corpus` — assemble the artifact, the data card (JSON, HTML, metrics) and the
   manifest; fail (after writing) on truncated/undecodable input or too much quarantine.

Every input unit (a line, a Parquet row, or a file quarantined whole) ends up in exactly one
outcome, per shard and in total, and the counts prove it::

    out/
      clean/part-NNNNN.jsonl       corpus records {"id", "text", "category", "source", "meta"}
      quarantine/part-NNNNN.jsonl  unusable units: source, line, reason, raw preview (scrubbed)
      dropped/part-NNNNN.jsonl     filtered and duplicate records: id, stage, reason, survivor (no text)
      data_card.json / .html       per-step and per-category counts, tokens, PII, duplicates, overlaps
      manifest.json                counts, file hashes, config, input lineage, skipped files, status
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medgo.config import PrepareConfig
from medgo.data.accounting import Ledger, Tally, fail_or_accept, step_problems
from medgo.data.card import build_corpus_card, write_card
from medgo.data.decontam import load_eval_index
from medgo.data.dedup import Decision, ShingleCache, bucket_edges, cluster_decisions
from medgo.data.io import JsonlWriter, Quarantined, Record
from medgo.data.minhash import band_keys, comparison_text, key_hash, signatures, text_digest
from medgo.data.mixture import Categorizer, copies, estimate_tokens, mixture_rates
from medgo.data.normalize import TextNormalizer
from medgo.data.quality import char_classes, quality_filter
from medgo.data.readers import file_encoding, is_stream_failure, iter_part, raw_preview
from medgo.data.shards import (
    PLAN_NAME,
    CorpusPlan,
    DocStore,
    available_cpus,
    cut_into_shards,
    digest_of,
    load_array,
    read_plan,
    read_summary,
    remove_debris,
    run_units,
    save_plan,
    shard_name,
    split_key,
    unit_done,
    unit_output,
    worker_pool,
    write_summary,
)
from medgo.data.sources import check_output_outside_inputs, list_inputs
from medgo.data.validate import RecordError, optional_str, record_id, record_number_prefixes, require_str
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import MANIFEST_NAME, is_s3, publish, write_manifest

log = logging.getLogger(__name__)

STAGE = "data.prepare"
CLEAN_DIR = "clean"
QUARANTINE_DIR = "quarantine"
DROPPED_DIR = "dropped"
WORK_SUFFIX = ".work"
EVAL_INDEX = "eval_index.npz"
_SIGN_BATCH = 2048
_FILTER_BATCH = 512
_MIN_SHARD_BYTES = 1 << 20
#: Local runs cut the input into at least this many shards per worker, to balance the pool.
SHARDS_PER_WORKER = 4

#: Which configuration fields each phase's results depend on (a change redoes that phase only).
_PHASE_FIELDS = {
    "sign": (
        "categories",
        "category_aliases",
        "category_keywords",
        "quality_by_category",
        "traditional_to_simplified",
        "nfkc",
        "strip_html",
        "remove_boilerplate",
        "boilerplate_patterns",
        "min_chars",
        "max_chars",
        "min_chinese_ratio",
        "max_symbol_ratio",
        "max_digit_ratio",
        "max_repeated_line_ratio",
        "max_repeated_ngram_ratio",
        "repeated_ngram_chars",
        "languages",
        "near_dedup.ngram_chars",
        "near_dedup.num_perm",
        "near_dedup.bands",
        "near_dedup.rows",
        "near_dedup.seed",
    ),
    "buckets": (
        "near_dedup.enabled",
        "near_dedup.threshold",
        "near_dedup.max_pivots_per_bucket",
        "near_dedup.max_index_rows",
    ),
    "clusters": ("mixture",),
    "filter": ("scrub_pii", "record_number_prefixes", "decontamination", "mixture"),
}


def _phase_config(config: dict[str, Any], phase: str) -> dict[str, Any]:
    out = {}
    for name in _PHASE_FIELDS[phase]:
        value: Any = config
        for part in name.split("."):
            value = value[part]
        out[name] = value
    return out


def _config(plan: CorpusPlan) -> PrepareConfig:
    return PrepareConfig.model_validate(plan.config)


# ------------------------------------------------------------------------------------------ 1 plan
def plan_corpus(
    input_uri: str,
    work_dir: str | os.PathLike,
    config: PrepareConfig,
    *,
    groups: int = 1,
    band_groups: int | None = None,
    min_shards: int = 1,
) -> CorpusPlan:
    """List the input, cut it into shards, write ``plan.json`` (and the evaluation index) to ``work_dir``.

    ``groups`` is how many tasks share the shards (shard ``i`` belongs to group ``i % groups``);
    ``band_groups`` how many share the LSH bands (default: ``groups``). Shards are at most
    ``shard_size_mb`` and small enough that there are about ``min_shards`` of them, so parallel
    workers finish together. Debris of a killed earlier run in ``work_dir`` is removed; its finished
    units are kept for reuse.
    """
    work = Path(work_dir)
    remove_debris(work)
    work.mkdir(parents=True, exist_ok=True)
    listing = list_inputs(input_uri, what="corpus")
    total = sum(f.size for f in listing.files)
    shard_bytes = min(int(config.shard_size_mb * 2**20), max(_MIN_SHARD_BYTES, total // max(1, min_shards)))
    shards = cut_into_shards(listing, shard_bytes)
    band_groups = max(1, min(band_groups or groups, config.near_dedup.bands))
    plan = CorpusPlan(
        str(input_uri),
        shards,
        max(1, groups),
        band_groups,
        config.model_dump(mode="json"),
        listing.skipped_entries(),
        len(listing.files),
    )
    for skipped in listing.skipped:
        log.warning("file skipped", extra=fields(source=skipped.relpath, reason=skipped.reason))
    index = load_eval_index(config.decontamination)
    if index is not None:
        index.save(work / EVAL_INDEX)
    else:
        (work / EVAL_INDEX).unlink(missing_ok=True)
    save_plan(work, plan)
    log.info(
        "corpus planned",
        extra=fields(
            files=len(listing.files), skipped=len(listing.skipped), shards=len(shards), groups=groups
        ),
    )
    return plan


# ------------------------------------------------------------------------------- 2 clean and sign
@dataclass
class _Candidate:
    id: str
    text: str
    category: str
    source: str
    meta: dict[str, Any]
    how: str


def _validate(record: Record, categorizer: Categorizer) -> _Candidate:
    data = record.data
    text = require_str(data, "text")
    category = optional_str(data, "category")
    source = optional_str(data, "source")
    meta = data.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise RecordError("wrong_type:meta")
    rid = record_id(data, record.source, record.line)
    found, how = categorizer.categorize(category, source, text)
    if found is None:
        raise RecordError(how)
    return _Candidate(rid, text, found, source or _source_name(record.source), dict(meta), how)


def _source_name(relative_path: str) -> str:
    name = Path(relative_path).name
    for suffix in (".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dropped_entry(doc: dict[str, Any], stage: str) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "category": doc["category"],
        "source_file": doc["source_file"],
        "line": doc["line"],
        "stage": stage,
    }


class _SignedWriter:
    """Candidate documents of one shard with their offsets, band keys, digests, id hashes and tokens."""

    def __init__(self, out: Path, config: PrepareConfig) -> None:
        self.out, self.config = out, config
        self.docs = open(out / "docs.jsonl", "wb")
        self.offsets = [0]
        self.band_keys: list[np.ndarray] = []
        self.digests: list[tuple[int, int]] = []
        self.id_hashes: list[int] = []
        self.categories: list[int] = []
        self.tokens: list[int] = []
        self._pending: list[str] = []
        self._index = {name: i for i, name in enumerate(config.categories)}

    def add(self, doc: dict[str, Any], tokens: int) -> None:
        line = orjson.dumps(doc) + b"\n"
        self.docs.write(line)
        self.offsets.append(self.offsets[-1] + len(line))
        self.digests.append(text_digest(doc["text"]))
        self.id_hashes.append(key_hash(doc["id"]))
        self.categories.append(self._index[doc["category"]])
        self.tokens.append(tokens)
        self._pending.append(comparison_text(doc["text"]))
        if len(self._pending) >= _SIGN_BATCH:
            self._sign()

    def _sign(self) -> None:
        if not self._pending:
            return
        nd = self.config.near_dedup
        sigs = signatures(self._pending, n=nd.ngram_chars, num_perm=nd.num_perm, seed=nd.seed)
        self.band_keys.append(band_keys(sigs, bands=nd.bands, rows=nd.rows))
        self._pending = []

    def close(self) -> int:
        self._sign()
        self.docs.close()
        bands = self.config.near_dedup.bands
        keys = np.concatenate(self.band_keys, axis=1) if self.band_keys else np.empty((bands, 0), np.uint64)
        np.save(self.out / "bands.npy", np.ascontiguousarray(keys))
        np.save(self.out / "offsets.npy", np.array(self.offsets, dtype=np.uint64))
        np.save(self.out / "digests.npy", np.array(self.digests, dtype=np.uint64).reshape(-1, 2))
        np.save(self.out / "id_hashes.npy", np.array(self.id_hashes, dtype=np.uint64))
        np.save(self.out / "categories.npy", np.array(self.categories, dtype=np.int16))
        np.save(self.out / "tokens.npy", np.array(self.tokens, dtype=np.int64))
        return len(self.tokens)


def _sign_digest(plan: CorpusPlan, shard: int) -> str:
    return digest_of([plan.shards[shard].fingerprint, _phase_config(plan.config, "sign")])


def clean_and_sign_shard(work_dir: str | os.PathLike, shard: int) -> dict[str, Any]:
    """Phase 2 for one shard: every input unit quarantined, filtered, or written as a candidate."""
    work = Path(work_dir)
    plan = read_plan(work)
    unit_dir = work / "signed" / shard_name(shard)
    inputs_digest = _sign_digest(plan, shard)
    if (done := unit_done(unit_dir, inputs_digest)) is not None:
        return {**done, "resumed": True}
    config = _config(plan)
    categorizer = Categorizer.from_config(config)
    normalize = TextNormalizer.from_config(config)
    rules = {name: config.rules_for(name) for name in config.categories}
    stream_failures: list[dict[str, Any]] = []
    encodings: dict[str, str] = {}
    with unit_output(unit_dir) as tmp:
        with (
            JsonlWriter(tmp / "quarantine.jsonl") as quarantine,
            JsonlWriter(tmp / "dropped.jsonl") as dropped,
        ):
            ledger = Ledger(STAGE, config.categories, quarantine=quarantine, dropped=dropped)
            signed = _SignedWriter(tmp, config)
            for part in plan.shards[shard].file_parts():
                encoding = None if part.whole else file_encoding(part.file)
                for item in iter_part(part, encoding=encoding):
                    if isinstance(item, Quarantined):
                        ledger.quarantined(item)
                        if is_stream_failure(item.reason):
                            stream_failures.append(
                                {"source": item.source, "line": item.line, "reason": item.reason}
                            )
                        continue
                    encodings.setdefault(item.source, item.encoding)
                    try:
                        candidate = _validate(item, categorizer)
                    except RecordError as err:
                        ledger.quarantined(Quarantined.of(item, err.reason))
                        continue
                    text = normalize(candidate.text)
                    doc = {
                        "id": candidate.id,
                        "text": text,
                        "category": candidate.category,
                        "source": candidate.source,
                        "meta": candidate.meta,
                        "source_file": item.source,
                        "line": item.line,
                        "encoding": item.encoding,
                        "category_from": candidate.how,
                    }
                    counts = char_classes(text)
                    failed = quality_filter(text, rules[candidate.category], counts)
                    if failed:
                        ledger.filtered(failed, _dropped_entry(doc, "filter"), candidate.category)
                        continue
                    signed.add(doc, estimate_tokens(text, counts))
            candidates = signed.close()
        summary = {
            "inputs_digest": inputs_digest,
            "shard": shard,
            "candidates": candidates,
            "total": ledger.total.to_dict(),
            "slices": {name: t.to_dict() for name, t in ledger.slices.items()},
            "stream_failures": stream_failures,
            "encodings": encodings,
        }
        write_summary(tmp, summary)
    log.info("shard cleaned and signed", extra=fields(shard=shard, candidates=candidates))
    return summary


def clean_and_sign(work_dir: str | os.PathLike, group: int, workers: int = 1) -> list[dict[str, Any]]:
    """Phase 2 for every shard of ``group`` (a KFP task's share), on ``workers`` local processes."""
    plan = read_plan(work_dir)
    shards = plan.shards_of_group(group)
    return run_units(clean_and_sign_shard, [(str(work_dir), s) for s in shards], workers, "clean+sign")


# ------------------------------------------------------------------------------------- 3 buckets
def _signed_state(work: Path, plan: CorpusPlan) -> list[dict[str, Any]]:
    summaries = []
    for spec in plan.shards:
        summary = unit_done(work / "signed" / shard_name(spec.index), _sign_digest(plan, spec.index))
        if summary is None:
            raise InputError(f"shard {spec.index} has not been cleaned and signed yet (run that step first)")
        summaries.append(summary)
    return summaries


def _buckets_digest(plan: CorpusPlan, signed: list[dict[str, Any]]) -> str:
    return digest_of(
        [[s["inputs_digest"] for s in signed], _phase_config(plan.config, "buckets"), plan.band_groups]
    )


def bucket_group(work_dir: str | os.PathLike, group: int) -> dict[str, Any]:
    """Phase 3 for one band group: verified duplicate edges and record-id collisions."""
    work = Path(work_dir)
    plan = read_plan(work)
    signed = _signed_state(work, plan)
    unit_dir = work / "buckets" / f"group-{group:03d}"
    inputs_digest = _buckets_digest(plan, signed)
    if (done := unit_done(unit_dir, inputs_digest)) is not None:
        return {**done, "resumed": True}
    config = _config(plan)
    nd = config.near_dedup
    shard_dirs = [work / "signed" / shard_name(s.index) for s in plan.shards]
    store = DocStore(work / "signed")
    try:
        edges, sims, id_groups, stats = bucket_edges(
            band_keys=[load_array(d / "bands.npy") for d in shard_dirs],
            shards=[s.index for s in plan.shards],
            digests=[load_array(d / "digests.npy") for d in shard_dirs],
            id_hashes=[load_array(d / "id_hashes.npy") for d in shard_dirs],
            bands=[b for b in range(nd.bands) if b % plan.band_groups == group],
            group=group,
            groups=plan.band_groups,
            threshold=nd.threshold,
            max_pivots=nd.max_pivots_per_bucket,
            max_index_rows=nd.max_index_rows,
            shingles=ShingleCache(store, nd.ngram_chars) if nd.enabled else None,
        )
    finally:
        store.close()
    with unit_output(unit_dir) as tmp:
        np.save(tmp / "edges.npy", edges)
        np.save(tmp / "similarities.npy", sims)
        flat = np.concatenate(id_groups) if id_groups else np.empty(0, dtype=np.uint64)
        np.save(tmp / "id_groups.npy", flat)
        np.save(tmp / "id_group_sizes.npy", np.array([g.size for g in id_groups], dtype=np.int64))
        summary = {
            "inputs_digest": inputs_digest,
            "group": group,
            "edges": int(edges.shape[0]),
            **stats.as_dict(),
        }
        write_summary(tmp, summary)
    log.info("band group bucketed", extra=fields(group=group, edges=int(edges.shape[0])))
    return summary


def lsh_buckets(work_dir: str | os.PathLike, group: int) -> dict[str, Any]:
    """Phase 3 as a KFP task runs it (one band group per task)."""
    return bucket_group(work_dir, group)


# ------------------------------------------------------------------------------------ 4 clusters
def _clusters_digest(plan: CorpusPlan, buckets: list[dict[str, Any]]) -> str:
    return digest_of([[b["inputs_digest"] for b in buckets], _phase_config(plan.config, "clusters")])


def global_clusters(work_dir: str | os.PathLike) -> dict[str, Any]:
    """Phase 4: clusters over all edges, a decision per removed document, the mixture's rates."""
    work = Path(work_dir)
    plan = read_plan(work)
    signed = _signed_state(work, plan)
    bucket_digest = _buckets_digest(plan, signed)
    buckets = []
    for g in range(plan.band_groups):
        summary = unit_done(work / "buckets" / f"group-{g:03d}", bucket_digest)
        if summary is None:
            raise InputError(f"band group {g} has not been bucketed yet (run the LSH step first)")
        buckets.append(summary)
    unit_dir = work / "clusters"
    inputs_digest = _clusters_digest(plan, buckets)
    if (done := unit_done(unit_dir, inputs_digest)) is not None:
        return {**done, "resumed": True}
    config = _config(plan)
    shard_dirs = [work / "signed" / shard_name(s.index) for s in plan.shards]
    digests = [load_array(d / "digests.npy") for d in shard_dirs]

    def digest_of_key(key: int) -> tuple[int, int]:
        shard, row = split_key(key)
        return int(digests[shard][row, 0]), int(digests[shard][row, 1])

    def edge_sets():
        for g in range(plan.band_groups):
            group_dir = work / "buckets" / f"group-{g:03d}"
            yield np.load(group_dir / "edges.npy"), np.load(group_dir / "similarities.npy")

    def id_groups():
        for g in range(plan.band_groups):
            group_dir = work / "buckets" / f"group-{g:03d}"
            flat = np.load(group_dir / "id_groups.npy")
            sizes = np.load(group_dir / "id_group_sizes.npy")
            yield from np.split(flat, np.cumsum(sizes)[:-1]) if sizes.size else []

    store = DocStore(work / "signed")
    shingles = ShingleCache(store, config.near_dedup.ngram_chars)
    try:
        decisions, stats = cluster_decisions(
            edge_sets(),
            id_groups(),
            digest_of_key,
            lambda key: store.record(key)["id"],
            shingles.jaccard,
        )
        survivor_ids = {
            d.survivor: store.record(d.survivor)["id"] for d in decisions.values() if d.survivor is not None
        }
    finally:
        store.close()
    removed = {shard: [] for shard in range(len(plan.shards))}
    for key, decision in decisions.items():
        shard, row = split_key(key)
        removed[shard].append((row, decision))
    tokens_before: Counter = Counter()
    tokens_deduped: Counter = Counter()
    for shard, d in enumerate(shard_dirs):
        cats = np.load(d / "categories.npy")
        toks = np.load(d / "tokens.npy")
        gone = np.zeros(cats.size, dtype=bool)
        gone[[row for row, _ in removed[shard]]] = True
        for c, name in enumerate(config.categories):
            in_cat = cats == c
            tokens_before[name] += int(toks[in_cat].sum())
            tokens_deduped[name] += int(toks[in_cat & ~gone].sum())
    rates = mixture_rates({c: tokens_deduped[c] for c in config.categories}, config.mixture)
    with unit_output(unit_dir) as tmp:
        for shard, rows in removed.items():
            with JsonlWriter(tmp / f"{shard_name(shard)}.jsonl") as out:
                for row, decision in sorted(rows, key=lambda r: r[0]):
                    out.write(_decision_entry(row, decision, survivor_ids))
        summary = {
            "inputs_digest": inputs_digest,
            **stats,
            "buckets": _sum_bucket_stats(buckets),
            "tokens_before_dedup": dict(tokens_before),
            "tokens_after_dedup": dict(tokens_deduped),
            "mixture_rates": rates,
        }
        write_summary(tmp, summary)
    return summary


def _decision_entry(row: int, decision: Decision, survivor_ids: dict[int, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"row": row, "outcome": decision.outcome}
    if decision.survivor is not None:
        entry["survivor"] = survivor_ids[decision.survivor]
    if decision.similarity is not None:
        entry["jaccard"] = round(decision.similarity, 4)
    return entry


def _sum_bucket_stats(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "buckets",
        "candidate_pairs",
        "verified_pairs",
        "rejected_pairs",
        "exact_pairs",
        "skipped_joined",
        "skipped_other_group",
        "unverified_members",
    )
    total = {k: sum(b.get(k, 0) for b in buckets) for k in keys}
    total["jaccard_hist"] = [sum(b["jaccard_hist"][i] for b in buckets) for i in range(10)]
    return total


# -------------------------------------------------------------------------------------- 5 filter
def _filter_digest(work: Path, plan: CorpusPlan, shard: int, clusters: dict[str, Any]) -> str:
    index = work / EVAL_INDEX
    eval_digest = digest_of(index.stat().st_size) if index.is_file() else None
    return digest_of(
        [
            _sign_digest(plan, shard),
            clusters["inputs_digest"],
            _phase_config(plan.config, "filter"),
            eval_digest,
        ]
    )


@dataclass
class _ShardFilter:
    """Phase 5's per-document routing: decided duplicates out, overlaps out, survivors scrubbed and resampled."""

    config: PrepareConfig
    ledger: Ledger
    clean: JsonlWriter
    rates: dict[str, float]
    pii: Counter = field(default_factory=Counter)
    overlaps: Counter = field(default_factory=Counter)
    tokens_out: Counter = field(default_factory=Counter)
    records_out: int = 0

    def drop_decided(self, doc: dict[str, Any], decision: dict[str, Any]) -> None:
        """A document the cluster step removed: a duplicate (with its survivor) or a second claim to an id."""
        category = doc["category"]
        if decision["outcome"] == "duplicate_id":
            preview = raw_preview(json.dumps({"id": doc["id"], "text": doc["text"]}, ensure_ascii=False))
            self.ledger.quarantined(
                Quarantined(doc["source_file"], doc["line"], "duplicate_id", preview), category
            )
            return
        entry = _dropped_entry(doc, "dedup")
        if decision["outcome"] == "near_duplicate" and decision.get("jaccard") is not None:
            entry["jaccard"] = decision["jaccard"]
        reason = "duplicate" if decision["outcome"] == "duplicate" else "near_duplicate"
        self.ledger.duplicate(decision["survivor"], entry, category, reason=reason)

    def route_survivor(self, doc: dict[str, Any], eval_tasks: list[str], tokens: int) -> None:
        """``tokens``: the document's estimate from phase 2 (before identifiers were masked)."""
        category = doc["category"]
        if eval_tasks:
            self.overlaps.update(eval_tasks)
            entry = {**_dropped_entry(doc, "decontaminate"), "eval_tasks": eval_tasks}
            self.ledger.filtered(f"eval_overlap:{eval_tasks[0]}", entry, category)
            return
        n_copies = copies(doc["id"], self.rates.get(category, 1.0), self.config.mixture.seed)
        if n_copies == 0:
            self.ledger.filtered("mixture_downsampled", _dropped_entry(doc, "mixture"), category)
            return
        record = self._clean_record(doc)
        self.clean.write(record)
        for copy in range(2, n_copies + 1):
            repeat_meta = {**record["meta"], "repeat_of": doc["id"]}
            self.clean.write({**record, "id": f"{doc['id']}#{copy}", "meta": repeat_meta})
        self.records_out += n_copies
        self.tokens_out[category] += n_copies * tokens
        self.ledger.kept(category)

    def _clean_record(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The corpus record of a survivor: identifiers masked in text and meta, provenance in meta."""
        from medgo.data.pii import scrub_pii, scrub_pii_values

        text, meta = doc["text"], doc["meta"]
        found: Counter = Counter()
        if self.config.scrub_pii:
            prefixes = record_number_prefixes(self.config)
            text, found = scrub_pii(text, record_number_prefixes=prefixes)
            meta, found_meta = scrub_pii_values(meta, record_number_prefixes=prefixes)
            found.update(found_meta)
            self.pii.update(found)
        meta = {
            **meta,
            "pii": dict(sorted(found.items())),
            "source_file": doc["source_file"],
            "line": doc["line"],
        }
        if doc["encoding"] != "utf-8":
            meta["source_encoding"] = doc["encoding"]
        if doc["category_from"] != "record":
            meta["category_from"] = doc["category_from"]
        return {
            "id": doc["id"],
            "text": text,
            "category": doc["category"],
            "source": doc["source"],
            "meta": meta,
        }


def filter_shard(work_dir: str | os.PathLike, shard: int) -> dict[str, Any]:
    """Phase 5 for one shard: decide every candidate, scrub and resample the survivors, write outputs."""
    work = Path(work_dir)
    plan = read_plan(work)
    clusters = read_summary(work / "clusters")
    if clusters is None:
        raise InputError("duplicate clusters have not been built yet (run the cluster step first)")
    signed_dir = work / "signed" / shard_name(shard)
    signed = read_summary(signed_dir)
    unit_dir = work / "final" / shard_name(shard)
    inputs_digest = _filter_digest(work, plan, shard, clusters)
    if (done := unit_done(unit_dir, inputs_digest)) is not None:
        return {**done, "resumed": True}
    config = _config(plan)
    with open(work / "clusters" / f"{shard_name(shard)}.jsonl", encoding="utf-8") as fh:
        decisions = {entry["row"]: entry for entry in map(json.loads, fh)}
    index = None
    if (work / EVAL_INDEX).is_file():
        from medgo.data.decontam import EvalIndex

        index = EvalIndex.load(work / EVAL_INDEX)
    tokens = np.load(signed_dir / "tokens.npy")
    with unit_output(unit_dir) as tmp:
        shutil.copyfile(signed_dir / "quarantine.jsonl", tmp / "quarantine.jsonl")
        shutil.copyfile(signed_dir / "dropped.jsonl", tmp / "dropped.jsonl")
        with (
            JsonlWriter(tmp / "clean.jsonl") as clean,
            open(tmp / "quarantine.jsonl", "a", encoding="utf-8") as q_fh,
            open(tmp / "dropped.jsonl", "a", encoding="utf-8") as d_fh,
        ):
            ledger = Ledger(STAGE, config.categories, quarantine=_Appender(q_fh), dropped=_Appender(d_fh))
            ledger.restore(
                Tally.from_dict(signed["total"]),
                {name: Tally.from_dict(t) for name, t in signed["slices"].items()},
            )
            run = _ShardFilter(config, ledger, clean, clusters["mixture_rates"])
            for batch in _batches(_read_docs(signed_dir / "docs.jsonl"), _FILTER_BATCH):
                survivors = []
                for row, doc in batch:
                    if row in decisions:
                        run.drop_decided(doc, decisions[row])
                    else:
                        survivors.append((row, doc))
                texts = [doc["text"] for _, doc in survivors]
                hits = index.hits_many(texts) if index is not None else [[] for _ in survivors]
                for (row, doc), tasks in zip(survivors, hits, strict=True):
                    run.route_survivor(doc, tasks, int(tokens[row]))
            ledger.check()
        summary = {
            "inputs_digest": inputs_digest,
            "shard": shard,
            "total": ledger.total.to_dict(),
            "slices": {name: t.to_dict() for name, t in ledger.slices.items()},
            "pii": dict(sorted(run.pii.items())),
            "eval_overlaps": dict(sorted(run.overlaps.items())),
            "tokens_out": dict(run.tokens_out),
            "records_out": run.records_out,
            "stream_failures": signed["stream_failures"],
            "encodings": signed["encodings"],
        }
        write_summary(tmp, summary)
    return summary


class _Appender:
    """A JSON-lines sink over an open file (the ledger appends after the first phase's entries)."""

    def __init__(self, fh) -> None:
        self._fh = fh

    def write(self, obj) -> None:
        if isinstance(obj, Quarantined):
            obj = obj.as_dict()
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _read_docs(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as fh:
        for row, line in enumerate(fh):
            yield row, orjson.loads(line)


def _batches(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def filter_shards(work_dir: str | os.PathLike, group: int, workers: int = 1) -> list[dict[str, Any]]:
    """Phase 5 for every shard of ``group`` (a KFP task's share), on ``workers`` local processes."""
    plan = read_plan(work_dir)
    shards = plan.shards_of_group(group)
    return run_units(filter_shard, [(str(work_dir), s) for s in shards], workers, "filter")


# ------------------------------------------------------------------------------------ 6 finalize
def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def finalize_corpus(
    work_dir: str | os.PathLike, output_dir: str | os.PathLike, *, remove_work: bool = False
) -> dict[str, Any]:
    """Phase 6: the artifact in ``output_dir`` (local; see :func:`prepare_corpus` for ``s3://``).

    Raises :class:`~medgo.data.accounting.StepFailed` *after* writing everything when an input
    could not be read to the end or decoded, or more than ``max_quarantine_share`` was quarantined,
    unless ``allow_partial``. ``remove_work`` deletes the work directory after a success (a failed
    run keeps it, so the next run resumes).
    """
    work, out = Path(work_dir), Path(output_dir)
    plan = read_plan(work)
    config = _config(plan)
    clusters = read_summary(work / "clusters")
    shard_summaries = []
    for spec in plan.shards:
        summary = read_summary(work / "final" / shard_name(spec.index))
        if summary is None:
            raise InputError(f"shard {spec.index} has not been filtered yet (run the filter step first)")
        shard_summaries.append(summary)
    total, slices = Tally(), {name: Tally() for name in config.categories}
    pii: Counter = Counter()
    overlaps: Counter = Counter()
    tokens_out: Counter = Counter()
    stream_failures: list[dict[str, Any]] = []
    encodings: dict[str, str] = {}
    records_out = 0
    for spec, summary in zip(plan.shards, shard_summaries, strict=True):
        shard_total = Tally.from_dict(summary["total"])
        shard_total.check(f"{STAGE}:{shard_name(spec.index)}")
        total.merge(shard_total)
        for name, t in summary["slices"].items():
            slices[name].merge(Tally.from_dict(t))
        pii.update(summary["pii"])
        overlaps.update(summary["eval_overlaps"])
        tokens_out.update(summary["tokens_out"])
        stream_failures.extend(summary["stream_failures"])
        encodings.update(summary["encodings"])
        records_out += summary["records_out"]
        part = f"part-{spec.index:05d}.jsonl"
        final = work / "final" / shard_name(spec.index)
        _link_or_copy(final / "clean.jsonl", out / CLEAN_DIR / part)
        _link_or_copy(final / "quarantine.jsonl", out / QUARANTINE_DIR / part)
        _link_or_copy(final / "dropped.jsonl", out / DROPPED_DIR / part)
    total.check(STAGE)
    for name, tally in slices.items():
        tally.check(f"{STAGE}:{name}")
    problems = step_problems(STAGE, total, stream_failures, config.max_quarantine_share)
    counts = {
        **total.as_counts(),
        "pii": sum(pii.values()),
        "records_out": records_out,
        "near_duplicates": total.reasons["near_duplicate"],
        "exact_duplicates": total.reasons["duplicate"],
        "eval_overlaps": sum(1 for r in total.reasons.elements() if r.startswith("eval_overlap:")),
        "shards": len(plan.shards),
        "files_read": plan.files,
        "files_skipped": len(plan.skipped),
    }
    eval_summary = None
    if (work / EVAL_INDEX).is_file():
        from medgo.data.decontam import EvalIndex

        eval_summary = EvalIndex.load(work / EVAL_INDEX).summary()
    card = build_corpus_card(
        config=config,
        total=total,
        slices=slices,
        pii=pii,
        overlaps=overlaps,
        eval_index=eval_summary,
        clusters=clusters,
        tokens_out=tokens_out,
        records_out=records_out,
        skipped=plan.skipped,
        stream_failures=stream_failures,
        encodings=encodings,
        problems=problems,
    )
    status = "complete" if not problems else ("accepted_partial" if config.allow_partial else "failed")
    card["status"] = status
    write_card(out, card)
    write_manifest(
        out,
        stage=STAGE,
        counts=counts,
        config=config,
        inputs={"raw": plan.input_uri},
        extra={"status": status, "problems": problems, "skipped_files": plan.skipped},
    )
    summary = {**counts, "status": status, "problems": problems, "skipped_files": plan.skipped}
    log.info("corpus prepared", extra=fields(**counts, output=str(out), status=status))
    fail_or_accept(STAGE, problems, allow_partial=config.allow_partial, counts=summary)
    if remove_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def run_work_dir(work_root: str, run_id: str) -> Path:
    """The work directory of one pipeline run's corpus preparation: ``<work_root>/<run_id>/corpus``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id).strip("-.") or "run"
    return Path(work_root) / safe / "corpus"


# -------------------------------------------------------------------------------------- run all
def default_work_dir(output_dir: str | os.PathLike) -> Path:
    """Where a local run keeps its work: beside the output (``<output>.work``), never inside it."""
    out = Path(output_dir).expanduser().resolve()
    return out.with_name(out.name + WORK_SUFFIX)


def _prepare_output(out: Path, work: Path) -> None:
    """Make ``out`` ready: new, empty, a previous artifact (replaced) or a killed run's (resumed)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MANIFEST_NAME).is_file() or (work / PLAN_NAME).is_file()
        if not ours:
            raise InputError(
                f"output directory {out} is not empty and is not a medgo artifact; "
                "choose an empty or new directory"
            )
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def prepare_corpus(
    input_uri: str,
    output_dir: str | os.PathLike,
    config: PrepareConfig,
    *,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """Prepare the raw corpus at ``input_uri`` into ``output_dir``; returns the counts and status.

    Runs every phase on a pool of ``config.workers`` processes (0: one per CPU). The work directory
    (default ``<output_dir>.work`` beside a local output, a temporary one for ``s3://``) keeps each
    finished unit, so re-running after a crash or kill redoes only what was not finished; it is
    removed after a successful run unless ``keep_work``. Duplicates: exact (normalised text) and
    near (verified character n-gram Jaccard ≥ ``near_dedup.threshold``); the earliest document in
    input order survives and each duplicate names its survivor.
    """
    check_output_outside_inputs(output_dir, [input_uri])
    workers = config.workers or available_cpus()
    s3_output = is_s3(output_dir)
    temporary = Path(tempfile.mkdtemp(prefix="medgo-prepare-")) if s3_output else None
    staging = temporary / "out" if temporary else Path(output_dir)
    if work_dir is not None:
        work = Path(work_dir)
    else:
        work = temporary / "work" if temporary else default_work_dir(output_dir)
    check_output_outside_inputs(work, [input_uri])
    seconds: dict[str, float] = {}

    def timed(step: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[step] = round(time.perf_counter() - start, 2)

    try:
        _prepare_output(staging, work)
        plan = timed(
            "plan",
            plan_corpus,
            input_uri,
            work,
            config,
            groups=1,
            band_groups=workers,
            min_shards=workers * SHARDS_PER_WORKER if workers > 1 else 1,
        )
        shards = [(str(work), s.index) for s in plan.shards]
        groups = [(str(work), g) for g in range(plan.band_groups)]
        with worker_pool(min(workers, len(shards)) if len(shards) > 1 else 1) as pool:
            signed = timed(
                "clean_and_sign", run_units, clean_and_sign_shard, shards, workers, "clean+sign", pool
            )
            timed("lsh_buckets", run_units, bucket_group, groups, workers, "lsh buckets", pool)
            timed("global_clusters", global_clusters, work)
            timed("filter", run_units, filter_shard, shards, workers, "filter", pool)
        try:
            remove = not config.keep_work and work_dir is None
            summary = timed("finalize", finalize_corpus, work, staging, remove_work=remove)
        finally:
            if s3_output:
                publish(staging, str(output_dir))
        summary["resumed_shards"] = sum(1 for s in signed if s.get("resumed"))
        summary["seconds"] = seconds
        if summary["kept"] == 0:
            log.warning("no records survived preparation", extra=fields(records_in=summary["in"]))
        return summary
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
