"""CBLUE / PromptCBLUE metric definitions: hand-computed cases, and scikit-learn, rouge-chinese and
transformers' BasicTokenizer (what the official scorers call) on random cases."""

from __future__ import annotations

import math
import random

import pytest

from medgo.eval.tasks.cblue.scoring import (
    EMPTY_TEXT,
    bleu_counts,
    char_tokens,
    class_f1,
    corpus_bleu,
    item_f1,
    micro_prf,
    promptcblue_class_f1,
    reciprocal_rank,
    rouge_l,
    rouge_scores,
    set_counts,
    spaced,
)


class TestClassF1:
    def test_three_classes_hand_computed(self):
        # 0: P=1/2 R=1/2 F=1/2; 1: P=2/3 R=1 F=4/5; 2: F=0 (support 1).
        gold, pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
        assert class_f1(gold, pred, "macro") == pytest.approx((0.5 + 0.8 + 0.0) / 3)
        assert class_f1(gold, pred, "weighted") == pytest.approx((0.5 * 2 + 0.8 * 2 + 0.0 * 1) / 5)

    def test_unreadable_answer_is_wrong_without_a_class_of_its_own(self):
        # "0": F=1 (support 1); "1": P=1 R=1/2 F=2/3 (support 2).
        gold, pred = ["0", "1", "1"], ["0", None, "1"]
        assert class_f1(gold, pred, "macro") == pytest.approx(5 / 6)
        assert class_f1(gold, pred, "weighted") == pytest.approx((1 + 2 * 2 / 3) / 3)

    def test_a_label_only_predicted_is_averaged_in_as_sklearn_does(self):
        # a: P=1 R=1/2 F=2/3; b (never gold, support 0): F=0.
        assert class_f1(["a", "a"], ["a", "b"], "macro") == pytest.approx(1 / 3)
        assert class_f1(["a", "a"], ["a", "b"], "weighted") == pytest.approx(2 / 3)

    def test_promptcblue_turns_unreadable_into_the_first_label(self):
        # PromptCBLUE STS: None -> "1" (是的). gold 0,1,1 pred 0,1,1 after the fallback -> perfect.
        assert promptcblue_class_f1(["0", "1", "1"], ["0", None, "1"], "1", "weighted") == 1.0
        # CTC: None -> "非上述类型", a class no gold item has: it enters the macro average with F=0.
        assert promptcblue_class_f1(["A", "B"], ["A", None], "非上述类型", "macro") == pytest.approx(
            (1.0 + 0.0 + 0.0) / 3
        )

    def test_errors(self):
        with pytest.raises(ValueError, match="zero items"):
            class_f1([], [], "macro")
        with pytest.raises(ValueError, match="unknown average"):
            class_f1(["a"], ["a"], "micro")
        with pytest.raises(ValueError, match="items"):
            class_f1(["a"], ["a", "b"], "macro")

    def test_matches_scikit_learn_on_random_cases(self):
        """The official CBLUE scorer calls sklearn's precision_recall_fscore_support and PromptCBLUE's
        calls classification_report (both zero_division=0): same numbers on random label lists."""
        from sklearn.metrics import classification_report, f1_score

        rng = random.Random(0)
        for _ in range(100):
            labels = [f"c{i}" for i in range(rng.randint(1, 6))]
            n = rng.randint(1, 30)
            gold = [rng.choice(labels) for _ in range(n)]
            pred = [rng.choice(labels + ["extra"]) for _ in range(n)]
            for average in ("macro", "weighted"):
                expected = f1_score(gold, pred, average=average, zero_division=0)
                assert class_f1(gold, pred, average) == pytest.approx(expected)
            with_none = [None if rng.random() < 0.2 else p for p in pred]
            report = classification_report(
                gold, [labels[0] if p is None else p for p in with_none], output_dict=True, zero_division=0
            )
            for average, key in (("macro", "macro avg"), ("weighted", "weighted avg")):
                got = promptcblue_class_f1(gold, with_none, labels[0], average)
                assert got == pytest.approx(report[key]["f1-score"])


class TestCounts:
    def test_micro_prf_sums_counts_over_items(self):
        stats = [set_counts({1, 2, 3}, {1, 2, 4, 5}), set_counts({6}, set()), set_counts(set(), {7})]
        # tp=2, pred=5, gold=4: P=2/5 R=1/2 F=4/9.
        assert micro_prf(stats) == pytest.approx({"precision": 0.4, "recall": 0.5, "f1": 4 / 9})

    def test_prefixed_counts_are_kept_apart(self):
        stats = [{**set_counts({1}, {1}), **set_counts({1}, {2}, "pc_")}]
        assert micro_prf(stats)["f1"] == 1.0 and micro_prf(stats, "pc_")["f1"] == 0.0

    def test_no_true_positive_is_zero_like_promptcblue(self):
        assert micro_prf([set_counts({1}, {2})]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}

    def test_item_f1(self):
        assert item_f1(0, 0, 0) == 1.0
        assert item_f1(1, 2, 1) == pytest.approx(2 / 3)


