"""Tasks: official layouts in, prompts out, answers parsed back and scored by the official metric."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from medgo.errors import ConfigError, InputError
from medgo.eval.metrics import micro_f1
from medgo.eval.tasks import TASKS, EvalItem, get_task
from medgo.eval.tasks.cblue import (
    QIC_LABELS,
    CMeEE,
    entity_spans,
    locate_entities,
    parse_entity_lines,
    parse_same_meaning,
    parse_single_label,
)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_registry_has_the_skeleton_tasks_and_rejects_unknown_names():
    assert {"CMeEE", "KUAKE-QIC", "CHIP-STS", "mcq", "safety"} <= set(TASKS)
    with pytest.raises(ConfigError, match="unknown evaluation task 'Text2DT'.*available: CMeEE"):
        get_task("Text2DT")


class TestCMeEE:
    TEXT = "患者有高血压和糖尿病，服用阿司匹林。"

    def test_parse_round_trips_to_official_layout_with_inclusive_end(self, eval_records):
        item = EvalItem("CMeEE-0", {"text": self.TEXT, "entities": []})
        pred = CMeEE().parse(item, "疾病：高血压，糖尿病\n药物：阿司匹林")
        assert pred == {
            "text": self.TEXT,
            "entities": [
                {"start_idx": 3, "end_idx": 5, "type": "dis", "entity": "高血压"},
                {"start_idx": 7, "end_idx": 9, "type": "dis", "entity": "糖尿病"},
                {"start_idx": 13, "end_idx": 16, "type": "dru", "entity": "阿司匹林"},
            ],
        }
        for e in pred["entities"]:
            assert self.TEXT[e["start_idx"] : e["end_idx"] + 1] == e["entity"]
        # The parsed prediction matches the gold record's spans exactly.
        assert entity_spans(pred["entities"]) == entity_spans(eval_records["CMeEE"][0]["entities"])

    def test_a_mention_is_marked_as_often_as_it_is_listed(self):
        assert locate_entities("左肺结节，右肺结节。", [("dis", "结节")]) == [
            {"start_idx": 2, "end_idx": 3, "type": "dis", "entity": "结节"},
        ]
        assert len(locate_entities("左肺结节，右肺结节。", [("dis", "结节")] * 2)) == 2

    def test_strings_not_in_the_text_and_unknown_types_are_dropped(self):
        item = EvalItem("x", {"text": "头痛三天，伴发热。", "entities": []})
        pred = CMeEE().parse(item, "- 临床表现: 头痛、呕吐\n器官：头\n疾病：无")
        assert [(e["entity"], e["type"]) for e in pred["entities"]] == [("头痛", "sym")]

    def test_none_answer_versus_unreadable_answer(self):
        assert parse_entity_lines("无。") == []
        assert parse_entity_lines("答案：无") == []
        assert parse_entity_lines("这个句子很好") is None
        assert parse_entity_lines("") is None

    def test_outcome_stats_reproduce_micro_f1(self, eval_records):
        task = CMeEE()
        gold = eval_records["CMeEE"]
        items = [EvalItem(f"CMeEE-{i}", r) for i, r in enumerate(gold)]
        replies = ["疾病：高血压\n药物：阿司匹林，布洛芬", "胡言乱语", "无"]
        preds = [task.parse(item, reply) for item, reply in zip(items, replies, strict=True)]
        outcomes = [task.outcome(item, pred) for item, pred in zip(items, preds, strict=True)]
        assert [o.parsed for o in outcomes] == [True, False, True]
        assert [o.score for o in outcomes] == [pytest.approx(0.8), 0.0, 1.0]
        expected = micro_f1(
            [entity_spans(r["entities"]) for r in gold],
            [entity_spans(p["entities"]) if p else set() for p in preds],
        )
        assert task.aggregate([o.stats for o in outcomes]) == pytest.approx(expected["f1"])
        assert expected["f1"] == pytest.approx(2 * (2 / 2) * (2 / 5) / (1 + 2 / 5))
        # Unparseable on an item without gold entities: no effect on micro-F1, but ranked worst.
        unreadable = task.outcome(items[2], task.parse(items[2], "胡言乱语"))
        assert (unreadable.parsed, unreadable.score) == (False, 0.0)
        assert {k: unreadable.stats[k] for k in ("tp", "pred", "gold")} == {"tp": 0, "pred": 0, "gold": 0}

    def test_exclusive_end_idx_is_rejected_naming_item_and_field(self, tmp_path):
        bad = [
            {
                "text": self.TEXT,
                "entities": [{"start_idx": 3, "end_idx": 6, "type": "dis", "entity": "高血压"}],
            }
        ]
        write_json(tmp_path / "CMeEE/CMeEE_dev.json", bad)
        with pytest.raises(
            InputError, match=r"CMeEE_dev.json field 'end_idx': item 0 entities\[0\].*inclusive"
        ):
            CMeEE().load(tmp_path)

    @pytest.mark.parametrize(
        ("content", "pattern"),
        [
            ('[{"text": "头痛", "entities": []},\n  {"text": ', r"CMeEE_dev.json:2: malformed JSON"),
            ({"text": "头痛"}, r"expected a JSON array"),
            ([{"entities": []}], r"field 'text': item 0: missing"),
            (
                [
                    {
                        "text": "头痛",
                        "entities": [{"start_idx": "0", "end_idx": 1, "type": "sym", "entity": "头痛"}],
                    }
                ],
                r"field 'start_idx': item 0 entities\[0\]: expected int, got str",
            ),
            (
                [
                    {
                        "text": "头痛",
                        "entities": [{"start_idx": 0, "end_idx": 1, "type": "symptom", "entity": "头痛"}],
                    }
                ],
                r"field 'type': item 0 entities\[0\]: unknown type 'symptom'",
            ),
            ([], r"task CMeEE has no items"),
        ],
    )
    def test_malformed_files_name_file_and_place(self, tmp_path, content, pattern):
        write_json(tmp_path / "CMeEE/CMeEE_dev.json", content)
        with pytest.raises(InputError, match=pattern):
            CMeEE().load(tmp_path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match=r"CMeEE_dev.json: evaluation data file not found"):
            CMeEE().load(tmp_path)


class TestKuakeQIC:
    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("治疗方案", "治疗方案"),
            ("答案：病因分析。", "病因分析"),
            ("这条搜索词的意图是就医建议", "就医建议"),
            ("病情诊断或者病因分析", "病情诊断"),
            ("可能是病情诊断，也可能是病因分析", None),
            ("不知道", None),
        ],
    )
    def test_parse(self, reply, label):
        assert parse_single_label(reply, QIC_LABELS) == label

    def test_unknown_gold_label_is_rejected(self, tmp_path):
        write_json(tmp_path / "KUAKE-QIC/KUAKE-QIC_dev.json", [{"id": "q", "query": "头痛", "label": "症状"}])
        with pytest.raises(InputError, match=r"field 'label': item 0: unknown label '症状'"):
            get_task("KUAKE-QIC").load(tmp_path)

    def test_unparseable_answers_count_as_wrong_and_are_logged_by_id(
        self, eval_data_dir, scripted_backend, caplog
    ):
        task = get_task("KUAKE-QIC")
        backend = scripted_backend(
            replies={"高血压吃什么药好": "治疗方案", "头痛是什么原因": "病情诊断"},
            default_reply="胃镜检查很贵，我也说不清",
        )
        with caplog.at_level(logging.WARNING, logger="medgo.eval"):
            result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=8)
        assert result.value == pytest.approx(1 / 3)
        assert result.parse_failures == 1
        warning = next(r for r in caplog.records if "unparseable" in r.getMessage())
        assert warning.fields["item_ids"] == "q3"
        assert "胃镜" not in caplog.text


class TestChipSTS:
    @pytest.mark.parametrize(
        ("reply", "label"),
        [
            ("是", "1"),
            ("是的，意思相同。", "1"),
            ("否", "0"),
            ("不相同", "0"),
            ("两句话意思不一样", "0"),
            ("两句意思相同", "1"),
            ("答案：1", "1"),
            ("0", "0"),
            ("我不确定", None),
            ("无法判断", None),
            ("", None),
        ],
    )
    def test_parse(self, reply, label):
        assert parse_same_meaning(reply) == label

    def test_macro_f1_with_an_unparseable_answer(self, eval_data_dir, scripted_backend):
        task = get_task("CHIP-STS")
        # s1 right (1), s2 right (0), s3 unparseable (gold 1), s4 wrong (pred 1, gold 0).
        backend = scripted_backend(
            replies={
                "糖尿病能吃西瓜吗": "是",
                "高血压怎么治疗": "否",
                "感冒发烧吃什么药": "嗯……",
                "乙肝会传染吗": "是",
            }
        )
        result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=4)
        # "0": P=1/1 R=1/2 F=2/3; "1": P=1/2 R=1/2 F=1/2 → macro 7/12.
        assert result.value == pytest.approx(7 / 12)
        assert result.parse_failures == 1
        assert [p.get("label") for p in result.predictions] == ["1", "0", None, "1"]

    def test_integer_labels_are_read_as_strings_and_others_rejected(self, tmp_path):
        path = write_json(
            tmp_path / "CHIP-STS/CHIP-STS_dev.json", [{"id": "a", "text1": "x", "text2": "y", "label": 1}]
        )
        assert get_task("CHIP-STS").load(tmp_path)[0].record["label"] == "1"
        write_json(path, [{"id": "a", "text1": "x", "text2": "y", "label": "2"}])
        with pytest.raises(InputError, match="field 'label'"):
            get_task("CHIP-STS").load(tmp_path)


def test_duplicate_ids_are_rejected(tmp_path):
    write_json(tmp_path / "KUAKE-QIC/KUAKE-QIC_dev.json", [{"id": "q", "query": "a", "label": "其他"}] * 2)
    with pytest.raises(InputError, match=r"field 'id': item 1: duplicate id 'q'"):
        get_task("KUAKE-QIC").load(tmp_path)


def test_scores_are_finite_on_the_tiny_model(eval_data_dir, chatty_backend):
    """Every generative task runs end to end on a real model without crashing on its nonsense."""
    for name in ("CMeEE", "KUAKE-QIC", "CHIP-STS"):
        task = get_task(name)
        result = task.evaluate(chatty_backend, task.load(eval_data_dir), max_new_tokens=8)
        assert math.isfinite(result.value) and 0.0 <= result.value <= 1.0
        assert len(result.predictions) >= len(result.outcomes) > 0
