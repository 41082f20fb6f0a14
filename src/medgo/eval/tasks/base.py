"""What every evaluation task is made of, and the helpers tasks share.

A task reads its benchmark's *official published layout* from a fixed path under the data
directory, turns each record into a chat prompt, asks a :class:`~medgo.eval.backends.Backend`,
parses the answer back into the official layout and scores it with the official metric.
Results carry per-item records so a candidate and a baseline can be compared item by item.

Hooks the gate and the runner use (all optional, with defaults that keep older tasks working):

- :attr:`Task.higher_is_better` and :attr:`Task.gated`: the metric's direction, and whether the
  deployment gate looks at it at all (bias probes are reported, not gated);
- :meth:`Task.item_values`: per-item values whose mean *is* the metric (accuracy-like tasks); the
  gate then uses an exact-style paired interval for 0/1 values, a vectorised bootstrap otherwise;
- :meth:`Task.sufficient_statistics`: per-item additive statistics and the metric as a function
  of their sums (micro-F1 from tp/predicted/gold counts), for a vectorised paired bootstrap;
  without either, the bootstrap recomputes :meth:`Task.aggregate` on every resample;
- :meth:`Task.configure`: the task set up for one run (few-shot examples, MCQ scoring mode, a
  judge), from a :class:`TaskContext`;
- :meth:`Task.read`: how the task's file is decoded (JSON by default; CSV and JSONL tasks override).
"""

from __future__ import annotations

import copy
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medgo.chat import Messages
from medgo.config import DEFAULT_SYSTEM_PROMPT, McqMode
from medgo.errors import ConfigError, InputError
from medgo.eval.backends import Backend, RequestsFailed
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


@dataclass(frozen=True)
class TaskContext:
    """What a task may need beyond its items, fixed for one evaluation run."""

    data_dir: Path
    #: Worked examples shown before each question (0 = zero-shot).
    few_shot: int = 0
    #: How multiple-choice questions are answered: option log-likelihood or generate-and-extract.
    mcq_mode: McqMode = "loglik"
    #: A judge model for rubric-scored tasks (safety); None = the task's rule-based fallback.
    judge: Backend | None = None
    judge_max_tokens: int = 160