def test_reciprocal_rank_at_10():
    assert reciprocal_rank(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b"], {"b", "a"}) == 1.0
    assert reciprocal_rank([str(i) for i in range(20)], {"10"}) == 0.0  # 11th place: outside the top 10
    assert reciprocal_rank([], {"a"}) == 0.0


class TestTokens:
    def test_hand_checked(self):
        assert char_tokens("患者CT检查，HbA1c 7.5%。") == [
            "患",
            "者",
            "ct",
            "检",
            "查",
            "，",
            "hba1c",
            "7",
            ".",
            "5",
            "%",
            "。",
        ]
        assert char_tokens("  ") == []
        assert spaced("") == EMPTY_TEXT
        assert spaced("头痛。") == "头 痛 。"

    def test_same_tokens_as_transformers_basic_tokenizer(self):
        """PromptCBLUE splits with ``transformers.BasicTokenizer(tokenize_chinese_chars=True)``."""
        from transformers import BasicTokenizer

        reference = BasicTokenizer(tokenize_chinese_chars=True)
        fixed = [
            "患者男，65岁，主诉“胸闷3天”。",
            "Café résumé naïve — ＣＴ检查（增强）",
            "血压150/95mmHg，心率120次/分\t呼吸20次/分\n",
            "A.B,C;D:E!F?G(H)[I]{J}",
            "𠀀𠀁测试\x00\ufffd\u200b零宽",
        ]
        rng = random.Random(1)
        pool = "患者头痛发热abcXYZ012 ，。！？.,-%()（）éÅ\t\n" + "ｑｗ"
        randoms = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(200)]
        for text in fixed + randoms:
            assert char_tokens(text) == reference.tokenize(text), text


class TestRouge:
    def test_hand_computed(self):
        # 4 tokens each, LCS 3 -> P = R = F = 3/4 (rouge-chinese adds 1e-8 to the F denominator).
        assert rouge_l("患者头痛", "患者头晕") == pytest.approx(0.75, abs=1e-6)
        assert rouge_l("头痛", "头痛") == pytest.approx(1.0, abs=1e-6)
        assert rouge_l("头痛", "腹泻") == pytest.approx(0.0, abs=1e-6)

    def test_empty_sides_are_scored_as_promptcblue_does(self):
        # "" -> "无 。" (2 tokens) against "无" (1 token): LCS 1, P = 1/2, R = 1, F = 2/3.
        assert rouge_l("", "无") == pytest.approx(2 / 3, abs=1e-6)
        assert rouge_l("", "") == pytest.approx(1.0, abs=1e-6)

    def test_equals_rouge_chinese_on_spaced_tokens(self):
        from rouge_chinese import Rouge

        pairs = [("患儿咳嗽三天，伴发热。", "咳嗽三天。发热一天。"), ("建议多饮水", "多喝水，注意休息")]
        for prediction, reference in pairs:
            expected = Rouge().get_scores(spaced(prediction), spaced(reference))[0]
            got = rouge_scores(prediction, reference)
            assert got == pytest.approx({m: expected[m]["f"] for m in ("rouge-1", "rouge-2", "rouge-l")})


class TestBleu:
    def test_brevity_penalty_hand_computed(self):
        # Every hypothesis n-gram is in the reference; 6 tokens against 7 -> BP = exp(1 - 7/6).
        counts = [bleu_counts("猫坐在垫子上", "猫坐在垫子上面")]
        assert counts[0]["match"] == [6, 5, 4, 3] and counts[0]["total"] == [6, 5, 4, 3]
        assert corpus_bleu(counts, 4) == pytest.approx(math.exp(1 - 7 / 6))

    def test_clipping_and_missing_orders(self):
        counts = [bleu_counts("的的的的", "的猫")]
        assert counts[0]["match"][:2] == [1, 0]  # "的" clipped to its one reference occurrence
        assert corpus_bleu(counts, 1) == pytest.approx(1 / 4)  # longer than the reference: BP = 1
        assert corpus_bleu(counts, 2) == 0.0

    def test_corpus_sums_counts_before_dividing(self):
        a, b = bleu_counts("头痛", "头痛"), bleu_counts("发热", "咳嗽")
        # unigrams: 2 of 4 match; bigrams: 1 of 2 -> BLEU-2 = sqrt(1/2 * 1/2), lengths equal.
        assert corpus_bleu([a, b], 2) == pytest.approx(0.5)

    def test_zero_items(self):
        with pytest.raises(ValueError, match="zero items"):
            corpus_bleu([], 4)
