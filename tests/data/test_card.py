"""Data cards: steps reconcile, the HTML page is self-contained, metrics are flat numbers."""

from __future__ import annotations

from medgo.data.accounting import Tally
from medgo.data.card import build_stage_card, card_metrics, card_steps, render_html


def _tally():
    tally = Tally()
    for _ in range(5):
        tally.add_kept()
    tally.add_quarantined("malformed_json")
    tally.add_quarantined("undecodable_file:unknown_encoding", units=3)
    tally.add_quarantined("missing_field:text")
    tally.add_filtered("too_short")
    tally.add_duplicate("near_duplicate")
    tally.add_quarantined("duplicate_id")
    tally.add_filtered("eval_overlap:CMeEE")
    tally.add_filtered("not_approved")
    return tally


def test_steps_flow_into_each_other_and_reconcile():
    steps = card_steps(_tally())
    assert [s["step"] for s in steps] == ["read", "validate", "quality", "dedup", "decontaminate", "mixture"]
    assert steps[0]["in"] == 15 and steps[0]["quarantined"] == 4
    assert steps[2]["filtered"] == 2  # too_short and an unknown filter reason
    assert steps[3]["duplicates"] == 1 and steps[3]["quarantined"] == 1
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["out"] == after["in"]
    for step in steps:
        assert step["in"] == step["out"] + step["quarantined"] + step["filtered"] + step["duplicates"]
    assert steps[-1]["out"] == 5


def test_html_is_one_self_contained_page_with_charts_and_metrics_are_numbers():
    tally = _tally()
    card = build_stage_card(
        stage="data.sft",
        slice_name="task",
        total=tally,
        slices={"consultation": tally},
        pii={"PHONE": 2},
        overlaps={"CMeEE": 1},
        eval_index=None,
        skipped=[{"relpath": "notes.txt", "reason": "unsupported format (.txt)"}],
        stream_failures=[],
        problems=["4 of 15 input units quarantined"],
        status="failed",
    )
    page = render_html(card)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 5
    assert "<script" not in page and "src=" not in page and "notes.txt" in page and "Status: failed" in page
    metrics = card_metrics(card)
    assert (
        metrics["totals/in"] == 15.0
        and metrics["pii/PHONE"] == 2.0
        and metrics["decontamination/CMeEE"] == 1.0
    )
    assert all(isinstance(v, float) for v in metrics.values())
