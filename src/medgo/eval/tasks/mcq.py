"""Clinical multiple-choice questions: CMB (JSON), CMExam (CSV) and MedQA-MCMLE (JSONL).

Scoring, as lm-eval-harness and OpenCompass do it:

- **loglik** (default): the prompt ends in "答案："; the option letter with the highest
  log-likelihood as the start of the reply is the answer. One forward pass per *batch of
  questions* (:meth:`~medgo.eval.backends.LocalBackend.choice_logprobs`), nothing to parse.
- **generate**: the model generates and the letters are extracted from its reply
  (:func:`extract_letters`), for endpoints that return no log-probabilities.

Multi-answer questions follow CMB's rule: the predicted letter *set* must equal the gold set
exactly, no partial credit. One letter's likelihood cannot express a set, so questions in the
multi-answer format are always generated and extracted, in both modes. Which format a question
is in comes from the published ``question_type`` ("多项选择题"), never from the gold answer, so
the prompt never reveals how many options are correct; a dataset without question types
(CMExam) that mixes single- and multi-answer questions asks every question in the "one or
more correct options" format.

Accuracy comes with a Wilson interval, overall and per department / exam type (the grouping
fields each dataset publishes).
"""

from __future__ import annotations

import copy
import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from medgo.errors import InputError
from medgo.eval.backends import Backend, RequestsFailed
from medgo.eval.metrics import accuracy, wilson_interval
from medgo.eval.tasks.base import (
    EvalItem,
    ItemOutcome,
    Location,
    Task,
    TaskContext,
    TaskResult,
    few_shot_chat,
    log_parse_failures,
    rate_breakdown,
    record_id,
    require_field,
)

_LETTER = re.compile(r"^[A-Z]$")
_LETTER_RUN_JOINERS = r"[\s,，、和及与/]*"
_MULTI_TYPE_MARKERS = ("多项", "多选", "不定项", "X型", "x型")


def is_multi_answer_format(record: dict[str, Any]) -> bool:
    """Whether the question is asked as "select every correct option" (from its published type)."""
    return bool(record.get("multi_format"))


def _type_says_multi(question_type: str | None) -> bool:
    return bool(question_type) and any(m in question_type for m in _MULTI_TYPE_MARKERS)


def mcq_prompt(record: dict[str, Any]) -> str:
    """The question with lettered options, ending in "答案：".

    The instruction names the question type as published (CMB's "单项选择题"/"多项选择题"); a
    multi-answer question asks for *all* correct letters without saying how many there are.
    """
    context = "".join(str(record["groups"].get(k) or "") for k in ("exam_type", "exam_subject"))
    context = f"{context}的" if context else ""
    if is_multi_answer_format(record):
        kind = record.get("question_type") or "选择题（有一个或多个正确选项）"
        instruction = f"以下是{context}{kind}，请给出所有正确选项的字母。"
    else:
        kind = record.get("question_type") or "单项选择题"
        instruction = f"以下是{context}{kind}，请直接给出正确答案的选项字母。"
    lines = [instruction, record["question"]]
    lines += [f"{letter}. {text}" for letter, text in record["option"].items()]
    lines.append("答案：")
    return "\n".join(lines)


def _letter_run(allowed: str) -> str:
    return rf"(?<![A-Za-z])[{allowed}](?:{_LETTER_RUN_JOINERS}[{allowed}])*(?![A-Za-z])"


def extract_letters(reply: str, letters: Sequence[str]) -> set[str] | None:
    """The option letters a generated reply gives as its answer, or None when it gives none.

    The prompt ends in "答案：", so letters that open the reply are its answer ("B。", "A、C",
    "（D）"), unless they name an option being discussed ("A项错误"); otherwise an explicit
    "答案是 B" / "正确答案：A、C"; otherwise the first run of option letters not inside a word
    ("DNA" is not D). Full-width letters are read as ASCII.
    """
    text = unicodedata.normalize("NFKC", reply)
    allowed = "".join(letters)
    run = _letter_run(allowed)
    for pattern in (
        rf"^\s*[（(【\[]?\s*({run})(?!\s*(?:项|选项))",
        rf"答案\s*(?:应该|应)?\s*(?:是|为)?\s*[:：]?\s*[（(【\[]?\s*({run})",
        rf"({run})",
    ):
        found = re.search(pattern, text)
        if found:
            return set(re.findall(f"[{allowed}]", found.group(1)))
    return None


