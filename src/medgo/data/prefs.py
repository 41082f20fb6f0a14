"""Doctors' acceptable/unacceptable labels → DPO preference pairs (TRL conversational format).

Input labels look like ``{"id", "prompt", "response", "label": "acceptable"|"unacceptable",
"doctor_id", "department"}``; ``prompt`` is a question string or, as the feedback store
exports it, a list of chat messages ending with the user's turn. Extra fields are ignored.

How labels become pairs:

1. A doctor who labels the same response twice is counted once, with their last label
   (``superseded``): a correction, not a second vote.
2. A response that doctors disagree on is a **conflict**: all its labels are excluded.
3. Per prompt, every acceptable response is paired with every unacceptable one, ordered
   by agreement (responses with more votes first) and spread so the first pairs use
   different responses; at most ``max_pairs_per_prompt`` are kept. A prompt without both
   an acceptable and an unacceptable response gives no pair.

Outputs::

    out/
      train.jsonl       {"id", "prompt": [system, user…], "chosen": [assistant], "rejected": [assistant], "source"}
      quarantine.jsonl  unusable lines and labels: source, line, reason, raw preview
      excluded.jsonl    valid labels that give no pair: id, source_file, line, reason
      data_card.json / data_card.html
      manifest.json     counts: labels in/quarantined/superseded/conflicts, prompts without pair, pairs

Labels whose prompt or response shares a character n-gram with an evaluation item are excluded
(``eval_overlap:<task>``) when ``decontamination.eval_dir`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from medgo.config import PrefsConfig
from medgo.data.accounting import Ledger, fail_or_accept, step_problems
from medgo.data.card import build_stage_card, write_card
from medgo.data.decontam import EvalIndex, load_eval_index
from medgo.data.io import JsonlWriter, Quarantined, Record, iter_records, output_directory
from medgo.data.readers import is_stream_failure
from medgo.data.sources import list_inputs
from medgo.data.validate import RecordError, TextCleaner, record_id, require_str
from medgo.logs import fields
from medgo.storage import write_manifest

log = logging.getLogger(__name__)

STAGE = "data.prefs"
LABEL_VALUES = {"acceptable": True, "unacceptable": False}
_PROMPT_ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True, slots=True)
class DoctorLabel:
    """One validated label: a doctor's verdict on one response to one prompt."""

    id: str
    prompt: tuple[tuple[str, str], ...]
    response: str
    acceptable: bool
    doctor_id: str
    source: str
    line: int

    def entry(self) -> dict[str, Any]:
        """What identifies this label in ``excluded.jsonl`` (no text)."""
        return {"id": self.id, "source_file": self.source, "line": self.line}


def _prompt_messages(value: Any, clean: TextCleaner, config: PrefsConfig) -> tuple[tuple[str, str], ...]:
    """A prompt string or message list → ``((role, content), …)`` with a system message first."""
    if isinstance(value, str):
        messages = [("user", clean(value, "prompt"))] if value.strip() else []
    elif isinstance(value, list):
        messages = []
        for message in value:
            if not isinstance(message, dict) or message.get("role") not in _PROMPT_ROLES:
                raise RecordError("invalid_value:prompt")
            messages.append((message["role"], clean(require_str(message, "content"), "prompt.content")))
    elif value is None:
        raise RecordError("missing_field:prompt")
    else:
        raise RecordError("wrong_type:prompt")
    if not messages:
        raise RecordError("empty_field:prompt")
    if messages[-1][0] != "user":
        raise RecordError("prompt_not_ending_with_user")
    if messages[0][0] != "system":
        messages.insert(0, ("system", config.system_prompt))
    return tuple(messages)


def parse_label(record: Record, clean: TextCleaner, config: PrefsConfig) -> DoctorLabel:
    """Validate one input label; raises :class:`RecordError` with the quarantine reason."""
    data = record.data
    label = require_str(data, "label").strip().lower()
    if label not in LABEL_VALUES:
        raise RecordError("invalid_value:label")
    doctor_id = data.get("doctor_id")
    if doctor_id is None:
        raise RecordError("missing_field:doctor_id")
    if isinstance(doctor_id, bool) or not isinstance(doctor_id, str | int):
        raise RecordError("wrong_type:doctor_id")
    if not str(doctor_id).strip():
        raise RecordError("empty_field:doctor_id")
    return DoctorLabel(
        id=record_id(data, record.source, record.line),
        prompt=_prompt_messages(data.get("prompt"), clean, config),
        response=clean.required(data, "response"),
        acceptable=LABEL_VALUES[label],
        doctor_id=str(doctor_id).strip(),
        source=record.source,
        line=record.line,
    )


