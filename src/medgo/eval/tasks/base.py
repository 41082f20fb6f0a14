"""What every evaluation task is made of, and the helpers tasks share.

A task reads its benchmark's *official published layout* from a fixed path under the data
directory, turns each record into a chat prompt, asks a :class:`~medgo.eval.backends.Backend`,
parses the answer back into the official layout and scores it with the official metric.
Results carry per-item records so a candidate and a baseline can be compared item by item.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from medgo.chat import Messages
from medgo.config import DEFAULT_SYSTEM_PROMPT
from medgo.errors import InputError
from medgo.eval.backends import Backend
from medgo.logs import fields

log = logging.getLogger(__name__)

#: How many failing item ids a warning lists before eliding the rest.
_LOGGED_IDS = 20


@dataclass(frozen=True)
class EvalItem:
    """One benchmark record in its official layout; ``id`` pairs items across models.

    Items of a ``group`` other than ``"main"`` feed a task's secondary metrics only (safety's
    benign prompts, which measure over-refusal).
    """

    id: str
    record: dict[str, Any]
    group: str = "main"


@dataclass
class ItemOutcome:
    """How one model did on one item.

    ``score`` (0–1, higher is better) ranks the worst examples; ``stats`` is what the task's
    :meth:`Task.aggregate` needs to recompute the official metric on any subset of items
    (JSON-serialisable, free of item text).
    """

    id: str
    score: float
    parsed: bool
    stats: dict[str, Any]


@dataclass
class TaskResult:
    """A model's score on one task, with per-item outcomes and predictions in official layout."""

    task: str
    metric: str
    value: float
    outcomes: list[ItemOutcome]
    secondary: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def parse_failures(self) -> int:
        return sum(1 for o in self.outcomes if not o.parsed)

    def worst(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` lowest-scoring items below a perfect score, by id (never by text)."""
        imperfect = sorted((o for o in self.outcomes if o.score < 1.0), key=lambda o: (o.score, o.id))
        return [{"id": o.id, "score": o.score, "parsed": o.parsed} for o in imperfect[:k]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``metrics.json`` (predictions are written separately)."""
        return {
            "task": self.task,
            "metric": self.metric,
            "value": self.value,
            "n": len(self.outcomes),
            "parse_failures": self.parse_failures,
            "secondary": dict(self.secondary),
            "worst": self.worst(),
            "items": [
                {"id": o.id, "score": o.score, "parsed": o.parsed, "stats": o.stats} for o in self.outcomes
            ],
        }


class Task(ABC):
    """A benchmark task: loader, prompt, parser and official metric."""

    #: Registry key, also the CLI/pipeline name.
    name: ClassVar[str]
    #: The data file, relative to the evaluation data directory.
    relative_path: ClassVar[str]
    #: The official metric's name (``value`` in results).
    metric: ClassVar[str]

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        """Read and validate the task's file; the first ``max_items`` items when > 0.

        A missing or malformed file, or one with no items, is an :class:`InputError`: a task
        that scored nothing must never report 0.0 or 1.0.
        """
        path = Path(data_dir) / self.relative_path
        items = self.parse_file(path, read_json(path))
        if not items:
            raise InputError(f"task {self.name} has no items", source=str(path))
        ensure_unique_ids(items, path)
        return items[:max_items] if max_items > 0 else items

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        """Validate the decoded file and turn its records into items (errors name index and field).

        The default reads the CBLUE layout, a JSON array of records, through :meth:`check_record`;
        tasks published in another layout override this.
        """
        return [
            EvalItem(record_id(record, self.name, index), self.check_record(record, path, f"item {index}"))
            for index, record in enumerate(require_list(data, path))
        ]

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        """Validate one record of a JSON-array file; return it as it is scored (labels normalised)."""
        raise NotImplementedError(f"{type(self).__name__} must define check_record or parse_file")

    @abstractmethod
    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> TaskResult:
        """Ask ``backend`` about every item and score the answers."""

    @abstractmethod
    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        """The official metric recomputed from per-item ``stats`` (used by the paired bootstrap)."""


class GenerativeTask(Task):
    """A task answered by free generation, then parsed back into the official layout.

    Subclasses give the prompt, the parser and the per-item stats; the CBLUE tasks still to
    come (CMeIE, CHIP-CDN, CHIP-CTC, KUAKE-QTR/QQR) fit here unchanged.
    """

    @abstractmethod
    def prompt(self, item: EvalItem) -> str:
        """The user message asking the model about ``item``."""

    @abstractmethod
    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        """``reply`` as a prediction in the official layout, or None when it cannot be read."""

    @abstractmethod
    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        """Score one item; ``prediction`` None (unparseable) always counts as wrong."""

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        return {}

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> TaskResult:
        replies = backend.generate([chat(self.prompt(item)) for item in items], max_new_tokens)
        predictions = [self.parse(item, reply) for item, reply in zip(items, replies, strict=True)]
        outcomes = [self.outcome(item, pred) for item, pred in zip(items, predictions, strict=True)]
        log_parse_failures(self.name, backend.name, outcomes)
        return TaskResult(
            task=self.name,
            metric=self.metric,
            value=self.aggregate([o.stats for o in outcomes]),
            outcomes=outcomes,
            secondary=self.secondary_metrics(outcomes),
            predictions=[
                {"id": item.id, **pred} if pred is not None else {"id": item.id, "unparseable": True}
                for item, pred in zip(items, predictions, strict=True)
            ],
        )


def chat(user_message: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Messages:
    """A single-turn chat with the system prompt the SFT data is built with."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_message}]


def read_json(path: Path) -> Any:
    """Decode a JSON file; errors name the file and the line."""
    if not path.is_file():
        raise InputError("evaluation data file not found", source=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} (column {exc.colno})", source=str(path), line=exc.lineno
        ) from None


def require_list(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise InputError(f"expected a JSON array of records, got {type(data).__name__}", source=str(path))
    return data


def require_field(record: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``record[key]`` if present with type ``kind``; otherwise an error naming ``where`` and the field."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected an object, got {type(record).__name__}", source=str(path))
    if key not in record:
        raise InputError(f"{where}: missing", source=str(path), field=key)
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = "/".join(t.__name__ for t in _as_tuple(kind))
        raise InputError(
            f"{where}: expected {names}, got {type(value).__name__}", source=str(path), field=key
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def record_id(record: dict, task: str, index: int) -> str:
    """The record's own ``id`` when it has one, else ``<task>-<index>`` (stable for a given file)."""
    rid = record.get("id")
    return str(rid) if rid is not None and str(rid) != "" else f"{task}-{index}"


def ensure_unique_ids(items: Sequence[EvalItem], path: Path) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.id in seen:
            raise InputError(
                f"item {index}: duplicate id {item.id!r}; ids pair candidate and baseline answers",
                source=str(path),
                field="id",
            )
        seen.add(item.id)


def log_parse_failures(task: str, model: str, outcomes: Sequence[ItemOutcome]) -> None:
    """One warning per task naming the unparseable items by id (answers may quote patient text)."""
    failed = [o.id for o in outcomes if not o.parsed]
    for item_id in failed:
        log.debug("unparseable answer", extra=fields(task=task, model=model, item_id=item_id))
    if failed:
        log.warning(
            "unparseable answers counted as wrong",
            extra=fields(
                task=task,
                model=model,
                count=len(failed),
                of=len(outcomes),
                item_ids=",".join(failed[:_LOGGED_IDS]) + ("…" if len(failed) > _LOGGED_IDS else ""),
            ),
        )