@dataclass
class TaskResult:
    """A model's score on one task, with per-item outcomes and predictions in official layout.

    ``breakdown`` holds per-group proportions (MCQ per department and exam type, safety per
    category: ``{field: {value: {"n", "successes", "rate", "ci_low", "ci_high"}}}``, see
    :func:`rate_breakdown`); ``details`` holds task-specific tables for the
    report (bias per attribute); ``notes`` says how the metric was measured when that is not
    obvious from its name (a rule-based fallback, a scoring mode).
    """

    task: str
    metric: str
    value: float
    outcomes: list[ItemOutcome]
    secondary: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    breakdown: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
            "breakdown": self.breakdown,
            "details": self.details,
            "notes": list(self.notes),
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
    #: Whether a larger ``value`` is better (False for over-refusal and bias measures).
    higher_is_better: ClassVar[bool] = True
    #: Whether the deployment gate compares this task (False: reported only).
    gated: ClassVar[bool] = True
    #: The file worked examples come from (same layout as :attr:`relative_path`); None = no few-shot.
    few_shot_relative_path: ClassVar[str | None] = None
    #: Worked examples shown before each question; set on a copy by :meth:`configure`.
    shot_items: tuple[EvalItem, ...] = ()

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        """Read and validate the task's file; the first ``max_items`` items when > 0.

        A missing or malformed file, or one with no items, is an :class:`InputError`: a task
        that scored nothing must never report 0.0 or 1.0.
        """
        path = Path(data_dir) / self.relative_path
        items = self.parse_file(path, self.read(path))
        if not items:
            raise InputError(f"task {self.name} has no items", source=str(path))
        ensure_unique_ids(items, path)
        return items[:max_items] if max_items > 0 else items

    def read(self, path: Path) -> Any:
        """Decode the task's file for :meth:`parse_file` (JSON; CSV/JSONL tasks override this)."""
        return read_json(path)

    def configure(self, context: TaskContext) -> Task:
        """This task set up for one run; ``self`` when there is nothing to set.

        The default handles few-shot: ``context.few_shot`` examples are read from
        :attr:`few_shot_relative_path`; a task without one stays zero-shot (the runner notes it).
        """
        if context.few_shot == 0 or self.few_shot_relative_path is None:
            return self
        return self.with_shots(self.load_shots(Path(context.data_dir), context.few_shot))

    def load_shots(self, data_dir: Path, count: int) -> tuple[EvalItem, ...]:
        """The first ``count`` items of the few-shot file (never the evaluated items themselves)."""
        if self.few_shot_relative_path is None:
            raise ConfigError(f"task {self.name} has no few-shot examples; run it with few_shot=0")
        path = Path(data_dir) / self.few_shot_relative_path
        shots = self.parse_file(path, self.read(path))
        if len(shots) < count:
            raise InputError(f"{len(shots)} few-shot examples, {count} asked for", source=str(path))
        return tuple(shots[:count])

    def with_shots(self, shots: Sequence[EvalItem]) -> Task:
        task = copy.copy(self)
        task.shot_items = tuple(shots)
        return task

    @property
    def shot_count(self) -> int:
        """How many worked examples each prompt carries (0 = zero-shot)."""
        return len(self.shot_items)

    def item_values(self, stats: Sequence[dict[str, Any]]) -> list[float] | None:
        """Per-item values whose mean is the metric (e.g. 0/1 correctness), or None if there are none."""
        return None

    def sufficient_statistics(
        self, stats: Sequence[dict[str, Any]]
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
        """``(matrix, from_sums)``: per-item additive statistics ``(n_items, k)`` and the metric as a
        function of their column sums ``(..., k)``; None when the metric does not decompose so."""
        values = self.item_values(stats)
        if values is None:
            return None
        count = len(values)
        return np.asarray(values, dtype=float)[:, None], lambda sums: sums[..., 0] / count

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        """Validate the decoded file and turn its records into items (errors name line and field).

        The default reads the CBLUE layout, a JSON array of records, through :meth:`check_record`;
        tasks published in another layout override this.
        """
        records = require_list(data, path)
        lines = json_element_lines(path)
        return [
            EvalItem(
                record_id(record, self.name, index),
                self.check_record(record, path, Location(f"item {index}", lines.get((None, index)))),
            )
            for index, record in enumerate(records)
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

    def configure(self, context: TaskContext) -> Task:
        task = super().configure(context)
        if task.shot_items:
            # a task that cannot write answers fails before any model loads
            task.reference_reply(task.shot_items[0])
        return task

    def reference_reply(self, item: EvalItem) -> str:
        """The gold answer written as the model should write it (the assistant turn of a few-shot example)."""
        raise ConfigError(f"task {self.name} cannot write few-shot answers; run it with few_shot=0")

    def chat_for(self, item: EvalItem) -> Messages:
        """The chat asking about ``item``, after this task's few-shot examples (if any)."""
        examples = [(self.prompt(shot), self.reference_reply(shot)) for shot in self.shot_items]
        return few_shot_chat(self.prompt(item), examples)

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> TaskResult:
        chats = [self.chat_for(item) for item in items]
        try:
            replies = backend.generate(chats, max_new_tokens)
        except RequestsFailed as exc:
            raise exc.with_item_ids([item.id for item in items]) from None
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


def rate_breakdown(
    groups_by_id: Mapping[str, Mapping[str, Any]],
    success_by_id: Mapping[str, bool],
    group_fields: Sequence[str],
    *,
    max_groups: int = 40,
) -> dict[str, dict[str, dict[str, float]]]:
    """A proportion with its Wilson 95 % interval per value of each grouping field.

    ``{field: {value: {"n", "successes", "rate", "ci_low", "ci_high"}}}``, largest groups
    first; beyond ``max_groups`` values the smallest are pooled as "其他".
    """
    from medgo.eval.metrics import wilson_interval

    breakdown: dict[str, dict[str, dict[str, float]]] = {}
    for field_name in group_fields:
        counts: dict[str, list[int]] = {}
        for item_id, success in success_by_id.items():
            value = groups_by_id.get(item_id, {}).get(field_name)
            if value is None or value == "":
                continue
            entry = counts.setdefault(str(value), [0, 0])
            entry[0] += bool(success)
            entry[1] += 1
        if not counts:
            continue
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))
        if len(ordered) > max_groups:
            rest = ordered[max_groups - 1 :]
            pooled = [sum(k for _, (k, _) in rest), sum(n for _, (_, n) in rest)]
            ordered = ordered[: max_groups - 1] + [("其他", pooled)]
        table = {}
        for value, (k, n) in ordered:
            low, high = wilson_interval(k, n)
            table[value] = {
                "n": float(n),
                "successes": float(k),
                "rate": k / n,
                "ci_low": low,
                "ci_high": high,
            }
        breakdown[field_name] = table
    return breakdown


