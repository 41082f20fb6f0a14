"""Named-entity tasks: CMeEE (clinical text, 9 types, spans) and IMCS-V2-NER (dialogue BIO tags).

The model lists mentions per type; the parser places each listed mention at as many occurrences
as it was listed (longest first, outside longer mentions where possible) and writes the official
layout: CMeEE entities with an inclusive ``end_idx``, IMCS-V2-NER one BIO tag per character.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.errors import InputError
from medgo.eval.tasks.base import EvalItem, ItemOutcome, require_field
from medgo.eval.tasks.cblue.common import CblueTask, check_span
from medgo.eval.tasks.cblue.dialogues import IMCS_PATH, read_imcs
from medgo.eval.tasks.cblue.parsing import locate_mentions, parse_typed_mentions
from medgo.eval.tasks.cblue.scoring import item_f1, micro_prf, set_counts

#: CMeEE entity types and the Chinese name prompts use (PromptCBLUE's names).
CMEEE_TYPES: dict[str, str] = {
    "dis": "疾病",
    "sym": "临床表现",
    "pro": "医疗程序",
    "equ": "医疗设备",
    "dru": "药物",
    "ite": "医学检验项目",
    "bod": "身体部位",
    "dep": "医院科室",
    "mic": "微生物类",
}
#: Other names models use for the CMeEE types.
CMEEE_ALIASES: dict[str, tuple[str, ...]] = {
    "dis": ("疾病", "疾病名称"),
    "sym": ("临床表现", "症状", "体征"),
    "pro": ("医疗程序", "医疗操作", "操作", "手术", "检查"),
    "equ": ("医疗设备", "设备", "器械"),
    "dru": ("药物", "药品"),
    "ite": ("医学检验项目", "检验项目", "检验", "医学检验"),
    "bod": ("身体部位", "身体", "部位", "解剖部位"),
    "dep": ("医院科室", "科室"),
    "mic": ("微生物类", "微生物", "病原体"),
}

#: IMCS-V2-NER types (BIO suffixes) and their PromptCBLUE names.
IMCS_TYPES: dict[str, str] = {
    "Symptom": "症状",
    "Drug": "药物",
    "Drug_Category": "药物类别",
    "Medical_Examination": "医学检查检验",
    "Operation": "医疗操作",
}
IMCS_ALIASES: dict[str, tuple[str, ...]] = {
    "Symptom": ("症状",),
    "Drug": ("药物", "药品", "药品名", "药名"),
    "Drug_Category": ("药物类别", "药物类型", "药品类别"),
    "Medical_Examination": ("医学检查检验", "检查检验", "检查", "检验", "医学检查"),
    "Operation": ("医疗操作", "操作"),
}
BIO_TAGS: tuple[str, ...] = ("O", *(f"{p}-{t}" for t in IMCS_TYPES for p in ("B", "I")))


def entity_spans(entities: Sequence[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """CMeEE entities as the exact-match tuples CBLUE scores: ``(start_idx, end_idx, type)``."""
    return {(e["start_idx"], e["end_idx"], e["type"]) for e in entities}


def parse_entity_lines(reply: str) -> list[tuple[str, str]] | None:
    """CMeEE mentions by type code from a reply; ``[]`` for "none", None when unreadable."""
    return parse_typed_mentions(reply, CMEEE_ALIASES)


def locate_entities(text: str, mentions: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Listed mentions as CMeEE entities (inclusive ``end_idx``); see :func:`locate_mentions`."""
    spans, _ = locate_mentions(text, mentions)
    return [{"start_idx": s, "end_idx": e - 1, "type": t, "entity": text[s:e]} for s, e, t in spans]


def _typed_prompt(intro: str, type_names: Sequence[str], text: str) -> str:
    return (
        f"{intro}\n{text}\n"
        f"实体选项：{'，'.join(type_names)}\n"
        "说明：每种类型一行，格式为“类型实体：实体1，实体2”，实体必须是原文中的字符串，"
        "同一实体在原文出现几次就列几次；没有实体时回答“没有医学实体”。\n答："
    )


