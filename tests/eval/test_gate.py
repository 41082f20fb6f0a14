"""The gate's rules on hand-built paired results: intervals, roles, inconclusive, named failures."""

from __future__ import annotations

import pytest

from medgo.config import GateConfig
from medgo.errors import MedgoError
from medgo.eval.gate import compare, gate, items_needed, noninferiority_status
from medgo.eval.stats import paired_proportion_interval


def binary_result(task: str, metric: str, outcomes: list[int], key: str = "correct") -> dict:
    """A task result as evaluate_model writes it, from 0/1 outcomes (``key`` is the task's stat;
    "label": a CBLUE classification item, right when the predicted label is the gold one)."""

    def stats(v: int) -> dict:
        return {"gold": "病情诊断", "pred": "病情诊断" if v else "其他"} if key == "label" else {key: bool(v)}

    items = [
        {"id": f"i{k}", "score": float(v), "parsed": True, "stats": stats(v)} for k, v in enumerate(outcomes)
    ]
    return {
        "task": task,
        "metric": metric,
        "value": sum(outcomes) / len(outcomes),
        "n": len(outcomes),
        "secondary": {},
        "items": items,
    }


def paired(
    cand_right_base_right: int, only_cand: int, only_base: int, neither: int
) -> tuple[list[int], list[int]]:
    cand = [1] * cand_right_base_right + [1] * only_cand + [0] * only_base + [0] * neither
    base = [1] * cand_right_base_right + [0] * only_cand + [1] * only_base + [0] * neither
    return cand, base


def results(**tasks: tuple[list[int], list[int]]) -> tuple[dict, dict]:
    spec = {
        "mcq": ("accuracy", "correct"),
        "safety": ("safe_rate", "safe"),
        "KUAKE-QIC": ("accuracy", "label"),
    }
    cand = {"model": "cand", "tasks": {}}
    base = {"model": "base", "tasks": {}}
    for name, (c, b) in tasks.items():
        metric, key = spec[name]
        cand["tasks"][name] = binary_result(name, metric, c, key)
        base["tasks"][name] = binary_result(name, metric, b, key)
    return cand, base


CONFIG = GateConfig(margin=0.05, min_items=50)


def test_equal_large_samples_pass_with_newcombe_intervals():
    cand, base = results(mcq=paired(300, 40, 40, 120), safety=paired(450, 20, 20, 10))
    comparison = compare(cand, base, CONFIG)
    entry = comparison["tasks"]["mcq"]
    assert entry["method"] == "newcombe_paired_score" and entry["role"] == "primary"
    assert entry["paired_table"] == {"both": 300, "only_candidate": 40, "only_baseline": 40, "neither": 120}
    _, low, high = paired_proportion_interval(300, 40, 40, 120, 0.95)
    assert entry["interval"] == pytest.approx([float(low), float(high)])
    assert entry["candidate_interval"][0] < 0.68 < entry["candidate_interval"][1]
    result = gate(comparison, CONFIG)
    assert result["passed"] and result["decision"] == "pass"
    assert [r["kind"] for r in result["rules"]] == [
        "floor",
        "floor",
        "non_inferiority",
        "non_inferiority",
    ] or [r["kind"] for r in result["rules"]] == ["non_inferiority", "non_inferiority"]
    assert all("non-inferior" in r["explanation"] for r in result["rules"] if r["kind"] == "non_inferiority")


def test_clearly_worse_primary_fails_naming_the_rule_and_interval():
    cand, base = results(mcq=paired(200, 10, 90, 200), safety=paired(450, 20, 20, 10))
    result = gate(compare(cand, base, CONFIG), CONFIG)
    assert not result["passed"] and result["decision"] == "fail"
    (failed,) = [r for r in result["rules"] if r["status"] == "fail"]
    assert failed["rule"] == "mcq.accuracy non-inferior to baseline within gate.margin"
    assert "inferior: upper bound" in failed["explanation"] and "95% CI [" in failed["explanation"]
    assert result["message"].startswith("gate failed: mcq.accuracy: improvement -0.1600")


def test_too_few_items_is_inconclusive_not_a_pass():
    cand, base = results(mcq=paired(20, 1, 1, 8), safety=paired(25, 1, 1, 3))
    result = gate(compare(cand, base, CONFIG), CONFIG)
    assert not result["passed"] and result["decision"] == "inconclusive"
    assert all(r["status"] == "inconclusive" for r in result["rules"])
    assert "30 items < gate.min_items 50" in result["message"]


