"""Parsers for the shapes models really produce, PromptCBLUE's included, with negation handled."""

from __future__ import annotations

import pytest

from medgo.eval.tasks.base import EvalItem
from medgo.eval.tasks.cblue import (
    ChipCTC,
    ChipMDCFNPC,
    CMeEE,
    ImcsDAC,
    KuakeQIC,
    KuakeQQR,
    KuakeQTR,
    parse_entity_lines,
    parse_same_meaning,
)
from medgo.eval.tasks.cblue.dialogues import parse_report, parse_symptom_statuses
from medgo.eval.tasks.cblue.extraction import (
    parse_causal,
    parse_events,
    parse_normalized_terms,
    parse_triples,
)
from medgo.eval.tasks.cblue.parsing import locate_mentions
from medgo.eval.tasks.cblue.retrieval import parse_ranking

TEXT = "患者有高血压和糖尿病，服用阿司匹林。"


class TestTypedMentions:
    @pytest.mark.parametrize(
        "reply",
        [
            "疾病：高血压，糖尿病\n药物：阿司匹林",
            # PromptCBLUE's target shape, empty types included.
            "上述句子中的实体包含：\n疾病实体：高血压，糖尿病\n医学检验项目实体：\n药物实体：阿司匹林\n医院科室实体：",
            "疾病实体：高血压、糖尿病；药物实体：阿司匹林",
            "**疾病**：高血压，糖尿病\n**药物**：阿司匹林",
            "- **疾病实体**: 高血压, 糖尿病\n- **药物实体**: 阿司匹林",
            "疾病（dis）：高血压，糖尿病\n药物（dru）：阿司匹林",
            "疾病(dis): 高血压；糖尿病\n药物(dru): 阿司匹林",
            "【疾病】：高血压，糖尿病\n【药物】：阿司匹林",
            "上述句子中的实体包含：疾病：高血压，糖尿病；药物：阿司匹林。",
            "### 疾病\n疾病：\n1. 高血压\n2. 糖尿病\n药物：\n- 阿司匹林",
            '```json\n{"疾病": ["高血压", "糖尿病"], "药物": ["阿司匹林"]}\n```',
            '[{"entity": "高血压", "type": "疾病"}, {"entity": "糖尿病", "type": "dis"}, '
            '{"entity": "阿司匹林", "type": "药物"}]',
            "高血压（疾病）、糖尿病（疾病）、阿司匹林（药物）",
            "dis：高血压，糖尿病\ndru：阿司匹林",
            "识别出的医学实体如下：\n\n1. **疾病**：高血压、糖尿病\n2. **药物**：阿司匹林\n\n其他类型未出现。",
            "疾病：\n高血压，糖尿病。\n药物：阿司匹林\n以上为全部实体，供参考。",
            "| 实体 | 类型 |\n|---|---|\n| 高血压 | 疾病 |\n| 糖尿病 | 疾病 |\n| 阿司匹林 | 药物 |",
            "该句中包含的疾病有高血压和糖尿病，药物有阿司匹林。",
        ],
    )
    def test_shapes_give_the_same_mentions(self, reply):
        assert sorted(parse_entity_lines(reply)) == [
            ("dis", "糖尿病"),
            ("dis", "高血压"),
            ("dru", "阿司匹林"),
        ]

    @pytest.mark.parametrize(
        "reply",
        [
            "没有医学实体",
            "句子中没有医学实体。",
            "不存在",
            "无",
            "答案：无",
            "疾病实体：无\n药物实体：无",
            "未发现任何医学实体",
        ],
    )
    def test_none_answers_are_empty(self, reply):
        assert parse_entity_lines(reply) == []

    @pytest.mark.parametrize("reply", ["", "这个句子很好", "实体选项：疾病，临床表现，药物"])
    def test_unreadable(self, reply):
        assert parse_entity_lines(reply) is None

    def test_unknown_type_line_ends_the_previous_list(self):
        assert parse_entity_lines("临床表现：头痛\n器官：头\n疾病：无") == [("sym", "头痛")]

    def test_the_issue_shapes_are_placed_as_cmeee_spans(self):
        item = EvalItem("x", {"text": TEXT, "entities": []})
        expected = [(3, 5, "dis"), (7, 9, "dis"), (13, 16, "dru")]
        for reply in (
            "疾病实体：高血压，糖尿病\n药物实体：阿司匹林",
            "**疾病**：高血压，糖尿病\n**药物**：阿司匹林",
            "疾病（dis）：高血压，糖尿病\n药物（dru）：阿司匹林",
        ):
            pred = CMeEE().parse(item, reply)
            assert [(e["start_idx"], e["end_idx"], e["type"]) for e in pred["entities"]] == expected
        assert CMeEE().parse(item, "没有医学实体") == {"text": TEXT, "entities": []}