@dataclass
class _ResponseVotes:
    """The labels one response received (after superseding), in first-seen order."""

    first_seen: int
    labels: list[DoctorLabel] = field(default_factory=list)

    @property
    def verdicts(self) -> set[bool]:
        return {label.acceptable for label in self.labels}


def _ranked(votes: dict[str, _ResponseVotes]) -> list[str]:
    """Responses with more agreeing doctors first, then in first-seen order."""
    return sorted(votes, key=lambda r: (-len(votes[r].labels), votes[r].first_seen))


def pair_order(n_chosen: int, n_rejected: int) -> list[tuple[int, int]]:
    """All (chosen, rejected) index pairs, best-ranked first and spread across responses.

    Ordered by ``i + j`` (anti-diagonals), so under a cap the kept pairs use many different
    responses rather than one chosen response against every rejected one.
    """
    return sorted(
        ((i, j) for i in range(n_chosen) for j in range(n_rejected)), key=lambda ij: (sum(ij), ij[0])
    )


def _pair_id(prompt_key: str, chosen: str, rejected: str) -> str:
    digest = hashlib.sha1("\x00".join((prompt_key, chosen, rejected)).encode("utf-8")).hexdigest()
    return f"pref-{digest[:16]}"


@dataclass
class _PrefsRun:
    """State of one build: read and supersede labels, group them and drop conflicts, emit pairs.

    Labels are the unit of account (:class:`~medgo.data.accounting.Ledger`): a label that gives a
    pair is kept, a superseded one is a duplicate of the doctor's later label, one on a disputed
    response is filtered as ``conflict`` and one whose prompt gets no pair as ``no_pair``.
    """

    config: PrefsConfig
    source_name: str
    ledger: Ledger
    clean: TextCleaner = field(init=False)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("conflicts", "prompts", "prompts_without_pair", "pairs", "pairs_over_cap"), 0
        )
    )
    # prompt key → response → votes; insertion order is first-seen order.
    prompts: dict[str, dict[str, _ResponseVotes]] = field(default_factory=dict)
    prompt_messages: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    latest: dict[tuple[str, str, str], DoctorLabel] = field(default_factory=dict)
    eval_index: EvalIndex | None = None
    overlaps: Counter = field(default_factory=Counter)
    stream_failures: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clean = TextCleaner.for_config(self.config)

    def read(self, items: Iterable[Record | Quarantined]) -> None:
        """Validate labels; keep each doctor's last label per (prompt, response)."""
        for item in items:
            if isinstance(item, Record):
                try:
                    label = parse_label(item, self.clean, self.config)
                except RecordError as err:
                    item = Quarantined.of(item, err.reason)
            if isinstance(item, Quarantined):
                if is_stream_failure(item.reason):
                    self.stream_failures.append(
                        {"source": item.source, "line": item.line, "reason": item.reason}
                    )
                self.ledger.quarantined(item)
                continue
            if self.eval_index is not None:
                text = "\n".join([c for role, c in label.prompt if role != "system"] + [label.response])
                tasks = self.eval_index.hits(text)
                if tasks:
                    self.overlaps.update(tasks)
                    self.ledger.filtered(f"eval_overlap:{tasks[0]}", {**label.entry(), "eval_tasks": tasks})
                    continue
            prompt_key = json.dumps(label.prompt, ensure_ascii=False)
            self.prompt_messages.setdefault(prompt_key, label.prompt)
            key = (prompt_key, label.response, label.doctor_id)
            if key in self.latest:
                self.ledger.duplicate(label.id, self.latest[key].entry(), reason="superseded")
            self.latest[key] = label

    def group(self) -> None:
        """Group the surviving labels by prompt and response; drop responses doctors disagree on."""
        responses: dict[str, dict[str, _ResponseVotes]] = {}
        for (prompt_key, response, _), label in self.latest.items():
            votes = responses.setdefault(prompt_key, {})
            votes.setdefault(response, _ResponseVotes(first_seen=len(votes))).labels.append(label)
        for prompt_key, votes in responses.items():
            for response in list(votes):
                if len(votes[response].verdicts) > 1:
                    self.counts["conflicts"] += 1
                    for label in votes.pop(response).labels:
                        self.ledger.filtered("conflict", label.entry())
            self.prompts[prompt_key] = votes
        self.counts["prompts"] = len(responses)

    def pairs(self) -> Iterable[dict[str, Any]]:
        """Preference records, prompt by prompt in first-seen order."""
        cap = self.config.max_pairs_per_prompt
        for prompt_key, votes in self.prompts.items():
            labels = [label for v in votes.values() for label in v.labels]
            chosen = _ranked({r: v for r, v in votes.items() if v.verdicts == {True}})
            rejected = _ranked({r: v for r, v in votes.items() if v.verdicts == {False}})
            if not chosen or not rejected:
                self.counts["prompts_without_pair"] += 1
                for label in labels:
                    self.ledger.filtered("no_pair", label.entry())
                continue
            for _ in labels:
                self.ledger.kept()
            order = pair_order(len(chosen), len(rejected))
            self.counts["pairs_over_cap"] += max(0, len(order) - cap)
            prompt = [
                {"role": role, "content": content} for role, content in self.prompt_messages[prompt_key]
            ]
            for i, j in order[:cap]:
                self.counts["pairs"] += 1
                yield {
                    "id": _pair_id(prompt_key, chosen[i], rejected[j]),
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": chosen[i]}],
                    "rejected": [{"role": "assistant", "content": rejected[j]}],
                    "source": self.source_name,
                }

    def label_counts(self) -> dict[str, int]:
        """The ledger's totals, also under the names the data card has always used for labels."""
        self.ledger.check()
        total = self.ledger.total
        return {
            **total.as_counts(),
            "labels_in": total.records_in,
            "superseded": total.duplicates,
            "conflict_labels": total.reasons["conflict"],
            "labels_without_pair": total.reasons["no_pair"],
            "labels_used": total.kept,
        }


