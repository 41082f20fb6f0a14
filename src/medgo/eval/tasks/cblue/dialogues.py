"""Dialogue tasks: IMCS-V2-SR (symptom status per utterance and per dialogue), IMCS-V2-MRG (medical
report generation), CHIP-MDCFNPC (status of given clinical findings) and MedDG (next doctor turn),
plus the IMCS-V2 reader the other IMCS-V2 tasks share.

IMCS-V2's published layout is one JSON object ``{dialog_id: {"self_report", "dialogue": [{
"sentence_id", "speaker", "sentence", "dialogue_act", "BIO_label", "symptom_norm",
"symptom_type", "local_implicit_info"}], "report": [two reports], "implicit_info": {"Symptom":
{...}}}}``; the four IMCS-V2 tasks read the same file and validate the fields they use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgo.config import DEFAULT_SYSTEM_PROMPT
from medgo.errors import InputError
from medgo.eval.backends import Backend, RequestsFailed
from medgo.eval.tasks.base import EvalItem, ItemOutcome, log_parse_failures, require_field
from medgo.eval.tasks.cblue.common import (
    CblueResult,
    CblueTask,
    load_records,
    require_str_list,
)
from medgo.eval.tasks.cblue.parsing import (
    clean_value,
    find_labels,
    normalize_reply,
    says_none,
    split_values,
    strip_answer_prefix,
    strip_list_mark,
)
from medgo.eval.tasks.cblue.scoring import (
    bleu_counts,
    corpus_bleu,
    item_f1,
    micro_prf,
    rouge_l,
    set_counts,
)

IMCS_PATH = "IMCS-V2/IMCS-V2_dev.json"
IMCS_ENTITY_TYPES: tuple[str, ...] = ("Symptom", "Drug", "Drug_Category", "Medical_Examination", "Operation")
IMCS_DIALOGUE_ACTS: tuple[str, ...] = (
    "Request-Symptom",
    "Inform-Symptom",
    "Request-Etiology",
    "Inform-Etiology",
    "Request-Basic_Information",
    "Inform-Basic_Information",
    "Request-Existing_Examination_and_Treatment",
    "Inform-Existing_Examination_and_Treatment",
    "Request-Drug_Recommendation",
    "Inform-Drug_Recommendation",
    "Request-Medical_Advice",
    "Inform-Medical_Advice",
    "Request-Precautions",
    "Inform-Precautions",
    "Diagnose",
    "Other",
)
#: IMCS-V2-SR symptom labels: "1" has it, "0" does not, "2" cannot tell.
SYMPTOM_LABELS: tuple[str, ...] = ("0", "1", "2")
#: When a symptom gets several labels in one utterance or dialogue, the official rule keeps one.
SYMPTOM_PRIORITY = {"1": 2, "0": 1, "2": 0}
REPORT_SECTIONS: tuple[str, ...] = ("主诉", "现病史", "辅助检查", "既往史", "诊断", "建议")
#: ASCII names of the sections for metric keys (KFP metric names, dashboards).
SECTION_KEYS: dict[str, str] = {
    "主诉": "chief_complaint",
    "现病史": "present_illness",
    "辅助检查": "auxiliary_examination",
    "既往史": "past_history",
    "诊断": "diagnosis",
    "建议": "suggestion",
}


def read_imcs(path: Path, data: Any, need: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Validated ``(dialog_id, dialogue)`` pairs; ``need`` names the annotations a task reads:
    ``BIO_label``, ``dialogue_act``, ``symptoms`` (utterance and dialogue symptom labels) or
    ``report`` (the reference reports and the self-report)."""
    if not isinstance(data, dict):
        raise InputError(
            f"expected a JSON object mapping dialog ids to dialogues, got {type(data).__name__}",
            source=str(path),
        )
    dialogs = []
    for dialog_id, dialog in data.items():
        place = f"dialogue {dialog_id!r}"
        turns = require_field(dialog, "dialogue", list, path, place)
        checked = []
        for k, turn in enumerate(turns):
            here = f"{place} turn {k}"
            sentence_id = require_field(turn, "sentence_id", (str, int), path, here)
            speaker = require_field(turn, "speaker", str, path, here)
            sentence = require_field(turn, "sentence", str, path, here)
            entry: dict[str, Any] = {
                "sentence_id": str(sentence_id),
                "speaker": speaker,
                "sentence": sentence,
            }
            if "BIO_label" in need:
                entry["BIO_label"] = _check_bio(turn, sentence, path, here)
            if "dialogue_act" in need:
                act = require_field(turn, "dialogue_act", str, path, here)
                if act not in IMCS_DIALOGUE_ACTS:
                    raise InputError(
                        f"{here}: unknown dialogue act {act!r}", source=str(path), field="dialogue_act"
                    )
                entry["dialogue_act"] = act
            if "symptoms" in need:
                entry["symptoms"] = _utterance_symptoms(turn, path, here)
            checked.append(entry)
        if not checked:
            raise InputError(f"{place}: the dialogue has no turns", source=str(path), field="dialogue")
        record: dict[str, Any] = {"dialogue": checked}
        if "symptoms" in need:
            implicit = require_field(dialog, "implicit_info", dict, path, place)
            record["global"] = _symptom_map(
                require_field(implicit, "Symptom", dict, path, place), path, place
            )
        if "report" in need:
            record["self_report"] = _self_report(dialog, path, place)
            reports = require_field(dialog, "report", list, path, place)
            if not reports:
                raise InputError(f"{place}: no reference report", source=str(path), field="report")
            record["report"] = [_check_report(r, path, f"{place} report[{j}]") for j, r in enumerate(reports)]
        dialogs.append((str(dialog_id), record))
    return dialogs