class TestLocateMentions:
    def test_marked_as_often_as_listed_left_to_right(self):
        text = "左肺结节，右肺结节，肝脏结节。"
        assert locate_mentions(text, [("sym", "结节")])[0] == [(2, 4, "sym")]
        assert locate_mentions(text, [("sym", "结节")] * 2)[0] == [(2, 4, "sym"), (7, 9, "sym")]

    def test_not_inside_a_longer_listed_mention_when_a_free_occurrence_exists(self):
        text = "筛查妊娠期糖尿病，糖尿病患者需控制饮食。"
        spans, _ = locate_mentions(text, [("dis", "糖尿病"), ("dis", "妊娠期糖尿病")])
        assert spans == [(2, 8, "dis"), (9, 12, "dis")]

    def test_nested_when_only_the_inner_occurrence_exists(self):
        # CMeEE annotates a body part inside a symptom; with nowhere else to go it nests.
        text = "呼吸肌麻痹患者需要机械通气。"
        spans, _ = locate_mentions(text, [("sym", "呼吸肌麻痹"), ("bod", "呼吸肌")])
        assert spans == [(0, 3, "bod"), (0, 5, "sym")]
        spans, _ = locate_mentions(text, [("sym", "呼吸肌麻痹"), ("bod", "呼吸肌")], allow_overlap=False)
        assert spans == [(0, 5, "sym")]

    def test_unlocated_and_case_insensitive(self):
        spans, unlocated = locate_mentions("胸部ct检查", [("pro", "CT"), ("dis", "肺炎")])
        assert spans == [(2, 4, "pro")] and unlocated == [("dis", "肺炎")]


class TestSameMeaning:
    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("意思不太一样", "0"),
            ("是否相同：否", "0"),
            ("是否相同：是", "1"),
            ("不相同", "0"),
            ("不是同一个意思", "0"),
            ("两句话不是一个意思。", "0"),
            ("意思相同", "1"),
            ("是", "1"),
            ("是的，两句话表达的意思一致。", "1"),
            ("否", "0"),
            ("**否**", "0"),
            ("不是", "0"),
            ("相同", "1"),
            ("不同", "0"),
            ("答案：不同。两个问题关注点不一样", "0"),
            ("两句话意思是否相同？不相同。", "0"),
            ("两句话的意思相同吗？不相同", "0"),
            ("意思一样吗，不一样", "0"),
            ("下面两个句子语义是“相同”或“不同”？答：不同", "0"),
            ("不完全相同，一个问病因一个问治疗。", "0"),
            ("有区别", "0"),
            ("这两个问题问的是同一件事", "1"),
            ("不是一回事", "0"),
            ("是不同的问题", "0"),
            # double negation
            ("不是不同", "1"),
            ("没有区别", "1"),
            ("两者并无差异", "1"),
            ("不能说不一样，意思基本相同", "1"),
            ("1", "1"),
            ("答案：0", "0"),
            ("Yes", "1"),
            ("No, they are different.", "0"),
            ("我不确定", None),
            ("无法判断", None),
            ("不知道", None),
            ("", None),
        ],
    )
    def test_parse(self, reply, label):
        assert parse_same_meaning(reply) == label


class TestLabels:
    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("治疗方案", "治疗方案"),
            ("不是病因分析，而是治疗方案", "治疗方案"),
            ("意图类别：疾病描述", "疾病表述"),
            ("非上述类型", "其他"),
            ("**就医建议**", "就医建议"),
        ],
    )
    def test_qic(self, reply, label):
        assert KuakeQIC().read_label(reply) == label

    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("疾病分期", "Non-Neoplasm Disease Stage"),
            ("疾病", "Disease"),
            ("症状(患者感受)", "Symptom"),
            ("体征（医生检测）", "Sign"),
            ("Therapy or Surgery", "Therapy or Surgery"),
            ("这条标准属于药物类别。", "Pharmaceutical Substance or Drug"),
            ("含有多个类别", "Multiple"),
            ("该标准属于疾病类别，因为要求先有诊断", "Disease"),
            ("可能涉及诊断，也可能涉及疾病", None),
        ],
    )
    def test_ctc_longest_name_wins(self, reply, label):
        assert ChipCTC().read_label(reply) == label

    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("完全不匹配或者没有参考价值", "0"),
            ("完全不匹配", "0"),
            ("部分匹配。", "2"),
            ("完全匹配", "3"),
            ("3分", "3"),
            ("不是完全匹配，而是部分匹配", "2"),
            ("很少匹配有一些参考价值", "1"),
            ("无法判断", None),
        ],
    )
    def test_qtr(self, reply, label):
        assert KuakeQTR().read_label(reply) == label

    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("完全一致", "2"),
            ("后者是前者的语义子集", "1"),
            ("后者是前者的语义父集", "0"),
            ("语义毫无关联", "0"),
            ("2", "2"),
        ],
    )
    def test_qqr(self, reply, label):
        assert KuakeQQR().read_label(reply) == label

    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("关于症状的询问", "Request-Symptom"),
            ("关于症状的回答", "Inform-Symptom"),
            ("Inform-Drug_Recommendation", "Inform-Drug_Recommendation"),
            ("给出诊断", "Diagnose"),
            ("非上述类型", "Other"),
        ],
    )
    def test_dac(self, reply, label):
        assert ImcsDAC().read_label(reply) == label


