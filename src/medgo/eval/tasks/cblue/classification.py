"""Label tasks: CHIP-CTC, KUAKE-QIC, CHIP-STS, KUAKE-QTR, KUAKE-QQR and IMCS-V2-DAC.

Each item's ``stats`` are ``{"gold", "pred"}`` (``pred`` None when the answer could not be read),
from which both definitions are recomputed on any subset of items:

- CBLUE's leaderboard number (accuracy, or macro-F1 over the classes seen in gold or
  predictions, an unreadable answer wrong and no class of its own);
- PromptCBLUE's (scikit-learn ``classification_report`` after an unreadable answer becomes the
  task's first label): macro-F1 for CTC/QIC/DAC, weighted F1 for STS/QTR/QQR, which its
  scorer reports under the name "Micro-F1".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from medgo.eval.tasks.base import EvalItem, ItemOutcome, require_field
from medgo.eval.tasks.cblue.common import CblueTask, options_text, require_label
from medgo.eval.tasks.cblue.dialogues import IMCS_DIALOGUE_ACTS, IMCS_PATH, read_imcs
from medgo.eval.tasks.cblue.parsing import (
    clean_value,
    normalize_reply,
    parse_choice,
    parse_same_meaning,
    strip_answer_prefix,
)
from medgo.eval.tasks.cblue.scoring import class_f1, promptcblue_class_f1

#: PromptCBLUE's stand-in class for "none of the offered types"; an unreadable CTC answer becomes it.
NOT_LISTED = "非上述类型"


class LabelTask(CblueTask):
    """A single-label task asked with its options listed; see the module docstring for scoring."""

    #: Gold label values as the published files spell them, in official order.
    labels: ClassVar[tuple[str, ...]]
    #: The option text each label is offered as (PromptCBLUE's wording).
    names: ClassVar[dict[str, str]]
    #: Further accepted answer texts and the label each means.
    aliases: ClassVar[dict[str, str]] = {}
    #: Record fields shown in the prompt, with their captions.
    fields: ClassVar[tuple[tuple[str, str], ...]]
    question: ClassVar[str]
    #: What PromptCBLUE turns an unreadable answer into (its first listed label).
    promptcblue_fallback: ClassVar[str]
    #: ``macro`` or ``weighted``: PromptCBLUE's average for this task.
    promptcblue_average: ClassVar[str]

    def check_record(self, record: Any, path: Path, where: str) -> dict[str, Any]:
        for key, _ in self.fields:
            require_field(record, key, str, path, where)
        return {**record, "label": require_label(record, "label", self.labels, path, where)}

    def prompt(self, item: EvalItem) -> str:
        shown = "\n".join(f"{caption}{item.record[key]}" for key, caption in self.fields)
        return f"{self.question}\n{shown}\n选项：{options_text([self.names[label] for label in self.labels])}\n答："

    def render_answer(self, item: EvalItem) -> str:
        return self.names[item.record["label"]]

    def read_label(self, reply: str) -> str | None:
        accepted: Mapping[str, str] = {
            **{name: label for label, name in self.names.items()},
            **self.aliases,
            **{label: label for label in self.labels if not label.isdigit()},
        }
        return parse_choice(reply, accepted)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        label = self.read_label(reply)
        if label is None:
            return None
        return {**{key: item.record[key] for key, _ in self.fields}, "label": label}

    def outcome(self, item: EvalItem, prediction: dict[str, Any] | None) -> ItemOutcome:
        pred = prediction["label"] if prediction is not None else None
        gold = item.record["label"]
        return ItemOutcome(
            id=item.id, score=float(pred == gold), parsed=pred is not None, stats={"gold": gold, "pred": pred}
        )

    def aggregate(self, stats: Sequence[dict[str, Any]]) -> float:
        return self.aggregate_as(self.metric, [s["gold"] for s in stats], [s["pred"] for s in stats])

    def secondary_metrics(self, outcomes: Sequence[ItemOutcome]) -> dict[str, float]:
        gold = [o.stats["gold"] for o in outcomes]
        pred = [o.stats["pred"] for o in outcomes]
        other = "macro_f1" if self.metric == "accuracy" else "accuracy"
        return {
            f"promptcblue_{self.promptcblue_average}_f1": promptcblue_class_f1(
                gold, pred, self.promptcblue_fallback, self.promptcblue_average
            ),
            other: self.aggregate_as(other, gold, pred),
        }

    @staticmethod
    def aggregate_as(metric: str, gold: Sequence[str], pred: Sequence[str | None]) -> float:
        """CBLUE's accuracy or macro-F1 (an unreadable answer wrong, no class of its own)."""
        if not gold:
            raise ValueError(f"{metric} of zero items is undefined")
        if metric == "accuracy":
            return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
        return class_f1(gold, pred, "macro")


