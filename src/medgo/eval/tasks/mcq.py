"""Clinical multiple-choice questions in CMB's layout, scored by accuracy with a Wilson interval.

Single-answer questions are scored as lm-eval-harness does: the prompt ends in "答案：" and the
option letter with the highest log-likelihood as the start of the reply is the answer (one
forward pass per question, nothing to parse). Multi-answer questions (more than one gold
letter, or a ``question_type`` containing 多) cannot be scored by one letter's likelihood: the
model generates, the first run of option letters in its reply is read as its letter set
("AC", "A、C", "A和C" → {A, C}), and it is correct only if that set equals the gold set
exactly — no partial credit, as in CMB. A reply with no option letter is unparseable (wrong).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.errors import InputError
from medgo.eval.backends import Backend
from medgo.eval.metrics import accuracy, wilson_interval
from medgo.eval.tasks.base import (
    EvalItem,
    ItemOutcome,
    Task,
    TaskResult,
    chat,
    log_parse_failures,
    require_field,
)

_LETTER = re.compile(r"^[A-Z]$")
_LETTER_RUN_JOINERS = r"[\s,，、和及]*"


def is_multi_answer(record: dict[str, Any]) -> bool:
    return len(record["answer"]) > 1 or "多" in str(record.get("question_type", ""))


def mcq_prompt(record: dict[str, Any]) -> str:
    """CMB-style instruction, the question, lettered options, and "答案：" last."""
    kind = "多项" if is_multi_answer(record) else "单项"
    context = "".join(str(record.get(k) or "") for k in ("exam_type", "exam_subject"))
    lines = [
        f"以下是{context + '的' if context else ''}{kind}选择题，请直接给出正确答案的选项字母。",
        record["question"],
    ]
    lines += [f"{letter}. {text}" for letter, text in record["option"].items()]
    lines.append("答案：")
    return "\n".join(lines)


def parse_letter_set(reply: str, letters: Sequence[str]) -> set[str] | None:
    """The first run of option letters in ``reply`` (not inside a word such as "DNA"), or None."""
    allowed = "".join(letters)
    run = re.search(rf"(?<![A-Za-z])[{allowed}](?:{_LETTER_RUN_JOINERS}[{allowed}])*(?![A-Za-z])", reply)
    return set(re.findall(f"[{allowed}]", run.group(0))) if run else None


class ClinicalMCQ(Task):
    """Clinical exam MCQ (CMB layout: ``question``, ``option`` {A..E}, ``answer``, ``exam_subject``)."""

    name = "mcq"
    relative_path = "mcq/cmb_dev.json"
    metric = "accuracy"

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        require_field(record, "question", str, path, where)
        options = self._options(require_field(record, "option", dict, path, where), path, where)
        answer = self._answer(require_field(record, "answer", str, path, where), options, path, where)
        return {**record, "option": options, "answer": answer}

    @staticmethod
    def _options(raw: dict, path: Path, where: str) -> dict[str, str]:
        """Lettered options with text; blank ones (CMB pads 4-option questions to E) are dropped."""
        options = {}
        for letter, text in raw.items():
            if not _LETTER.match(str(letter)) or not isinstance(text, str | type(None)):
                raise InputError(
                    f"{where}: options must map a capital letter to text, got {letter!r}",
                    source=str(path),
                    field="option",
                )
            if text and text.strip():
                options[letter] = text.strip()
        if len(options) < 2:
            raise InputError(f"{where}: fewer than two non-empty options", source=str(path), field="option")
        return dict(sorted(options.items()))

    @staticmethod
    def _answer(raw: str, options: dict[str, str], path: Path, where: str) -> str:
        letters = sorted(set(re.findall(r"[A-Z]", raw.upper())))
        if not letters:
            raise InputError(f"{where}: no option letter in the answer", source=str(path), field="answer")
        missing = [x for x in letters if x not in options]
        if missing:
            raise InputError(
                f"{where}: answer names option(s) {''.join(missing)} that the item does not have",
                source=str(path),
                field="answer",
            )
        return "".join(letters)

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> TaskResult:
        predicted: dict[str, set[str] | None] = {}
        by_options: dict[tuple[str, ...], list[EvalItem]] = defaultdict(list)
        multi = [item for item in items if is_multi_answer(item.record)]
        for item in items:
            if not is_multi_answer(item.record):
                by_options[tuple(item.record["option"])].append(item)
        for letters, group in by_options.items():
            scores = backend.choice_logprobs([chat(mcq_prompt(item.record)) for item in group], list(letters))
            for item, letter_scores in zip(group, scores, strict=True):
                best = max(range(len(letters)), key=lambda i: letter_scores[i])
                predicted[item.id] = {letters[best]}
        if multi:
            replies = backend.generate([chat(mcq_prompt(item.record)) for item in multi], max_new_tokens)
            for item, reply in zip(multi, replies, strict=True):
                predicted[item.id] = parse_letter_set(reply, list(item.record["option"]))

        outcomes = []
        for item in items:
            pred = predicted[item.id]
            correct = pred is not None and pred == set(item.record["answer"])
            outcomes.append(
                ItemOutcome(
                    id=item.id, score=float(correct), parsed=pred is not None, stats={"correct": correct}
                )
            )
        log_parse_failures(self.name, backend.name, outcomes)
        k = sum(1 for o in outcomes if o.stats["correct"])
        low, high = wilson_interval(k, len(outcomes))
        return TaskResult(
            task=self.name,
            metric=self.metric,
            value=self.aggregate([o.stats for o in outcomes]),
            outcomes=outcomes,
            secondary={"ci95_low": low, "ci95_high": high, "n_multi_answer": float(len(multi))},
            predictions=[
                {
                    **item.record,
                    "id": item.id,
                    "model_answer": "".join(sorted(predicted[item.id])) if predicted[item.id] else None,
                }
                for item in items
            ],
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return accuracy([s["correct"] for s in stats])