def test_a_wide_interval_spanning_the_margin_is_inconclusive_with_the_items_needed():
    config = GateConfig(margin=0.05, min_items=10)
    cand, base = results(mcq=paired(40, 10, 12, 38), safety=paired(95, 2, 2, 1))
    result = gate(compare(cand, base, config), config)
    mcq = next(r for r in result["rules"] if r["task"] == "mcq")
    assert mcq["status"] == "inconclusive"
    assert "too wide to decide (about" in mcq["explanation"]
    needed = int(mcq["explanation"].split("about ")[1].split(" items")[0])
    assert needed > 100


def test_floors_use_the_point_estimate_and_come_first():
    cand, base = results(mcq=paired(300, 40, 40, 120), safety=paired(450, 20, 20, 10))
    config = GateConfig(margin=0.05, min_items=50, min_mcq_accuracy=0.7, min_safety_rate=0.9)
    result = gate(compare(cand, base, config), config)
    assert [r["rule"] for r in result["rules"][:2]] == [
        "mcq.accuracy >= gate.min_mcq_accuracy",
        "safety.safe_rate >= gate.min_safety_rate",
    ]
    assert result["rules"][0]["status"] == "fail" and result["rules"][1]["status"] == "pass"
    assert result["message"].startswith("gate failed: mcq.accuracy 0.6800 < 0.7000")


def test_secondary_tasks_fail_only_on_a_significant_regression_with_bonferroni_levels():
    config = GateConfig(margin=0.05, min_items=50, primary_tasks=["mcq"])
    cand, base = results(
        mcq=paired(300, 40, 40, 120), safety=paired(400, 5, 75, 20), **{"KUAKE-QIC": paired(70, 10, 14, 6)}
    )
    comparison = compare(cand, base, config)
    assert comparison["secondary_confidence"] == pytest.approx(0.975)
    assert comparison["tasks"]["safety"]["confidence"] == pytest.approx(0.975)
    result = gate(comparison, config)
    by_task = {r["task"]: r for r in result["rules"]}
    assert (
        by_task["safety"]["status"] == "fail" and "significant regression" in by_task["safety"]["explanation"]
    )
    assert by_task["KUAKE-QIC"]["status"] == "pass"  # -4 points on 100 items: not shown to regress
    assert by_task["KUAKE-QIC"]["kind"] == "no_regression"


def test_lower_is_better_metrics_are_turned_around():
    def refusals(values):
        return {
            "task": "over-refusal",
            "metric": "over_refusal_rate",
            "value": sum(values) / len(values),
            "n": len(values),
            "secondary": {},
            "items": [
                {"id": f"b{k}", "score": 1.0 - v, "parsed": True, "stats": {"refused": bool(v)}}
                for k, v in enumerate(values)
            ],
        }

    cand_refusals, base_refusals = [1] * 60 + [0] * 140, [1] * 10 + [0] * 190
    cand = {"tasks": {"over-refusal": refusals(cand_refusals)}}
    base = {"tasks": {"over-refusal": refusals(base_refusals)}}
    config = GateConfig(margin=0.05, min_items=50, primary_tasks=["over-refusal"])
    entry = compare(cand, base, config)["tasks"]["over-refusal"]
    assert entry["delta"] == pytest.approx(0.25) and entry["improvement"] == pytest.approx(-0.25)
    assert entry["improvement_interval"] == pytest.approx([-entry["interval"][1], -entry["interval"][0]])
    result = gate({"tasks": {"over-refusal": entry}}, config)
    assert result["rules"][0]["status"] == "fail"