# --- CHIP-CTC --------------------------------------------------------------------------------

#: CHIP-CTC's 44 criteria classes (as the files spell them) and PromptCBLUE's Chinese names.
CTC_NAMES: dict[str, str] = {
    "Disease": "疾病",
    "Symptom": "症状(患者感受)",
    "Sign": "体征(医生检测）",
    "Pregnancy-related Activity": "怀孕相关",
    "Neoplasm Status": "肿瘤进展",
    "Non-Neoplasm Disease Stage": "疾病分期",
    "Allergy Intolerance": "过敏耐受",
    "Organ or Tissue Status": "器官组织状态",
    "Life Expectancy": "预期寿命",
    "Oral related": "口腔相关",
    "Pharmaceutical Substance or Drug": "药物",
    "Therapy or Surgery": "治疗或手术",
    "Device": "设备",
    "Nursing": "护理",
    "Diagnostic": "诊断",
    "Laboratory Examinations": "实验室检查",
    "Risk Assessment": "风险评估",
    "Receptor Status": "受体状态",
    "Age": "年龄",
    "Special Patient Characteristic": "特殊病人特征",
    "Literacy": "读写能力",
    "Gender": "性别",
    "Education": "教育情况",
    "Address": "居住情况",
    "Ethnicity": "种族",
    "Consent": "知情同意",
    "Enrollment in other studies": "参与其它试验",
    "Researcher Decision": "研究者决定",
    "Capacity": "能力",
    "Ethical Audit": "伦理审查",
    "Compliance with Protocol": "依存性",
    "Addictive Behavior": "成瘾行为",
    "Bedtime": "睡眠",
    "Exercise": "锻炼",
    "Diet": "饮食",
    "Alcohol Consumer": "酒精使用",
    "Sexual related": "性取向",
    "Smoking Status": "吸烟状况",
    "Blood Donation": "献血",
    "Encounter": "病例来源",
    "Disabilities": "残疾群体",
    "Healthy": "健康群体",
    "Data Accessible": "数据可及性",
    "Multiple": "含有多个类别",
}


class ChipCTC(LabelTask):
    """CHIP-CTC: the category of a clinical-trial screening criterion (44 classes).

    Value: CBLUE's macro-F1; ``secondary`` PromptCBLUE's macro-F1 (unreadable → "非上述类型")."""

    name = "CHIP-CTC"
    relative_path = "CHIP-CTC/CHIP-CTC_dev.json"
    metric = "macro_f1"
    definition = (
        "CBLUE: macro-F1 over the classes in gold or predictions (unreadable = wrong); secondary "
        "promptcblue_macro_f1: PromptCBLUE macro-F1 with unreadable answers as '非上述类型'"
    )
    labels = tuple(CTC_NAMES)
    names = CTC_NAMES
    aliases = {
        "症状": "Symptom",
        "体征": "Sign",
        "体征(医生检测)": "Sign",
        "症状（患者感受）": "Symptom",
        "体征（医生检测）": "Sign",
        "多个类别": "Multiple",
        "含有多类别的语句": "Multiple",
    }
    fields = (("text", ""),)
    question = "判断下面这条临床试验筛选标准的类型："
    promptcblue_fallback = NOT_LISTED
    promptcblue_average = "macro"


# --- KUAKE-QIC -------------------------------------------------------------------------------

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


def parse_single_label(reply: str, labels: Sequence[str]) -> str | None:
    """The label ``reply`` starts with, else the only label it names (negated mentions skipped)."""
    return parse_choice(reply, {label: label for label in labels})


class KuakeQIC(LabelTask):
    """KUAKE-QIC: the intent of a medical search query (11 classes).

    Value: CBLUE's accuracy; ``secondary`` PromptCBLUE's macro-F1, where "其他" is its
    "非上述类型" and an unreadable answer becomes that class."""

    name = "KUAKE-QIC"
    relative_path = "KUAKE-QIC/KUAKE-QIC_dev.json"
    metric = "accuracy"
    definition = (
        "CBLUE: accuracy; secondary promptcblue_macro_f1: PromptCBLUE macro-F1 with unreadable "
        "answers as '其他' (its '非上述类型')"
    )
    labels = QIC_LABELS
    names = {label: label for label in QIC_LABELS}
    aliases = {"疾病描述": "疾病表述", NOT_LISTED: "其他", "其它": "其他"}
    fields = (("query", "搜索词："),)
    question = "判断下面这条医疗搜索词的意图类别："
    promptcblue_fallback = "其他"
    promptcblue_average = "macro"


