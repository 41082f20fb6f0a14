"""KUAKE-IR: passage retrieval for medical search queries, scored by MRR@10.

The published layout is three tab-separated files under ``KUAKE-IR/``: ``corpus.tsv`` (``pid
passage``), ``KUAKE-IR_dev_query.txt`` (``qid query``) and ``KUAKE-IR_dev.tsv`` (``qid pid`` of a
relevant passage). A generative model cannot read a million passages, so it reranks a first-stage
candidate list: ``KUAKE-IR_dev_candidates.tsv`` (``qid pid1,pid2,…`` — the official submission
layout, i.e. another retriever's top-10) when present, otherwise the top 10 of a character-bigram
match against the corpus. A relevant passage the first stage missed gives reciprocal rank 0, so
the number is the MRR@10 of the whole pipeline.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.errors import InputError
from medgo.eval.tasks.base import EvalItem, ItemOutcome, ensure_unique_ids
from medgo.eval.tasks.cblue.common import CblueTask, read_tsv
from medgo.eval.tasks.cblue.parsing import normalize_reply
from medgo.eval.tasks.cblue.scoring import mean, reciprocal_rank

CUTOFF = 10
#: The largest corpus the built-in first stage indexes; larger ones need a candidate file.
LEXICAL_LIMIT = 200_000
#: Characters of each candidate passage shown in the prompt.
PASSAGE_CHARS = 160


def _bigrams(text: str) -> list[str]:
    chars = [c for c in text if not c.isspace()]
    return [a + b for a, b in zip(chars, chars[1:], strict=False)] or chars


class BigramIndex:
    """Character-bigram postings of a corpus: a simple first stage when no candidate file is given."""

    def __init__(self, corpus: dict[str, str]) -> None:
        self.size = len(corpus)
        self.postings: dict[str, list[str]] = defaultdict(list)
        for pid, passage in corpus.items():
            for gram in set(_bigrams(passage)):
                self.postings[gram].append(pid)

    def top(self, query: str, k: int = CUTOFF) -> list[str]:
        """The ``k`` passages sharing the most IDF-weighted bigrams with ``query`` (ties by id)."""
        scores: Counter = Counter()
        for gram in set(_bigrams(query)):
            postings = self.postings.get(gram, [])
            if postings:
                weight = math.log(1 + self.size / len(postings))
                for pid in postings:
                    scores[pid] += weight
        return [pid for pid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def parse_ranking(reply: str, n: int) -> list[int] | None:
    """Candidate numbers (1-based) in the order the reply ranks them; duplicates and numbers out
    of range dropped; None when the reply names none."""
    seen: list[int] = []
    for match in re.finditer(r"(?<!\d)(\d{1,2})(?!\d)", normalize_reply(reply)):
        number = int(match.group(1))
        if 1 <= number <= n and number not in seen:
            seen.append(number)
    return seen or None


class KuakeIR(CblueTask):
    """KUAKE-IR reranking; value: CBLUE's MRR@10 (see the module docstring for the candidates).

    The reply ranks the numbered candidates ("3,1,2"); candidates it leaves out follow in
    first-stage order. A reply naming no candidate is unparseable and scores 0."""

    name = "KUAKE-IR"
    relative_path = "KUAKE-IR/KUAKE-IR_dev.tsv"
    metric = "mrr_at_10"
    definition = (
        "CBLUE: MRR@10 of the reranked first-stage candidates (0 when no relevant passage is in them)"
    )

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        root = Path(data_dir) / "KUAKE-IR"
        corpus_path = root / "corpus.tsv"
        corpus: dict[str, str] = {}
        for line, (pid, passage) in read_tsv(corpus_path, 2):
            if pid in corpus:
                raise InputError(f"duplicate passage id {pid!r}", source=str(corpus_path), line=line)
            corpus[pid] = passage
        query_path = root / "KUAKE-IR_dev_query.txt"
        queries: dict[str, str] = {}
        for line, (qid, query) in read_tsv(query_path, 2):
            if qid in queries:
                raise InputError(f"duplicate query id {qid!r}", source=str(query_path), line=line)
            queries[qid] = query
        qrels_path = root / "KUAKE-IR_dev.tsv"
        relevant: dict[str, list[str]] = defaultdict(list)
        for line, (qid, pid) in read_tsv(qrels_path, 2):
            if qid not in queries:
                raise InputError(
                    f"query id {qid!r} is not in {query_path.name}", source=str(qrels_path), line=line
                )
            if pid not in corpus:
                raise InputError(
                    f"passage id {pid!r} is not in corpus.tsv", source=str(qrels_path), line=line
                )
            relevant[qid].append(pid)
        candidates_path = root / "KUAKE-IR_dev_candidates.tsv"
        given: dict[str, list[str]] = {}
        if candidates_path.is_file():
            for line, (qid, joined) in read_tsv(candidates_path, 2):
                pids = [p.strip() for p in joined.split(",") if p.strip()]
                missing = [p for p in pids if p not in corpus]
                if missing:
                    raise InputError(
                        f"candidate passage {missing[0]!r} is not in corpus.tsv",
                        source=str(candidates_path),
                        line=line,
                    )
                given[qid] = pids[:CUTOFF]
        uncovered = [qid for qid in relevant if qid not in given]
        if uncovered and len(corpus) > LEXICAL_LIMIT:
            raise InputError(
                f"query {uncovered[0]!r} has no first-stage candidates and the corpus has {len(corpus)} passages "
                f"(the built-in bigram first stage serves at most {LEXICAL_LIMIT}); give every query a line in "
                f"{candidates_path.name} (qid<TAB>pid1,pid2,…)",
                source=str(candidates_path),
            )
        index = BigramIndex(corpus) if uncovered else None
        items = []
        for qid in relevant:
            pids = given[qid] if qid in given else index.top(queries[qid])
            record = {
                "qid": qid,
                "query": queries[qid],
                "relevant": relevant[qid],
                "candidates": [{"pid": p, "passage": corpus[p]} for p in pids],
            }
            items.append(EvalItem(qid, record))
        if not items:
            raise InputError(f"task {self.name} has no items", source=str(qrels_path))
        ensure_unique_ids(items, qrels_path)
        return items[:max_items] if max_items > 0 else items

    def prompt(self, item: EvalItem) -> str:
        listed = "\n".join(
            f"[{i}] {c['passage'][:PASSAGE_CHARS]}" for i, c in enumerate(item.record["candidates"], start=1)
        )
        return (
            f"医疗搜索：{item.record['query']}\n候选段落：\n{listed}\n"
            "问题：按与搜索词的相关程度从高到低给候选段落排序。\n"
            "说明：只输出段落编号，用逗号分隔，例如“2,1,3”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        pids = [c["pid"] for c in item.record["candidates"]]
        first = [i for i, p in enumerate(pids, 1) if p in item.record["relevant"]]
        return ",".join(str(i) for i in first + [i for i in range(1, len(pids) + 1) if i not in first])

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        pids = [c["pid"] for c in item.record["candidates"]]
        order = parse_ranking(reply, len(pids))
        if order is None:
            return None
        ranked = [pids[i - 1] for i in order] + [p for i, p in enumerate(pids, 1) if i not in order]
        return {"qid": item.record["qid"], "ranking": ranked[:CUTOFF]}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        rr = (
            reciprocal_rank(prediction["ranking"], set(item.record["relevant"]), CUTOFF)
            if prediction
            else 0.0
        )
        in_candidates = any(c["pid"] in item.record["relevant"] for c in item.record["candidates"])
        return ItemOutcome(
            id=item.id,
            score=rr,
            parsed=prediction is not None,
            stats={"rr": rr, "recall": float(in_candidates)},
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return mean([s["rr"] for s in stats])

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        return {"first_stage_recall_at_10": mean([o.stats["recall"] for o in outcomes])}
