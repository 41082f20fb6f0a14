"""The feedback round's data: export what is new, gather every export so far, build preference pairs, and
write the data card that says what went in.

A round trains on all feedback accumulated so far (not just the latest export): a doctor's later label
supersedes an earlier one and conflicts are judged across everything, which only works on the whole
history (see :mod:`medgo.data.prefs`). Each export file appears once under the export target (see
:mod:`medgo.feedback.export`), so gathering them all counts every entry once.

The data card (``data_card.json`` + ``data_card.md``) shows how many feedback entries, labels, pairs,
conflicts and scrubbed identifiers went in; it holds counts only, never text.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from medgo.config import FeedbackExportConfig, PrefsConfig
from medgo.data.prefs import build_preferences
from medgo.errors import InputError
from medgo.feedback.export import CARD_SUFFIX
from medgo.logs import fields
from medgo.storage import atomic_write_json, atomic_write_text, localize, write_manifest

log = logging.getLogger(__name__)

STAGE = "feedback.labels"
#: Environment variable the pipeline's export step reads its token from (Secret key ``export``).
EXPORT_TOKEN_ENV = "MEDGO_FEEDBACK_EXPORT_TOKEN"


def export_new_feedback(
    config: FeedbackExportConfig, *, service_url: str = "", db_path: str = "", token: str | None = None
) -> dict[str, Any]:
    """Export entries not yet exported: through the ``medgo-feedback`` service, or from a store file
    this process may own (a local run). Returns the export summary."""
    if bool(service_url) == bool(db_path):
        raise InputError("give exactly one of a feedback service URL and a feedback store file")
    if service_url:
        from medgo.feedback.client import export_remote

        return export_remote(service_url, config, token=token or os.environ.get(EXPORT_TOKEN_ENV))
    from medgo.feedback.export import export_pending
    from medgo.feedback.store import FeedbackStore

    store = FeedbackStore(db_path)
    try:
        return export_pending(store, config)
    finally:
        store.close()


def gather_exports(export_uri: str, out_dir: str | Path) -> dict[str, Any]:
    """Copy every export file (and its card) under ``export_uri`` into ``out_dir``; returns the summed counts."""
    source = localize(export_uri, what="exported feedback")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exports = sorted(p for p in source.glob("feedback-*.jsonl") if p.is_file())
    totals: Counter = Counter()
    scrubbed: Counter = Counter()
    for path in exports:
        shutil.copy2(path, out / path.name)
        card_path = path.with_name(path.name + CARD_SUFFIX)
        if not card_path.is_file():
            raise InputError(f"export {path.name} has no card {card_path.name}", source=str(export_uri))
        shutil.copy2(card_path, out / card_path.name)
        card = json.loads(card_path.read_text(encoding="utf-8"))
        for key in ("entries", "labels", "corrections", "quarantined", "scrubbed_identifiers"):
            totals[key] += card[key]
        scrubbed.update(card["scrubbed_by_type"])
    counts = {
        "exports": len(exports),
        **{k: totals[k] for k in ("entries", "labels", "corrections", "quarantined", "scrubbed_identifiers")},
    }
    counts["scrubbed_by_type"] = dict(scrubbed)
    write_manifest(out, stage=STAGE, counts=counts, config=None, inputs={"exports": str(export_uri)})
    log.info(
        "feedback exports gathered",
        extra=fields(**{k: v for k, v in counts.items() if k != "scrubbed_by_type"}),
    )
    return counts


def build_round_data(
    labels_dir: str | Path, preferences_dir: str | Path, card_dir: str | Path, config: PrefsConfig
) -> dict[str, Any]:
    """Labels gathered by :func:`gather_exports` → preference pairs and the round's data card; returns the card."""
    labels_dir = Path(labels_dir)
    manifest = json.loads((labels_dir / "manifest.json").read_text(encoding="utf-8"))
    exported = manifest["counts"]
    if exported["labels"] == 0:
        raise InputError(
            "no feedback labels to build pairs from (no export holds any)", source=str(labels_dir)
        )
    prefs = build_preferences(labels_dir, preferences_dir, config, source_name="feedback")
    card = {
        "exports": exported["exports"],
        "entries": exported["entries"],
        "corrections": exported["corrections"],
        "labels": exported["labels"],
        "entries_quarantined_at_export": exported["quarantined"],
        "labels_quarantined": prefs["quarantined"],
        "superseded_labels": prefs["superseded"],
        "conflicts": prefs["conflicts"],
        "conflict_labels": prefs["conflict_labels"],
        "labels_without_pair": prefs["labels_without_pair"],
        "labels_used": prefs["labels_used"],
        "prompts": prefs["prompts"],
        "pairs": prefs["pairs"],
        "pairs_over_cap": prefs["pairs_over_cap"],
        "scrubbed_identifiers": exported["scrubbed_identifiers"] + prefs["pii"],
        "scrubbed_by_type": exported["scrubbed_by_type"],
    }
    card_dir = Path(card_dir)
    atomic_write_json(card_dir / "data_card.json", card)
    atomic_write_text(card_dir / "data_card.md", data_card_markdown(card))
    log.info(
        "feedback round data", extra=fields(**{k: v for k, v in card.items() if k != "scrubbed_by_type"})
    )
    return card


def data_card_markdown(card: dict[str, Any]) -> str:
    """The data card as a Markdown table (rendered by the KFP UI)."""
    rows = [
        (
            "feedback entries",
            card["entries"],
            f"in {card['exports']} export file(s); {card['corrections']} with a corrected answer",
        ),
        ("labels", card["labels"], "one per entry, plus one per corrected answer"),
        (
            "quarantined",
            card["entries_quarantined_at_export"] + card["labels_quarantined"],
            "unusable after cleaning",
        ),
        ("superseded", card["superseded_labels"], "a doctor's earlier label on the same answer"),
        (
            "conflicts",
            card["conflicts"],
            f"answers doctors disagree on ({card['conflict_labels']} labels left out)",
        ),
        (
            "without a pair",
            card["labels_without_pair"],
            "prompts lacking an acceptable or an unacceptable answer",
        ),
        (
            "preference pairs",
            card["pairs"],
            f"from {card['labels_used']} labels on {card['prompts']} prompts",
        ),
        (
            "scrubbed identifiers",
            card["scrubbed_identifiers"],
            ", ".join(f"{k} {v}" for k, v in sorted(card["scrubbed_by_type"].items())) or "none",
        ),
    ]
    lines = ["# Feedback round data card", "", "| | count | |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {note} |" for name, value, note in rows]
    return "\n".join(lines) + "\n"