def chat(user_message: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Messages:
    """A single-turn chat with the system prompt the SFT data is built with."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_message}]


def few_shot_chat(
    user_message: str, examples: Sequence[tuple[str, str]] = (), system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> Messages:
    """:func:`chat` preceded by worked examples as earlier user/assistant turns (chat-model few-shot)."""
    turns: Messages = [{"role": "system", "content": system_prompt}]
    for question, answer in examples:
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    turns.append({"role": "user", "content": user_message})
    return turns


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


class Location(str):
    """How an error names a record ("item 3"), carrying the record's line in the file when known.

    It is a ``str``, so code that only formats ``where`` keeps working; :func:`require_field`
    reads its ``line`` to put ``file:line`` in the error.
    """

    line: int | None

    def __new__(cls, text: str, line: int | None = None) -> Location:
        location = super().__new__(cls, text)
        location.line = line
        return location


def json_element_lines(path: Path) -> dict[tuple[str | None, int], int]:
    """The 1-based line where each record of a JSON file starts.

    Keys are ``(None, index)`` for a top-level array and ``(key, index)`` for an object of
    arrays (the Safety-Prompts layout). Anything else, or a file that cannot be scanned,
    gives an empty mapping (errors then name the record by index only).
    """
    try:
        text = path.read_text(encoding="utf-8")
        return _scan_element_lines(text)
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        return {}


def _scan_element_lines(text: str) -> dict[tuple[str | None, int], int]:
    decoder = json.JSONDecoder()
    lines: dict[tuple[str | None, int], int] = {}
    counted = {"pos": 0, "line": 1}

    def line_at(pos: int) -> int:
        counted["line"] += text.count("\n", counted["pos"], pos)
        counted["pos"] = pos
        return counted["line"]

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n\ufeff":
            pos += 1
        return pos

    def scan_array(pos: int, key: str | None) -> int:
        pos = skip(pos + 1)
        index = 0
        while text[pos] != "]":
            lines[(key, index)] = line_at(pos)
            _, pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
            if text[pos] == ",":
                pos = skip(pos + 1)
            index += 1
        return pos + 1

    pos = skip(0)
    if text[pos] == "[":
        scan_array(pos, None)
    elif text[pos] == "{":
        pos = skip(pos + 1)
        while text[pos] != "}":
            key, pos = decoder.raw_decode(text, pos)
            pos = skip(skip(pos) + 1)  # past the colon
            if text[pos] == "[":
                pos = scan_array(pos, str(key))
            else:
                _, pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
            if text[pos] == ",":
                pos = skip(pos + 1)
    return lines


def require_list(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise InputError(f"expected a JSON array of records, got {type(data).__name__}", source=str(path))
    return data


def require_field(record: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``record[key]`` if present with type ``kind``; otherwise an error naming ``where`` and the field."""
    line = getattr(where, "line", None)
    if not isinstance(record, dict):
        raise InputError(
            f"{where}: expected an object, got {type(record).__name__}", source=str(path), line=line
        )
    if key not in record:
        raise InputError(f"{where}: missing", source=str(path), line=line, field=key)
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = "/".join(t.__name__ for t in _as_tuple(kind))
        raise InputError(
            f"{where}: expected {names}, got {type(value).__name__}", source=str(path), line=line, field=key
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