class OptionScoredTask(Task):
    """A task answered by choosing among options: by their log-likelihood, or by generating.

    ``mode`` comes from the run's ``mcq_mode`` (:meth:`configure`); ``loglik`` needs a backend
    that returns log-probabilities.
    """

    mode: str = "loglik"

    def configure(self, context: TaskContext) -> Task:
        task = super().configure(context)
        if context.mcq_mode == task.mode:
            return task
        task = copy.copy(task) if task is self else task
        task.mode = context.mcq_mode
        return task


class MultipleChoiceTask(OptionScoredTask):
    """What the three MCQ layouts share once a record is normalised.

    A normalised record: ``question``, ``option`` {letter: text} (blank options dropped),
    ``answer`` (sorted gold letters), ``question_type`` (or None), ``multi_format``, ``groups``
    {breakdown field: value} and ``source`` (the record as published, for predictions).
    """

    metric = "accuracy"
    #: Breakdown fields, in report order.
    group_fields: ClassVar[tuple[str, ...]] = ()

    def item_values(self, stats: Sequence[dict[str, Any]]) -> list[float]:
        return [1.0 if s["correct"] else 0.0 for s in stats]

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return accuracy([s["correct"] for s in stats])

    def reference_reply(self, item: EvalItem) -> str:
        return item.record["answer"]

    def chat_for(self, item: EvalItem) -> list[dict[str, str]]:
        examples = [(mcq_prompt(shot.record), self.reference_reply(shot)) for shot in self.shot_items]
        return few_shot_chat(mcq_prompt(item.record), examples)

    # -- normalisation shared by the layouts ----------------------------------------------------

    def normalise(
        self,
        *,
        question: Any,
        options: dict[str, Any],
        answer: str,
        question_type: Any,
        groups: dict[str, Any],
        source: dict[str, Any],
        path: Path,
        where: str,
        line: int | None,
        option_field: str,
        answer_field: str,
    ) -> dict[str, Any]:
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{where}: empty question", source=str(path), line=line, field="question")
        cleaned: dict[str, str] = {}
        for letter, text in options.items():
            if not _LETTER.match(str(letter)) or not isinstance(text, str | type(None)):
                raise InputError(
                    f"{where}: options must map a capital letter to text, got {letter!r}",
                    source=str(path),
                    line=line,
                    field=option_field,
                )
            if text and text.strip():
                cleaned[str(letter)] = text.strip()
        if len(cleaned) < 2:
            raise InputError(
                f"{where}: fewer than two non-empty options", source=str(path), line=line, field=option_field
            )
        letters = sorted(set(re.findall(r"[A-Z]", unicodedata.normalize("NFKC", answer).upper())))
        if not letters:
            raise InputError(
                f"{where}: no option letter in the answer", source=str(path), line=line, field=answer_field
            )
        missing = [x for x in letters if x not in cleaned]
        if missing:
            raise InputError(
                f"{where}: answer names option(s) {''.join(missing)} that the item does not have",
                source=str(path),
                line=line,
                field=answer_field,
            )
        qtype = (
            str(question_type).strip() if isinstance(question_type, str) and question_type.strip() else None
        )
        return {
            "question": question.strip(),
            "option": dict(sorted(cleaned.items())),
            "answer": "".join(letters),
            "question_type": qtype,
            "multi_format": _type_says_multi(qtype),
            "groups": {k: str(v) for k, v in groups.items() if v not in (None, "")},
            "source": source,
        }

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        items = super().load(data_dir, max_items=0)
        items = _mark_mixed_untyped(items)
        return items[:max_items] if max_items > 0 else items

    def load_shots(self, data_dir: Path, count: int) -> tuple[EvalItem, ...]:
        return tuple(_mark_mixed_untyped(list(super().load_shots(data_dir, count))))

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> TaskResult:
        predicted: dict[str, set[str] | None] = {}
        scoring: dict[str, str] = {}
        by_letters: dict[tuple[str, ...], list[EvalItem]] = defaultdict(list)
        generated: list[EvalItem] = []
        for item in items:
            if self.mode == "loglik" and not is_multi_answer_format(item.record):
                by_letters[tuple(item.record["option"])].append(item)
            else:
                generated.append(item)
        for letters, group in by_letters.items():
            try:
                scores = backend.choice_logprobs([self.chat_for(item) for item in group], list(letters))
            except RequestsFailed as exc:
                raise exc.with_item_ids([item.id for item in group]) from None
            for item, letter_scores in zip(group, scores, strict=True):
                best = max(range(len(letters)), key=lambda i: letter_scores[i])
                predicted[item.id], scoring[item.id] = {letters[best]}, "loglik"
        if generated:
            try:
                replies = backend.generate([self.chat_for(item) for item in generated], max_new_tokens)
            except RequestsFailed as exc:
                raise exc.with_item_ids([item.id for item in generated]) from None
            for item, reply in zip(generated, replies, strict=True):
                predicted[item.id] = extract_letters(reply, list(item.record["option"]))
                scoring[item.id] = "generate"

        outcomes = []
        for item in items:
            pred = predicted[item.id]
            correct = pred is not None and pred == set(item.record["answer"])
            outcomes.append(
                ItemOutcome(
                    id=item.id,
                    score=float(correct),
                    parsed=pred is not None,
                    stats={"correct": correct, "scoring": scoring[item.id]},
                )
            )
        log_parse_failures(self.name, backend.name, outcomes)
        correct_count = sum(1 for o in outcomes if o.stats["correct"])
        low, high = wilson_interval(correct_count, len(outcomes))
        n_multi = sum(1 for item in items if is_multi_answer_format(item.record))
        notes = [
            f"{'option-letter log-likelihood' if self.mode == 'loglik' else 'generate and extract'}"
            f"{f', {self.shot_count}-shot' if self.shot_count else ', zero-shot'}; "
            f"{len(generated)} of {len(items)} questions answered by generation"
        ]
        return TaskResult(
            task=self.name,
            metric=self.metric,
            value=self.aggregate([o.stats for o in outcomes]),
            outcomes=outcomes,
            secondary={
                "ci95_low": low,
                "ci95_high": high,
                "n_multi_answer": float(n_multi),
                "n_generated": float(len(generated)),
            },
            predictions=[
                {
                    **item.record["source"],
                    "id": item.id,
                    "model_answer": "".join(sorted(predicted[item.id])) if predicted[item.id] else None,
                }
                for item in items
            ],
            breakdown=rate_breakdown(
                {item.id: item.record["groups"] for item in items},
                {o.id: bool(o.stats["correct"]) for o in outcomes},
                self.group_fields,
            ),
            notes=notes,
        )