def _render_typed(by_type: dict[str, list[str]], names: dict[str, str]) -> str:
    if not any(by_type.values()):
        return "没有医学实体"
    lines = ["上述句子中的实体包含："]
    lines += [f"{names[code]}实体：{'，'.join(by_type[code])}" for code in names if by_type.get(code)]
    return "\n".join(lines)


class CMeEE(CblueTask):
    """Chinese medical NER (CBLUE CMeEE): spans with an inclusive ``end_idx`` and one of 9 types.

    Value: CBLUE's strict micro-F1 on ``(start_idx, end_idx, type)``. ``secondary`` has
    PromptCBLUE's micro-F1 on ``(mention, type)`` pairs, which ignores positions and also counts
    listed strings that are not in the text (dropped from the CBLUE spans, as they cannot be
    placed). A reply with no recognised type line is unparseable unless it says there are none.
    """

    name = "CMeEE"
    relative_path = "CMeEE/CMeEE_dev.json"
    metric = "micro_f1"
    definition = (
        "CBLUE: strict micro-F1 over (start_idx, end_idx, type); secondary promptcblue_f1: "
        "PromptCBLUE micro-F1 over (entity, type) pairs"
    )

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        text = require_field(record, "text", str, path, where)
        for j, entity in enumerate(require_field(record, "entities", list, path, where)):
            place = f"{where} entities[{j}]"
            start = require_field(entity, "start_idx", int, path, place)
            end = require_field(entity, "end_idx", int, path, place)
            etype = require_field(entity, "type", str, path, place)
            mention = require_field(entity, "entity", str, path, place)
            if etype not in CMEEE_TYPES:
                raise InputError(
                    f"{place}: unknown type {etype!r}; expected one of {', '.join(CMEEE_TYPES)}",
                    source=str(path),
                    field="type",
                )
            check_span(text, start, end, mention, path, place, inclusive=True)
        return record

    def prompt(self, item: EvalItem) -> str:
        return _typed_prompt("找出下面句子中的医学实体：", list(CMEEE_TYPES.values()), item.record["text"])

    def render_answer(self, item: EvalItem) -> str:
        by_type: dict[str, list[str]] = {}
        for e in sorted(item.record["entities"], key=lambda e: (e["start_idx"], e["end_idx"])):
            by_type.setdefault(e["type"], []).append(e["entity"])
        return _render_typed(by_type, CMEEE_TYPES)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        mentions = parse_entity_lines(reply)
        if mentions is None:
            return None
        text = item.record["text"]
        spans, unlocated = locate_mentions(text, mentions)
        prediction: dict[str, Any] = {
            "text": text,
            "entities": [
                {"start_idx": s, "end_idx": e - 1, "type": t, "entity": text[s:e]} for s, e, t in spans
            ],
        }
        if unlocated:
            prediction["unlocated"] = [{"type": t, "entity": m} for t, m in unlocated]
        return prediction

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        gold = entity_spans(item.record["entities"])
        gold_pairs = {(e["entity"], e["type"]) for e in item.record["entities"]}
        if prediction is None:
            pred: set = set()
            pred_pairs: set = set()
        else:
            pred = entity_spans(prediction["entities"])
            pred_pairs = {
                (e["entity"], e["type"]) for e in prediction["entities"] + prediction.get("unlocated", [])
            }
        stats = {**set_counts(gold, pred), **set_counts(gold_pairs, pred_pairs, "pc_")}
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        stats = [o.stats for o in outcomes]
        cblue, promptcblue = micro_prf(stats), micro_prf(stats, "pc_")
        return {
            "precision": cblue["precision"],
            "recall": cblue["recall"],
            "promptcblue_f1": promptcblue["f1"],
        }


