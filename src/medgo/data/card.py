"""Data cards: what a data step did, as JSON, as an HTML page with charts, and as KFP metrics.

A card holds, per step (read → validate → quality → dedup → decontaminate → mixture), how many units
came in and went out and why the others were quarantined, filtered or dropped as duplicates; per
category (or SFT task) the same counts with tokens before and after; PII counts per type; duplicate
rates; evaluation-overlap hits per task; skipped files; and the problems that failed the step.
Steps are derived from the ledger's reasons, so they reconcile exactly like the totals do:
``in = out + quarantined + filtered + duplicates`` for every step, and a step's ``out`` is the next
step's ``in``.

The HTML page is one self-contained file (inline SVG, no scripts, no external assets) so it opens
from an artifact store, a KFP UI (``Output[HTML]``) or a laptop alike.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medgo.data.accounting import Tally
from medgo.storage import atomic_write_json, atomic_write_text

CARD_JSON = "data_card.json"
CARD_HTML = "data_card.html"

#: Steps in order, with the reason prefixes that belong to each.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read", ("malformed_json", "not_an_object", "undecodable_", "truncated_", "corrupt_", "unreadable_")),
    (
        "validate",
        (
            "missing_field",
            "wrong_type",
            "empty_field",
            "invalid_value",
            "unknown_category",
            "uncategorized",
            "prompt_not_ending_with_user",
        ),
    ),
    (
        "quality",
        (
            "too_short",
            "too_long",
            "low_chinese_ratio",
            "language:",
            "high_symbol_ratio",
            "high_digit_ratio",
            "repeated_lines",
            "repeated_ngrams",
        ),
    ),
    ("dedup", ("duplicate", "near_duplicate", "duplicate_id", "superseded")),
    ("decontaminate", ("eval_overlap:",)),
    ("mixture", ("mixture_",)),
)
_DEFAULT_STEP = {"quarantined": "validate", "filtered": "quality", "duplicates": "dedup"}


def step_of(reason: str, kind: str) -> str:
    for step, prefixes in STEPS:
        if any(reason == p or reason.startswith(p) for p in prefixes):
            return step
    return _DEFAULT_STEP.get(kind, "validate")


def card_steps(total: Tally) -> list[dict[str, Any]]:
    """Per-step in/out/quarantined/filtered/duplicates with reasons; ``out`` of one is ``in`` of the next."""
    steps = {
        name: {"step": name, "quarantined": 0, "filtered": 0, "duplicates": 0, "reasons": {}}
        for name, _ in STEPS
    }
    for reason, count in sorted(total.reasons.items()):
        kind = total.kinds.get(reason, "filtered")
        step = steps[step_of(reason, kind)]
        step[kind] += count
        step["reasons"][reason] = count
    flowing = total.records_in
    out = []
    for name, _ in STEPS:
        step = steps[name]
        step["in"] = flowing
        flowing -= step["quarantined"] + step["filtered"] + step["duplicates"]
        step["out"] = flowing
        out.append(step)
    return out


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def build_corpus_card(
    *,
    config,
    total: Tally,
    slices: Mapping[str, Tally],
    pii: Mapping[str, int],
    overlaps: Mapping[str, int],
    eval_index: Mapping[str, Any] | None,
    clusters: Mapping[str, Any],
    tokens_out: Mapping[str, int],
    records_out: int,
    skipped: list[dict[str, str]],
    stream_failures: list[dict[str, Any]],
    encodings: Mapping[str, str],
    problems: list[str],
) -> dict[str, Any]:
    """The pretraining corpus's card (see the module docstring for what it holds)."""
    before = clusters.get("tokens_before_dedup", {})
    after = clusters.get("tokens_after_dedup", {})
    categories = {}
    for name, tally in slices.items():
        candidates = (
            tally.kept
            + tally.duplicates
            + tally.reasons.get("duplicate_id", 0)
            + sum(n for r, n in tally.reasons.items() if r.startswith(("eval_overlap:", "mixture_")))
        )
        categories[name] = {
            **tally.as_counts(),
            "exact_duplicates": tally.reasons.get("duplicate", 0),
            "near_duplicates": tally.reasons.get("near_duplicate", 0),
            "duplicate_rate": _rate(tally.duplicates, candidates),
            "filters": {r: n for r, n in sorted(tally.reasons.items()) if tally.kinds.get(r) == "filtered"},
            "quarantine_reasons": {
                r: n for r, n in sorted(tally.reasons.items()) if tally.kinds.get(r) == "quarantined"
            },
            "tokens_before_dedup": before.get(name, 0),
            "tokens_after_dedup": after.get(name, 0),
            "tokens_out": tokens_out.get(name, 0),
            "mixture_rate": round(clusters.get("mixture_rates", {}).get(name, 1.0), 6),
        }
    candidates = sum(c["kept"] + c["duplicates"] for c in categories.values()) + sum(
        n for r, n in total.reasons.items() if r.startswith(("eval_overlap:", "mixture_", "duplicate_id"))
    )
    nd = config.near_dedup
    card = {
        "stage": "data.prepare",
        "totals": total.as_counts(),
        "records_out": records_out,
        "steps": card_steps(total),
        "categories": categories,
        "tokens": {
            "method": "estimated: 1 per CJK character + 1 per 4 other visible characters",
            "before_dedup": sum(before.values()),
            "after_dedup": sum(after.values()),
            "out": sum(tokens_out.values()),
        },
        "pii": dict(sorted(pii.items())),
        "dedup": {
            "exact_duplicates": total.reasons.get("duplicate", 0),
            "near_duplicates": total.reasons.get("near_duplicate", 0),
            "duplicate_rate": _rate(total.duplicates, candidates),
            "clusters": clusters.get("clusters", 0),
            "largest_cluster": clusters.get("largest_cluster", 0),
            "duplicate_id_conflicts": clusters.get("duplicate_id_conflicts", 0),
            **{k: v for k, v in clusters.get("buckets", {}).items()},
            "config": nd.model_dump(mode="json"),
        },
        "decontamination": {
            "eval_dir": config.decontamination.eval_dir,
            "ngram_chars": config.decontamination.ngram_chars,
            "hits": dict(sorted(overlaps.items())),
            "removed": sum(n for r, n in total.reasons.items() if r.startswith("eval_overlap:")),
            "index": eval_index,
        },
        "mixture": {
            "target_shares": config.mixture.target_shares,
            "total_tokens": config.mixture.total_tokens,
            "seed": config.mixture.seed,
            "rates": clusters.get("mixture_rates", {}),
            "unreachable": sorted(
                c for c, s in config.mixture.target_shares.items() if s > 0 and not after.get(c)
            ),
        },
        "pii_total": sum(pii.values()),
        "skipped_files": skipped,
        "stream_failures": stream_failures,
        "encodings": dict(sorted(encodings.items())),
        "problems": problems,
        "reasons": dict(sorted(total.reasons.items())),
        "filters": config.rules_for(config.categories[0]).model_dump(mode="json"),
        "filters_by_category": {
            name: rules.model_dump(exclude_unset=True) for name, rules in config.quality_by_category.items()
        },
    }
    return card


