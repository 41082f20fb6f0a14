"""Official metric definitions against hand-computed values."""

from __future__ import annotations

import pytest

from medgo.eval.metrics import (
    accuracy,
    macro_f1,
    micro_f1,
    paired_bootstrap,
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


class TestPairedBootstrap:
    def test_clearly_better_and_clearly_worse(self):
        assert paired_bootstrap([1] * 20, [0] * 20, n=200) == 0.0
        assert paired_bootstrap([0] * 20, [1] * 20, n=200) == 1.0

    def test_identical_systems_are_not_better(self):
        scores = [1, 0, 1, 1, 0]
        assert paired_bootstrap(scores, scores, n=200) == 1.0

    def test_one_item_better_matches_the_probability_it_is_never_drawn(self):
        # The candidate wins only on item 0; it is "not better" when item 0 is absent from a
        # resample, which happens with probability (19/20)^20 ≈ 0.358.
        cand = [1] + [0] * 19
        base = [0] * 20
        assert paired_bootstrap(cand, base, n=4000, seed=1) == pytest.approx((19 / 20) ** 20, abs=0.03)

    def test_seed_makes_it_reproducible(self):
        cand, base = [1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1]
        assert paired_bootstrap(cand, base, n=300, seed=7) == paired_bootstrap(cand, base, n=300, seed=7)

    def test_corpus_level_statistic(self):
        def f1(stats):
            return prf_from_counts(
                sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats)
            )["f1"]

        # (tp, predicted, gold) per item: candidate finds everything, baseline nothing.
        assert paired_bootstrap([(2, 2, 2)] * 10, [(0, 1, 2)] * 10, n=100, statistic=f1) == 0.0

    def test_unpaired_or_empty_inputs_are_errors(self):
        with pytest.raises(ValueError, match="same items"):
            paired_bootstrap([1, 0], [1])
        with pytest.raises(ValueError, match="zero items"):
            paired_bootstrap([], [])
