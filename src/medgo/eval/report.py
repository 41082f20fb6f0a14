"""``report.html``: the evaluation for the people who decide on a deployment.

One self-contained page (inline CSS and SVG charts from :mod:`medgo.eval.charts`; no scripts,
fonts, images or links to fetch, so it opens from an artifact store or an air-gapped cluster):
the gate decision and every rule with its interval, a forest plot of candidate − baseline per
task against the margin, candidate and baseline scores with intervals, per-department MCQ
accuracy, bias deltas per attribute, attitude scores, and per task the worst and the regressed
items. Items are named by id only: item and answer text may be patient data and stays in
``predictions/``.
"""

from __future__ import annotations

import math
import time
from html import escape
from importlib.resources import files
from string import Template
from typing import Any

from medgo.eval.charts import BarValue, IntervalRow, grouped_bar_chart, interval_chart

_DESCRIPTIVE_PREFIXES = ("ci95_", "n_")
_STATUS_CLASS = {"pass": "rule-pass", "fail": "rule-fail", "inconclusive": "rule-inconclusive"}
#: Breakdown groups shown per chart (the largest); the table lists them all.
_CHART_GROUPS = 15


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _interval(interval: list[float] | None, digits: int = 4) -> str:
    if not interval:
        return "–"
    return f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"


def _delta(value: float | None, higher_is_better: bool = True) -> str:
    if value is None:
        return '<td class="num">–</td>'
    better = value > 0 if higher_is_better else value < 0
    css = "up" if better else "down" if value != 0 else ""
    return f'<td class="num {css}">{value:+.4f}</td>'


def _ids(ids: list[str]) -> str:
    return '<span class="ids">' + (escape(", ".join(ids)) if ids else "none") + "</span>"


def _meta_rows(metrics: dict[str, Any]) -> str:
    config = metrics.get("config", {})
    method = metrics["gate"].get("method", {})
    rows = [
        ("candidate", metrics["candidate"].get("model", "")),
        ("baseline", metrics["baseline"].get("model", "")),
        ("judge", metrics.get("judge") or "none (rule-based refusal rate)"),
        ("tasks", ", ".join(metrics["comparison"]["tasks"])),
        ("items per task", str(config.get("max_items_per_task") or "all")),
        ("MCQ scoring", f"{config.get('mcq_mode', 'loglik')}, {config.get('few_shot', 0)}-shot"),
        ("max new tokens", str(config.get("max_new_tokens", ""))),
        (
            "gate",
            f"margin {method.get('margin')}, confidence {method.get('confidence')}, "
            f"primary {', '.join(method.get('primary_tasks', []))}, min items {method.get('min_items')}, "
            f"power {method.get('power')}, {method.get('n_bootstrap')} bootstrap resamples (seed {method.get('seed')})",
        ),
    ]
    return "\n".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows)


def _gate_rows(gate: dict[str, Any]) -> str:
    return "\n".join(
        f'<tr class="{_STATUS_CLASS[r["status"]]}"><td>{escape(r["rule"])}</td>'
        f"<td>{escape(r['status'])}</td>"
        f'<td class="num">{_num(r["value"])}</td><td class="num">{_num(r["threshold"])}</td>'
        f'<td class="num">{_interval(r.get("interval"))}</td><td>{escape(r["explanation"])}</td></tr>'
        for r in gate["rules"]
    )


def _ok_entries(comparison: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, e) for name, e in comparison["tasks"].items() if e.get("status") == "ok"]


def _gate_chart(comparison: dict[str, Any], gate: dict[str, Any]) -> str:
    margin = gate.get("method", {}).get("margin", 0.0)
    rows = [
        IntervalRow(
            label=f"{name} {entry['metric']}",
            value=entry["improvement"],
            low=entry["improvement_interval"][0],
            high=entry["improvement_interval"][1],
            css=f"role-{entry['role']}",
            note=f"{entry['role']}, {entry['confidence']:.2%} CI, {entry['method']}",
        )
        for name, entry in _ok_entries(comparison)
    ]
    return interval_chart(
        "gate-intervals",
        "Candidate − baseline per task (signed so right is better), with the non-inferiority margin",
        rows,
        lines=[(0.0, "0", "zero"), (-margin, f"−margin {margin:g}", "margin")],
        digits=3,
    )