# --- CHIP-STS --------------------------------------------------------------------------------

STS_LABELS: tuple[str, ...] = ("0", "1")


class ChipSTS(LabelTask):
    """CHIP-STS: whether two medical questions mean the same ("1") or not ("0").

    The answer is read with negation handled (see :func:`parse_same_meaning`). Value: CBLUE's
    macro-F1; ``secondary`` PromptCBLUE's weighted F1 (its "Micro-F1"; unreadable → "是的"/"1")."""

    name = "CHIP-STS"
    relative_path = "CHIP-STS/CHIP-STS_dev.json"
    metric = "macro_f1"
    definition = (
        "CBLUE: macro-F1 over '0'/'1' (unreadable = wrong); secondary promptcblue_weighted_f1: "
        "PromptCBLUE's 'Micro-F1', computed as weighted F1 with unreadable answers as '1' (是的)"
    )
    labels = STS_LABELS
    names = {"1": "相同", "0": "不同"}
    fields = (("text1", "问句1："), ("text2", "问句2："))
    question = "下面两个医疗问句表达的意思是否相同？"
    promptcblue_fallback = "1"
    promptcblue_average = "weighted"

    def read_label(self, reply: str) -> str | None:
        return parse_same_meaning(reply)

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        prediction = super().parse(item, reply)
        if prediction is not None and "category" in item.record:
            prediction["category"] = item.record["category"]
        return prediction


# --- KUAKE-QTR / KUAKE-QQR -------------------------------------------------------------------


def _digit_answer(reply: str, labels: Sequence[str]) -> str | None:
    text = clean_value(strip_answer_prefix(normalize_reply(reply)))
    match = re.fullmatch(r"(?:标签|得分|分数|匹配分数)?\s*[:：]?\s*(\d)\s*分?", text)
    return match.group(1) if match and match.group(1) in labels else None


class KuakeQTR(LabelTask):
    """KUAKE-QTR: how well a page title matches a search query (0–3).

    Value: CBLUE's accuracy; ``secondary`` PromptCBLUE's weighted F1 (unreadable → "0")."""

    name = "KUAKE-QTR"
    relative_path = "KUAKE-QTR/KUAKE-QTR_dev.json"
    metric = "accuracy"
    definition = (
        "CBLUE: accuracy; secondary promptcblue_weighted_f1: PromptCBLUE's 'Micro-F1' (weighted F1, "
        "unreadable answers as '0')"
    )
    labels = ("0", "1", "2", "3")
    names = {
        "0": "完全不匹配或者没有参考价值",
        "1": "很少匹配有一些参考价值",
        "2": "部分匹配",
        "3": "完全匹配",
    }
    aliases = {
        "完全不匹配": "0",
        "没有参考价值": "0",
        "毫无参考价值": "0",
        "很少匹配": "1",
        "有一些参考价值": "1",
        "少量匹配": "1",
        "基本匹配": "2",
        "完全相关": "3",
    }
    fields = (("query", "搜索词："), ("title", "页面标题："))
    question = "下面的搜索词和页面标题的意思有多匹配？"
    promptcblue_fallback = "0"
    promptcblue_average = "weighted"

    def read_label(self, reply: str) -> str | None:
        return _digit_answer(reply, self.labels) or super().read_label(reply)


class KuakeQQR(LabelTask):
    """KUAKE-QQR: the relation of two queries: "2" the same, "1" the second is narrower (a subset
    of the first's meaning), "0" broader or unrelated (PromptCBLUE offers those two apart).

    Value: CBLUE's accuracy; ``secondary`` PromptCBLUE's weighted F1 (unreadable → "2")."""

    name = "KUAKE-QQR"
    relative_path = "KUAKE-QQR/KUAKE-QQR_dev.json"
    metric = "accuracy"
    definition = (
        "CBLUE: accuracy; secondary promptcblue_weighted_f1: PromptCBLUE's 'Micro-F1' (weighted F1, "
        "unreadable answers as '2' 完全一致)"
    )
    labels = ("0", "1", "2")
    names = {"2": "完全一致", "1": "后者是前者的语义子集", "0": "后者是前者的语义父集或语义毫无关联"}
    aliases = {
        "后者是前者的语义父集": "0",
        "语义毫无关联": "0",
        "毫无关联": "0",
        "语义无直接关联": "0",
        "没有关联": "0",
        "语义父集": "0",
        "父集": "0",
        "语义子集": "1",
        "子集": "1",
        "语义完全一致": "2",
        "意思完全相同": "2",
    }
    fields = (("query1", "查询1："), ("query2", "查询2："))
    question = "下面两个医疗查询的语义关系是？"
    promptcblue_fallback = "2"
    promptcblue_average = "weighted"

    def prompt(self, item: EvalItem) -> str:
        shown = "\n".join(f"{caption}{item.record[key]}" for key, caption in self.fields)
        return (
            f"{self.question}\n{shown}\n"
            "选项：完全一致，后者是前者的语义子集，后者是前者的语义父集，语义毫无关联\n答："
        )

    def read_label(self, reply: str) -> str | None:
        return _digit_answer(reply, self.labels) or super().read_label(reply)


