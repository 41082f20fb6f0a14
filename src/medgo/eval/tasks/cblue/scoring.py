"""The CBLUE and PromptCBLUE scorers' definitions, as pure functions over per-item records.

Each corpus-level metric is computed from per-item counts (so a paired bootstrap can resample
items and recompute it); each per-item metric is a mean of per-item scores. The definitions follow
the official scorers:

- classification: scikit-learn's ``f1_score``/``classification_report`` with ``zero_division=0``,
  averaged over the classes seen in the gold labels or the predictions (CBLUE's ``macro``;
  PromptCBLUE's ``macro avg``/``weighted avg``, where an unparseable answer first becomes the
  task's first label);
- extraction: micro precision/recall/F1 from summed true-positive, predicted and gold counts;
- KUAKE-IR: MRR@10;
- generation: ROUGE-L F (``rouge-chinese``) on text split the way ``transformers.BasicTokenizer``
  splits it (one token per CJK character, words and numbers kept whole, punctuation apart,
  lower-cased), an empty side scored as "无 。"; corpus BLEU (Papineni et al.) on the same tokens.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

from medgo.eval.metrics import prf_from_counts

#: What PromptCBLUE scores an empty prediction or reference as.
EMPTY_TEXT = "无 。"


def _seen_labels(gold: Sequence[Hashable], pred: Sequence[Hashable | None]) -> list[Hashable]:
    """Classes scikit-learn averages over: every label in gold or predictions (None is no class)."""
    return sorted({*gold, *(p for p in pred if p is not None)}, key=str)


def per_class_prf(
    gold: Sequence[Hashable], pred: Sequence[Hashable | None], labels: Sequence[Hashable] | None = None
) -> dict[Hashable, dict[str, float]]:
    """Precision, recall, F1 and support (gold count) per class; ``None`` predictions match nothing."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items, predictions {len(pred)}")
    classes = list(labels) if labels is not None else _seen_labels(gold, pred)
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        n_gold[g] += 1
        if p is not None:
            n_pred[p] += 1
            if p == g:
                tp[g] += 1
    return {c: {**prf_from_counts(tp[c], n_pred[c], n_gold[c]), "support": float(n_gold[c])} for c in classes}


def class_f1(gold: Sequence[Hashable], pred: Sequence[Hashable | None], average: str) -> float:
    """``f1_score(gold, pred, average=...)`` for ``macro`` or ``weighted`` over the seen classes.

    A ``None`` prediction (an unparseable answer under CBLUE's rule) is wrong for its gold class
    and adds no class of its own.
    """
    if not gold:
        raise ValueError(f"{average} F1 of zero items is undefined")
    table = per_class_prf(gold, pred)
    if average == "macro":
        return sum(row["f1"] for row in table.values()) / len(table)
    if average == "weighted":
        total = sum(row["support"] for row in table.values())
        return sum(row["f1"] * row["support"] for row in table.values()) / total if total else 0.0
    raise ValueError(f"unknown average {average!r}")


def promptcblue_class_f1(
    gold: Sequence[Hashable], pred: Sequence[Hashable | None], first_label: Hashable, average: str
) -> float:
    """PromptCBLUE's ``calc_cls_task_scores``: an unparseable answer becomes ``first_label``
    (``"非上述类型"`` for CTC/QIC/DAC), then ``classification_report``'s macro or weighted F1."""
    return class_f1(gold, [first_label if p is None else p for p in pred], average)


