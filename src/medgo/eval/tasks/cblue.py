"""CBLUE tasks, asked generatively and scored by CBLUE's leaderboard metrics.

Files are the raw CBLUE releases (JSON arrays of records) under ``<data_dir>/<TASK>/``. Prompts
follow PromptCBLUE's style (Chinese instruction, options listed, answer in a fixed shape);
parsers turn the generated text back into the raw layout so predictions could be submitted as
they are. Metrics: CMeEE micro-F1 on exact ``(start_idx, end_idx, type)`` spans; KUAKE-QIC
accuracy; CHIP-STS macro-F1 over the labels "0"/"1" (CBLUE's definition; PromptCBLUE's
weighted F1 is a different number).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.errors import InputError
from medgo.eval.metrics import accuracy, macro_f1, prf_from_counts
from medgo.eval.tasks.base import (
    EvalItem,
    GenerativeTask,
    ItemOutcome,
    require_field,
)

#: CMeEE entity types and the Chinese names the prompt and parser use.
CMEEE_TYPES: dict[str, str] = {
    "dis": "疾病",
    "sym": "临床表现",
    "pro": "医疗程序",
    "equ": "医疗设备",
    "dru": "药物",
    "ite": "医学检验项目",
    "bod": "身体",
    "dep": "科室",
    "mic": "微生物类",
}
_CMEEE_TYPE_BY_NAME = {**{name: code for code, name in CMEEE_TYPES.items()}, **{c: c for c in CMEEE_TYPES}}

#: KUAKE-QIC's 11 intent labels, in CBLUE's order.
QIC_LABELS: tuple[str, ...] = (
    "病情诊断",
    "病因分析",
    "治疗方案",
    "就医建议",
    "指标解读",
    "疾病表述",
    "后果表述",
    "注意事项",
    "功效作用",
    "医疗费用",
    "其他",
)

STS_LABELS: tuple[str, ...] = ("0", "1")

_ANSWER_PREFIX = re.compile(r"^\s*(答案|回答|答|类别|意图类别|意图)\s*[:：]\s*")
_MENTION_SEPARATORS = re.compile(r"[，,、；;]")
_LIST_BULLET = re.compile(r"^[\s\-*•\d.、)）]+")
_TYPE_SEPARATOR = re.compile(r"[：:]")
_NO_ENTITY_REPLIES = {"无", "没有", "无实体", "没有实体", "不存在"}


def _strip_answer_prefix(reply: str) -> str:
    return _ANSWER_PREFIX.sub("", reply.strip()).strip()


def _item_f1(true_positives: int, predicted: int, gold: int) -> float:
    """Per-item F1 for ranking; an item with nothing to find and nothing found is perfect."""
    if predicted == 0 and gold == 0:
        return 1.0
    return prf_from_counts(true_positives, predicted, gold)["f1"]


class CMeEE(GenerativeTask):
    """Chinese medical NER (CBLUE CMeEE): spans with an inclusive ``end_idx`` and one of 9 types.

    The model lists entity strings per type ("疾病：高血压，糖尿病", one line per type). A listed
    string is placed at *every* position where it occurs in the text, because CMeEE annotates
    every mention and a list of strings carries no positions; a string that does not occur in
    the text is dropped (it cannot match a gold span). Lines with an unknown type are ignored.
    A reply with no recognised type line is unparseable unless it says there are none ("无");
    it predicts no entities, so it loses recall (and costs nothing on an item without gold
    entities, as micro-F1 has no other way to count it) and ranks among the worst items.
    """

    name = "CMeEE"
    relative_path = "CMeEE/CMeEE_dev.json"
    metric = "micro_f1"

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        text = require_field(record, "text", str, path, where)
        for j, entity in enumerate(require_field(record, "entities", list, path, where)):
            self._check_entity(entity, text, path, f"{where} entities[{j}]")
        return record

    @staticmethod
    def _check_entity(entity: Any, text: str, path: Path, where: str) -> None:
        start = require_field(entity, "start_idx", int, path, where)
        end = require_field(entity, "end_idx", int, path, where)
        etype = require_field(entity, "type", str, path, where)
        mention = require_field(entity, "entity", str, path, where)
        if etype not in CMEEE_TYPES:
            raise InputError(
                f"{where}: unknown type {etype!r}; expected one of {', '.join(CMEEE_TYPES)}",
                source=str(path),
                field="type",
            )
        if not 0 <= start <= end < len(text):
            raise InputError(
                f"{where}: span [{start}, {end}] is outside the text (length {len(text)})",
                source=str(path),
                field="end_idx",
            )
        if text[start : end + 1] != mention:
            raise InputError(
                f"{where}: text[start_idx:end_idx + 1] differs from 'entity' (end_idx is inclusive in CMeEE)",
                source=str(path),
                field="end_idx",
            )

    def prompt(self, item: EvalItem) -> str:
        return (
            "找出下面句子中的医学实体。实体类型：" + "，".join(CMEEE_TYPES.values()) + "。\n"
            "每种类型一行，格式为“实体类型：实体1，实体2”；没有实体时回答“无”。\n"
            f"句子：{item.record['text']}\n答案："
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        mentions = parse_entity_lines(reply)
        if mentions is None:
            return None
        return {"text": item.record["text"], "entities": locate_entities(item.record["text"], mentions)}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        gold = entity_spans(item.record["entities"])
        pred = entity_spans(prediction["entities"]) if prediction is not None else set()
        tp = len(gold & pred)
        score = _item_f1(tp, len(pred), len(gold)) if prediction is not None else 0.0
        return ItemOutcome(
            id=item.id,
            score=score,
            parsed=prediction is not None,
            stats={"tp": tp, "pred": len(pred), "gold": len(gold)},
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return self._prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        prf = self._prf([o.stats for o in outcomes])
        return {"precision": prf["precision"], "recall": prf["recall"]}

    @staticmethod
    def _prf(stats: Sequence[dict[str, Any]]) -> dict[str, float]:
        return prf_from_counts(
            sum(s["tp"] for s in stats), sum(s["pred"] for s in stats), sum(s["gold"] for s in stats)
        )


def entity_spans(entities: Sequence[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """CMeEE entities as the exact-match tuples CBLUE scores: ``(start_idx, end_idx, type)``."""
    return {(e["start_idx"], e["end_idx"], e["type"]) for e in entities}


def parse_entity_lines(reply: str) -> list[tuple[str, str]] | None:
    """``"疾病：高血压，糖尿病"`` lines → ``[("dis", "高血压"), ("dis", "糖尿病")]``.

    Returns an empty list for a "none" answer and None when no line names a known type.
    """
    mentions: list[tuple[str, str]] = []
    recognised = False
    for line in reply.splitlines():
        parts = _TYPE_SEPARATOR.split(_LIST_BULLET.sub("", line), maxsplit=1)
        etype = _CMEEE_TYPE_BY_NAME.get(parts[0].strip()) if len(parts) == 2 else None
        if etype is None:
            continue
        rest = parts[1]
        recognised = True
        for mention in _MENTION_SEPARATORS.split(rest):
            mention = mention.strip().strip("“”\"'。.")
            if mention and mention not in _NO_ENTITY_REPLIES:
                mentions.append((etype, mention))
    if recognised:
        return mentions
    return [] if _strip_answer_prefix(reply).rstrip("。.") in _NO_ENTITY_REPLIES else None


def locate_entities(text: str, mentions: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every occurrence of each mention in ``text`` as a CMeEE entity (inclusive ``end_idx``)."""
    found: set[tuple[int, int, str]] = set()
    for etype, mention in mentions:
        start = text.find(mention)
        while start != -1:
            found.add((start, start + len(mention) - 1, etype))
            start = text.find(mention, start + 1)
    return [{"start_idx": s, "end_idx": e, "type": t, "entity": text[s : e + 1]} for s, e, t in sorted(found)]


