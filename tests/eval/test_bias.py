"""Bias probes: counterfactual vignettes (flips, log-likelihood shifts, text differences) and attitude items."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medgo.errors import InputError
from medgo.eval.tasks import TaskContext, get_task
from medgo.eval.tasks.bias import BiasProbes, text_difference, total_variation

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_variants_change_one_attribute_at_a_time(eval_data_dir):
    (item, _) = get_task("bias").load(eval_data_dir)
    variants = BiasProbes.variants(item.record)
    assert [(a, v) for a, v, _ in variants] == [
        (None, None),
        ("gender", "女"),
        ("insurance", "没有医保"),
        ("insurance", "自费"),
    ]
    assert variants[0][2].startswith("患者男，有医保。")
    assert variants[1][2].startswith("患者女，有医保。")
    assert variants[3][2].startswith("患者男，自费。")


def test_flips_shifts_and_text_differences_per_attribute(eval_data_dir, scripted_backend):
    task = get_task("bias")
    items = task.load(eval_data_dir)
    # The scripted model changes its answer (and its advice) only for female patients.
    backend = scripted_backend(
        letters={"患者女": "A", "": "B"},
        replies={"患者女": "女患者先回家观察，明天再说。"},
        default_reply="男患者建议立即就医。",
    )
    result = task.evaluate(backend, items, max_new_tokens=16)
    attrs = result.details["attributes"]
    assert attrs["gender"]["flip_rate"] == 1.0 and attrs["insurance"]["flip_rate"] == 0.0
    assert attrs["gender"]["n"] == 2
    low, high = attrs["gender"]["flip_ci"]
    assert low < 1.0 and high == 1.0
    expected_tv = total_variation(
        [1 / (1 + math.exp(-5)), 1 - 1 / (1 + math.exp(-5))],
        [1 - 1 / (1 + math.exp(-5)), 1 / (1 + math.exp(-5))],
    )
    assert attrs["gender"]["loglik_shift"] == pytest.approx(expected_tv)
    assert attrs["insurance"]["loglik_shift"] == 0.0
    assert attrs["gender"]["text_difference"] > 0.5 and attrs["insurance"]["text_difference"] == 0.0
    assert result.value == pytest.approx(0.5)  # 2 flipped of 4 (vignette, attribute) pairs
    assert result.secondary["flip_rate/gender"] == 1.0
    values = {(v["attribute"], v["value"]): v for v in result.details["values"]}
    assert values[("insurance", "自费")]["flip_rate"] == 0.0 and values[("gender", "女")]["n"] == 2
    assert not task.gated and not task.higher_is_better


def test_text_difference_ignores_the_attribute_words_themselves():
    assert text_difference("男性患者建议就医", "女性患者建议就医", ["男", "女"]) == 0.0
    assert text_difference("建议就医", "回家观察") == 1.0
    assert text_difference("", "") == 0.0


def test_generate_mode_reads_the_letters(eval_data_dir, scripted_backend):
    task = get_task("bias").configure(TaskContext(data_dir=eval_data_dir, mcq_mode="generate"))
    backend = scripted_backend(replies={"自费": "答案：A"}, default_reply="B")
    result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=8)
    attrs = result.details["attributes"]
    assert attrs["insurance"]["flip_rate"] == 1.0 and attrs["gender"]["flip_rate"] == 0.0
    assert attrs["insurance"]["loglik_shift"] is None  # no log-likelihoods in this mode


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"attributes": {"religion": {"reference": "a", "variants": ["b"]}}}, "unknown attribute 'religion'"),
        (
            {"attributes": {"gender": {"reference": "男", "variants": ["男"]}}},
            "variants must be non-empty strings other",
        ),
        (
            {
                "vignettes": [
                    {"case": "患者{age}。", "question": "q", "option": {"A": "x", "B": "y"}, "answer": "A"}
                ]
            },
            "placeholders of the declared",
        ),
        (
            {
                "vignettes": [
                    {"case": "患者{gender}。", "question": "q", "option": {"A": "x", "B": "y"}, "answer": "C"}
                ]
            },
            "field 'answer'",
        ),
    ],
)
def test_malformed_vignette_files(tmp_path, eval_records, change, pattern):
    write_json(tmp_path / "bias/vignettes.json", {**eval_records["bias"], **change})
    with pytest.raises(InputError, match=pattern):
        get_task("bias").load(tmp_path)


def test_sample_vignettes_vary_all_five_attributes():
    items = get_task("bias").load(SAMPLES)
    assert len(items) == 10
    for item in items:
        assert set(item.record["attributes"]) == {"gender", "age", "region", "insurance", "ethnicity"}
        assert len(BiasProbes.variants(item.record)) == 10


class TestAttitudes:
    def test_expected_agreement_reverse_scored_as_stigma(self, eval_data_dir, scripted_backend):
        task = get_task("attitudes")
        items = task.load(eval_data_dir)
        # Agrees strongly with the stigmatising statement and disagrees with the other: most stigma.
        backend = scripted_backend(letters={"危险": "5", "可以治疗": "1"})
        result = task.evaluate(backend, items, max_new_tokens=4)
        weights = [math.exp(0 if k == 5 else -5) for k in range(1, 6)]
        high = sum(k * w for k, w in zip(range(1, 6), weights, strict=True)) / sum(weights)
        assert [o.stats["stigma"] for o in result.outcomes] == pytest.approx([high, high])
        assert result.value == pytest.approx(high)
        assert set(result.details["subscales"]) == {"社会限制", "权威主义"}
        assert result.metric == "stigma_score" and not task.higher_is_better

    def test_generate_mode_and_unreadable_answers(self, eval_data_dir, scripted_backend):
        task = get_task("attitudes").configure(TaskContext(data_dir=eval_data_dir, mcq_mode="generate"))
        backend = scripted_backend(replies={"危险": "我选 2"}, default_reply="不好说")
        result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=4)
        assert [o.stats["stigma"] for o in result.outcomes] == [2.0, 3.0]
        assert [o.parsed for o in result.outcomes] == [True, False]

    def test_sample_items_are_balanced(self):
        items = get_task("attitudes").load(SAMPLES)
        assert len(items) == 12
        assert sum(i.record["stigmatizing"] for i in items) == 6

    def test_malformed(self, tmp_path):
        write_json(
            tmp_path / "bias/attitudes.json",
            {"items": [{"statement": "x", "subscale": "s", "stigmatizing": "yes"}]},
        )
        with pytest.raises(InputError, match="field 'stigmatizing': item 0: expected bool"):
            get_task("attitudes").load(tmp_path)


def test_real_tiny_model_runs_the_probes(chatty_backend):
    task = get_task("bias")
    result = task.evaluate(chatty_backend, task.load(SAMPLES, max_items=2), max_new_tokens=6)
    for entry in result.details["attributes"].values():
        assert 0.0 <= entry["flip_rate"] <= 1.0 and 0.0 <= entry["loglik_shift"] <= 1.0
        assert entry["text_difference_ci"][0] <= entry["text_difference"] <= entry["text_difference_ci"][1]
    attitudes = get_task("attitudes")
    scored = attitudes.evaluate(chatty_backend, attitudes.load(SAMPLES), max_new_tokens=4)
    assert 1.0 <= scored.value <= 5.0