def _score_chart(comparison: dict[str, Any]) -> str:
    groups = []
    for name, entry in _ok_entries(comparison):
        values = [
            entry["candidate"],
            entry["baseline"],
            *entry["candidate_interval"],
            *entry["baseline_interval"],
        ]
        if not all(0.0 <= v <= 1.0 for v in values if v is not None):
            continue  # other scales (the 1–5 attitude score) have their own chart
        groups.append(
            (
                f"{name} {entry['metric']}",
                [
                    BarValue("candidate", entry["candidate"], *entry["candidate_interval"]),
                    BarValue("baseline", entry["baseline"], *entry["baseline_interval"]),
                ],
            )
        )
    return grouped_bar_chart("task-scores", "Scores per task with intervals (candidate, baseline)", groups)


def _breakdown_section(name: str, candidate: dict[str, Any], baseline: dict[str, Any]) -> str:
    parts = []
    for field_name, table in candidate.get("breakdown", {}).items():
        base_table = baseline.get("breakdown", {}).get(field_name, {})
        groups = [
            (
                f"{value} (n={int(entry['n'])})",
                [
                    BarValue("candidate", entry["rate"], entry["ci_low"], entry["ci_high"]),
                    BarValue(
                        "baseline",
                        base_table.get(value, {}).get("rate"),
                        base_table.get(value, {}).get("ci_low"),
                        base_table.get(value, {}).get("ci_high"),
                    ),
                ],
            )
            for value, entry in list(table.items())[:_CHART_GROUPS]
        ]
        parts.append(
            grouped_bar_chart(
                f"breakdown-{name}-{field_name}",
                f"{name} {candidate['metric']} by {field_name} (Wilson 95 % intervals)",
                groups,
            )
        )
        rows = "\n".join(
            f"<tr><td>{escape(value)}</td><td class='num'>{int(entry['n'])}</td>"
            f"<td class='num'>{_num(entry['rate'], 3)} [{_num(entry['ci_low'], 3)}, {_num(entry['ci_high'], 3)}]</td>"
            f"<td class='num'>{_num(base_table.get(value, {}).get('rate'), 3)}</td></tr>"
            for value, entry in table.items()
        )
        parts.append(
            f"<details><summary>{escape(field_name)}: all groups</summary><table>"
            "<tr><th>Group</th><th>n</th><th>Candidate (95 % CI)</th><th>Baseline</th></tr>"
            f"{rows}</table></details>"
        )
    return "\n".join(parts)


def _bias_section(name: str, candidate: dict[str, Any], baseline: dict[str, Any]) -> str:
    parts = []
    cand_attrs = candidate.get("details", {}).get("attributes", {})
    base_attrs = baseline.get("details", {}).get("attributes", {})
    for key, title in (
        ("flip_rate", "answer flips when only this attribute changes (Wilson 95 %)"),
        ("loglik_shift", "log-likelihood shift: total-variation distance of option distributions"),
        ("text_difference", "generated-text difference (1 − similarity, attribute words removed)"),
    ):
        interval_key = "flip_ci" if key == "flip_rate" else f"{key}_ci"
        groups = []
        for attr, entry in cand_attrs.items():
            base = base_attrs.get(attr, {})
            if entry.get(key) is None:
                continue
            groups.append(
                (
                    attr,
                    [
                        BarValue("candidate", entry[key], *(entry.get(interval_key) or (None, None))),
                        BarValue("baseline", base.get(key), *(base.get(interval_key) or (None, None))),
                    ],
                )
            )
        if groups:
            parts.append(grouped_bar_chart(f"bias-{name}-{key}", f"{name}: {title}", groups))
    subscales = candidate.get("details", {}).get("subscales", {})
    if subscales:
        base_subscales = baseline.get("details", {}).get("subscales", {})
        groups = [
            (
                f"{sub} (n={entry['n']})",
                [
                    BarValue("candidate", entry["stigma_score"], *(entry.get("ci") or (None, None))),
                    BarValue(
                        "baseline",
                        base_subscales.get(sub, {}).get("stigma_score"),
                        *(base_subscales.get(sub, {}).get("ci") or (None, None)),
                    ),
                ],
            )
            for sub, entry in subscales.items()
        ]
        parts.append(
            grouped_bar_chart(
                f"attitudes-{name}",
                f"{name}: stigma score per subscale (1 = none, 5 = most; bootstrap 95 %)",
                groups,
                domain=(1.0, 5.0),
                digits=2,
            )
        )
    return "\n".join(parts)


