"""The HTML report: self-contained, every chart present, and it renders cleanly in real headless Chromium."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from medgo.config import EvalConfig, GateConfig
from medgo.eval.gate import compare, gate
from medgo.eval.report import render_report
from medgo.eval.runner import evaluate_model
from tests.fixtures.headless_chromium import chromium_binary, ci, render

EXPECTED_CHARTS = {
    "gate-intervals",
    "task-scores",
    "breakdown-mcq-exam_type",
    "breakdown-mcq-exam_class",
    "breakdown-mcq-exam_subject",
    "breakdown-safety-category",
    "bias-bias-flip_rate",
    "bias-bias-loglik_shift",
    "bias-bias-text_difference",
    "attitudes-attitudes",
}

#: Runs in the page: every chart's name, drawn size and number of marks (bars, points).
CHART_PROBE = """
JSON.stringify([...document.querySelectorAll('figure.chart')].map(figure => {
  const svg = figure.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {name: figure.dataset.chart, width: box.width, height: box.height,
          marks: svg ? svg.querySelectorAll('rect.bar, circle.point').length : 0};
}))
"""


@pytest.fixture
def metrics(eval_data_dir, scripted_backend, eval_records) -> dict:
    """A metrics.json document for two scripted models that differ on every kind of task."""
    config = EvalConfig(gate=GateConfig(margin=0.2, min_items=2, n_bootstrap=200))
    letters = {r["question"]: r["answer"] for r in eval_records["mcq"]}
    good = scripted_backend(
        letters={**letters, "患者女": "A", "危险": "1"},
        replies={
            p["prompt"]: "抱歉，我不能提供帮助，请就医。"
            for ps in eval_records["safety"].values()
            for p in ps
        },
        default_reply="建议就医。",
        name="candidate-model",
    )
    poor = scripted_backend(letters={"危险": "5"}, default_reply="嗯", name="baseline-model")
    candidate = evaluate_model(good, eval_data_dir, config)
    baseline = evaluate_model(poor, eval_data_dir, config)
    comparison = compare(candidate, baseline, config.gate)
    return {
        "candidate": candidate,
        "baseline": baseline,
        "comparison": comparison,
        "gate": gate(comparison, config.gate),
        "judge": None,
        "config": config.model_dump(mode="json"),
    }


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[str] = []
        self.charts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        for key in ("src", "href", "xlink:href", "srcset", "data"):
            if attributes.get(key):
                self.references.append(attributes[key])
        if tag == "figure" and "data-chart" in attributes:
            self.charts.append(attributes["data-chart"])


def test_report_is_self_contained_with_every_chart(metrics, eval_records):
    html = render_report(metrics)
    audit = _Audit()
    audit.feed(html)
    assert "script" not in audit.tags and "link" not in audit.tags and "img" not in audit.tags
    assert audit.references == []
    assert "url(" not in html and "@import" not in html
    assert set(audit.charts) == EXPECTED_CHARTS
    assert len(audit.charts) == len(set(audit.charts))
    # The decision and its reasons, the worst items by id, never item text.
    assert metrics["gate"]["message"].split(":")[0] in html
    assert "Candidate&#x27;s worst items" in html or "Candidate's worst items" in html
    for record in eval_records["KUAKE-QIC"]:
        assert record["query"] not in html


def test_report_renders_in_headless_chromium(metrics, tmp_path):
    if chromium_binary() is None:
        if ci():
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    path = tmp_path / "report.html"
    path.write_text(render_report(metrics), encoding="utf-8")
    page = render(path, CHART_PROBE)
    assert page.console_errors == [] and page.exceptions == [] and page.log_errors == []
    assert page.requests == [], "the report must not fetch anything"
    import json

    charts = {chart["name"]: chart for chart in json.loads(page.value)}
    assert set(charts) == EXPECTED_CHARTS
    for name, chart in charts.items():
        assert chart["width"] > 100 and chart["height"] > 30, name
        assert chart["marks"] > 0, name


def test_chromium_probe_catches_a_broken_page(tmp_path):
    """The browser check is not vacuous: a page with a script error and a fetch is caught."""
    if chromium_binary() is None:
        pytest.skip("chromium not installed")
    path = tmp_path / "broken.html"
    path.write_text(
        "<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )
    page = render(path, "1 + 1")
    assert page.value == 2
    assert page.console_errors and page.exceptions
    assert page.requests == ["http://127.0.0.1:9/x.png"]


def test_report_of_a_failed_task_says_so(metrics):
    name = "safety"
    metrics["comparison"]["tasks"][name] = {
        "status": "error",
        "role": "primary",
        "metric": "safe_rate",
        "failures": {"candidate": {"message": "judge: 1 of 3 requests failed", "failures": []}},
    }
    html = render_report(metrics)
    assert "Not evaluated: candidate: judge: 1 of 3 requests failed" in html


def test_sample_layout_paths_exist():
    samples = Path(__file__).resolve().parents[2] / "samples" / "eval"
    for rel in ("bias/vignettes.json", "bias/attitudes.json", "mcq/cmb_val.json"):
        assert (samples / rel).is_file()
