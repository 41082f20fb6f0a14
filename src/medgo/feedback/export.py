"""Export feedback entries not yet exported as scrubbed doctor labels, each entry exactly once.

An export turns stored entries into the label records the preference builder reads
(:func:`medgo.data.prefs.build_preferences`): ``{"id", "prompt": messages, "response",
"label", "doctor_id", "department", …}``. An *unacceptable* entry with a corrected answer gives a
second label, the correction marked *acceptable* by the same doctor, so it becomes a chosen/rejected
pair. Every text (prompt turns, answer, correction) goes through the data stage's cleaner and PII
scrubber (:class:`medgo.data.validate.TextCleaner`) before it leaves the store: the export files hold
placeholders (``<NAME>``, ``<ID>``, …), never the identifiers.

Exactly once: entries are claimed for an export id in the store (one transaction), written to
``feedback-<export id>.jsonl`` under the target (a directory on a PVC, or an ``s3://`` prefix;
each file replaced atomically), and only then marked committed. An export interrupted after its
claim is finished by the next run under the same id and file name, so a crash can neither lose
an entry nor export it twice. Beside each file, ``feedback-<export id>.card.json`` holds its counts
(entries, labels, scrubbed identifiers by type, quarantined entries by reason; no text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from medgo.config import FeedbackExportConfig
from medgo.data.validate import RecordError, TextCleaner
from medgo.feedback.store import ExportBatch, FeedbackEntry, FeedbackStore
from medgo.logs import fields
from medgo.storage import atomic_path, is_s3, publish

log = logging.getLogger(__name__)

STAGE = "feedback.export"
CARD_SUFFIX = ".card.json"


def export_file_name(export_id: int) -> str:
    return f"feedback-{export_id:08d}.jsonl"


def label_records(entry: FeedbackEntry, clean: TextCleaner) -> list[dict[str, Any]]:
    """The scrubbed label(s) of one entry; raises :class:`RecordError` if a text cleans to nothing."""
    prompt = [{"role": m["role"], "content": clean(m["content"], "prompt.content")} for m in entry.messages]
    common = {
        "doctor_id": entry.doctor_id,
        "department": entry.department,
        "response_id": entry.response_id,
        "model": entry.model,
        "created": int(entry.received_at),
    }
    labels = [
        {
            "id": entry.feedback_id,
            "prompt": prompt,
            "response": clean(entry.answer, "answer"),
            "label": entry.rating,
            **common,
        }
    ]
    if entry.corrected_answer is not None:
        labels.append(
            {
                "id": f"{entry.feedback_id}/corrected",
                "prompt": prompt,
                "response": clean(entry.corrected_answer, "corrected_answer"),
                "label": "acceptable",
                "corrected": True,
                **common,
            }
        )
    return labels


def _target_uri(target: str, name: str) -> str:
    return f"{target.rstrip('/')}/{name}"


def write_batch(batch: ExportBatch, config: FeedbackExportConfig) -> tuple[str, dict[str, Any]]:
    """Write one batch's labels and card to ``batch.target``; returns the file's sha256 and the counts."""
    clean = TextCleaner.for_config(config)
    lines: list[str] = []
    quarantined: Counter = Counter()
    for entry in batch.entries:
        try:
            labels = label_records(entry, clean)
        except RecordError as err:
            quarantined[err.reason] += 1
            continue
        lines.extend(json.dumps(label, ensure_ascii=False, sort_keys=True) for label in labels)
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    counts = {
        "export_id": batch.export_id,
        "entries": len(batch.entries),
        "labels": len(lines),
        "corrections": sum(1 for e in batch.entries if e.corrected_answer is not None),
        "quarantined": sum(quarantined.values()),
        "quarantine_reasons": dict(quarantined),
        "scrubbed_identifiers": sum(clean.pii.values()),
        "scrubbed_by_type": dict(clean.pii),
    }
    name = export_file_name(batch.export_id)
    card = json.dumps(counts, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if is_s3(batch.target):
        with tempfile.TemporaryDirectory(prefix="medgo-feedback-export-") as tmp:
            (Path(tmp) / name).write_bytes(payload)
            (Path(tmp) / (name + CARD_SUFFIX)).write_text(card, encoding="utf-8")
            publish(Path(tmp) / name, _target_uri(batch.target, name))
            publish(Path(tmp) / (name + CARD_SUFFIX), _target_uri(batch.target, name + CARD_SUFFIX))
    else:
        for file_name, data in ((name, payload), (name + CARD_SUFFIX, card.encode("utf-8"))):
            with atomic_path(Path(batch.target) / file_name) as tmp, open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    return hashlib.sha256(payload).hexdigest(), counts


def export_pending(store: FeedbackStore, config: FeedbackExportConfig) -> dict[str, Any]:
    """Export every entry not yet exported (and finish an interrupted export first); returns a summary.

    Entries that arrive while the export runs go into the next one.
    """
    summary: dict[str, Any] = {"exports": [], "entries": 0, "labels": 0, "scrubbed_identifiers": 0}
    scrubbed: Counter = Counter()
    while (batch := store.claim_export(config.target_uri, config.max_entries)) is not None:
        if batch.target.rstrip("/") != config.target_uri.rstrip("/"):
            log.warning(
                "finishing an interrupted export at its original target",
                extra=fields(export_id=batch.export_id, target=batch.target),
            )
        sha256, counts = write_batch(batch, config)
        store.commit_export(batch.export_id, sha256, counts)
        log.info(
            "feedback exported",
            extra=fields(
                export_id=batch.export_id,
                entries=counts["entries"],
                labels=counts["labels"],
                scrubbed=counts["scrubbed_identifiers"],
                resumed=batch.resumed,
            ),
        )
        summary["exports"].append(
            {
                "export_id": batch.export_id,
                "uri": _target_uri(batch.target, export_file_name(batch.export_id)),
            }
        )
        for key in ("entries", "labels", "scrubbed_identifiers"):
            summary[key] += counts[key]
        scrubbed.update(counts["scrubbed_by_type"])
        if not batch.resumed and len(batch.entries) < config.max_entries:
            break
    summary["scrubbed_by_type"] = dict(scrubbed)
    summary["target_uri"] = config.target_uri
    return summary