def bio_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Entities of a BIO sequence as ``(start, end_inclusive, type)``: a B- starts one, I- of the
    same type extends it, anything else ends it (an I- without a B- starts nothing)."""
    spans: set[tuple[int, int, str]] = set()
    start, kind = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        if tag.startswith("I-") and start >= 0 and tag[2:] == kind:
            continue
        if start >= 0:
            spans.add((start, i - 1, kind))
            start, kind = -1, ""
        if tag.startswith("B-"):
            start, kind = i, tag[2:]
    return spans


def spans_to_bio(length: int, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """Non-overlapping ``(start, end_exclusive, type)`` spans as BIO tags; later overlaps are dropped."""
    tags = ["O"] * length
    for start, end, kind in sorted(spans):
        if all(t == "O" for t in tags[start:end]):
            tags[start] = f"B-{kind}"
            for i in range(start + 1, end):
                tags[i] = f"I-{kind}"
    return tags


class ImcsNER(CblueTask):
    """IMCS-V2-NER: entities in each utterance of a paediatric consultation, five types.

    One item per utterance (id ``<dialog_id>:<sentence_id>``). The prediction is the official
    submission value, a space-separated BIO string with one tag per character; value: entity-level
    micro-F1 over ``(start, end, type)`` as the IMCS-V2 scorer computes it. ``secondary`` has
    PromptCBLUE's ``(mention, type)`` micro-F1.
    """

    name = "IMCS-V2-NER"
    relative_path = IMCS_PATH
    metric = "micro_f1"
    definition = (
        "CBLUE (IMCS-V2 scorer): entity-level micro-F1 over BIO spans (start, end, type); "
        "secondary promptcblue_f1: PromptCBLUE micro-F1 over (entity, type) pairs"
    )

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        items = []
        for dialog_id, dialog in read_imcs(path, data, need={"BIO_label"}):
            for turn in dialog["dialogue"]:
                items.append(
                    EvalItem(
                        f"{dialog_id}:{turn['sentence_id']}",
                        {
                            "dialog_id": dialog_id,
                            "sentence_id": turn["sentence_id"],
                            "speaker": turn["speaker"],
                            "sentence": turn["sentence"],
                            "BIO_label": turn["BIO_label"],
                        },
                    )
                )
        return items

    def demo_group(self, item: EvalItem) -> str:
        return item.record["dialog_id"]

    def prompt(self, item: EvalItem) -> str:
        record = item.record
        return _typed_prompt(
            "找出下面医患对话语句中的医学实体：",
            list(IMCS_TYPES.values()),
            f"{record['speaker']}：{record['sentence']}",
        )

    def render_answer(self, item: EvalItem) -> str:
        sentence = item.record["sentence"]
        by_type: dict[str, list[str]] = {}
        for start, end, kind in sorted(bio_spans(item.record["BIO_label"].split())):
            by_type.setdefault(kind, []).append(sentence[start : end + 1])
        return _render_typed(by_type, IMCS_TYPES)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        mentions = parse_typed_mentions(reply, IMCS_ALIASES)
        if mentions is None:
            return None
        sentence = item.record["sentence"]
        spans, unlocated = locate_mentions(sentence, mentions, allow_overlap=False)
        prediction: dict[str, Any] = {
            "dialog_id": item.record["dialog_id"],
            "sentence_id": item.record["sentence_id"],
            "BIO_label": " ".join(spans_to_bio(len(sentence), spans)),
        }
        if unlocated:
            prediction["unlocated"] = [{"type": t, "entity": m} for t, m in unlocated]
        return prediction

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        sentence = item.record["sentence"]
        gold = bio_spans(item.record["BIO_label"].split())
        gold_pairs = {(sentence[s : e + 1], t) for s, e, t in gold}
        if prediction is None:
            pred: set = set()
            pred_pairs: set = set()
        else:
            pred = bio_spans(prediction["BIO_label"].split())
            pred_pairs = {(sentence[s : e + 1], t) for s, e, t in pred}
            pred_pairs |= {(u["entity"], u["type"]) for u in prediction.get("unlocated", [])}
        stats = {**set_counts(gold, pred), **set_counts(gold_pairs, pred_pairs, "pc_")}
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        stats = [o.stats for o in outcomes]
        cblue = micro_prf(stats)
        return {
            "precision": cblue["precision"],
            "recall": cblue["recall"],
            "promptcblue_f1": micro_prf(stats, "pc_")["f1"],
        }