class TestTriples:
    EXPECTED = [
        ("慢阻肺", "临床表现", "咳嗽"),
        ("慢阻肺", "临床表现", "气促"),
        ("慢阻肺", "高危因素", "吸烟"),
    ]

    @pytest.mark.parametrize(
        "reply",
        [
            "具有临床表现关系的头尾实体对如下：头实体为慢阻肺，尾实体为咳嗽。头实体为慢阻肺，尾实体为气促。\n"
            "具有高危因素关系的头尾实体对如下：头实体为慢阻肺，尾实体为吸烟。",
            "上述句子中临床表现关系的实体对如下：\n头实体：慢阻肺，尾实体：咳嗽；头实体：慢阻肺，尾实体：气促；\n"
            "上述句子中高危因素关系的实体对如下：头实体：慢阻肺，尾实体：吸烟",
            "（慢阻肺，临床表现，咳嗽）\n（慢阻肺，临床表现，气促）\n(慢阻肺, 高危因素, 吸烟)",
            "头实体：慢阻肺；关系：临床表现；尾实体：咳嗽\n头实体：慢阻肺；关系：临床表现；尾实体：气促\n"
            "头实体：慢阻肺；关系：高危因素；尾实体：吸烟",
            '[["慢阻肺", "临床表现", "咳嗽"], {"subject": "慢阻肺", "predicate": "临床表现", "object": "气促"}, '
            '{"subject": "慢阻肺", "predicate": "高危因素", "object": {"@value": "吸烟"}}]',
        ],
    )
    def test_shapes(self, reply):
        assert sorted(parse_triples(reply)) == self.EXPECTED

    def test_predicates_with_brackets_and_none(self):
        assert parse_triples("具有相关(导致)关系的头尾实体对如下：头实体为肥胖，尾实体为糖尿病。") == [
            ("肥胖", "相关（导致）", "糖尿病")
        ]
        assert parse_triples("没有指定关系的实体对") == []
        assert parse_triples("上述句子中临床表现关系的实体对如下：") == []
        assert parse_triples("这句话讲的是慢阻肺") is None


class TestEvents:
    def test_promptcblue_shape_and_field_order(self):
        reply = (
            "上述句子中的临床发现事件如下：\n"
            "主体词：疼痛；发生状态：；描述词：持续性；解剖部位：右下腹\n"
            "发生状态：否定；主体词：发热；描述词：；解剖部位：\n"
            "主体词：结节；描述词：多发，质硬；解剖部位：双肺；发生状态：可能"
        )
        assert parse_events(reply) == [
            {"core_name": "疼痛", "tendency": "", "character": ["持续性"], "anatomy_list": ["右下腹"]},
            {"core_name": "发热", "tendency": "否定", "character": [], "anatomy_list": []},
            {
                "core_name": "结节",
                "tendency": "不确定",
                "character": ["多发", "质硬"],
                "anatomy_list": ["双肺"],
            },
        ]

    def test_none_and_unreadable(self):
        assert parse_events("没有临床发现事件") == []
        assert parse_events("患者腹痛") is None


def test_normalized_terms():
    assert parse_normalized_terms("肺恶性肿瘤##腺癌") == ["肺恶性肿瘤", "腺癌"]
    assert parse_normalized_terms("标准词：肺恶性肿瘤，腺癌。") == ["肺恶性肿瘤", "腺癌"]
    assert parse_normalized_terms("归一化后的标准词是：\n1. 高血压\n2. 高血压") == ["高血压"]
    assert parse_normalized_terms("无") == []
    assert parse_normalized_terms("") is None


