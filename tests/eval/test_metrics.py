"""Official metric definitions against hand-computed values."""

from __future__ import annotations

import random

import pytest

from medgo.eval.metrics import (
    accuracy,
    macro_f1,
    micro_f1,
    prf_from_counts,
    wilson_interval,
)

A, B, C, D, E = (0, 1, "dis"), (2, 3, "sym"), (4, 6, "dru"), (7, 8, "bod"), (9, 9, "mic")


class TestMicroF1:
    def test_partial_overlap(self):
        # 2 of 4 predictions right, 2 of 3 gold found: P=1/2, R=2/3, F1=4/7.
        got = micro_f1([{A, B, C}], [{A, B, D, E}])
        assert got == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7})

    def test_counts_are_summed_over_items_and_items_stay_apart(self):
        # The same tuple in different items is not a match across items.
        got = micro_f1([{A}, {B}, {C}, set()], [{A}, {D}, set(), {C}])
        assert got == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})

    def test_duplicate_tuples_count_once(self):
        assert micro_f1([[A, A]], [[A, A, A]]) == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})

    def test_empty_predictions_score_zero(self):
        assert micro_f1([{A, B}], [set()]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}

    def test_nothing_to_find_and_nothing_found_is_zero_not_perfect(self):
        assert micro_f1([set(), set()], [set(), set()]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}

    def test_all_wrong_and_perfect(self):
        assert micro_f1([{A}, {B}], [{B}, {A}])["f1"] == 0.0
        assert micro_f1([{A}, {B, C}], [{A}, {C, B}])["f1"] == 1.0

    def test_item_count_mismatch_is_an_error(self):
        with pytest.raises(ValueError, match="items"):
            micro_f1([{A}], [{A}, {B}])

    def test_from_counts_matches_sets(self):
        assert prf_from_counts(2, 4, 3) == pytest.approx(micro_f1([{A, B, C}], [{A, B, D, E}]))


class TestMacroF1:
    def test_three_classes_one_never_predicted(self):
        # class 0: P=1/2 R=1/2 F=1/2; class 1: P=2/3 R=1 F=4/5; class 2 (never predicted): F=0.
        assert macro_f1([0, 0, 1, 1, 2], [0, 1, 1, 1, 0]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)

    def test_label_only_in_predictions_is_averaged_in(self):
        # a: P=1 R=1/2 F=2/3; b (predicted, never gold): F=0.
        assert macro_f1(["a", "a"], ["a", "b"]) == pytest.approx(1 / 3)

    def test_explicit_labels_make_an_unparseable_answer_wrong_without_a_new_class(self):
        # "0": F=1; "1": P=1 R=1/2 F=2/3. None is not averaged in.
        assert macro_f1(["0", "1", "1"], ["0", None, "1"], labels=["0", "1"]) == pytest.approx(5 / 6)

    def test_explicit_label_absent_everywhere_scores_zero(self):
        assert macro_f1(["0", "0"], ["0", "0"], labels=["0", "1"]) == pytest.approx(0.5)

    def test_perfect_and_all_wrong(self):
        assert macro_f1(["0", "1", "1"], ["0", "1", "1"]) == 1.0
        assert macro_f1(["0", "1"], ["1", "0"]) == 0.0

    def test_empty_and_mismatched_inputs_are_errors(self):
        with pytest.raises(ValueError, match="zero items"):
            macro_f1([], [])
        with pytest.raises(ValueError, match="items"):
            macro_f1(["0"], ["0", "1"])


def test_accuracy():
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy([0, 0]) == 0.0
    with pytest.raises(ValueError, match="zero items"):
        accuracy([])


class TestWilson:
    def test_eight_of_ten(self):
        assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)

    def test_extremes_stay_inside_unit_interval(self):
        assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
        assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)

    def test_wider_z_gives_wider_interval(self):
        low95, high95 = wilson_interval(5, 10)
        low99, high99 = wilson_interval(5, 10, z=2.576)
        assert low99 < low95 < 0.5 < high95 < high99

    def test_invalid_counts(self):
        with pytest.raises(ValueError):
            wilson_interval(0, 0)
        with pytest.raises(ValueError):
            wilson_interval(11, 10)


class TestAgainstScikitLearn:
    """The official CBLUE/PromptCBLUE scorers call sklearn; ours must give the same numbers."""

    @pytest.mark.parametrize("seed", range(20))
    def test_macro_f1_random_cases(self, seed):
        from sklearn.metrics import f1_score

        rng = random.Random(seed)
        labels = ["0", "1", "2", "3"][: rng.randint(2, 4)]
        n = rng.randint(1, 60)
        gold = [rng.choice(labels) for _ in range(n)]
        pred = [rng.choice(labels) for _ in range(n)]
        expected = f1_score(gold, pred, average="macro", labels=labels, zero_division=0)
        assert macro_f1(gold, pred, labels=labels) == pytest.approx(expected, abs=1e-12)
        observed = sorted(set(gold) | set(pred))
        assert macro_f1(gold, pred) == pytest.approx(
            f1_score(gold, pred, average="macro", labels=observed, zero_division=0), abs=1e-12
        )

    @pytest.mark.parametrize("seed", range(20))
    def test_accuracy_random_cases(self, seed):
        from sklearn.metrics import accuracy_score

        rng = random.Random(100 + seed)
        gold = [rng.randint(0, 3) for _ in range(rng.randint(1, 50))]
        pred = [g if rng.random() < 0.6 else rng.randint(0, 3) for g in gold]
        assert accuracy([g == p for g, p in zip(gold, pred, strict=True)]) == pytest.approx(
            accuracy_score(gold, pred)
        )

    @pytest.mark.parametrize("seed", range(20))
    def test_micro_f1_over_sets_random_cases(self, seed):
        """Exact-match tuple micro-F1 equals sklearn's micro F1 over a multilabel indicator matrix."""
        from sklearn.metrics import f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        rng = random.Random(200 + seed)
        universe = [(i, i + rng.randint(0, 3), t) for i in range(12) for t in ("dis", "sym")]
        gold = [set(rng.sample(universe, rng.randint(0, 4))) for _ in range(rng.randint(1, 15))]
        pred = [set(rng.sample(universe, rng.randint(0, 4))) | set(list(g)[:1]) for g in gold]
        if not any(gold) and not any(pred):
            pytest.skip("sklearn's micro F1 of nothing is 0 too, but the binarizer needs a label")
        binarizer = MultiLabelBinarizer(classes=sorted({t for s in gold + pred for t in s}, key=str))
        expected = f1_score(
            binarizer.fit_transform(gold), binarizer.transform(pred), average="micro", zero_division=0
        )
        assert micro_f1(gold, pred)["f1"] == pytest.approx(expected, abs=1e-12)
