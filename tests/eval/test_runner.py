"""Runner: evaluate, compare, gate, and the eval stage's output directory."""

from __future__ import annotations

import json

import pytest

from medgo.config import EvalConfig, GateConfig
from medgo.errors import ConfigError, InputError, MedgoError
from medgo.eval import compare, evaluate_model, gate, load_eval_items, run_evaluation


def comparison_of(**tasks: tuple[str, float, float]) -> dict:
    """A comparison with ``task=(metric, candidate, baseline)`` entries, as :func:`compare` returns."""
    return {
        "tasks": {
            name: {
                "metric": metric,
                "candidate": cand,
                "baseline": base,
                "delta": cand - base,
                "secondary": {},
            }
            for name, (metric, cand, base) in tasks.items()
        }
    }


class TestGate:
    def test_passes_when_every_rule_holds(self):
        result = gate(
            comparison_of(mcq=("accuracy", 0.62, 0.60), safety=("refusal_rate", 0.95, 0.9)),
            GateConfig(min_mcq_accuracy=0.5, min_safety_refusal_rate=0.9, max_regression=0.02),
        )
        assert result["passed"] is True
        assert [r["rule"] for r in result["rules"]] == [
            "mcq.accuracy >= gate.min_mcq_accuracy",
            "safety.refusal_rate >= gate.min_safety_refusal_rate",
            "mcq.accuracy >= baseline - gate.max_regression",
            "safety.refusal_rate >= baseline - gate.max_regression",
        ]
        assert all(r["passed"] for r in result["rules"])
        assert result["message"] == "gate passed: all 4 rules met"

    def test_fails_below_minimum_mcq_accuracy_and_names_the_rule(self):
        result = gate(comparison_of(mcq=("accuracy", 0.45, 0.40)), GateConfig(min_mcq_accuracy=0.5))
        assert result["passed"] is False
        failed = [r for r in result["rules"] if not r["passed"]]
        assert [(r["rule"], r["value"], r["threshold"]) for r in failed] == [
            ("mcq.accuracy >= gate.min_mcq_accuracy", 0.45, 0.5)
        ]
        assert result["message"] == "gate failed: mcq.accuracy 0.4500 < 0.5000"

    def test_fails_below_minimum_refusal_rate(self):
        result = gate(
            comparison_of(safety=("refusal_rate", 0.7, 0.7)), GateConfig(min_safety_refusal_rate=0.8)
        )
        assert not result["passed"]
        assert "safety.refusal_rate 0.7000 < 0.8000" in result["message"]

    def test_regression_beyond_tolerance_fails_naming_task_and_baseline(self):
        result = gate(
            comparison_of(CMeEE=("micro_f1", 0.55, 0.60), mcq=("accuracy", 0.70, 0.71)),
            GateConfig(max_regression=0.02),
        )
        assert not result["passed"]
        assert result["message"] == "gate failed: CMeEE.micro_f1 0.5500 < 0.5800 (baseline 0.6000 - 0.02)"
        assert [(r["rule"], r["passed"]) for r in result["rules"]] == [
            ("mcq.accuracy >= gate.min_mcq_accuracy", True),
            ("CMeEE.micro_f1 >= baseline - gate.max_regression", False),
            ("mcq.accuracy >= baseline - gate.max_regression", True),
        ]

    def test_a_drop_of_exactly_max_regression_passes(self):
        assert gate(comparison_of(mcq=("accuracy", 0.5, 0.52)), GateConfig(max_regression=0.02))["passed"]

    def test_unevaluated_task_fails_a_nonzero_minimum_only(self):
        comparison = comparison_of(CMeEE=("micro_f1", 0.6, 0.6))
        assert gate(comparison, GateConfig())["passed"]
        result = gate(comparison, GateConfig(min_mcq_accuracy=0.3))
        assert not result["passed"]
        assert "mcq was not evaluated but gate.min_mcq_accuracy is 0.3" in result["message"]

    def test_over_refusal_may_not_rise_beyond_tolerance(self):
        comparison = comparison_of(safety=("refusal_rate", 1.0, 0.8))
        comparison["tasks"]["safety"]["secondary"] = {
            "over_refusal_rate": {"candidate": 0.5, "baseline": 0.1, "delta": 0.4}
        }
        result = gate(comparison, GateConfig(max_regression=0.05))
        assert not result["passed"]
        assert "safety.over_refusal_rate 0.5000 > 0.1500" in result["message"]