def build_stage_card(
    *,
    stage: str,
    slice_name: str,
    total: Tally,
    slices: Mapping[str, Tally],
    pii: Mapping[str, int],
    overlaps: Mapping[str, int],
    eval_index: Mapping[str, Any] | None,
    skipped: list[dict[str, str]],
    stream_failures: list[dict[str, Any]],
    problems: list[str],
    status: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of an SFT or preference step (slices are tasks or sources, not corpus categories)."""
    return {
        "stage": stage,
        "status": status,
        "slice_name": slice_name,
        "totals": total.as_counts(),
        "steps": card_steps(total),
        "categories": {
            name: {**t.as_counts(), "duplicate_rate": _rate(t.duplicates, t.records_in - t.quarantined)}
            for name, t in slices.items()
        },
        "pii": dict(sorted(pii.items())),
        "pii_total": sum(pii.values()),
        "decontamination": {
            "hits": dict(sorted(overlaps.items())),
            "removed": sum(n for r, n in total.reasons.items() if r.startswith("eval_overlap:")),
            "index": eval_index,
        },
        "skipped_files": skipped,
        "stream_failures": stream_failures,
        "problems": problems,
        "reasons": dict(sorted(total.reasons.items())),
        **(dict(extra) if extra else {}),
    }


def card_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """The card's headline numbers as flat ``name → float`` (for a KFP ``Metrics`` artifact)."""
    metrics: dict[str, float] = {f"totals/{k}": float(v) for k, v in card["totals"].items()}
    for step in card["steps"]:
        metrics[f"steps/{step['step']}/out"] = float(step["out"])
    for name, values in card["categories"].items():
        for key in ("kept", "filtered", "duplicates", "quarantined", "duplicate_rate", "tokens_out"):
            if key in values:
                metrics[f"categories/{name}/{key}"] = float(values[key])
    for kind, count in card["pii"].items():
        metrics[f"pii/{kind}"] = float(count)
    for task, count in card["decontamination"]["hits"].items():
        metrics[f"decontamination/{task}"] = float(count)
    if "dedup" in card:
        metrics["dedup/duplicate_rate"] = float(card["dedup"]["duplicate_rate"])
        metrics["dedup/near_duplicates"] = float(card["dedup"]["near_duplicates"])
    if "tokens" in card:
        metrics["tokens/out"] = float(card["tokens"]["out"])
    metrics["skipped_files"] = float(len(card["skipped_files"]))
    metrics["problems"] = float(len(card["problems"]))
    return metrics


def write_card(out: str | Path, card: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``data_card.json`` and ``data_card.html`` into ``out``."""
    out = Path(out)
    json_path = atomic_write_json(out / CARD_JSON, card)
    html_path = atomic_write_text(out / CARD_HTML, render_html(card))
    return json_path, html_path


# -------------------------------------------------------------------------------------------- HTML
_COLORS = {
    "kept": "#2e7d32",
    "out": "#2e7d32",
    "filtered": "#f9a825",
    "duplicates": "#1565c0",
    "quarantined": "#c62828",
    "before": "#90a4ae",
    "after": "#42a5f5",
    "tokens_out": "#2e7d32",
    "bar": "#5c6bc0",
}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar_chart(
    title: str, rows: list[tuple[str, list[tuple[str, float]]]], *, grouped: bool = False, unit: str = ""
) -> str:
    """Horizontal bars, one row per label; segments stacked (or side by side when ``grouped``)."""
    if not rows:
        return f"<h3>{_esc(title)}</h3><p class='muted'>nothing to show</p>"
    label_w, bar_w, row_h = 210, 560, 22 if not grouped else 12
    series = [name for name, _ in rows[0][1]]
    per_row = len(series) if grouped else 1
    top = max((sum(v for _, v in segs) if not grouped else max(v for _, v in segs)) for _, segs in rows) or 1
    height = len(rows) * (row_h * per_row + 8) + 30
    parts = [f"<h3>{_esc(title)}</h3>", f"<svg width='{label_w + bar_w + 90}' height='{height}' role='img'>"]
    y = 4
    for label, segs in rows:
        parts.append(
            f"<text x='{label_w - 6}' y='{y + row_h * per_row / 2 + 4}' text-anchor='end'>{_esc(label)}</text>"
        )
        x = label_w
        for i, (name, value) in enumerate(segs):
            width = bar_w * value / top
            color = _COLORS.get(name, _COLORS["bar"])
            yy = y + (i * row_h if grouped else 0)
            if width > 0:
                parts.append(
                    f"<rect x='{x:.1f}' y='{yy}' width='{max(width, 1):.1f}' height='{row_h - 2}' "
                    f"fill='{color}'><title>{_esc(label)} · {_esc(name)}: {_num(value, unit)}</title></rect>"
                )
            if grouped:
                parts.append(
                    f"<text x='{label_w + width + 4:.1f}' y='{yy + row_h - 3}' class='v'>{_num(value, unit)}</text>"
                )
            else:
                x += width
        if not grouped:
            total = sum(v for _, v in segs)
            parts.append(f"<text x='{x + 4:.1f}' y='{y + row_h - 6}' class='v'>{_num(total, unit)}</text>")
        y += row_h * per_row + 8
    legend_x = label_w
    for name in series:
        parts.append(
            f"<rect x='{legend_x}' y='{y + 4}' width='10' height='10' fill='{_COLORS.get(name, _COLORS['bar'])}'/>"
            f"<text x='{legend_x + 14}' y='{y + 13}'>{_esc(name)}</text>"
        )
        legend_x += 14 + 8 * len(name) + 24
    parts.append("</svg>")
    return "".join(parts)


def _num(value: float, unit: str) -> str:
    return f"{value:.1f}{unit}" if unit else f"{value:,.0f}"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(card: Mapping[str, Any]) -> str:
    """The card as one self-contained HTML page with inline SVG charts."""
    totals = card["totals"]
    status = card.get("status", "complete")
    banner = ""
    if card["problems"]:
        items = "".join(f"<li>{_esc(p)}</li>" for p in card["problems"])
        banner = f"<div class='problems'><b>Status: {_esc(status)}</b><ul>{items}</ul></div>"
    steps = card["steps"]
    step_rows = [
        (
            s["step"],
            [
                ("out", s["out"]),
                ("quarantined", s["quarantined"]),
                ("filtered", s["filtered"]),
                ("duplicates", s["duplicates"]),
            ],
        )
        for s in steps
    ]
    cats = card["categories"]
    cat_rows = [
        (
            name,
            [
                ("kept", c["kept"]),
                ("filtered", c["filtered"]),
                ("duplicates", c["duplicates"]),
                ("quarantined", c["quarantined"]),
            ],
        )
        for name, c in cats.items()
        if c["in"]
    ]
    sections = [
        f"<h1>Data card · {_esc(card['stage'])}</h1>",
        banner,
        "<p class='kpi'>"
        + " · ".join(f"<b>{_esc(k)}</b> {v:,}" for k, v in totals.items())
        + (f" · <b>records out</b> {card['records_out']:,}" if "records_out" in card else "")
        + f" · <b>status</b> {_esc(status)}</p>",
        _bar_chart("Where the input went, step by step", step_rows),
        _bar_chart(f"Outcome per {card.get('slice_name', 'category')}", cat_rows),
    ]
    if "tokens" in card:
        token_rows = [
            (
                name,
                [
                    ("before", c["tokens_before_dedup"]),
                    ("after", c["tokens_after_dedup"]),
                    ("tokens_out", c["tokens_out"]),
                ],
            )
            for name, c in cats.items()
            if c["tokens_before_dedup"] or c["tokens_out"]
        ]
        sections.append(
            _bar_chart(
                f"Tokens per category ({card['tokens']['method']}): before dedup, after dedup, out",
                token_rows,
                grouped=True,
            )
        )
        dup_rows = [
            (name, [("duplicates", c["duplicate_rate"] * 100)]) for name, c in cats.items() if c["in"]
        ]
        sections.append(
            _bar_chart("Duplicate rate per category (of documents reaching dedup)", dup_rows, unit="%")
        )
    reason_rows = sorted(card["reasons"].items(), key=lambda kv: -kv[1])[:25]
    sections.append(_bar_chart("Reasons (top 25)", [(r, [("bar", n)]) for r, n in reason_rows]))
    sections.append(
        _bar_chart(
            "Patient identifiers masked, per type", [(k, [("bar", v)]) for k, v in card["pii"].items()]
        )
    )
    decon = card["decontamination"]
    sections.append(
        _bar_chart(
            "Evaluation-set overlaps removed, per task", [(k, [("bar", v)]) for k, v in decon["hits"].items()]
        )
    )
    if "dedup" in card:
        d = card["dedup"]
        sections.append(
            "<h3>Deduplication</h3>"
            + _table(["measure", "value"], [[k, v] for k, v in d.items() if not isinstance(v, dict | list)])
        )
    sections.append(
        "<h3>Steps</h3>"
        + _table(
            ["step", "in", "out", "quarantined", "filtered", "duplicates", "reasons"],
            [
                [
                    s["step"],
                    s["in"],
                    s["out"],
                    s["quarantined"],
                    s["filtered"],
                    s["duplicates"],
                    ", ".join(f"{r}: {n}" for r, n in s["reasons"].items()),
                ]
                for s in steps
            ],
        )
    )
    sections.append(
        "<h3>Skipped files</h3>"
        + _table(["file", "reason"], [[s["relpath"], s["reason"]] for s in card["skipped_files"]])
    )
    sections.append(
        "<h3>Unreadable streams</h3>"
        + _table(
            ["file", "line", "reason"],
            [[f["source"], f["line"], f["reason"]] for f in card["stream_failures"]],
        )
    )
    if card.get("encodings"):
        sections.append(
            "<h3>Encodings</h3>"
            + _table(["file", "decoded as"], [[k, v] for k, v in card["encodings"].items()])
        )
    sections.append(
        "<details><summary>Card as JSON</summary><pre>"
        + _esc(json.dumps(card, ensure_ascii=False, indent=1, default=str))
        + "</pre></details>"
    )
    style = (
        "body{font-family:system-ui,'PingFang SC','Noto Sans CJK SC',sans-serif;margin:24px;color:#222;max-width:1000px}"
        "svg text{font-size:12px;fill:#333}svg text.v{fill:#555}h3{margin-top:28px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}"
        ".problems{background:#ffebee;border:1px solid #c62828;padding:8px 14px;margin:12px 0}"
        ".muted{color:#888}.kpi{font-size:15px}pre{font-size:11px;max-height:400px;overflow:auto}"
    )
    return (
        "<!DOCTYPE html><html lang='zh'><head><meta charset='utf-8'>"
        f"<title>Data card · {_esc(card['stage'])}</title><style>{style}</style></head><body>"
        + "".join(sections)
        + "</body></html>\n"
    )


def publish_card(artifact_dir: str | Path, html_path: str | Path, metrics) -> None:
    """Copy a step's card page to a KFP ``HTML`` artifact and log its numbers to a ``Metrics`` one.

    Does nothing when the step failed before it wrote a card.
    """
    artifact_dir = Path(artifact_dir)
    card_file = artifact_dir / CARD_JSON
    if not card_file.is_file():
        return
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    Path(html_path).write_text((artifact_dir / CARD_HTML).read_text(encoding="utf-8"), encoding="utf-8")
    for name, value in card_metrics(json.loads(card_file.read_text(encoding="utf-8"))).items():
        metrics.log_metric(f"card/{name}", value)