def build_preferences(
    labels_uri: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: PrefsConfig,
    *,
    source_name: str = "doctor_labels",
) -> dict:
    """Turn the doctor labels at ``labels_uri`` into preference pairs in ``output_dir``; returns the counts.

    ``source_name`` goes into each record's ``source`` (e.g. ``feedback`` for the feedback
    store's export). Raises if the label counts do not reconcile.
    """
    listing = list_inputs(labels_uri, what="doctor labels")
    eval_index = load_eval_index(config.decontamination)
    with output_directory(output_dir, inputs=[labels_uri]) as out:
        with (
            JsonlWriter(out / "train.jsonl") as train,
            JsonlWriter(out / "quarantine.jsonl") as quarantine,
            JsonlWriter(out / "excluded.jsonl") as excluded,
        ):
            run = _PrefsRun(
                config,
                source_name,
                Ledger(STAGE, (), quarantine=quarantine, dropped=excluded),
                eval_index=eval_index,
            )
            items = tqdm(
                iter_records(labels_uri, what="doctor labels", listing=listing),
                desc=STAGE,
                unit="label",
                disable=None,
            )
            run.read(items)
            run.group()
            for record in run.pairs():
                train.write(record)
        counts = {
            **run.label_counts(),
            **run.counts,
            "pii": sum(run.clean.pii.values()),
            "eval_overlaps": sum(run.overlaps.values()),
        }
        problems = step_problems(STAGE, run.ledger.total, run.stream_failures, config.max_quarantine_share)
        status = "complete" if not problems else ("accepted_partial" if config.allow_partial else "failed")
        skipped = listing.skipped_entries()
        card = build_stage_card(
            stage=STAGE,
            slice_name="source",
            total=run.ledger.total,
            slices={source_name: run.ledger.total},
            pii=run.clean.pii,
            overlaps=run.overlaps,
            eval_index=eval_index.summary() if eval_index else None,
            skipped=skipped,
            stream_failures=run.stream_failures,
            problems=problems,
            status=status,
            extra={"pairs": run.counts},
        )
        write_card(out, card)
        counts = {**counts, "status": status, "problems": problems, "skipped_files": skipped}
        write_manifest(
            out,
            stage=STAGE,
            counts=counts,
            config=config,
            inputs={"labels": str(labels_uri)},
            extra={"status": status},
        )
    if counts["pairs"] == 0:
        log.warning("no preference pairs built", extra=fields(pairs=0, labels_in=counts["labels_in"]))
    log.info(
        "preference pairs built",
        extra=fields(**{k: v for k, v in counts.items() if k != "problems"}, output=str(output_dir)),
    )
    fail_or_accept(STAGE, problems, allow_partial=config.allow_partial, counts=counts)
    return counts