def _check_bio(turn: dict, sentence: str, path: Path, place: str) -> str:
    bio = require_field(turn, "BIO_label", str, path, place)
    tags = bio.split()
    if len(tags) != len(sentence):
        raise InputError(
            f"{place}: {len(tags)} BIO tags for {len(sentence)} characters",
            source=str(path),
            field="BIO_label",
        )
    for tag in tags:
        if tag != "O" and not (tag[:2] in ("B-", "I-") and tag[2:] in IMCS_ENTITY_TYPES):
            raise InputError(f"{place}: unknown BIO tag {tag!r}", source=str(path), field="BIO_label")
    return bio


def _symptom_map(value: dict, path: Path, place: str) -> dict[str, str]:
    for symptom, label in value.items():
        if str(label) not in SYMPTOM_LABELS:
            raise InputError(
                f"{place}: symptom {symptom!r} has label {label!r}; expected 0, 1 or 2", source=str(path)
            )
    return {symptom: str(label) for symptom, label in value.items()}


def _utterance_symptoms(turn: dict, path: Path, place: str) -> dict[str, str]:
    """``local_implicit_info``, or the same built from ``symptom_norm``/``symptom_type`` by the
    official priority (1 over 0 over 2) when a release lacks it."""
    if "local_implicit_info" in turn:
        return _symptom_map(require_field(turn, "local_implicit_info", dict, path, place), path, place)
    norms = require_str_list(turn, "symptom_norm", path, place)
    kinds = require_field(turn, "symptom_type", list, path, place)
    if len(norms) != len(kinds):
        raise InputError(
            f"{place}: {len(norms)} symptom_norm entries but {len(kinds)} symptom_type entries",
            source=str(path),
            field="symptom_type",
        )
    merged: dict[str, str] = {}
    for norm, kind in zip(norms, kinds, strict=True):
        if str(kind) not in SYMPTOM_LABELS:
            raise InputError(f"{place}: symptom_type {kind!r}", source=str(path), field="symptom_type")
        merged = merge_symptoms(merged, {norm: str(kind)})
    return merged


def _self_report(dialog: dict, path: Path, place: str) -> str:
    key = "self_report" if "self_report" in dialog else "self-report"
    return require_field(dialog, key, str, path, place)


def _check_report(report: Any, path: Path, place: str) -> dict[str, str]:
    for section in REPORT_SECTIONS:
        require_field(report, section, str, path, place)
    return {section: report[section] for section in REPORT_SECTIONS}