@pytest.fixture
def oracle(scripted_backend, eval_records):
    """A backend that answers every item of the data directory correctly."""
    cmeee = {
        r["text"]: "\n".join(
            f"{t}：{'，'.join(e['entity'] for e in r['entities'] if e['type'] == code)}"
            for code, t in (("dis", "疾病"), ("sym", "临床表现"), ("dru", "药物"))
            if any(e["type"] == code for e in r["entities"])
        )
        or "无"
        for r in eval_records["CMeEE"]
    }
    qic = {r["query"]: r["label"] for r in eval_records["KUAKE-QIC"]}
    sts = {r["text1"]: "是" if r["label"] == "1" else "否" for r in eval_records["CHIP-STS"]}
    multi = {r["question"]: r["answer"] for r in eval_records["mcq"] if len(r["answer"]) > 1}
    harmful = {p["prompt"]: "抱歉，我不能提供帮助。" for ps in eval_records["safety"].values() for p in ps}
    return scripted_backend(
        replies={**cmeee, **qic, **sts, **multi, **harmful},
        default_reply="好的，建议就医。",
        letters={r["question"]: r["answer"] for r in eval_records["mcq"]},
        name="oracle",
    )


def test_evaluate_model_scores_every_task(eval_data_dir, oracle, tmp_path):
    result = evaluate_model(oracle, eval_data_dir, EvalConfig(), predictions_dir=tmp_path / "pred")
    assert result["model"] == "oracle"
    assert {name: t["value"] for name, t in result["tasks"].items()} == {
        "CMeEE": 1.0,
        "KUAKE-QIC": 1.0,
        "CHIP-STS": 1.0,
        "mcq": 1.0,
        "safety": 1.0,
    }
    assert result["tasks"]["safety"]["secondary"]["over_refusal_rate"] == 0.0
    cmeee = result["tasks"]["CMeEE"]
    assert (cmeee["metric"], cmeee["n"], cmeee["parse_failures"], cmeee["worst"]) == ("micro_f1", 3, 0, [])
    assert [i["id"] for i in cmeee["items"]] == ["CMeEE-0", "CMeEE-1", "CMeEE-2"]
    predicted = json.loads((tmp_path / "pred/CMeEE.json").read_text(encoding="utf-8"))
    text = predicted[0]["text"]
    assert [text[e["start_idx"] : e["end_idx"] + 1] for e in predicted[0]["entities"]] == [
        "高血压",
        "糖尿病",
        "阿司匹林",
    ]


def test_compare_and_gate_both_ways(eval_data_dir, oracle, scripted_backend):
    config = EvalConfig()
    good = evaluate_model(oracle, eval_data_dir, config)
    bad = evaluate_model(scripted_backend(default_reply="嗯", name="mute"), eval_data_dir, config)

    forward = compare(good, bad, n_bootstrap=200)
    assert forward["tasks"]["KUAKE-QIC"]["delta"] == 1.0
    assert forward["tasks"]["KUAKE-QIC"]["p_candidate_not_better"] < 0.1
    assert gate(forward, config.gate)["passed"]

    backward = compare(bad, good, n_bootstrap=200)
    assert backward["tasks"]["KUAKE-QIC"]["p_candidate_not_better"] == 1.0
    assert backward["tasks"]["KUAKE-QIC"]["regressed_items"] == ["q1", "q2", "q3"]
    verdict = gate(backward, config.gate)
    assert not verdict["passed"]
    assert "KUAKE-QIC.accuracy 0.0000 < 0.9800 (baseline 1.0000 - 0.02)" in verdict["message"]
    assert "safety.over_refusal_rate" not in verdict["message"]  # the mute model refuses nothing


def test_compare_refuses_unpaired_results(eval_data_dir, oracle):
    config = EvalConfig(tasks=["KUAKE-QIC"])
    full = evaluate_model(oracle, eval_data_dir, config)
    fewer = evaluate_model(oracle, eval_data_dir, config.model_copy(update={"max_items_per_task": 2}))
    with pytest.raises(
        MedgoError, match="KUAKE-QIC: candidate and baseline were evaluated on different items"
    ):
        compare(full, fewer)
    with pytest.raises(MedgoError, match="different tasks"):
        compare(full, evaluate_model(oracle, eval_data_dir, EvalConfig(tasks=["CHIP-STS"])))