def _mark_mixed_untyped(items: list[EvalItem]) -> list[EvalItem]:
    """Untyped questions of a file that has any multi-answer gold are all asked in the multi format.

    This is a fact about the dataset, not the item, so no prompt reveals its own answer count.
    """
    untyped = [item for item in items if item.record["question_type"] is None]
    if not any(len(item.record["answer"]) > 1 for item in untyped):
        return items
    return [
        EvalItem(item.id, {**item.record, "multi_format": True}, item.group)
        if item.record["question_type"] is None
        else item
        for item in items
    ]


class ClinicalMCQ(MultipleChoiceTask):
    """CMB (``CMB-Exam``): a JSON array of ``{exam_type, exam_class, exam_subject, question,
    answer, question_type, option: {A..E}}``; few-shot examples from CMB-val's layout."""

    name = "mcq"
    relative_path = "mcq/cmb_dev.json"
    few_shot_relative_path = "mcq/cmb_val.json"
    group_fields = ("exam_type", "exam_class", "exam_subject")

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        line = getattr(where, "line", None)
        question = require_field(record, "question", str, path, where)
        options = require_field(record, "option", dict, path, where)
        answer = require_field(record, "answer", str, path, where)
        return self.normalise(
            question=question,
            options=options,
            answer=answer,
            question_type=record.get("question_type"),
            groups={k: record.get(k) for k in self.group_fields},
            source=record,
            path=path,
            where=where,
            line=line,
            option_field="option",
            answer_field="answer",
        )


#: CMExam's annotation columns (its published CSV header), used for the breakdown.
CMEXAM_GROUPS = (
    "Clinical Department",
    "Medical Discipline",
    "Disease Group",
    "Competency",
    "Difficulty level",
)
_CMEXAM_OPTION = re.compile(r"^\s*([A-Z])\s*[.．、:：)）]?\s*(.*)$")


