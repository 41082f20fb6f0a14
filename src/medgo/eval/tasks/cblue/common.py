"""What every CBLUE task shares: the result that names its metric definition, few-shot prompting,
the gold-answer renderer, and readers for the JSON / JSON-lines / TSV layouts CBLUE ships."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medgo.chat import Messages
from medgo.config import DEFAULT_SYSTEM_PROMPT
from medgo.errors import InputError
from medgo.eval.backends import Backend, RequestsFailed
from medgo.eval.tasks.base import (
    EvalItem,
    GenerativeTask,
    ItemOutcome,
    TaskContext,
    TaskResult,
    ensure_unique_ids,
    log_parse_failures,
    require_field,
)


@dataclass
class CblueResult(TaskResult):
    """A :class:`TaskResult` that says which official definition ``value`` follows.

    ``metric_definition`` names the scorer (CBLUE leaderboard, PromptCBLUE, or the dataset's own
    script) and what is matched; ``shots`` is how many demonstrations each prompt carried.
    Values under the other definitions, where they differ, are in ``secondary``.
    """

    metric_definition: str = ""
    shots: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "metric_definition": self.metric_definition, "shots": self.shots}


class CblueTask(GenerativeTask):
    """A CBLUE task asked generatively, zero- or few-shot.

    Few-shot prompts are a multi-turn chat: ``shots`` other items of the same file, each asked
    with the task's prompt and answered with :meth:`render_answer` of its gold record, then the
    item itself. Demonstrations are the items after it in file order (wrapping around), never
    the item itself nor one of its :meth:`demo_group`. ``render_answer`` writes gold in the shape :meth:`parse` reads, so a model
    that answers exactly like the demonstrations scores perfectly.
    """

    #: Which scorer ``metric`` follows and what it matches (reported as ``metric_definition``).
    definition: ClassVar[str]

    def __init__(self, shots: int = 0) -> None:
        if shots < 0:
            raise ValueError("shots must be >= 0")
        self.shots = shots

    @property
    def shot_count(self) -> int:
        return self.shots

    def configure(self, context: TaskContext) -> CblueTask:
        """This task with ``context.few_shot`` demonstrations drawn from its own file (other items)."""
        return self if context.few_shot == self.shots else type(self)(shots=context.few_shot)

    def item_values(self, stats: Sequence[dict[str, Any]]) -> list[float] | None:
        """Per-item values whose mean is the metric: accuracy, MRR@10, MedDG's mean ROUGE-L."""
        if self.metric == "accuracy":
            return [float(s["gold"] == s["pred"]) for s in stats]
        if self.metric == "mrr_at_10":
            return [float(s["rr"]) for s in stats]
        if self.metric == "rouge_l" and stats and "sections" not in stats[0]:
            return [float(s["rouge_l"]) for s in stats]
        return None

    def sufficient_statistics(
        self, stats: Sequence[dict[str, Any]]
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
        """Additive per-item counts for the gate's vectorised bootstrap: micro-F1 from (tp, pred,
        gold), IMCS-V2-MRG's section-weighted ROUGE-L from (sum, sections); macro-F1 has none."""
        if self.metric == "micro_f1":
            matrix = np.array([[s["tp"], s["pred"], s["gold"]] for s in stats], dtype=float)
            return matrix, _micro_f1_from_sums
        if self.metric == "rouge_l" and stats and "sections" in stats[0]:
            matrix = np.array([[s["rouge_l_sum"], s["sections"]] for s in stats], dtype=float)
            return matrix, _ratio_from_sums
        return super().sufficient_statistics(stats)

    def render_answer(self, item: EvalItem) -> str:
        """The gold record as the answer the prompt asks for."""
        raise NotImplementedError

    def demo_group(self, item: EvalItem) -> str:
        """Items of one group never demonstrate for each other (a dialogue's turns, whose history
        would show the answer); by default every item is its own group."""
        return item.id

    def demonstrations(self, items: Sequence[EvalItem], index: int) -> list[EvalItem]:
        group = self.demo_group(items[index])
        others = [items[(index + k) % len(items)] for k in range(1, len(items))]
        return [other for other in others if self.demo_group(other) != group][: self.shots]

    def messages(self, item: EvalItem, demos: Sequence[EvalItem]) -> Messages:
        chat: Messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
        for demo in demos:
            chat.append({"role": "user", "content": self.prompt(demo)})
            chat.append({"role": "assistant", "content": self.render_answer(demo)})
        chat.append({"role": "user", "content": self.prompt(item)})
        return chat

    def chats(self, items: Sequence[EvalItem]) -> list[Messages]:
        return [self.messages(item, self.demonstrations(items, i)) for i, item in enumerate(items)]

    def result(self, outcomes: list[ItemOutcome], predictions: list[dict[str, Any]]) -> CblueResult:
        return CblueResult(
            task=self.name,
            metric=self.metric,
            value=self.aggregate([o.stats for o in outcomes]),
            outcomes=outcomes,
            secondary=self.secondary_metrics(outcomes),
            predictions=predictions,
            metric_definition=self.definition,
            shots=self.shots,
        )

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> CblueResult:
        if not items:
            raise InputError(f"task {self.name} has no items to evaluate")
        try:
            replies = backend.generate(self.chats(items), max_new_tokens)
        except RequestsFailed as exc:
            raise exc.with_item_ids([item.id for item in items]) from None
        predictions = [self.parse(item, reply) for item, reply in zip(items, replies, strict=True)]
        outcomes = [self.outcome(item, pred) for item, pred in zip(items, predictions, strict=True)]
        log_parse_failures(self.name, backend.name, outcomes)
        return self.result(
            outcomes,
            [
                {"id": item.id, **pred} if pred is not None else {"id": item.id, "unparseable": True}
                for item, pred in zip(items, predictions, strict=True)
            ],
        )


def _micro_f1_from_sums(sums: np.ndarray) -> np.ndarray:
    """2·tp / (pred + gold), 0 where nothing was predicted or expected (= 2PR / (P + R))."""
    tp, denominator = 2 * sums[..., 0], sums[..., 1] + sums[..., 2]
    return np.divide(tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _ratio_from_sums(sums: np.ndarray) -> np.ndarray:
    return np.divide(sums[..., 0], sums[..., 1], out=np.zeros_like(sums[..., 0]), where=sums[..., 1] > 0)


def options_text(names: Sequence[str]) -> str:
    return "，".join(names)


def read_records(path: Path) -> list[tuple[int | None, Any]]:
    """Records of a JSON array or a JSON-lines file, each with its line (JSON lines) or None.

    CBLUE ships both under ``.json`` names (CMeIE's ``.json`` files hold one object per line).
    """
    if not path.is_file():
        raise InputError("evaluation data file not found", source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON: {exc.msg} (column {exc.colno})", source=str(path), line=exc.lineno
            ) from None
        return [(None, record) for record in data]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON line: {exc.msg} (column {exc.colno})", source=str(path), line=number
            ) from None
    return records


def load_records(task: CblueTask, data_dir: Path, max_items: int, id_key: str = "id") -> list[EvalItem]:
    """Items of ``task``'s JSON-array or JSON-lines file through its ``check_record`` (errors name
    the line or the item index); ids from ``id_key``, else ``<task>-<index>``."""
    path = Path(data_dir) / task.relative_path
    items = []
    for index, (line, record) in enumerate(read_records(path)):
        checked = task.check_record(record, path, where(line, index))
        rid = record.get(id_key) if isinstance(record, dict) else None
        items.append(EvalItem(str(rid) if rid not in (None, "") else f"{task.name}-{index}", checked))
    if not items:
        raise InputError(f"task {task.name} has no items", source=str(path))
    ensure_unique_ids(items, path)
    return items[:max_items] if max_items > 0 else items


def read_tsv(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file with exactly ``columns`` fields, each with its line number."""
    if not path.is_file():
        raise InputError("evaluation data file not found", source=str(path))
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != columns or not all(f.strip() for f in fields):
            raise InputError(
                f"expected {columns} non-empty tab-separated fields, got {len(fields)}",
                source=str(path),
                line=number,
            )
        rows.append((number, [f.strip() for f in fields]))
    return rows


def where(line: int | None, index: int) -> str:
    return f"line {line}" if line is not None else f"item {index}"


def require_label(record: Any, key: str, labels: Sequence[str], path: Path, place: str) -> str:
    """``record[key]`` as a string that must be one of ``labels`` (integers accepted and converted)."""
    value = require_field(record, key, (str, int), path, place)
    if str(value) not in labels:
        raise InputError(
            f"{place}: unknown label {value!r}; expected one of {', '.join(labels)}",
            source=str(path),
            field=key,
        )
    return str(value)


def require_str_list(record: Any, key: str, path: Path, place: str) -> list[str]:
    values = require_field(record, key, list, path, place)
    for j, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(
                f"{place} {key}[{j}]: expected str, got {type(value).__name__}", source=str(path), field=key
            )
    return values


def check_span(
    text: str, start: int, end: int, mention: str | None, path: Path, place: str, *, inclusive: bool
) -> None:
    """``text[start:end(+1)]`` must be inside the text and equal ``mention`` when given."""
    stop = end + 1 if inclusive else end
    if not 0 <= start < stop <= len(text):
        raise InputError(
            f"{place}: span [{start}, {end}] is outside the text (length {len(text)})",
            source=str(path),
            field="end_idx",
        )
    if mention is not None and text[start:stop] != mention:
        convention = "inclusive" if inclusive else "exclusive"
        raise InputError(
            f"{place}: the text at [{start}, {end}] is {text[start:stop]!r}, not {mention!r} "
            f"(end_idx is {convention} here)",
            source=str(path),
            field="end_idx",
        )
