"""Score medgo's PII scrubber on a labelled JSONL set: span-level precision and recall per type.

Each line of the set is ``{"id", "text", "spans": [{"start", "end", "type"}]}`` with character
offsets (``end`` exclusive). An example with no spans is a hard negative: anything masked in it
is a false positive, and the number of hard negatives with at least one masked span is reported.

Two matchings are reported. **Exact** (the headline): a predicted span counts only if a gold
span has the same start, end and type. **Overlap**: a predicted span counts if it overlaps a
not-yet-matched gold span of the same type (a boundary slip such as a missed ``+86`` or an
extension still counts). Throughput is the scrubber's ``find_pii`` over every text of the set,
best of ``--repeat`` passes, in CPU seconds. ``--peer`` scores a second implementation (any Python file with a
``find_pii(text)`` returning ``(start, end, type)`` triples, e.g. an older ``pii.py`` taken from
git) in the same run, for before/after figures on the same machine.

The last line printed is one JSON object: ``precision``, ``recall`` and ``f1`` per type (exact),
``overlap_precision``/``overlap_recall``, ``support`` (gold spans per type),
``hard_negatives``, ``hard_negative_false_positives``, ``chars_per_s`` (on the labelled set),
``chars_per_s_plain`` (on ordinary corpus prose, ``--plain``) and, with ``--peer``, the same
figures under ``peer``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "benchmarks" / "pii_data" / "pii_test.jsonl"
DEFAULT_PLAIN = REPO / "samples" / "corpus"

_MIN_TIMED_CHARS = 200_000

Span = tuple[int, int, str]
Finder = Callable[[str], Sequence[Span]]


@dataclass
class Example:
    id: str
    text: str
    spans: list[Span]


@dataclass
class Score:
    """Counts per type for one scrubber on one set."""

    exact_tp: Counter = field(default_factory=Counter)
    overlap_tp_pred: Counter = field(default_factory=Counter)
    overlap_tp_gold: Counter = field(default_factory=Counter)
    predicted: Counter = field(default_factory=Counter)
    gold: Counter = field(default_factory=Counter)
    hard_negatives: int = 0
    hard_negatives_masked: int = 0
    hard_negative_spans: Counter = field(default_factory=Counter)
    errors: list[dict] = field(default_factory=list)

    def types(self) -> list[str]:
        return sorted(set(self.gold) | set(self.predicted))

    @staticmethod
    def _ratio(num: int, den: int) -> float:
        return round(num / den, 4) if den else 1.0

    def precision(self, kind: str) -> float:
        return self._ratio(self.exact_tp[kind], self.predicted[kind])

    def recall(self, kind: str) -> float:
        return self._ratio(self.exact_tp[kind], self.gold[kind])

    def f1(self, kind: str) -> float:
        p, r = self.precision(kind), self.recall(kind)
        return round(2 * p * r / (p + r), 4) if p + r else 0.0

    def overlap_precision(self, kind: str) -> float:
        return self._ratio(self.overlap_tp_pred[kind], self.predicted[kind])

    def overlap_recall(self, kind: str) -> float:
        return self._ratio(self.overlap_tp_gold[kind], self.gold[kind])

    def as_json(self) -> dict:
        kinds = self.types()
        return {
            "precision": {k: self.precision(k) for k in kinds},
            "recall": {k: self.recall(k) for k in kinds},
            "f1": {k: self.f1(k) for k in kinds},
            "overlap_precision": {k: self.overlap_precision(k) for k in kinds},
            "overlap_recall": {k: self.overlap_recall(k) for k in kinds},
            "support": {k: self.gold[k] for k in kinds},
            "hard_negatives": self.hard_negatives,
            "hard_negative_false_positives": self.hard_negatives_masked,
        }


class DataError(ValueError):
    """A labelled file that does not follow the format; the message names file, line and field."""


def load_examples(path: Path) -> list[Example]:
    """Read and check a labelled JSONL file."""
    examples = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(f"{where}: field 'text' must be a string")
            text = record["text"]
            spans = []
            for i, span in enumerate(record.get("spans") or []):
                try:
                    start, end, kind = int(span["start"]), int(span["end"]), str(span["type"])
                except (KeyError, TypeError, ValueError):
                    raise DataError(
                        f"{where}: spans[{i}] needs integer 'start', 'end' and a 'type'"
                    ) from None
                if not 0 <= start < end <= len(text):
                    raise DataError(f"{where}: spans[{i}] [{start}, {end}) is outside the text")
                spans.append((start, end, kind))
            examples.append(Example(str(record.get("id", line_no)), text, spans))
    return examples


def score(examples: Iterable[Example], find: Finder, *, keep_errors: int = 0) -> Score:
    """Compare ``find``'s spans with the gold spans of every example."""
    result = Score()
    for example in examples:
        predicted = [(int(s), int(e), str(k)) for s, e, k in find(example.text)]
        gold = example.spans
        result.gold.update(k for _, _, k in gold)
        result.predicted.update(k for _, _, k in predicted)
        gold_set = set(gold)
        result.exact_tp.update(k for s, e, k in predicted if (s, e, k) in gold_set)
        matched_gold: set[int] = set()
        for s, e, k in predicted:
            hit = next(
                (
                    i
                    for i, (gs, ge, gk) in enumerate(gold)
                    if gk == k and gs < e and s < ge and i not in matched_gold
                ),
                None,
            )
            if hit is not None:
                matched_gold.add(hit)
                result.overlap_tp_pred[k] += 1
        result.overlap_tp_gold.update(gold[i][2] for i in matched_gold)
        if not gold:
            result.hard_negatives += 1
            if predicted:
                result.hard_negatives_masked += 1
                result.hard_negative_spans.update(k for _, _, k in predicted)
        if len(result.errors) < keep_errors and set(predicted) != gold_set:
            result.errors.append(
                {
                    "id": example.id,
                    "text": example.text,
                    "missed": [
                        (s, e, k, example.text[s:e]) for s, e, k in gold if (s, e, k) not in set(predicted)
                    ],
                    "extra": [
                        (s, e, k, example.text[s:e]) for s, e, k in predicted if (s, e, k) not in gold_set
                    ],
                }
            )
    return result


