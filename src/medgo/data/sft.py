"""SFT source files → chat-format training records (TRL conversational format).

Each source type has a converter from its own record layout to one or more conversations:

=====================  ================  =============================================
file                   task              conversation
=====================  ================  =============================================
consultations.jsonl    consultation      the patient/doctor turns as user/assistant
drug_labels.jsonl      drug_label        one question per label section
guideline_qa.jsonl     guideline_qa      question → answer citing the guideline
diagnosis.jsonl        diagnosis         complaint + history → a cautious likely diagnosis
safety.jsonl           safety_refusal    harmful request → refusal
=====================  ================  =============================================

All text is normalised and scrubbed of patient identifiers like the pretraining corpus.
Conversations sharing a character n-gram with an evaluation item are dropped
(``eval_overlap:<task>``, when ``decontamination.eval_dir`` is set), and conversations whose first
user message was already seen (in any source) are dropped as duplicates. A drug label expands into several conversations before accounting, so the
counts are per conversation: ``in`` counts every candidate conversation plus every
quarantined record, and ``in == kept + filtered + duplicates + quarantined``. Outputs::

    out/
      train.jsonl       {"id", "messages", "source", "task"}
      quarantine.jsonl  unusable lines and records: source, line, reason, raw preview
      dropped.jsonl     filtered and duplicate conversations: id, task, reason, survivor
      data_card.json / data_card.html
      manifest.json     counts, status (failed on unreadable input or too much quarantine), skipped files
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medgo.chat import Message, Messages
from medgo.config import SftBuildConfig
from medgo.data.accounting import Ledger, fail_or_accept, step_problems
from medgo.data.card import build_stage_card, write_card
from medgo.data.decontam import EvalIndex, load_eval_index
from medgo.data.io import JsonlWriter, Quarantined, Record, output_directory
from medgo.data.readers import FilePart, is_stream_failure, iter_part
from medgo.data.sources import FORMATS, InputFile, SkippedFile, list_inputs
from medgo.data.validate import RecordError, TextCleaner, record_id, require_str
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import localize, write_manifest

log = logging.getLogger(__name__)

STAGE = "data.sft"


@dataclass(frozen=True, slots=True)
class SftExample:
    """One candidate SFT conversation; ``filtered`` names the filter that rejects it, if any."""

    id: str
    messages: Messages
    filtered: str | None = None


Converter = Callable[[dict[str, Any], str, TextCleaner, SftBuildConfig], list[SftExample]]


def _system(config: SftBuildConfig, department: str | None) -> Message:
    content = f"{config.system_prompt}\n当前科室：{department}" if department else config.system_prompt
    return {"role": "system", "content": content}


def _single_turn(
    rid: str,
    config: SftBuildConfig,
    question: str,
    answer: str,
    *,
    department: str | None = None,
    filtered: str | None = None,
) -> SftExample:
    """System prompt, one user question, one assistant answer."""
    messages = [
        _system(config, department),
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    return SftExample(rid, messages, filtered)


_TURN_ROLES = {"patient": "user", "doctor": "assistant"}


def consultation_conversations(
    data: dict[str, Any], rid: str, clean: TextCleaner, config: SftBuildConfig
) -> list[SftExample]:
    """Patient/doctor turns → user/assistant messages; consecutive turns of one speaker are joined."""
    turns = data.get("turns")
    if turns is None:
        raise RecordError("missing_field:turns")
    if not isinstance(turns, list):
        raise RecordError("wrong_type:turns")
    if not turns:
        raise RecordError("empty_field:turns")
    messages = [_system(config, clean.optional(data, "department"))]
    for turn in turns:
        if not isinstance(turn, dict):
            raise RecordError("wrong_type:turns")
        role = _TURN_ROLES.get(turn.get("role"))
        if role is None:
            raise RecordError("invalid_value:turns.role")
        content = clean(require_str(turn, "text"), "turns.text")
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + content}
        else:
            messages.append({"role": role, "content": content})
    if messages[1]["role"] != "user":
        raise RecordError("first_turn_not_patient")
    if messages[-1]["role"] != "assistant":
        raise RecordError("last_turn_not_doctor")
    return [SftExample(rid, messages)]


# (field, label in answers, question templates); a template is picked per drug name and field
# by a stable hash, so the set has some variety, is identical on every run, and two labels of
# the same drug ask the same question (and deduplicate).
_DRUG_LABEL_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("indications", "适应症", ("{name}的适应症是什么？", "{name}主要用于治疗哪些疾病？")),
    ("contraindications", "禁忌", ("{name}有哪些禁忌？", "哪些人不能使用{name}？")),
    ("adverse_reactions", "不良反应", ("{name}有哪些不良反应？", "使用{name}可能出现哪些副作用？")),
    ("dosage", "用法用量", ("{name}的用法用量是什么？", "{name}应该如何使用？")),
)


def drug_label_conversations(
    data: dict[str, Any], rid: str, clean: TextCleaner, config: SftBuildConfig
) -> list[SftExample]:
    """One single-turn QA per label section (indications, contraindications, adverse reactions, dosage).

    Every section is required: a label with a section missing is incomplete, and answering
    from it would teach the model that the section does not exist.
    """
    name = clean.required(data, "name")
    sections = [
        (field_name, label, templates, clean.required(data, field_name))
        for field_name, label, templates in _DRUG_LABEL_FIELDS
    ]
    conversations = []
    for field_name, label, templates, value in sections:
        question = templates[zlib.crc32(f"{name}/{field_name}".encode()) % len(templates)].format(name=name)
        answer = f"根据药品说明书，{name}的{label}如下：\n{value}"
        if field_name == "dosage":
            answer += "\n具体用药请遵医嘱。"
        conversations.append(_single_turn(f"{rid}#{field_name}", config, question, answer))
    return conversations


def guideline_conversations(
    data: dict[str, Any], rid: str, clean: TextCleaner, config: SftBuildConfig
) -> list[SftExample]:
    """Question → answer citing its guideline; unapproved pairs are filtered when only approved are kept."""
    question, answer = clean.required(data, "question"), clean.required(data, "answer")
    guideline = clean.optional(data, "guideline")
    approved = data.get("approved")
    if approved is None:
        approved = False
    elif not isinstance(approved, bool):
        raise RecordError("wrong_type:approved")
    if guideline:
        answer = f"{answer}\n（依据：{guideline}）"
    filtered = "not_approved" if config.only_approved_guidelines and not approved else None
    return [_single_turn(rid, config, question, answer, filtered=filtered)]


def diagnosis_conversations(
    data: dict[str, Any], rid: str, clean: TextCleaner, config: SftBuildConfig
) -> list[SftExample]:
    """Complaint and history → the likely diagnosis, stated as a preliminary judgement."""
    complaint, diagnosis = clean.required(data, "chief_complaint"), clean.required(data, "diagnosis")
    history = clean.optional(data, "history")
    question = f"患者主诉：{complaint}"
    if history:
        question += f"\n现病史：{history}"
    question += "\n请问最可能的诊断是什么？"
    answer = (
        f"根据所述症状和病史，最可能的诊断是：{diagnosis.rstrip('。')}。\n"
        "这只是基于有限信息的初步判断，需要结合体格检查和必要的辅助检查，由医生面诊后确诊；"
        "如症状加重，请及时就医。"
    )
    return [_single_turn(rid, config, question, answer, department=clean.optional(data, "department"))]


def safety_conversations(
    data: dict[str, Any], rid: str, clean: TextCleaner, config: SftBuildConfig
) -> list[SftExample]:
    """A request the assistant must decline → the authored refusal."""
    prompt, refusal = clean.required(data, "prompt"), clean.required(data, "refusal")
    return [_single_turn(rid, config, prompt, refusal)]


@dataclass(frozen=True)
class SftSource:
    """One SFT source file (``<stem>.jsonl`` or ``<stem>.jsonl.gz``) and how to convert it."""

    stem: str
    task: str
    convert: Converter


SFT_SOURCES: tuple[SftSource, ...] = (
    SftSource("consultations", "consultation", consultation_conversations),
    SftSource("drug_labels", "drug_label", drug_label_conversations),
    SftSource("guideline_qa", "guideline_qa", guideline_conversations),
    SftSource("diagnosis", "diagnosis", diagnosis_conversations),
    SftSource("safety", "safety_refusal", safety_conversations),
)


def _source_stem(relpath: str) -> str | None:
    for suffix in FORMATS:
        if relpath.endswith(suffix):
            return relpath[: -len(suffix)]
    return None


def _first_user_message(messages: Messages) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


@dataclass
class _SftRun:
    """State of one build: the ledger (per conversation, sliced by task), the prompt dedup index, the ids used."""

    config: SftBuildConfig
    ledger: Ledger
    train: JsonlWriter
    records_in: int = 0
    records_converted: int = 0
    clean: TextCleaner = field(init=False)
    prompt_owner: dict[bytes, str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    eval_index: EvalIndex | None = None
    overlaps: Counter = field(default_factory=Counter)
    stream_failures: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clean = TextCleaner.for_config(self.config)

    def route(self, item: Record | Quarantined, source: SftSource) -> None:
        """Convert one input line and send each resulting conversation to exactly one output."""
        self.records_in += item.lines if isinstance(item, Quarantined) else 1
        if isinstance(item, Quarantined) and is_stream_failure(item.reason):
            self.stream_failures.append({"source": item.source, "line": item.line, "reason": item.reason})
        if isinstance(item, Record):
            try:
                rid = record_id(item.data, item.source, item.line)
                if rid in self.seen_ids:
                    raise RecordError("duplicate_id")
                examples = source.convert(item.data, rid, self.clean, self.config)
            except RecordError as err:
                item = Quarantined.of(item, err.reason)
        if isinstance(item, Quarantined):
            self.ledger.quarantined(item, source.task)
            return
        self.records_converted += 1
        self.seen_ids.add(rid)
        for example in examples:
            self._route_example(example, source)

    def _route_example(self, example: SftExample, source: SftSource) -> None:
        entry = {"id": example.id, "task": source.task}
        if example.filtered:
            self.ledger.filtered(example.filtered, entry, source.task)
            return
        if self.eval_index is not None:
            tasks = self.eval_index.hits(
                "\n".join(m["content"] for m in example.messages if m["role"] != "system")
            )
            if tasks:
                self.overlaps.update(tasks)
                self.ledger.filtered(f"eval_overlap:{tasks[0]}", {**entry, "eval_tasks": tasks}, source.task)
                return
        key = hashlib.sha1(_first_user_message(example.messages).encode("utf-8")).digest()
        if key in self.prompt_owner:
            self.ledger.duplicate(self.prompt_owner[key], entry, source.task, reason="duplicate_prompt")
            return
        self.prompt_owner[key] = example.id
        self.train.write(
            {"id": example.id, "messages": example.messages, "source": source.stem, "task": source.task}
        )
        self.ledger.kept(source.task)

    def counts(self) -> dict[str, Any]:
        """Counts for the manifest; raises if any conversation or record is unaccounted for."""
        self.ledger.check()
        total = self.ledger.total
        if self.records_in != self.records_converted + total.quarantined:
            raise RuntimeError(
                f"{STAGE}: records do not reconcile: {self.records_in} read != "
                f"{self.records_converted} converted + {total.quarantined} quarantined"
            )
        return {
            **total.as_counts(),
            "records_in": self.records_in,
            "records_converted": self.records_converted,
            "pii": sum(self.clean.pii.values()),
            "tasks": self.ledger.slice_counts(),
            "reasons": dict(sorted(total.reasons.items())),
        }


def _locate_sources(sources_dir: str | os.PathLike) -> tuple[Path, dict[str, InputFile], list[SkippedFile]]:
    """The source file of each SFT source type present, and every other file, skipped with why."""
    root = localize(sources_dir, what="SFT sources")
    expected = ", ".join(f"{s.stem}.jsonl" for s in SFT_SOURCES)
    if not root.is_dir():
        raise InputError(
            f"SFT sources must be a directory holding some of {expected}", source=str(sources_dir)
        )
    stems = {s.stem for s in SFT_SOURCES}
    try:
        listing = list_inputs(root, what="SFT source")
    except InputError:
        raise InputError(
            f"no SFT source files found; expected at least one of {expected}", source=str(sources_dir)
        ) from None
    found: dict[str, InputFile] = {}
    skipped = list(listing.skipped)
    for file in listing.files:
        stem = _source_stem(file.relpath)
        if stem in stems and stem not in found:
            found[stem] = file
        elif stem in stems:
            skipped.append(
                SkippedFile(file.relpath, f"a second file for source {stem}; {found[stem].relpath} is read")
            )
        else:
            skipped.append(SkippedFile(file.relpath, f"not an SFT source (expected one of {expected})"))
    for source in SFT_SOURCES:
        if source.stem not in found:
            log.info("SFT source absent", extra=fields(source=source.stem, dir=str(sources_dir)))
    if not found:
        raise InputError(
            f"no SFT source files found; expected at least one of {expected}", source=str(sources_dir)
        )
    for item in skipped:
        log.warning("file skipped", extra=fields(source=item.relpath, reason=item.reason))
    return root, found, skipped


def build_sft(sources_dir: str | os.PathLike, output_dir: str | os.PathLike, config: SftBuildConfig) -> dict:
    """Build ``train.jsonl`` from the SFT source files in ``sources_dir``; returns the counts.

    Missing source files are skipped (logged); at least one must be present. Sources are
    read in the order of :data:`SFT_SOURCES`, which decides which duplicate survives. Raises
    :class:`~medgo.data.accounting.StepFailed` after writing everything when a source cannot be read
    to the end or decoded, or more than ``max_quarantine_share`` is quarantined (unless
    ``allow_partial``).
    """
    root, found, skipped = _locate_sources(sources_dir)
    eval_index = load_eval_index(config.decontamination)
    with output_directory(output_dir, inputs=[root]) as out:
        with (
            JsonlWriter(out / "train.jsonl") as train,
            JsonlWriter(out / "quarantine.jsonl") as quarantine,
            JsonlWriter(out / "dropped.jsonl") as dropped,
        ):
            ledger = Ledger(STAGE, [s.task for s in SFT_SOURCES], quarantine=quarantine, dropped=dropped)
            run = _SftRun(config, ledger, train, eval_index=eval_index)
            for source in SFT_SOURCES:
                if source.stem not in found:
                    continue
                items = iter_part(FilePart(found[source.stem]))
                for item in tqdm(items, desc=f"{STAGE}:{source.stem}", unit="rec", disable=None):
                    run.route(item, source)
        counts = run.counts()
        problems = step_problems(STAGE, ledger.total, run.stream_failures, config.max_quarantine_share)
        status = "complete" if not problems else ("accepted_partial" if config.allow_partial else "failed")
        skipped_entries = [{"relpath": s.relpath, "reason": s.reason} for s in skipped]
        card = build_stage_card(
            stage=STAGE,
            slice_name="task",
            total=ledger.total,
            slices=ledger.slices,
            pii=run.clean.pii,
            overlaps=run.overlaps,
            eval_index=eval_index.summary() if eval_index else None,
            skipped=skipped_entries,
            stream_failures=run.stream_failures,
            problems=problems,
            status=status,
        )
        write_card(out, card)
        counts = {
            **counts,
            "eval_overlaps": sum(run.overlaps.values()),
            "status": status,
            "problems": problems,
            "skipped_files": skipped_entries,
        }
        write_manifest(
            out,
            stage=STAGE,
            counts=counts,
            config=config,
            inputs={"sources": str(sources_dir)},
            extra={"sources_read": sorted(found), "status": status},
        )
    if ledger.total.kept == 0:
        log.warning("no SFT conversations kept", extra=fields(**ledger.total.as_counts()))
    log.info(
        "SFT set built",
        extra=fields(**ledger.total.as_counts(), records_in=run.records_in, output=str(output_dir)),
    )
    fail_or_accept(STAGE, problems, allow_partial=config.allow_partial, counts=counts)
    return counts