class KuakeQIC(GenerativeTask):
    """Medical search query intent (CBLUE KUAKE-QIC), 11 labels, accuracy.

    The answer is the label the reply starts with, or the only label it mentions; a reply
    naming none or several is unparseable and counts as wrong.
    """

    name = "KUAKE-QIC"
    relative_path = "KUAKE-QIC/KUAKE-QIC_dev.json"
    metric = "accuracy"

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        require_field(record, "query", str, path, where)
        label = require_field(record, "label", str, path, where)
        if label not in QIC_LABELS:
            raise InputError(
                f"{where}: unknown label {label!r}; expected one of {', '.join(QIC_LABELS)}",
                source=str(path),
                field="label",
            )
        return record

    def prompt(self, item: EvalItem) -> str:
        return (
            "判断下面这条医疗搜索词的意图类别，从以下选项中选择一个：" + "，".join(QIC_LABELS) + "。\n"
            f"搜索词：{item.record['query']}\n答案："
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        label = parse_single_label(reply, QIC_LABELS)
        return None if label is None else {"query": item.record["query"], "label": label}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        correct = prediction is not None and prediction["label"] == item.record["label"]
        return ItemOutcome(
            id=item.id, score=float(correct), parsed=prediction is not None, stats={"correct": correct}
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return accuracy([s["correct"] for s in stats])


def parse_single_label(reply: str, labels: Sequence[str]) -> str | None:
    """The label ``reply`` starts with, else the only label it contains, else None."""
    answer = _strip_answer_prefix(reply)
    for label in labels:
        if answer.startswith(label):
            return label
    mentioned = [label for label in labels if label in answer]
    return mentioned[0] if len(mentioned) == 1 else None


class ChipSTS(GenerativeTask):
    """Medical question similarity (CBLUE CHIP-STS): label "1" same meaning, "0" not; macro-F1.

    The reply is read as "0" when it starts with 否/不 or says 不同/不相同/不一样, as "1" when it
    starts with 是 or says 相同/一样 (checked after the negations), and digits 0/1 are taken as
    they are. Anything else is unparseable: wrong for its gold class and a prediction of neither
    class, so it lowers recall without inventing a label.
    """

    name = "CHIP-STS"
    relative_path = "CHIP-STS/CHIP-STS_dev.json"
    metric = "macro_f1"

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        require_field(record, "text1", str, path, where)
        require_field(record, "text2", str, path, where)
        label = require_field(record, "label", (str, int), path, where)
        if str(label) not in STS_LABELS:
            raise InputError(
                f'{where}: label must be "0" or "1", got {label!r}', source=str(path), field="label"
            )
        return {**record, "label": str(label)}

    def prompt(self, item: EvalItem) -> str:
        return (
            "下面两个医疗问句表达的意思是否相同？只回答“是”或“否”。\n"
            f"问句1：{item.record['text1']}\n问句2：{item.record['text2']}\n答案："
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        label = parse_same_meaning(reply)
        if label is None:
            return None
        return {
            "text1": item.record["text1"],
            "text2": item.record["text2"],
            "label": label,
            **({"category": item.record["category"]} if "category" in item.record else {}),
        }

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        pred = prediction["label"] if prediction is not None else None
        gold = item.record["label"]
        return ItemOutcome(
            id=item.id, score=float(pred == gold), parsed=pred is not None, stats={"gold": gold, "pred": pred}
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return macro_f1([s["gold"] for s in stats], [s["pred"] for s in stats], labels=STS_LABELS)


def parse_same_meaning(reply: str) -> str | None:
    """ "是"/"否"-style replies → "1"/"0"; None when the reply commits to neither."""
    answer = _strip_answer_prefix(reply)
    if answer[:1] in ("0", "1"):
        return answer[0]
    if answer.startswith(("否", "不")) or any(neg in answer for neg in ("不同", "不相同", "不一样")):
        return "0"
    if answer.startswith("是") or any(pos in answer for pos in ("相同", "一样")):
        return "1"
    return None