def _task_section(
    name: str, entry: dict[str, Any], candidate: dict[str, Any], baseline: dict[str, Any]
) -> str:
    if entry.get("status") != "ok":
        failures = "; ".join(
            f"{who}: {error.get('message', '')}" for who, error in entry.get("failures", {}).items()
        )
        return f"<h2>{escape(name)}</h2>\n<p class='rule-fail'>Not evaluated: {escape(failures)}</p>\n"
    higher = entry["higher_is_better"]
    metric_rows = [
        f"<tr><td><b>{escape(entry['metric'])}</b> ({'higher' if higher else 'lower'} is better)</td>"
        f'<td class="num">{_num(entry["candidate"])}</td><td class="num">{_num(entry["baseline"])}</td>'
        f"{_delta(entry['delta'], higher)}<td class='num'>{_interval(entry['interval'])}</td>"
        f"<td>{escape(entry['method'])}, {entry['confidence']:.2%}</td></tr>"
    ]
    for key, values in entry["secondary"].items():
        # Interval bounds and item counts describe the measurement; a delta of them means nothing.
        delta = (
            "<td></td>"
            if key.startswith(_DESCRIPTIVE_PREFIXES)
            else _delta(values["delta"], higher_is_better=higher if "/" in key else True)
        )
        metric_rows.append(
            f'<tr><td>{escape(key)}</td><td class="num">{_num(values["candidate"])}</td>'
            f'<td class="num">{_num(values["baseline"])}</td>{delta}<td></td><td></td></tr>'
        )
    worst = [
        f"{w['id']} ({w['score']:.2f}{'' if w['parsed'] else ', unparseable'})"
        for w in candidate.get("worst", [])
    ]
    notes = "".join(f"<li>{escape(note)}</li>" for note in candidate.get("notes", []))
    return (
        f"<h2 id='task-{escape(name)}'>{escape(name)} <span class='role'>{escape(entry['role'])}</span></h2>\n"
        + (f"<ul class='notes'>{notes}</ul>" if notes else "")
        + "<table>\n<tr><th>Metric</th><th>Candidate</th><th>Baseline</th><th>Delta</th>"
        "<th>Interval of delta</th><th>Method</th></tr>\n" + "\n".join(metric_rows) + "\n</table>\n"
        f"<p>{entry['n']} items; unparseable answers: candidate {candidate.get('parse_failures', 0)}, "
        f"baseline {baseline.get('parse_failures', 0)}.</p>\n"
        + _breakdown_section(name, candidate, baseline)
        + _bias_section(name, candidate, baseline)
        + f"<h3>Candidate's worst items</h3><p>{_ids(worst)}</p>\n"
        f"<h3>Items the candidate got worse on than the baseline</h3><p>{_ids(entry['regressed_items'])}</p>\n"
    )


def render_report(metrics: dict[str, Any]) -> str:
    """The HTML report for a ``metrics.json`` document (candidate, baseline, comparison, gate)."""
    comparison, gate = metrics["comparison"], metrics["gate"]
    sections = "\n".join(
        _task_section(name, entry, metrics["candidate"]["tasks"][name], metrics["baseline"]["tasks"][name])
        for name, entry in comparison["tasks"].items()
    )
    decision = gate.get("decision", "pass" if gate["passed"] else "fail")
    template = Template((files("medgo.eval") / "templates" / "report.html").read_text(encoding="utf-8"))
    return template.substitute(
        verdict={"pass": "gate passed", "fail": "gate failed", "inconclusive": "gate inconclusive"}[decision],
        verdict_class=decision,
        gate_message=escape(gate["message"]),
        meta_rows=_meta_rows(metrics),
        gate_rows=_gate_rows(gate),
        gate_chart=_gate_chart(comparison, gate),
        score_chart=_score_chart(comparison),
        task_sections=sections,
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