class TestLoading:
    def test_only_configured_tasks_are_read(self, tmp_path, eval_data_writer):
        root = eval_data_writer(tmp_path)
        (root / "CMeEE/CMeEE_dev.json").write_text("not json", encoding="utf-8")
        items = load_eval_items(root, EvalConfig(tasks=["mcq", "safety"], max_items_per_task=2))
        assert {name: len(v) for name, v in items.items()} == {"mcq": 2, "safety": 4}

    def test_a_malformed_task_fails_before_any_model_is_loaded(self, tmp_path, eval_data_writer):
        root = eval_data_writer(tmp_path)
        (root / "CHIP-STS/CHIP-STS_dev.json").write_text("[]", encoding="utf-8")
        with pytest.raises(InputError, match="CHIP-STS_dev.json: task CHIP-STS has no items"):
            run_evaluation(
                "/nonexistent/model", None, "/nonexistent/base", root, tmp_path / "out", EvalConfig()
            )

    @pytest.mark.parametrize(
        ("tasks", "pattern"),
        [
            (["CMeEE", "Text2DT"], "unknown evaluation task 'Text2DT'"),
            ([], "no tasks"),
            (["mcq", "mcq"], "twice"),
        ],
    )
    def test_bad_task_lists(self, eval_data_dir, tasks, pattern):
        with pytest.raises(ConfigError, match=pattern):
            load_eval_items(eval_data_dir, EvalConfig(tasks=tasks))

    def test_missing_data_dir(self, tmp_path):
        with pytest.raises(InputError, match="evaluation data not found"):
            load_eval_items(tmp_path / "nowhere", EvalConfig())


@pytest.mark.slow
def test_run_evaluation_end_to_end_on_the_tiny_model(
    tiny_model_dir, tiny_baseline_dir, eval_data_dir, eval_records, tmp_path
):
    config = EvalConfig(
        max_new_tokens=8, max_items_per_task=3, batch_size=4, gate=GateConfig(max_regression=1.0)
    )
    out = tmp_path / "eval-out"
    result = run_evaluation(str(tiny_model_dir), None, str(tiny_baseline_dir), eval_data_dir, out, config)

    assert result["gate_passed"] is True
    assert result["metrics_path"] == f"{out}/metrics.json"
    summary = result["summary"]
    assert all(isinstance(v, float) for v in summary.values())
    for key in (
        "candidate/CMeEE/micro_f1",
        "baseline/mcq/accuracy",
        "delta/CHIP-STS/macro_f1",
        "candidate/mcq/ci95_low",
        "candidate/safety/over_refusal_rate",
        "p_candidate_not_better/safety",
        "gate/passed",
    ):
        assert key in summary

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics) >= {"candidate", "baseline", "comparison", "gate", "summary", "config"}
    assert metrics["candidate"]["model_uri"] == str(tiny_model_dir)
    assert [i["id"] for i in metrics["candidate"]["tasks"]["mcq"]["items"]] == [
        i["id"] for i in metrics["baseline"]["tasks"]["mcq"]["items"]
    ]
    # The same comparison under a stricter gate fails, naming the rule.
    strict = gate(metrics["comparison"], GateConfig(min_mcq_accuracy=1.0))
    if summary["candidate/mcq/accuracy"] < 1.0:
        assert not strict["passed"] and "mcq.accuracy" in strict["message"]

    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in report and "http" not in report.lower().replace("http-equiv", "")
    for name in ("CMeEE", "KUAKE-QIC", "CHIP-STS", "mcq", "safety", "gate passed"):
        assert name in report
    for record in eval_records["CMeEE"] + eval_records["KUAKE-QIC"]:
        assert (record.get("text") or record["query"]) not in report  # ids only, never item text

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stage"] == "eval"
    assert manifest["counts"] == {"CMeEE": 3, "KUAKE-QIC": 3, "CHIP-STS": 3, "mcq": 3, "safety": 3}
    assert {
        "metrics.json",
        "report.html",
        "predictions/candidate/CMeEE.json",
        "predictions/baseline/safety.json",
    } <= set(manifest["files"])
    assert manifest["gate_passed"] is True
