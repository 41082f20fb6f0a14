"""``report.html``: the evaluation for people who decide on a deployment.

One self-contained page (inline CSS, CSS bar charts, no scripts or external assets, so it opens
from an artifact store or an air-gapped cluster): the gate verdict and its rules, candidate vs
baseline per task with deltas, and the worst and regressed items by id. It never shows item
or answer text, which may be patient data.
"""

from __future__ import annotations

import time
from html import escape
from importlib.resources import files
from string import Template
from typing import Any

_DESCRIPTIVE_PREFIXES = ("ci95_", "n_")
_LOWER_IS_BETTER = {"over_refusal_rate"}


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


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
    rows = [
        ("candidate", metrics["candidate"].get("model", "")),
        ("baseline", metrics["baseline"].get("model", "")),
        ("tasks", ", ".join(metrics["comparison"]["tasks"])),
        ("items per task", str(config.get("max_items_per_task") or "all")),
        ("max new tokens", str(config.get("max_new_tokens", ""))),
    ]
    return "\n".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows)


def _gate_rows(gate: dict[str, Any]) -> str:
    return "\n".join(
        f'<tr class="{"rule-pass" if r["passed"] else "rule-fail"}"><td>{escape(r["rule"])}</td>'
        f'<td class="num">{_num(r["value"])}</td><td class="num">{_num(r["threshold"])}</td>'
        f"<td>{'pass' if r['passed'] else 'FAIL'}</td></tr>"
        for r in gate["rules"]
    )


def _bar(role: str, value: float) -> str:
    width = max(0.0, min(1.0, value)) * 100
    return (
        f'<div class="bar-track" title="{role} {value:.4f}">'
        f'<div class="bar {role}" style="width:{width:.1f}%"></div></div>'
    )


def _chart_rows(comparison: dict[str, Any]) -> str:
    rows = []
    for name, entry in comparison["tasks"].items():
        label = escape(f"{name} {entry['metric']}")
        rows.append(
            f"<div>{label}</div>{_bar('candidate', entry['candidate'])}"
            f'<div class="num">{entry["candidate"]:.3f}</div>'
        )
        rows.append(
            f'<div></div>{_bar("baseline", entry["baseline"])}<div class="num">{entry["baseline"]:.3f}</div>'
        )
    return "\n".join(rows)


def _task_section(
    name: str, entry: dict[str, Any], candidate: dict[str, Any], baseline: dict[str, Any]
) -> str:
    metric_rows = [
        f'<tr><td><b>{escape(entry["metric"])}</b></td><td class="num">{_num(entry["candidate"])}</td>'
        f'<td class="num">{_num(entry["baseline"])}</td>{_delta(entry["delta"])}'
        f'<td class="num">{_num(entry["p_candidate_not_better"], 3)}</td></tr>'
    ]
    for key, values in entry["secondary"].items():
        # Interval bounds and item counts describe the measurement; a delta of them means nothing.
        delta = (
            "<td></td>"
            if key.startswith(_DESCRIPTIVE_PREFIXES)
            else _delta(values["delta"], higher_is_better=key not in _LOWER_IS_BETTER)
        )
        metric_rows.append(
            f'<tr><td>{escape(key)}</td><td class="num">{_num(values["candidate"])}</td>'
            f'<td class="num">{_num(values["baseline"])}</td>{delta}<td></td></tr>'
        )
    worst = [
        f"{w['id']} ({w['score']:.2f}{'' if w['parsed'] else ', unparseable'})" for w in candidate["worst"]
    ]
    return (
        f"<h2>{escape(name)}</h2>\n<table>\n"
        "<tr><th>Metric</th><th>Candidate</th><th>Baseline</th><th>Delta</th><th>p(not better)</th></tr>\n"
        + "\n".join(metric_rows)
        + "\n</table>\n"
        f"<p>{entry['n']} items; unparseable answers: candidate {candidate['parse_failures']}, "
        f"baseline {baseline['parse_failures']}.</p>\n"
        f"<h3>Candidate's worst items</h3><p>{_ids(worst)}</p>\n"
        f"<h3>Items the candidate got worse on than the baseline</h3><p>{_ids(entry['regressed_items'])}</p>\n"
    )


def render_report(metrics: dict[str, Any]) -> str:
    """The HTML report for a ``metrics.json`` document (candidate, baseline, comparison, gate)."""
    comparison, gate = metrics["comparison"], metrics["gate"]
    sections = "\n".join(
        _task_section(name, entry, metrics["candidate"]["tasks"][name], metrics["baseline"]["tasks"][name])
        for name, entry in comparison["tasks"].items()
    )
    template = Template((files("medgo.eval") / "templates" / "report.html").read_text(encoding="utf-8"))
    return template.substitute(
        verdict="gate passed" if gate["passed"] else "gate failed",
        verdict_class="pass" if gate["passed"] else "fail",
        gate_message=escape(gate["message"]),
        meta_rows=_meta_rows(metrics),
        gate_rows=_gate_rows(gate),
        chart_rows=_chart_rows(comparison),
        task_sections=sections,
        n_bootstrap=comparison.get("n_bootstrap", ""),
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