# --- IMCS-V2-DAC -----------------------------------------------------------------------------

#: IMCS-V2 dialogue acts and PromptCBLUE's Chinese names ("Other" is its "非上述类型").
DAC_NAMES: dict[str, str] = {
    "Request-Symptom": "关于症状的询问",
    "Inform-Symptom": "关于症状的回答",
    "Request-Etiology": "关于病因的询问",
    "Inform-Etiology": "关于病因的回答",
    "Request-Basic_Information": "关于个人基本信息的询问",
    "Inform-Basic_Information": "关于个人基本信息的回答",
    "Request-Existing_Examination_and_Treatment": "关于已有检查和治疗的提问",
    "Inform-Existing_Examination_and_Treatment": "关于已有检查和治疗的回答",
    "Request-Drug_Recommendation": "关于用药建议的提问",
    "Inform-Drug_Recommendation": "关于用药建议的解答",
    "Request-Medical_Advice": "关于就医建议的提问",
    "Inform-Medical_Advice": "关于就医建议的解答",
    "Request-Precautions": "关于注意事项的提问",
    "Inform-Precautions": "关于注意事项的解答",
    "Diagnose": "给出诊断",
    "Other": "其他",
}


class ImcsDAC(LabelTask):
    """IMCS-V2-DAC: the dialogue act of each utterance of a consultation (16 classes).

    One item per utterance (id ``<dialog_id>:<sentence_id>``), shown with the turn before it.
    Value: accuracy, which the IMCS-V2 scorer reports for the leaderboard; ``secondary`` has
    its macro-F1 and PromptCBLUE's macro-F1 (unreadable → "Other", its "非上述类型")."""

    name = "IMCS-V2-DAC"
    relative_path = IMCS_PATH
    metric = "accuracy"
    definition = (
        "CBLUE (IMCS-V2 scorer): accuracy; secondary macro_f1 (IMCS-V2 scorer) and "
        "promptcblue_macro_f1 (PromptCBLUE, unreadable answers as 'Other'/非上述类型)"
    )
    labels = IMCS_DIALOGUE_ACTS
    names = DAC_NAMES
    aliases = {NOT_LISTED: "Other", "其它": "Other", "诊断": "Diagnose"}
    fields = (("sentence", ""),)
    question = "确定这句话的意图："
    promptcblue_fallback = "Other"
    promptcblue_average = "macro"

    def parse_file(self, path: Path, data: Any) -> list[EvalItem]:
        items = []
        for dialog_id, dialog in read_imcs(path, data, need={"dialogue_act"}):
            previous = ""
            for turn in dialog["dialogue"]:
                items.append(
                    EvalItem(
                        f"{dialog_id}:{turn['sentence_id']}",
                        {
                            "dialog_id": dialog_id,
                            "sentence_id": turn["sentence_id"],
                            "previous": previous,
                            "sentence": f"{turn['speaker']}：{turn['sentence']}",
                            "label": turn["dialogue_act"],
                        },
                    )
                )
                previous = f"{turn['speaker']}：{turn['sentence']}"
        return items

    def demo_group(self, item: EvalItem) -> str:
        return item.record["dialog_id"]

    def prompt(self, item: EvalItem) -> str:
        context = f"上一句：{item.record['previous']}\n" if item.record["previous"] else ""
        options = options_text([self.names[label] for label in self.labels])
        return f"{self.question}\n{context}当前句：{item.record['sentence']}\n类型选项：{options}\n答："

    def parse(self, item: EvalItem, reply: str) -> dict[str, Any] | None:
        label = self.read_label(reply)
        if label is None:
            return None
        return {
            "dialog_id": item.record["dialog_id"],
            "sentence_id": item.record["sentence_id"],
            "label": label,
        }