class CMExam(MultipleChoiceTask):
    """CMExam: a CSV with ``Question``, ``Options`` (one "A 文本" line per option), ``Answer``
    (letters), ``Explanation`` and the annotation columns :data:`CMEXAM_GROUPS`."""

    name = "CMExam"
    relative_path = "mcq/cmexam_test.csv"
    few_shot_relative_path = "mcq/cmexam_dev.csv"
    group_fields = CMEXAM_GROUPS

    def read(self, path: Path) -> list[tuple[int, dict[str, str]]]:
        """``(line, row)`` pairs; the line is where the row starts (rows may span lines)."""
        if not path.is_file():
            raise InputError("evaluation data file not found", source=str(path))
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in ("Question", "Options", "Answer") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"CSV header lacks column(s) {', '.join(missing)}", source=str(path), line=1, field=missing[0]
            )
        rows, start = [], reader.line_num + 1
        try:
            for row in reader:
                rows.append((start, row))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {exc}", source=str(path), line=reader.line_num) from None
        return rows

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        items = []
        for index, (line, row) in enumerate(data):
            where = Location(f"row {index + 1}", line)
            if None in row:
                raise InputError(f"{where}: more cells than header columns", source=str(path), line=line)
            options: dict[str, str] = {}
            for option_line in (row.get("Options") or "").splitlines():
                if not option_line.strip():
                    continue
                match = _CMEXAM_OPTION.match(option_line)
                if not match:
                    raise InputError(
                        f"{where}: option line does not start with a letter",
                        source=str(path),
                        line=line,
                        field="Options",
                    )
                options[match.group(1)] = match.group(2)
            record = self.normalise(
                question=row.get("Question"),
                options=options,
                answer=row.get("Answer") or "",
                question_type=row.get("Question Type"),
                groups={k: row.get(k) for k in CMEXAM_GROUPS},
                source=dict(row),
                path=path,
                where=where,
                line=line,
                option_field="Options",
                answer_field="Answer",
            )
            items.append(EvalItem(record_id(row, self.name, index), record))
        return items


class MedQAMCMLE(MultipleChoiceTask):
    """MedQA, mainland-China (MCMLE) split: JSONL of ``{question, options: {A..E}, answer,
    answer_idx, meta_info}``; ``answer_idx`` is the gold letter and ``answer`` its text."""

    name = "MedQA-MCMLE"
    relative_path = "mcq/medqa_mcmle_test.jsonl"
    few_shot_relative_path = "mcq/medqa_mcmle_dev.jsonl"
    group_fields = ("meta_info",)

    def read(self, path: Path) -> list[tuple[int, Any]]:
        from medgo.data.io import Quarantined, iter_records

        if not path.is_file():
            raise InputError("evaluation data file not found", source=str(path))
        rows = []
        for entry in iter_records(path, what="evaluation data"):
            if isinstance(entry, Quarantined):
                raise InputError(entry.reason, source=str(path), line=entry.line)
            rows.append((entry.line, entry.data))
        return rows

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        items = []
        for index, (line, record) in enumerate(data):
            where = Location(f"item {index}", line)
            question = require_field(record, "question", str, path, where)
            options = require_field(record, "options", dict, path, where)
            answer_idx = require_field(record, "answer_idx", str, path, where)
            answer_text = record.get("answer")
            if isinstance(answer_text, str) and answer_idx in options and options[answer_idx] != answer_text:
                raise InputError(
                    f"{where}: answer text differs from options[answer_idx]",
                    source=str(path),
                    line=line,
                    field="answer",
                )
            normalised = self.normalise(
                question=question,
                options=options,
                answer=answer_idx,
                question_type=record.get("question_type"),
                groups={"meta_info": record.get("meta_info")},
                source=record,
                path=path,
                where=where,
                line=line,
                option_field="options",
                answer_field="answer_idx",
            )
            items.append(EvalItem(record_id(record, self.name, index), normalised))
        return items


__all__ = [
    "CMEXAM_GROUPS",
    "CMExam",
    "ClinicalMCQ",
    "MedQAMCMLE",
    "MultipleChoiceTask",
    "OptionScoredTask",
    "extract_letters",
    "is_multi_answer_format",
    "mcq_prompt",
]