def micro_prf(stats: Sequence[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """Micro precision/recall/F1 from per-item ``{prefix}tp``, ``{prefix}pred``, ``{prefix}gold`` counts."""
    return prf_from_counts(
        sum(s[f"{prefix}tp"] for s in stats),
        sum(s[f"{prefix}pred"] for s in stats),
        sum(s[f"{prefix}gold"] for s in stats),
    )


def set_counts(gold: set, pred: set, prefix: str = "") -> dict[str, int]:
    """Per-item exact-match counts for :func:`micro_prf` (duplicates within an item count once)."""
    return {f"{prefix}tp": len(gold & pred), f"{prefix}pred": len(pred), f"{prefix}gold": len(gold)}


def item_f1(true_positives: int, predicted: int, gold: int) -> float:
    """Per-item F1 for ranking worst items; nothing to find and nothing found is perfect."""
    if predicted == 0 and gold == 0:
        return 1.0
    return prf_from_counts(true_positives, predicted, gold)["f1"]


def reciprocal_rank(ranking: Sequence[Hashable], relevant: set, k: int = 10) -> float:
    """1/rank of the first relevant entry within the top ``k``; 0 when none is there."""
    for rank, entry in enumerate(ranking[:k], start=1):
        if entry in relevant:
            return 1.0 / rank
    return 0.0


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of zero items is undefined")
    return sum(values) / len(values)


# --- text ------------------------------------------------------------------------------------

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def char_tokens(text: str) -> list[str]:
    """Tokens as ``transformers.BasicTokenizer(tokenize_chinese_chars=True)`` yields them.

    One token per CJK character and per punctuation mark; runs of other characters (Latin words,
    numbers) stay whole, lower-cased and without accents. PromptCBLUE scores MedDG and IMCS-V2-MRG
    on these tokens.
    """
    pieces: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if ch.isspace() or unicodedata.category(ch) == "Zs":
            pieces.append(" ")
        elif _is_cjk(cp):
            pieces.append(f" {ch} ")
        else:
            pieces.append(ch)
    tokens: list[str] = []
    for word in unicodedata.normalize("NFC", "".join(pieces)).split():
        word = "".join(
            c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn"
        )
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                    current = ""
                tokens.append(ch)
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def spaced(text: str) -> str:
    """``text`` as space-separated :func:`char_tokens`, or :data:`EMPTY_TEXT` when it has none."""
    joined = " ".join(char_tokens(text)).strip()
    return joined or EMPTY_TEXT


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F of one prediction against one reference, as PromptCBLUE computes it per item."""
    from rouge_chinese import Rouge

    return float(
        Rouge(metrics=["rouge-l"]).get_scores(spaced(prediction), spaced(reference))[0]["rouge-l"]["f"]
    )


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F of one pair (same tokens and empty rule as :func:`rouge_l`)."""
    from rouge_chinese import Rouge

    scores = Rouge().get_scores(spaced(prediction), spaced(reference))[0]
    return {name: float(scores[name]["f"]) for name in ("rouge-1", "rouge-2", "rouge-l")}


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu_counts(prediction: str, reference: str, max_n: int = 4) -> dict[str, Any]:
    """One item's contribution to corpus BLEU: clipped n-gram matches and totals per order, lengths."""
    hyp, ref = char_tokens(prediction), char_tokens(reference)
    matches, totals = [], []
    for n in range(1, max_n + 1):
        hyp_grams, ref_grams = _ngrams(hyp, n), _ngrams(ref, n)
        matches.append(sum(min(count, ref_grams[gram]) for gram, count in hyp_grams.items()))
        totals.append(max(0, len(hyp) - n + 1))
    return {"match": matches, "total": totals, "hyp_len": len(hyp), "ref_len": len(ref)}


def corpus_bleu(counts: Sequence[dict[str, Any]], max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` (uniform weights, brevity penalty, no smoothing) from :func:`bleu_counts`.

    Zero when any order up to ``max_n`` has no match, as in the unsmoothed definition.
    """
    if not counts:
        raise ValueError("BLEU of zero items is undefined")
    hyp_len = sum(c["hyp_len"] for c in counts)
    ref_len = sum(c["ref_len"] for c in counts)
    log_precision = 0.0
    for n in range(max_n):
        match = sum(c["match"][n] for c in counts)
        total = sum(c["total"][n] for c in counts)
        if match == 0 or total == 0:
            return 0.0
        log_precision += math.log(match / total) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)