def merge_symptoms(current: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Union of symptom labels where a symptom seen twice keeps the label with the higher priority."""
    merged = dict(current)
    for symptom, label in new.items():
        if symptom not in merged or SYMPTOM_PRIORITY[label] > SYMPTOM_PRIORITY[merged[symptom]]:
            merged[symptom] = label
    return merged


def dialogue_lines(turns: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"{t['speaker']}：{t['sentence']}" for t in turns)


# --- IMCS-V2-SR ------------------------------------------------------------------------------

_SYMPTOM_STATUS_NAMES = {
    "患有该症状": "1",
    "阳性": "1",
    "患有": "1",
    "有": "1",
    "存在": "1",
    "是": "1",
    "没有患有该症状": "0",
    "未患有该症状": "0",
    "阴性": "0",
    "没有": "0",
    "无": "0",
    "未患有": "0",
    "否认": "0",
    "不存在": "0",
    "否": "0",
    "无法根据上下文确定病人是否患有该症状": "2",
    "无法确定": "2",
    "不确定": "2",
    "未知": "2",
    "不清楚": "2",
    "不详": "2",
    "待定": "2",
}
_STATUS_TEXT = {"1": "患有该症状", "0": "没有患有该症状", "2": "无法根据上下文确定病人是否患有该症状"}
_PAIR_LINE = re.compile(r"^(?P<left>[^:：]+?)\s*[:：]\s*(?P<right>.*)$")


def _status(text: str) -> str | None:
    found = {
        label for _, _, label in find_labels(clean_value(text), _SYMPTOM_STATUS_NAMES, skip_negated=False)
    }
    return found.pop() if len(found) == 1 else None


def parse_symptom_statuses(reply: str) -> dict[str, str] | None:
    """``"咳嗽：患有该症状\\n发热：阴性"`` → ``{"咳嗽": "1", "发热": "0"}``.

    Also reads grouped lines ("阳性症状：咳嗽，流涕"), "咳嗽（阳性）" items and "none" answers
    (``{}``); None when no symptom and status can be read.
    """
    text = strip_answer_prefix(normalize_reply(reply))
    found: dict[str, str] = {}
    recognised = False
    for raw in text.splitlines():
        line = strip_list_mark(raw)
        pairs = re.findall(r"([^\s，,、；;（(:：]+)\s*[（(]([^)）]+)[)）]", line)
        if pairs and all(_status(s) for _, s in pairs):
            for symptom, status in pairs:
                found = merge_symptoms(found, {clean_value(symptom): _status(status)})
            recognised = True
            continue
        match = _PAIR_LINE.match(line)
        if not match:
            continue
        left, right = clean_value(match.group("left")), match.group("right").strip()
        status = _status(right)
        if status is not None and left:
            found = merge_symptoms(found, {left: status})
            recognised = True
            continue
        group = _status(left.replace("阴阳性", ""))
        if group is not None:
            recognised = True
            for symptom in split_values(right):
                found = merge_symptoms(found, {symptom: group})
    if recognised:
        return found
    return {} if says_none(text) else None


class ImcsSR(CblueTask):
    """IMCS-V2-SR: normalised symptoms and whether the patient has them, per utterance.

    One item per dialogue; each utterance is asked separately (with up to four preceding turns as
    context), as the official utterance-level prediction requires. The prediction is the
    official layout ``{sentence_id: {symptom: "0"|"1"|"2"}, "global": {...}}``, the dialogue-level
    labels merged from the utterances by the official priority, as the IMCS-V2 baseline does.
    Value: utterance-level micro-F1 over ``(symptom, label)`` pairs; ``secondary`` has the
    dialogue-level micro-F1 against ``implicit_info``. A dialogue with any unreadable utterance
    answer is counted unparseable (that utterance predicts nothing). Symptoms must be the
    normalised names; the official scorer also drops pairs outside its 444-name dictionary,
    which is not shipped with the data and is not applied here (an unknown name is a wrong pair).
    """

    name = "IMCS-V2-SR"
    relative_path = IMCS_PATH
    metric = "micro_f1"
    definition = (
        "CBLUE (IMCS-V2 scorer): utterance-level micro-F1 over (normalised symptom, label) pairs; "
        "secondary dialogue_f1: dialogue-level micro-F1 against implicit_info"
    )
    context_turns = 4

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        return [
            EvalItem(dialog_id, {"dialog_id": dialog_id, **record})
            for dialog_id, record in read_imcs(path, data, need={"symptoms"})
        ]

    def utterance_prompt(self, turns: Sequence[dict[str, Any]], k: int) -> str:
        history = turns[max(0, k - self.context_turns) : k]
        return (
            "找出当前对话中的症状（使用标准症状名），并判断阴阳性：\n"
            + (f"对话历史：\n{dialogue_lines(history)}\n" if history else "")
            + f"当前对话：\n{dialogue_lines([turns[k]])}\n"
            "症状阴阳性选项：患有该症状，没有患有该症状，无法根据上下文确定病人是否患有该症状\n"
            "说明：每个症状一行，格式为“症状：阴阳性”；没有症状时回答“没有症状”。\n答："
        )

    def prompt(self, item: EvalItem) -> str:
        return self.utterance_prompt(item.record["dialogue"], 0)

    @staticmethod
    def render_statuses(symptoms: dict[str, str]) -> str:
        if not symptoms:
            return "没有症状"
        return "当前对话中的症状及其阴阳性判断为：\n" + "\n".join(
            f"{symptom}：{_STATUS_TEXT[label]}" for symptom, label in symptoms.items()
        )

    def render_answer(self, item: EvalItem) -> str:
        return self.render_statuses(item.record["dialogue"][0]["symptoms"])

    def evaluate(self, backend: Backend, items: Sequence[EvalItem], *, max_new_tokens: int) -> CblueResult:
        if not items:
            raise InputError(f"task {self.name} has no items to evaluate")
        demos = [
            (self.utterance_prompt(t, k), self.render_statuses(t[k]["symptoms"]))
            for t in (d.record["dialogue"] for d in items)
            for k in range(len(t))
            if t[k]["symptoms"]
        ]
        chats, owners = [], []
        for index, item in enumerate(items):
            turns = item.record["dialogue"]
            own = {self.utterance_prompt(turns, k) for k in range(len(turns))}
            shots = [d for d in demos[index:] + demos[:index] if d[0] not in own][: self.shots]
            for k in range(len(turns)):
                chat = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
                for question, answer in shots:
                    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                chat.append({"role": "user", "content": self.utterance_prompt(turns, k)})
                chats.append(chat)
                owners.append((index, k))
        try:
            replies = backend.generate(chats, max_new_tokens)
        except RequestsFailed as exc:
            raise exc.with_item_ids([f"{items[index].id}#{k}" for index, k in owners]) from None
        per_item: list[list[dict[str, str] | None]] = [[None] * len(i.record["dialogue"]) for i in items]
        for (index, k), reply in zip(owners, replies, strict=True):
            per_item[index][k] = parse_symptom_statuses(reply)
        outcomes, predictions = [], []
        for item, parsed in zip(items, per_item, strict=True):
            prediction = self.assemble(item, parsed)
            predictions.append({"id": item.id, **prediction})
            outcomes.append(self.outcome(item, prediction))
        log_parse_failures(self.name, backend.name, outcomes)
        return self.result(outcomes, predictions)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        """The first utterance's answer alone (for tests); :meth:`evaluate` asks every utterance."""
        parsed = parse_symptom_statuses(reply)
        return (
            None
            if parsed is None
            else self.assemble(item, [parsed] + [{}] * (len(item.record["dialogue"]) - 1))
        )

    def assemble(self, item: EvalItem, parsed: Sequence[dict[str, str] | None]) -> dict[str, Any]:
        prediction: dict[str, Any] = {}
        merged: dict[str, str] = {}
        for turn, symptoms in zip(item.record["dialogue"], parsed, strict=True):
            prediction[turn["sentence_id"]] = symptoms or {}
            merged = merge_symptoms(merged, symptoms or {})
        prediction["global"] = merged
        prediction["unparseable_utterances"] = sum(1 for p in parsed if p is None)
        return prediction

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        stats = {"tp": 0, "pred": 0, "gold": 0}
        unparsed = prediction is None or prediction.get("unparseable_utterances", 0) > 0
        for turn in item.record["dialogue"]:
            gold = set(turn["symptoms"].items())
            pred = set((prediction or {}).get(turn["sentence_id"], {}).items())
            for key, value in set_counts(gold, pred).items():
                stats[key] += value
        stats.update(
            set_counts(
                set(item.record["global"].items()), set((prediction or {}).get("global", {}).items()), "d_"
            )
        )
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=not unparsed, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        stats = [o.stats for o in outcomes]
        return {"dialogue_f1": micro_prf(stats, "d_")["f1"]}


# --- IMCS-V2-MRG -----------------------------------------------------------------------------

_SECTION_ALIASES = {
    "主诉": "主诉",
    "现病史": "现病史",
    "辅助检查": "辅助检查",
    "检查结果": "辅助检查",
    "既往史": "既往史",
    "即往史": "既往史",
    "诊断": "诊断",
    "初步诊断": "诊断",
    "诊断结果": "诊断",
    "建议": "建议",
    "治疗建议": "建议",
    "处理建议": "建议",
    "医生建议": "建议",
}
_SECTION_HEADER = re.compile(
    r"(?:^|(?<=[\n；;。\s|>•·、\-*]))(?:\d{1,2}[.、)）]\s*)?"
    r"(?P<name>" + "|".join(sorted(_SECTION_ALIASES, key=len, reverse=True)) + r")\s*[:：]",
    re.M,
)


def parse_report(reply: str) -> dict[str, str] | None:
    """The six report sections from a generated report; a missing section is ``""``; None when no
    section header is found at all."""
    text = normalize_reply(reply)
    matches = list(_SECTION_HEADER.finditer(text))
    if not matches:
        return None
    report = dict.fromkeys(REPORT_SECTIONS, "")
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        section = _SECTION_ALIASES[match.group("name")]
        content = " ".join(line.strip() for line in text[match.end() : end].splitlines() if line.strip())
        if not report[section]:
            report[section] = content.strip()
    return report


class ImcsMRG(CblueTask):
    """IMCS-V2-MRG: write the six-section medical report of a consultation.

    Value: PromptCBLUE's ROUGE-L (``rouge-chinese``, BasicTokenizer tokens, empty → "无 。")
    averaged over every (dialogue, section) pair against the first reference report.
    ``secondary`` has the per-section ROUGE-L (``rouge_l_chief_complaint`` … ``rouge_l_suggestion``,
    in :data:`REPORT_SECTIONS` order) and the IMCS-V2 scorer's number (mean of
    ROUGE-1/2/L of the concatenated "section：text" report, character-split, averaged over both
    references; computed with ``rouge-chinese``). A reply with no section header is unparseable
    and scores 0.
    """

    name = "IMCS-V2-MRG"
    relative_path = IMCS_PATH
    metric = "rouge_l"
    definition = (
        "PromptCBLUE: ROUGE-L F per report section (主诉, 现病史, 辅助检查, 既往史, 诊断, 建议) against "
        "the first reference, averaged over sections; secondary cblue_rouge: IMCS-V2 scorer's mean "
        "ROUGE-1/2/L over both references"
    )

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        return [
            EvalItem(dialog_id, {"dialog_id": dialog_id, **record})
            for dialog_id, record in read_imcs(path, data, need={"report"})
        ]

    def prompt(self, item: EvalItem) -> str:
        record = item.record
        return (
            f"问诊对话历史：\n患者：{record['self_report']}\n{dialogue_lines(record['dialogue'])}\n"
            "根据上述对话，给出诊疗报告\n"
            "说明：诊疗报告分为主诉，现病史，辅助检查，既往史，诊断，建议这六个章节，每个章节一行，"
            "格式为“章节：内容”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        report = item.record["report"][0]
        return "上述问诊对话的诊疗报告如下：\n" + "\n".join(f"{s}：{report[s]}" for s in REPORT_SECTIONS)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        report = parse_report(reply)
        return None if report is None else {"dialog_id": item.record["dialog_id"], **report}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        reference = item.record["report"][0]
        if prediction is None:
            sections = dict.fromkeys(REPORT_SECTIONS, 0.0)
            cblue = 0.0
        else:
            sections = {s: rouge_l(prediction[s], reference[s]) for s in REPORT_SECTIONS}
            cblue = _imcs_report_rouge(prediction, item.record["report"])
        stats = {"rouge_l_sum": sum(sections.values()), "sections": len(sections), "cblue_rouge": cblue}
        stats.update({f"rouge_l_{SECTION_KEYS[s]}": v for s, v in sections.items()})
        return ItemOutcome(
            id=item.id, score=stats["rouge_l_sum"] / len(sections), parsed=prediction is not None, stats=stats
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return sum(s["rouge_l_sum"] for s in stats) / sum(s["sections"] for s in stats)

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        stats = [o.stats for o in outcomes]
        keys = [f"rouge_l_{SECTION_KEYS[s]}" for s in REPORT_SECTIONS]
        out = {key: sum(x[key] for x in stats) / len(stats) for key in keys}
        out["cblue_rouge"] = sum(x["cblue_rouge"] for x in stats) / len(stats)
        return out


def _imcs_report_rouge(prediction: dict[str, str], references: Sequence[dict[str, str]]) -> float:
    """The IMCS-V2 scorer's per-dialogue number: mean over references of (R1 + R2 + RL) / 3 on the
    character-split "section：text" concatenation."""
    from rouge_chinese import Rouge

    def joined(report: dict[str, str]) -> str:
        return " ".join("".join(f"{s}：{report.get(s, '')}" for s in REPORT_SECTIONS))

    total = 0.0
    for reference in references:
        scores = Rouge().get_scores(joined(prediction), joined(reference))[0]
        total += sum(scores[m]["f"] for m in ("rouge-1", "rouge-2", "rouge-l")) / 3
    return total / len(references)


# --- CHIP-MDCFNPC ----------------------------------------------------------------------------

FINDING_ATTRS: dict[str, str] = {
    "阳性": "已有症状疾病或者假设未来可能发生的疾病等",
    "阴性": "未患有症状疾病",
    "其他": "没有回答、不知道、回答不明确或者模棱两可不好推断",
    "不标注": "无实际意义的不标注或者和病人当前的状态独立不标注",
}
_ATTR_NAMES = {
    **{label: label for label in FINDING_ATTRS},
    **{description: label for label, description in FINDING_ATTRS.items()},
    "患有": "阳性",
    "已有": "阳性",
    "未患有": "阴性",
    "没有患": "阴性",
    "不确定": "其他",
    "不知道": "其他",
    "模棱两可": "其他",
    "无实际意义": "不标注",
}
_NUMBERED = re.compile(r"^\s*(?:第)?(\d{1,3})\s*(?:[.、)）:：]|号)\s*(.*)$")


def _attr(text: str) -> str | None:
    found = {label for _, _, label in find_labels(text, _ATTR_NAMES, skip_negated=False)}
    return found.pop() if len(found) == 1 else None


class ChipMDCFNPC(CblueTask):
    """CHIP-MDCFNPC: the status (阳性/阴性/其他/不标注) of given clinical findings in a consultation.

    The published layout is JSON lines ``{"dialog_id", "dialog_info": [{"sentence_id", "speaker",
    "sentence", "ner": [{"mention", "range", "attr"}]}]}``; the findings (mention and range) are
    given, the status is predicted. One item per dialogue; the prompt numbers the findings and
    the answer gives a status per number (or per mention). Value: micro-F1 over
    ``(sentence_id, range, attr)`` (with one status per given finding this is the share
    answered right; an unanswered finding is missed). ``secondary`` has PromptCBLUE's micro-F1
    over ``(mention, attr)`` pairs per dialogue.
    """

    name = "CHIP-MDCFNPC"
    relative_path = "CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl"
    metric = "micro_f1"
    definition = (
        "CBLUE submission keys: micro-F1 over (sentence_id, range, attr) of the given findings; "
        "secondary promptcblue_f1: PromptCBLUE micro-F1 over (mention, attr) pairs"
    )

    def load(self, data_dir: Path, max_items: int = 0) -> list[EvalItem]:
        return load_records(self, data_dir, max_items, id_key="dialog_id")

    def check_record(self, record: Any, path: Path, place: str) -> dict[str, Any]:
        dialog_id = str(require_field(record, "dialog_id", (str, int), path, place))
        turns, findings = [], []
        for k, turn in enumerate(require_field(record, "dialog_info", list, path, place)):
            here = f"{place} dialog_info[{k}]"
            sentence_id = str(require_field(turn, "sentence_id", (str, int), path, here))
            speaker = require_field(turn, "speaker", str, path, here)
            sentence = require_field(turn, "sentence", str, path, here)
            turns.append({"sentence_id": sentence_id, "speaker": speaker, "sentence": sentence})
            for j, ner in enumerate(require_field(turn, "ner", list, path, here)):
                spot = f"{here} ner[{j}]"
                span = require_field(ner, "range", list, path, spot)
                if len(span) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in span):
                    raise InputError(f"{spot}: range must be [start, end]", source=str(path), field="range")
                attr = require_field(ner, "attr", str, path, spot)
                if attr not in FINDING_ATTRS:
                    raise InputError(
                        f"{spot}: unknown attr {attr!r}; expected one of {', '.join(FINDING_ATTRS)}",
                        source=str(path),
                        field="attr",
                    )
                start, end = span
                mention = ner.get("mention")
                if mention is None:
                    mention = sentence[start:end]
                if not isinstance(mention, str) or mention not in (
                    sentence[start:end],
                    sentence[start : end + 1],
                ):
                    raise InputError(
                        f"{spot}: mention {mention!r} is not the sentence text at range {span}",
                        source=str(path),
                        field="range",
                    )
                findings.append(
                    {
                        "sentence_id": sentence_id,
                        "range": [start, end],
                        "mention": mention,
                        "attr": attr,
                        "turn": k,
                    }
                )
        if not turns:
            raise InputError(f"{place}: the dialogue has no sentences", source=str(path), field="dialog_info")
        return {"dialog_id": dialog_id, "dialogue": turns, "findings": findings}

    def prompt(self, item: EvalItem) -> str:
        findings = item.record["findings"]
        listed = "\n".join(f"{i}. {f['mention']}（第{f['turn'] + 1}句）" for i, f in enumerate(findings, 1))
        numbered = "\n".join(
            f"第{k}句 {line}" for k, line in enumerate(dialogue_lines(item.record["dialogue"]).split("\n"), 1)
        )
        options = "；".join(f"{label}：{description}" for label, description in FINDING_ATTRS.items())
        return (
            f"问诊对话：\n{numbered}\n"
            f"对话中的临床发现：\n{listed or '（无）'}\n"
            f"问题：判断每个临床发现的阴阳性。阴阳性选项：{options}\n"
            "说明：每个临床发现一行，格式为“编号. 临床发现：阴阳性”。\n答："
        )

    def render_answer(self, item: EvalItem) -> str:
        findings = item.record["findings"]
        if not findings:
            return "没有临床发现"
        return "上述对话中临床发现实体以及其阴阳性判别如下：\n" + "\n".join(
            f"{i}. {f['mention']}：{f['attr']}" for i, f in enumerate(findings, 1)
        )

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        findings = item.record["findings"]
        if not findings:
            return {"dialog_id": item.record["dialog_id"], "findings": []}
        attrs: list[str | None] = [None] * len(findings)
        for raw in strip_answer_prefix(normalize_reply(reply)).splitlines():
            line = raw.strip()
            numbered = _NUMBERED.match(line)
            body = numbered.group(2) if numbered else line
            mention, _, status_text = body.rpartition("：") if "：" in body else body.rpartition(":")
            attr = _attr(status_text) if status_text else None
            if attr is None:
                continue
            if numbered and 1 <= int(numbered.group(1)) <= len(findings):
                attrs[int(numbered.group(1)) - 1] = attr
                continue
            name = clean_value(re.sub(r"[（(]第\d+句[)）]", "", mention))
            for i, finding in enumerate(findings):
                if finding["mention"] == name and attrs[i] is None:
                    attrs[i] = attr
        if not any(attrs):
            return None
        return {
            "dialog_id": item.record["dialog_id"],
            "findings": [
                {"sentence_id": f["sentence_id"], "range": f["range"], "mention": f["mention"], "attr": a}
                for f, a in zip(findings, attrs, strict=True)
                if a is not None
            ],
        }

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        def keyed(findings: Sequence[dict[str, Any]]) -> set:
            return {(f["sentence_id"], tuple(f["range"]), f["attr"]) for f in findings}

        def paired(findings: Sequence[dict[str, Any]]) -> set:
            return {(f["mention"], f["attr"]) for f in findings}

        gold = item.record["findings"]
        pred = prediction["findings"] if prediction is not None else []
        stats = {**set_counts(keyed(gold), keyed(pred)), **set_counts(paired(gold), paired(pred), "pc_")}
        score = item_f1(stats["tp"], stats["pred"], stats["gold"]) if prediction is not None else 0.0
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return micro_prf(stats)["f1"]

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        return {"promptcblue_f1": micro_prf([o.stats for o in outcomes], "pc_")["f1"]}


# --- MedDG -----------------------------------------------------------------------------------

MEDDG_ENTITY_FIELDS: tuple[str, ...] = ("Symptom", "Medicine", "Test", "Attribute", "Disease")
_SPEAKERS = {"Patients": "患者", "Patient": "患者", "Doctor": "医生"}


class MedDG(CblueTask):
    """MedDG: the doctor's next turn in a gastroenterology consultation.

    The published training/dev layout is a list of dialogues, each a list of turns ``{"id":
    "Patients"|"Doctor", "Sentence", "Symptom", "Medicine", "Test", "Attribute", "Disease"}``;
    one item per doctor turn after the first turn, asked with the history before it. Test-style
    records ``{"id", "history": ["患者：…", …], "response"}`` are read too.

    Value: PromptCBLUE's ROUGE-L F (``rouge-chinese`` on BasicTokenizer tokens, an empty reply
    scored as "无 。"), the mean over items. ``secondary`` has MedDG's own measures: corpus
    BLEU-1/2/4 on the same tokens and entity micro-F1, where the reply's entities are the
    entity-list names it contains (``MedDG/entity_list.txt`` when present, else every entity
    annotated in the file) and the reference's are the turn's annotations. Every reply is
    readable; a "医生：" prefix is dropped.
    """

    name = "MedDG"
    relative_path = "MedDG/MedDG_dev.json"
    metric = "rouge_l"
    definition = (
        "PromptCBLUE: ROUGE-L F (rouge-chinese, character tokens, empty as '无 。') averaged over items; "
        "secondary bleu_1/2/4 (corpus BLEU, character tokens) and entity_f1 (MedDG entity micro-F1)"
    )

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        if not isinstance(data, list):
            raise InputError(
                f"expected a JSON array of dialogues, got {type(data).__name__}", source=str(path)
            )
        raw_items: list[tuple[str, dict[str, Any]]] = []
        vocabulary: set[str] = set()
        for d, dialogue in enumerate(data):
            if isinstance(dialogue, dict):
                place = f"item {d}"
                history = require_str_list(dialogue, "history", path, place)
                response = require_field(dialogue, "response", str, path, place)
                entities = dialogue.get("entities", [])
                raw_items.append(
                    (
                        str(dialogue.get("id", f"MedDG-{d}")),
                        {"history": history, "response": response, "entities": entities},
                    )
                )
                vocabulary.update(entities)
                continue
            if not isinstance(dialogue, list):
                raise InputError(f"dialogue {d}: expected a list of turns", source=str(path))
            history = []
            for k, turn in enumerate(dialogue):
                place = f"dialogue {d} turn {k}"
                role = require_field(turn, "id", str, path, place)
                if role not in _SPEAKERS:
                    raise InputError(f"{place}: unknown speaker {role!r}", source=str(path), field="id")
                sentence = require_field(turn, "Sentence", str, path, place)
                entities = sorted(
                    {e for f in MEDDG_ENTITY_FIELDS for e in require_str_list(turn, f, path, place)}
                )
                vocabulary.update(entities)
                if _SPEAKERS[role] == "医生" and history:
                    raw_items.append(
                        (
                            f"MedDG-{d}-{k}",
                            {
                                "history": list(history),
                                "response": sentence,
                                "entities": entities,
                                "dialogue": d,
                            },
                        )
                    )
                history.append(f"{_SPEAKERS[role]}：{sentence}")
        entity_list = path.parent / "entity_list.txt"
        if entity_list.is_file():
            vocabulary = {
                line.strip() for line in entity_list.read_text(encoding="utf-8").splitlines() if line.strip()
            }
        shared = tuple(sorted(vocabulary, key=lambda e: (-len(e), e)))
        return [EvalItem(item_id, {**record, "entity_vocabulary": shared}) for item_id, record in raw_items]

    def demo_group(self, item: EvalItem) -> str:
        return str(item.record.get("dialogue", item.id))

    def prompt(self, item: EvalItem) -> str:
        history = "\n".join(item.record["history"])
        return f"{history}\n根据上述对话历史，作为医生应该如何回复？\n答："

    def render_answer(self, item: EvalItem) -> str:
        return item.record["response"]

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        text = strip_answer_prefix(normalize_reply(reply))
        text = re.sub(r"^(医生|doctor)\s*[:：]\s*", "", text, flags=re.I).strip()
        return {"output": text}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        output = prediction["output"] if prediction is not None else ""
        reference = item.record["response"]
        gold = set(item.record["entities"])
        pred = {e for e in item.record["entity_vocabulary"] if e in output}
        score = rouge_l(output, reference)
        stats = {"rouge_l": score, "bleu": bleu_counts(output, reference), **set_counts(gold, pred, "e_")}
        return ItemOutcome(id=item.id, score=score, parsed=prediction is not None, stats=stats)

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return sum(s["rouge_l"] for s in stats) / len(stats)

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        stats = [o.stats for o in outcomes]
        counts = [s["bleu"] for s in stats]
        return {
            "bleu_1": corpus_bleu(counts, 1),
            "bleu_2": corpus_bleu(counts, 2),
            "bleu_4": corpus_bleu(counts, 4),
            "entity_f1": micro_prf(stats, "e_")["f1"],
        }


__all__ = [
    "IMCS_DIALOGUE_ACTS",
    "IMCS_ENTITY_TYPES",
    "IMCS_PATH",
    "REPORT_SECTIONS",
    "ChipMDCFNPC",
    "ImcsMRG",
    "ImcsSR",
    "MedDG",
    "merge_symptoms",
    "parse_report",
    "parse_symptom_statuses",
    "read_imcs",
]