def test_causal_relations():
    reply = (
        "因果关系三元组如下：\n头实体：吸烟；尾实体：慢性支气管炎\n"
        "条件关系三元组如下：\n头实体：老年人；尾三元组：头实体：骨质疏松；尾实体：髋部骨折；关系：因果关系\n"
        "上下位关系三元组如下：\n头实体：消化系统疾病；尾实体：慢性胃炎"
    )
    assert parse_causal(reply) == [
        ("吸烟", 1, "慢性支气管炎"),
        ("老年人", 2, ("骨质疏松", 1, "髋部骨折")),
        ("消化系统疾病", 3, "慢性胃炎"),
    ]
    assert parse_causal("给定的文本没有指定关系的三元组") == []
    assert parse_causal("吸烟有害健康") is None


class TestSymptomStatuses:
    @pytest.mark.parametrize(
        "reply",
        [
            "当前对话中的症状及其阴阳性判断为：\n咳嗽：患有该症状\n发热：没有患有该症状\n喘息：无法根据上下文确定病人是否患有该症状",
            "咳嗽：阳性\n发热：阴性\n喘息：不确定",
            "阳性症状：咳嗽\n阴性症状：发热\n不确定：喘息",
            "咳嗽（阳性）、发热（阴性）、喘息（不确定）",
            "- **咳嗽**：有\n- **发热**：无\n- **喘息**：无法确定",
        ],
    )
    def test_shapes(self, reply):
        assert parse_symptom_statuses(reply) == {"咳嗽": "1", "发热": "0", "喘息": "2"}

    def test_a_symptom_twice_keeps_the_official_priority(self):
        assert parse_symptom_statuses("咳嗽：没有患有该症状\n咳嗽：患有该症状") == {"咳嗽": "1"}
        assert parse_symptom_statuses("发热：无法确定\n发热：阴性") == {"发热": "0"}

    def test_none_and_unreadable(self):
        assert parse_symptom_statuses("当前对话中没有症状") == {}
        assert parse_symptom_statuses("医生在问问题") is None


class TestReport:
    def test_sections_in_any_shape(self):
        reply = (
            "上述问诊对话的诊疗报告如下：\n**主诉**：咳嗽三天。\n2. 现病史：患儿咳嗽，\n夜间明显。\n"
            "即往史：不详。\n诊断：支气管炎。\n建议：雾化。"
        )
        assert parse_report(reply) == {
            "主诉": "咳嗽三天。",
            "现病史": "患儿咳嗽， 夜间明显。",
            "辅助检查": "",
            "既往史": "不详。",
            "诊断": "支气管炎。",
            "建议": "雾化。",
        }

    def test_inline_and_unreadable(self):
        assert parse_report("主诉：发热。现病史：发热一天。诊断：上感。")["现病史"] == "发热一天。"
        assert parse_report("患儿咳嗽，建议就医") is None


def test_ranking():
    assert parse_ranking("2,1,3", 3) == [2, 1, 3]
    assert parse_ranking("[3] > [1] > [3]", 3) == [3, 1]
    assert parse_ranking("最相关的是第2段", 5) == [2]
    assert parse_ranking("12, 4", 10) == [4]
    assert parse_ranking("都不相关", 3) is None


class TestFindingStatus:
    ITEM = EvalItem(
        "d1",
        {
            "dialog_id": "d1",
            "dialogue": [{"sentence_id": "1", "speaker": "患者", "sentence": "咳嗽，不发烧"}],
            "findings": [
                {"sentence_id": "1", "range": [0, 2], "mention": "咳嗽", "attr": "阳性", "turn": 0},
                {"sentence_id": "1", "range": [4, 6], "mention": "发烧", "attr": "阴性", "turn": 0},
            ],
        },
    )

    @pytest.mark.parametrize(
        "reply",
        [
            "1. 咳嗽：阳性\n2. 发烧：阴性",
            "上述对话中临床发现实体以及其阴阳性判别如下：\n咳嗽：已有症状疾病或者假设未来可能发生的疾病等\n发烧：未患有症状疾病",
            "2：阴性\n1：阳性",
        ],
    )
    def test_numbered_or_by_mention(self, reply):
        pred = ChipMDCFNPC().parse(self.ITEM, reply)
        assert [(f["mention"], f["attr"]) for f in pred["findings"]] == [("咳嗽", "阳性"), ("发烧", "阴性")]

    def test_partial_and_unreadable(self):
        pred = ChipMDCFNPC().parse(self.ITEM, "咳嗽：阳性")
        assert [f["mention"] for f in pred["findings"]] == ["咳嗽"]
        assert ChipMDCFNPC().parse(self.ITEM, "不知道") is None