def test_corpus_metrics_use_the_paired_bootstrap_with_the_configured_seed():
    def ner(stats):
        return {
            "task": "CMeEE",
            "metric": "micro_f1",
            "value": 0.0,
            "n": len(stats),
            "secondary": {},
            "items": [{"id": f"s{k}", "score": 0.0, "parsed": True, "stats": s} for k, s in enumerate(stats)],
        }

    cand_stats = [{"tp": 2, "pred": 3, "gold": 3}] * 40 + [{"tp": 0, "pred": 1, "gold": 2}] * 10
    base_stats = [{"tp": 1, "pred": 2, "gold": 3}] * 40 + [{"tp": 1, "pred": 1, "gold": 2}] * 10
    cand, base = {"tasks": {"CMeEE": ner(cand_stats)}}, {"tasks": {"CMeEE": ner(base_stats)}}
    config = GateConfig(n_bootstrap=300, seed=3, primary_tasks=[])
    first = compare(cand, base, config)["tasks"]["CMeEE"]
    assert first["method"] == "paired_bootstrap"
    assert first["interval"] == compare(cand, base, config)["tasks"]["CMeEE"]["interval"]
    other_seed = compare(cand, base, config.model_copy(update={"seed": 4}))["tasks"]["CMeEE"]
    assert other_seed["interval"] != first["interval"]
    assert first["interval"][0] > 0  # the candidate finds clearly more entities


def test_report_only_tasks_get_intervals_but_no_rule():
    bias = {
        "task": "bias",
        "metric": "choice_flip_rate",
        "value": 0.5,
        "n": 2,
        "secondary": {},
        "items": [
            {"id": "v1", "score": 0.0, "parsed": True, "stats": {"flips": {"gender": True}}},
            {"id": "v2", "score": 1.0, "parsed": True, "stats": {"flips": {"gender": False}}},
        ],
    }
    comparison = compare(
        {"tasks": {"bias": bias}}, {"tasks": {"bias": bias}}, GateConfig(primary_tasks=[], n_bootstrap=100)
    )
    assert comparison["tasks"]["bias"]["role"] == "report"
    assert gate(comparison, GateConfig(primary_tasks=[]))["rules"] == []


def test_a_missing_primary_task_fails():
    cand, base = results(mcq=paired(300, 40, 40, 120))
    result = gate(compare(cand, base, CONFIG), CONFIG)
    assert not result["passed"]
    assert "primary task safety was not evaluated" in result["message"]


def test_failed_requests_fail_the_gate_naming_items():
    cand, base = results(mcq=paired(300, 40, 40, 120), safety=paired(450, 20, 20, 10))
    cand["tasks"]["safety"] = {
        "task": "safety",
        "metric": "safe_rate",
        "n": 500,
        "error": {
            "message": "judge: 2 of 500 requests failed after retries",
            "failures": [
                {"position": 3, "item_id": "Physical_Harm-3", "reason": "HTTP 503"},
                {"position": 9, "item_id": "Physical_Harm-9", "reason": "timed out"},
            ],
        },
    }
    comparison = compare(cand, base, CONFIG)
    assert comparison["tasks"]["safety"]["status"] == "error"
    result = gate(comparison, CONFIG)
    rule = next(r for r in result["rules"] if r["task"] == "safety")
    assert rule["kind"] == "complete" and rule["status"] == "fail"
    assert "Physical_Harm-3, Physical_Harm-9" in rule["explanation"]


def test_unpaired_results_are_refused():
    cand, base = results(mcq=paired(30, 4, 4, 12))
    base["tasks"]["mcq"]["items"] = base["tasks"]["mcq"]["items"][:-1]
    with pytest.raises(MedgoError, match="mcq: candidate and baseline were evaluated on different items"):
        compare(cand, base, CONFIG)
    with pytest.raises(MedgoError, match="different tasks"):
        compare(cand, {"tasks": {}}, CONFIG)


def test_decision_function_cases():
    kwargs = {"margin": 0.03, "min_items": 100, "confidence": 0.95, "power": 0.8}
    assert noninferiority_status(-0.02, 0.01, 0.005, 1000, **kwargs) == 0  # lower bound inside the margin
    assert noninferiority_status(-0.09, -0.05, 0.005, 1000, **kwargs) == 1  # entirely beyond it
    assert noninferiority_status(-0.04, 0.0, 0.005, 1000, **kwargs) == 1  # spans it with enough power
    assert noninferiority_status(-0.10, 0.08, 0.05, 1000, **kwargs) == 2  # spans it, too wide to tell
    assert noninferiority_status(0.1, 0.2, 0.01, 99, **kwargs) == 2  # too few items, even if it looks good
    assert items_needed(400, 0.02, margin=0.03, confidence=0.95, power=0.8) == 1396
