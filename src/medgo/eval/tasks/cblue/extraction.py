"""Extraction tasks scored by micro-F1 on exact tuples: CMeIE (relation triples), CHIP-CDEE
(clinical finding events), CHIP-CDN (diagnosis normalisation) and CMedCausal (causal, conditional
and hypernym relations between mentions).

Per-item ``stats`` hold true-positive, predicted and gold tuple counts (``tp``/``pred``/``gold``,
and ``pc_*`` where PromptCBLUE's matching differs), so micro-F1 can be recomputed on any subset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.errors import InputError
from medgo.eval.tasks.base import EvalItem, ItemOutcome, require_field
from medgo.eval.tasks.cblue.common import CblueTask, check_span, load_records, require_str_list
from medgo.eval.tasks.cblue.parsing import (
    clean_value,
    find_labels,
    locate_mentions,
    normalize_reply,
    says_none,
    split_values,
    strip_answer_prefix,
)
from medgo.eval.tasks.cblue.scoring import item_f1, micro_prf, set_counts


class TupleTask(CblueTask):
    """A task whose prediction is a set of tuples matched exactly; ``tuples`` gives them."""

    def tuples(self, record: dict[str, Any]) -> set:
        raise NotImplementedError

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        gold = self.tuples(item.record)
        pred = self.tuples(prediction) if prediction is not None else set()
        stats = set_counts(gold, pred)
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        prf = micro_prf([o.stats for o in outcomes])
        return {"precision": prf["precision"], "recall": prf["recall"]}


# --- CMeIE -----------------------------------------------------------------------------------

#: CMeIE's 44 predicates (the CBLUE schema).
CMEIE_PREDICATES: tuple[str, ...] = (
    "预防",
    "阶段",
    "就诊科室",
    "同义词",
    "辅助治疗",
    "化疗",
    "放射治疗",
    "手术治疗",
    "实验室检查",
    "影像学检查",
    "辅助检查",
    "组织学检查",
    "内窥镜检查",
    "筛查",
    "多发群体",
    "发病率",
    "发病年龄",
    "多发地区",
    "发病性别倾向",
    "死亡率",
    "多发季节",
    "传播途径",
    "并发症",
    "病理分型",
    "相关（导致）",
    "鉴别诊断",
    "相关（转化）",
    "相关（症状）",
    "临床表现",
    "治疗后症状",
    "侵及周围组织转移的症状",
    "病因",
    "高危因素",
    "风险评估因素",
    "病史",
    "遗传因素",
    "发病机制",
    "病理生理",
    "药物治疗",
    "发病部位",
    "转移部位",
    "外侵部位",
    "预后状况",
    "预后生存率",
)
_PREDICATE_NAMES = {
    **{p: p for p in CMEIE_PREDICATES},
    **{p.replace("（", "(").replace("）", ")"): p for p in CMEIE_PREDICATES if "（" in p},
}
_PRED_ALT = "|".join(re.escape(n) for n in sorted(_PREDICATE_NAMES, key=len, reverse=True))
_PRED_MARKER = re.compile(
    rf"(?:具有|存在)?[“\"]?(?P<a>{_PRED_ALT})[”\"]?\s*关系|关系(?:类型)?\s*(?:[:：]|为|是)\s*(?P<b>{_PRED_ALT})|^(?P<c>{_PRED_ALT})\s*[:：]"
)
_PAIR = re.compile(
    r"头实体\s*(?:[:：]|为|是)\s*(?P<h>[^，,；;。\n]+?)\s*[，,；;]?\s*(?:关系\s*(?:[:：]|为|是)\s*[^，,；;。\n]+?\s*[，,；;]\s*)?"
    r"尾实体\s*(?:[:：]|为|是)\s*(?P<t>[^，,；;。\n]+)"
)
_BRACKET_TRIPLE = re.compile(
    rf"[（(\[]\s*(?P<h>[^，,()（）\[\]\n]+?)\s*[，,]\s*(?P<p>{_PRED_ALT})\s*[，,]\s*(?P<t>[^()（）\[\]\n]+?)\s*[)）\]]"
)


def parse_triples(reply: str) -> list[tuple[str, str, str]] | None:
    """``(subject, predicate, object)`` triples from PromptCBLUE's "具有P关系的头尾实体对如下：头实体为A，
    尾实体为B。" lines, "P关系：头实体：A，尾实体：B" lines, "（A，P，B）" triples or JSON; ``[]`` for
    "none"; None when nothing can be read."""
    text = strip_answer_prefix(normalize_reply(reply))
    triples = _json_triples(text)
    if triples is not None:
        return triples
    triples = [
        (clean_value(m["h"]), _PREDICATE_NAMES[m["p"]], clean_value(m["t"]))
        for m in _BRACKET_TRIPLE.finditer(text)
    ]
    current: str | None = None
    for line in text.splitlines():
        markers = [
            (m.start(), _PREDICATE_NAMES[m.group("a") or m.group("b") or m.group("c")])
            for m in _PRED_MARKER.finditer(line.strip())
        ]
        pairs = list(_PAIR.finditer(line.strip()))
        for pair in pairs:
            inside = [p for pos, p in markers if pair.start() <= pos < pair.end()]
            before = [p for pos, p in markers if pos < pair.start()]
            after = [p for pos, p in markers if pos >= pair.end()]
            predicate = (inside or before[-1:] or ([current] if current else after[:1]) or [None])[-1]
            if predicate is not None:
                triples.append((clean_value(pair["h"]), predicate, clean_value(pair["t"])))
        if markers:
            current = markers[-1][1]
    if triples:
        return list(dict.fromkeys(triples))
    return [] if says_none(text) or re.search(r"实体对如下[:：]?\s*$", text) else None


def _json_triples(text: str) -> list[tuple[str, str, str]] | None:
    match = re.search(r"\[.*\]", text, re.S)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    triples = []
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict):
            subject = entry.get("subject") or entry.get("头实体")
            predicate = entry.get("predicate") or entry.get("关系")
            obj = entry.get("object") or entry.get("尾实体")
            if isinstance(obj, dict):
                obj = obj.get("@value")
        elif isinstance(entry, list) and len(entry) == 3:
            subject, predicate, obj = entry
        else:
            continue
        if subject and obj and str(predicate) in _PREDICATE_NAMES:
            triples.append(
                (clean_value(str(subject)), _PREDICATE_NAMES[str(predicate)], clean_value(str(obj)))
            )
    return triples or None


class CMeIE(TupleTask):
    """CMeIE: relation triples (subject, one of 44 predicates, object) in medical text.

    Value: micro-F1 over exact ``(subject, predicate, object)`` triples (CBLUE and PromptCBLUE agree)."""

    name = "CMeIE"
    relative_path = "CMeIE/CMeIE_dev.json"
    metric = "micro_f1"
    definition = "CBLUE (PromptCBLUE agrees): micro-F1 over exact (subject, predicate, object) triples"

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        return load_records(self, data_dir, max_items)

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        text = require_field(record, "text", str, path, where)
        spo_list = []
        for j, spo in enumerate(require_field(record, "spo_list", list, path, where)):
            place = f"{where} spo_list[{j}]"
            subject = require_field(spo, "subject", str, path, place)
            predicate = require_field(spo, "predicate", str, path, place)
            if predicate not in CMEIE_PREDICATES:
                raise InputError(
                    f"{place}: unknown predicate {predicate!r}", source=str(path), field="predicate"
                )
            obj = require_field(spo, "object", (dict, str), path, place)
            value = (
                require_field(obj, "@value", str, path, f"{place} object") if isinstance(obj, dict) else obj
            )
            spo_list.append({"subject": subject, "predicate": predicate, "object": {"@value": value}})
        return {"text": text, "spo_list": spo_list}

    def prompt(self, item: EvalItem) -> str:
        return (
            "找出下面句子中具有指定关系类型的头尾实体对：\n"
            f"{item.record['text']}\n"
            f"关系类型选项：{'，'.join(CMEIE_PREDICATES)}\n"
            "说明：每种关系一行，格式为“具有X关系的头尾实体对如下：头实体为A，尾实体为B。”；"
            "没有时回答“没有指定关系的实体对”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        by_predicate: dict[str, list[str]] = {}
        for spo in item.record["spo_list"]:
            by_predicate.setdefault(spo["predicate"], []).append(
                f"头实体为{spo['subject']}，尾实体为{spo['object']['@value']}。"
            )
        if not by_predicate:
            return "没有指定关系的实体对"
        return "\n".join(
            f"具有{p}关系的头尾实体对如下：{''.join(pairs)}" for p, pairs in by_predicate.items()
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        triples = parse_triples(reply)
        if triples is None:
            return None
        return {
            "text": item.record["text"],
            "spo_list": [{"subject": s, "predicate": p, "object": {"@value": o}} for s, p, o in triples],
        }

    def tuples(self, record: dict[str, Any]) -> set:
        return {(spo["subject"], spo["predicate"], spo["object"]["@value"]) for spo in record["spo_list"]}


# --- CHIP-CDEE -------------------------------------------------------------------------------

CDEE_TENDENCIES: tuple[str, ...] = ("", "不确定", "否定")
_TENDENCY_NAMES = {
    "不确定": "不确定",
    "可能": "不确定",
    "疑似": "不确定",
    "怀疑": "不确定",
    "待排": "不确定",
    "待查": "不确定",
    "否定": "否定",
    "阴性": "否定",
    "否认": "否定",
    "没有": "否定",
    "不存在": "否定",
    "未见": "否定",
    "否": "否定",
    "肯定": "",
    "存在": "",
    "阳性": "",
    "确定": "",
    "发生": "",
}
_EVENT_KEYS = {
    "主体词": "core_name",
    "发生状态": "tendency",
    "描述词": "character",
    "解剖部位": "anatomy_list",
}
_EVENT_KEY = re.compile(r"(主体词|发生状态|描述词|解剖部位)\s*[:：]")


def _tendency(value: str) -> str:
    value = clean_value(value)
    if not value or value in ("无", "空", "正常"):
        return ""
    found = {label for _, _, label in find_labels(value, _TENDENCY_NAMES, skip_negated=False)}
    return found.pop() if len(found) == 1 else ""


def parse_events(reply: str) -> list[dict[str, Any]] | None:
    """CHIP-CDEE events from lines "主体词：X；发生状态：否定；描述词：A，B；解剖部位：C" (fields in any
    order, missing ones empty) or JSON; ``[]`` for "none"; None when no event can be read."""
    text = strip_answer_prefix(normalize_reply(reply))
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        keys = list(_EVENT_KEY.finditer(line))
        if not any(k.group(1) == "主体词" for k in keys):
            continue
        fields: dict[str, str] = {}
        for i, key in enumerate(keys):
            end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
            fields.setdefault(_EVENT_KEYS[key.group(1)], line[key.end() : end])
        core = clean_value(fields.get("core_name", ""))
        if not core or core in ("无", "空"):
            continue
        events.append(
            {
                "core_name": core,
                "tendency": _tendency(fields.get("tendency", "")),
                "character": split_values(fields.get("character", "")),
                "anatomy_list": split_values(fields.get("anatomy_list", "")),
            }
        )
    if events:
        return events
    return [] if says_none(text) else None


class ChipCDEE(TupleTask):
    """CHIP-CDEE: clinical finding events (主体词, 发生状态, 描述词, 解剖部位) in a medical history.

    Value: micro-F1 over exact events, PromptCBLUE's definition (CBLUE publishes no scorer code
    for this task). An event matches when all four attributes match; the 描述词 and 解剖部位 lists
    are compared as sets (PromptCBLUE compares them in the order generated, which penalises a
    correct event listed in another order)."""

    name = "CHIP-CDEE"
    relative_path = "CHIP-CDEE/CHIP-CDEE_dev.json"
    metric = "micro_f1"
    definition = (
        "PromptCBLUE: micro-F1 over exact events (core_name, tendency, character, anatomy_list), "
        "lists compared as sets"
    )

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        return load_records(self, data_dir, max_items)

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        text = require_field(record, "text", str, path, where)
        events = []
        for j, event in enumerate(require_field(record, "event", list, path, where)):
            place = f"{where} event[{j}]"
            core = require_field(event, "core_name", str, path, place)
            tendency = require_field(event, "tendency", str, path, place)
            if tendency not in CDEE_TENDENCIES:
                raise InputError(
                    f"{place}: tendency must be '', '不确定' or '否定', got {tendency!r}",
                    source=str(path),
                    field="tendency",
                )
            events.append(
                {
                    "core_name": core,
                    "tendency": tendency,
                    "character": require_str_list(event, "character", path, place),
                    "anatomy_list": require_str_list(event, "anatomy_list", path, place),
                }
            )
        return {"id": record.get("id"), "text": text, "event": events}

    def prompt(self, item: EvalItem) -> str:
        return (
            f"{item.record['text']}\n问题：句子中的临床发现事件及其属性是什么？\n"
            "说明：临床发现事件由主体词，发生状态，描述词和解剖部位组成。每个事件一行，格式为"
            "“主体词：…；发生状态：…；描述词：…；解剖部位：…”；发生状态只填“否定”、“不确定”或留空，"
            "多个描述词或解剖部位用“，”分隔；没有事件时回答“没有临床发现事件”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        if not item.record["event"]:
            return "没有临床发现事件"
        return "上述句子中的临床发现事件如下：\n" + "\n".join(
            f"主体词：{e['core_name']}；发生状态：{e['tendency']}；"
            f"描述词：{'，'.join(e['character'])}；解剖部位：{'，'.join(e['anatomy_list'])}"
            for e in item.record["event"]
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        events = parse_events(reply)
        return None if events is None else {"text": item.record["text"], "event": events}

    def tuples(self, record: dict[str, Any]) -> set:
        return {
            (
                e["core_name"],
                e["tendency"],
                tuple(sorted(set(e["character"]))),
                tuple(sorted(set(e["anatomy_list"]))),
            )
            for e in record["event"]
        }


# --- CHIP-CDN --------------------------------------------------------------------------------

_CDN_LEAD = re.compile(r"^[^\n:：]*(?:标准词|标准诊断|标准名称|归一化|标准化|ICD)[^\n:：]*[:：]")


def parse_normalized_terms(reply: str) -> list[str] | None:
    """Standard terms from "a##b", "a，b" or one per line (an introductory "标准词：" dropped);
    ``[]`` for "none"; None for an empty reply."""
    text = _CDN_LEAD.sub("", strip_answer_prefix(normalize_reply(reply))).strip()
    if not text:
        return None
    if says_none(text):
        return []
    terms = [t for part in text.split("##") for t in split_values(part)]
    return list(dict.fromkeys(terms)) if terms else None


class ChipCDN(TupleTask):
    """CHIP-CDN: the ICD-10 (北京临床版) standard names of a written diagnosis, joined by "##".

    Generated without a candidate list (the ICD vocabulary is not part of the eval data), so
    only exact standard names count. Value: CBLUE's micro-F1 over (diagnosis, standard name)
    pairs."""

    name = "CHIP-CDN"
    relative_path = "CHIP-CDN/CHIP-CDN_dev.json"
    metric = "micro_f1"
    definition = "CBLUE: micro-F1 over exact (diagnosis text, standard term) pairs"

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        require_field(record, "text", str, path, where)
        require_field(record, "normalized_result", str, path, where)
        return record

    def prompt(self, item: EvalItem) -> str:
        return (
            f"诊断原词：{item.record['text']}\n"
            "给出它对应的ICD-10（北京临床版）诊断标准词，可能有多个，多个时用“##”分隔。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        return item.record["normalized_result"] or "无"

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        terms = parse_normalized_terms(reply)
        return None if terms is None else {"text": item.record["text"], "normalized_result": "##".join(terms)}

    def tuples(self, record: dict[str, Any]) -> set:
        return {t.strip() for t in record["normalized_result"].split("##") if t.strip()}


# --- CMedCausal ------------------------------------------------------------------------------

CAUSAL_RELATIONS = {1: "因果关系", 2: "条件关系", 3: "上下位关系"}
_CAUSAL_HEADER = re.compile(r"(因果关系|条件关系|上下位关系)")
_CAUSAL_SIMPLE = re.compile(
    r"头实体\s*[:：]\s*(?P<h>[^；;\n]+?)\s*[；;，,]\s*尾实体\s*[:：]\s*(?P<t>[^；;\n]+)"
)
_CAUSAL_CONDITION = re.compile(
    r"头实体\s*[:：]\s*(?P<c>[^；;\n]+?)\s*[；;，,]\s*尾三元组\s*[:：]\s*[（(]?\s*头实体\s*[:：]\s*(?P<h>[^；;\n]+?)"
    r"\s*[；;，,]\s*尾实体\s*[:：]\s*(?P<t>[^；;\n)）]+?)\s*(?:[；;，,]\s*关系\s*[:：]\s*[^；;\n)）]*)?[)）]?\s*$"
)


def parse_causal(reply: str) -> list[tuple] | None:
    """CMedCausal relations from PromptCBLUE's shape: a header per kind ("因果关系三元组如下：") and
    lines "头实体：A；尾实体：B" or, for conditions, "头实体：C；尾三元组：头实体：A；尾实体：B；关系：因果关系".
    Returns ``(head, 1|3, tail)`` and ``(condition, 2, (head, 1, tail))`` mention tuples; ``[]`` for
    "none"; None when nothing can be read."""
    text = strip_answer_prefix(normalize_reply(reply))
    relations: list[tuple] = []
    current: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        header = _CAUSAL_HEADER.search(line)
        if header and "头实体" not in line[: header.start()]:
            current = {v: k for k, v in CAUSAL_RELATIONS.items()}[header.group(1)]
            line = line[header.end() :]
        condition = _CAUSAL_CONDITION.search(line)
        if condition:
            relations.append(
                (
                    clean_value(condition["c"]),
                    2,
                    (clean_value(condition["h"]), 1, clean_value(condition["t"])),
                )
            )
            continue
        simple = _CAUSAL_SIMPLE.search(line)
        if simple and current in (1, 3):
            relations.append((clean_value(simple["h"]), current, clean_value(simple["t"])))
    if relations:
        return list(dict.fromkeys(relations))
    return [] if says_none(text) else None


def _mention(node: Any, path: Path, place: str, text: str) -> dict[str, Any]:
    mention = require_field(node, "mention", str, path, place)
    start = require_field(node, "start_idx", int, path, place)
    end = require_field(node, "end_idx", int, path, place)
    check_span(text, start, end, mention, path, place, inclusive=False)
    return {"mention": mention, "start_idx": start, "end_idx": end}


class CMedCausal(CblueTask):
    """CMedCausal: causal (1), conditional (2: a condition on a causal pair) and hypernym (3)
    relations between mentions; ``end_idx`` is exclusive.

    Predicted mentions are placed in the text (first free occurrence) to fill the official
    layout. Value: micro-F1 over relations matched on mention spans (the submission layout's
    ``start_idx``/``end_idx``); ``secondary`` has PromptCBLUE's micro-F1 on mention strings."""

    name = "CMedCausal"
    relative_path = "CMedCausal/CMedCausal_dev.json"
    metric = "micro_f1"
    definition = (
        "CBLUE submission layout: micro-F1 over relations matched on mention spans; secondary "
        "promptcblue_f1: PromptCBLUE micro-F1 over relations matched on mention strings"
    )

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        return load_records(self, data_dir, max_items)

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        text = require_field(record, "text", str, path, where)
        relations = []
        for j, rel in enumerate(require_field(record, "relation_of_mention", list, path, where)):
            place = f"{where} relation_of_mention[{j}]"
            kind = require_field(rel, "relation", int, path, place)
            if kind not in CAUSAL_RELATIONS:
                raise InputError(
                    f"{place}: relation must be 1, 2 or 3, got {kind}", source=str(path), field="relation"
                )
            head = _mention(require_field(rel, "head", dict, path, place), path, f"{place} head", text)
            tail_node = require_field(rel, "tail", dict, path, place)
            if kind == 2:
                inner = f"{place} tail"
                if require_field(tail_node, "relation", int, path, inner) != 1:
                    raise InputError(
                        f"{inner}: a condition applies to a causal relation (1)",
                        source=str(path),
                        field="relation",
                    )
                tail = {
                    "type": "relation",
                    "head": _mention(
                        require_field(tail_node, "head", dict, path, inner), path, f"{inner} head", text
                    ),
                    "relation": 1,
                    "tail": _mention(
                        require_field(tail_node, "tail", dict, path, inner), path, f"{inner} tail", text
                    ),
                }
            else:
                tail = {"type": "mention", **_mention(tail_node, path, f"{place} tail", text)}
            relations.append({"head": head, "relation": kind, "tail": tail})
        return {"text": text, "relation_of_mention": relations}

    def prompt(self, item: EvalItem) -> str:
        return (
            f"{item.record['text']}\n"
            "问题：找出上述文本中的因果关系、条件关系和上下位关系三元组。条件关系的尾部是一个因果关系三元组。\n"
            "说明：按关系类型分段，先写“因果关系三元组如下：”等标题，每个三元组一行，格式为"
            "“头实体：A；尾实体：B”，条件关系写作“头实体：C；尾三元组：头实体：A；尾实体：B；关系：因果关系”；"
            "没有时回答“给定的文本没有指定关系的三元组”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        lines: list[str] = []
        for kind, title in CAUSAL_RELATIONS.items():
            rels = [r for r in item.record["relation_of_mention"] if r["relation"] == kind]
            if not rels:
                continue
            lines.append(f"{title}三元组如下：")
            for r in rels:
                if kind == 2:
                    inner = r["tail"]
                    lines.append(
                        f"头实体：{r['head']['mention']}；尾三元组：头实体：{inner['head']['mention']}；"
                        f"尾实体：{inner['tail']['mention']}；关系：因果关系"
                    )
                else:
                    lines.append(f"头实体：{r['head']['mention']}；尾实体：{r['tail']['mention']}")
        return "\n".join(lines) or "给定的文本没有指定关系的三元组"

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        relations = parse_causal(reply)
        if relations is None:
            return None
        text = item.record["text"]
        mentions: list[str] = []
        for head, _, tail in relations:
            mentions += [head, *(tail[::2] if isinstance(tail, tuple) else [tail])]
        spans, _ = locate_mentions(text, [("m", m) for m in dict.fromkeys(mentions)])
        place = {text[s:e]: {"mention": text[s:e], "start_idx": s, "end_idx": e} for s, e, _ in spans}
        placed, unplaced = [], []
        for head, kind, tail in relations:
            names = [head, *(tail[::2] if isinstance(tail, tuple) else [tail])]
            if not all(n in place for n in names):
                unplaced.append(
                    {"head": head, "relation": kind, "tail": list(tail) if isinstance(tail, tuple) else tail}
                )
                continue
            if kind == 2:
                node = {"type": "relation", "head": place[tail[0]], "relation": 1, "tail": place[tail[2]]}
            else:
                node = {"type": "mention", **place[tail]}
            placed.append({"head": place[head], "relation": kind, "tail": node})
        prediction: dict[str, Any] = {"text": text, "relation_of_mention": placed}
        if unplaced:
            prediction["unlocated"] = unplaced
        return prediction

    @staticmethod
    def span_tuples(relations: Sequence[dict[str, Any]]) -> set:
        def span(node: dict[str, Any]) -> tuple[int, int]:
            return node["start_idx"], node["end_idx"]

        out = set()
        for r in relations:
            tail = r["tail"]
            inner = (span(tail["head"]), 1, span(tail["tail"])) if r["relation"] == 2 else span(tail)
            out.add((span(r["head"]), r["relation"], inner))
        return out

    @staticmethod
    def mention_tuples(relations: Sequence[dict[str, Any]]) -> set:
        out = set()
        for r in relations:
            tail = r["tail"]
            inner = (
                (tail["head"]["mention"], 1, tail["tail"]["mention"])
                if r["relation"] == 2
                else tail["mention"]
            )
            out.add((r["head"]["mention"], r["relation"], inner))
        return out

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        gold = item.record["relation_of_mention"]
        pred = prediction["relation_of_mention"] if prediction is not None else []
        pred_mentions = self.mention_tuples(pred)
        for extra in (prediction or {}).get("unlocated", []):
            tail = tuple(extra["tail"]) if isinstance(extra["tail"], list) else extra["tail"]
            pred_mentions.add((extra["head"], extra["relation"], tail))
        stats = {
            **set_counts(self.span_tuples(gold), self.span_tuples(pred)),
            **set_counts(self.mention_tuples(gold), pred_mentions, "pc_"),
        }
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        return {"promptcblue_f1": micro_prf([o.stats for o in outcomes], "pc_")["f1"]}