def chars_per_second(texts: Sequence[str], find: Finder, repeat: int) -> float:
    """Best-of-``repeat`` throughput of ``find`` over ``texts``, in CPU time of this process.

    CPU time rather than wall time, so that other work on a shared machine does not count.
    """
    total = sum(len(t) for t in texts)
    best = float("inf")
    for _ in range(max(1, repeat)):
        started = time.process_time()
        for text in texts:
            find(text)
        best = min(best, time.process_time() - started)
    return round(total / best) if best > 0 else 0.0


def load_plain_texts(folder: Path) -> list[str]:
    """The ``text`` of every readable corpus record under ``folder`` (for throughput on ordinary prose)."""
    texts = []
    for path in sorted(folder.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                texts.append(record["text"])
    return texts


def load_finder(path: Path) -> Finder:
    """``find_pii`` from a Python file (a peer implementation)."""
    spec = importlib.util.spec_from_file_location(f"pii_peer_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise DataError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    if not callable(getattr(module, "find_pii", None)):
        raise DataError(f"{path}: defines no find_pii(text)")
    return module.find_pii


def table(result: Score, title: str) -> str:
    rows = [
        f"{title}",
        f"{'type':<10} {'gold':>6} {'pred':>6} {'P':>7} {'R':>7} {'F1':>7} {'P~':>7} {'R~':>7}",
    ]
    for kind in result.types():
        rows.append(
            f"{kind:<10} {result.gold[kind]:>6} {result.predicted[kind]:>6} {result.precision(kind):>7.3f}"
            f" {result.recall(kind):>7.3f} {result.f1(kind):>7.3f} {result.overlap_precision(kind):>7.3f}"
            f" {result.overlap_recall(kind):>7.3f}"
        )
    rows.append(
        f"hard negatives masked: {result.hard_negatives_masked} of {result.hard_negatives}"
        + (f" ({dict(result.hard_negative_spans)})" if result.hard_negative_spans else "")
    )
    rows.append("P/R/F1: exact span match; P~/R~: overlap match (same type)")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Span-level precision/recall of medgo's PII scrubber on a labelled JSONL set "
        "(one {id, text, spans:[{start, end, type}]} per line, end exclusive). The last line printed is "
        "one JSON object of figures.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"labelled JSONL file to score (default: the bundled test split, {DEFAULT_DATA.relative_to(REPO)})",
    )
    parser.add_argument(
        "--peer",
        type=Path,
        default=None,
        help="a second implementation to score in the same run: a Python file defining find_pii(text) "
        "(e.g. an older src/medgo/data/pii.py exported with `git show REV:src/medgo/data/pii.py`)",
    )
    parser.add_argument(
        "--plain",
        type=Path,
        default=DEFAULT_PLAIN,
        help="folder of corpus JSONL whose 'text' fields measure throughput on ordinary clinical prose, where "
        f"identifiers are rare (default: {DEFAULT_PLAIN.relative_to(REPO)}); reported as chars_per_s_plain",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="passes over each text set when timing find_pii; the best one counts",
    )
    parser.add_argument(
        "--errors",
        type=int,
        default=0,
        help="print up to this many examples whose spans differ from the gold ones (missed and extra spans); "
        "this shows the set's text, so never point it at real patient data in a shared log",
    )
    args = parser.parse_args(argv)

    from medgo.data.pii import find_pii

    try:
        examples = load_examples(args.data)
        peer = load_finder(args.peer) if args.peer else None
    except (OSError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = [e.text for e in examples]
    plain = load_plain_texts(args.plain) if args.plain.is_dir() else []
    if plain:  # enough text for a stable timing
        plain = plain * max(1, _MIN_TIMED_CHARS // sum(len(t) for t in plain))
    print(f"{args.data}: {len(examples)} examples, {sum(len(t) for t in texts)} characters")
    print(f"{args.plain}: {sum(len(t) for t in plain)} characters of plain text timed")

    result = score(examples, find_pii, keep_errors=args.errors)
    figures = result.as_json()
    figures["chars_per_s"] = chars_per_second(texts, find_pii, args.repeat)
    figures["chars_per_s_plain"] = chars_per_second(plain, find_pii, args.repeat) if plain else None
    print(table(result, "medgo.data.pii"))
    print(
        f"throughput: {figures['chars_per_s']:,.0f} chars/s on the labelled set, "
        f"{figures['chars_per_s_plain'] or 0:,.0f} on plain prose"
    )
    for error in result.errors:
        print(json.dumps(error, ensure_ascii=False))
    if peer is not None:
        peer_result = score(examples, peer)
        figures["peer"] = {
            **peer_result.as_json(),
            "chars_per_s": chars_per_second(texts, peer, args.repeat),
            "chars_per_s_plain": chars_per_second(plain, peer, args.repeat) if plain else None,
        }
        print(table(peer_result, f"peer: {args.peer}"))
        print(
            f"peer throughput: {figures['peer']['chars_per_s']:,.0f} chars/s on the labelled set, "
            f"{figures['peer']['chars_per_s_plain'] or 0:,.0f} on plain prose"
        )
    print(json.dumps(figures, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
