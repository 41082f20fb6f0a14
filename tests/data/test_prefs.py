"""Preference pairs from doctors' labels: conflicts, prompts without a pair, caps, determinism."""

from __future__ import annotations

import json

import pytest

from medgo.config import PrefsConfig
from medgo.data.prefs import build_preferences, pair_order

SYSTEM = "你是医学助手。"
Q_BP = "高血压患者可以喝酒吗？"
Q_FLU = "感冒要输液吗？"
Q_MANY = "头痛怎么办？"


def label(lid, prompt, response, verdict, doctor, **extra):
    return {
        "id": lid,
        "prompt": prompt,
        "response": response,
        "label": verdict,
        "doctor_id": doctor,
        "department": "内科",
        **extra,
    }


@pytest.fixture
def labels(tmp_path, write_lines):
    root = tmp_path / "labels"
    write_lines(
        root / "day1.jsonl",
        [
            label("l1", Q_BP, "不建议饮酒，酒精会升高血压。", "acceptable", "d1"),
            label("l2", Q_BP, "少量饮酒有益健康，可以随便喝。", "unacceptable", "d1"),
            label("l3", Q_BP, "不建议饮酒，酒精会升高血压。", "acceptable", "d2"),
            label("l4", Q_BP, "喝红酒可以软化血管。", "acceptable", "d1"),  # conflict with l5
            label("l5", Q_BP, "喝红酒可以软化血管。", "unacceptable", "d2"),
            label("l6", Q_FLU, "普通感冒一般不需要输液。", "acceptable", "d3"),  # no unacceptable answer
            label("l7", Q_FLU, "多休息多喝水。", "acceptable", "d1"),
            label("l8", Q_BP, "少量饮酒有益健康，可以随便喝。", "Acceptable", "d3"),  # d3 then corrects it
            "{bad json",
            label("l9", Q_BP, "随便", "maybe", "d1"),
            {"id": "l10", "prompt": Q_BP, "response": "随便", "label": "acceptable"},
        ],
    )
    write_lines(
        root / "day2.jsonl",
        [
            label("l11", Q_BP, "少量饮酒有益健康，可以随便喝。", "unacceptable", "d3"),
            # The feedback store exports the prompt as chat messages; same question → same group.
            label(
                "l12",
                [{"role": "user", "content": Q_BP}],
                "酒精会增加心脑血管风险，应戒酒。",
                "acceptable",
                42,
                model_version="v3",
                comment="好",
            ),
        ],
    )
    return root


@pytest.fixture
def built(labels, tmp_path, jsonl):
    config = PrefsConfig(system_prompt=SYSTEM, max_quarantine_share=1.0)
    counts = build_preferences(labels, tmp_path / "out", config)
    return counts, jsonl(tmp_path / "out" / "train.jsonl"), tmp_path / "out"


def _texts(pair):
    return pair["chosen"][0]["content"], pair["rejected"][0]["content"]


def test_pairs_are_acceptable_against_unacceptable_excluding_conflicts(built):
    _, pairs, _ = built
    assert [_texts(p) for p in pairs] == [
        ("不建议饮酒，酒精会升高血压。", "少量饮酒有益健康，可以随便喝。"),
        ("酒精会增加心脑血管风险，应戒酒。", "少量饮酒有益健康，可以随便喝。"),
    ]
    assert all("喝红酒可以软化血管。" not in _texts(p) for p in pairs)


def test_records_are_in_trl_conversational_preference_format(built, tiny_tokenizer):
    from trl.data_utils import apply_chat_template, is_conversational

    _, pairs, _ = built
    pair = pairs[0]
    assert set(pair) == {"id", "prompt", "chosen", "rejected", "source"}
    assert pair["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q_BP}]
    assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    assert pair["source"] == "doctor_labels" and pair["id"].startswith("pref-")
    assert is_conversational(pair)
    rendered = apply_chat_template(pair, tiny_tokenizer[0])
    assert rendered["prompt"].endswith("<|im_start|>assistant\n") and "不建议饮酒" in rendered["chosen"]


def test_counts_cover_conflicts_superseded_labels_and_prompts_without_pair(built):
    counts, pairs, out = built
    assert counts["labels_in"] == 13 and counts["quarantined"] == 3
    assert (counts["superseded"], counts["conflicts"], counts["conflict_labels"]) == (1, 1, 2)
    assert (counts["prompts"], counts["prompts_without_pair"], counts["labels_without_pair"]) == (2, 1, 2)
    assert counts["labels_used"] == 5 and counts["pairs"] == len(pairs) == 2
    assert counts["labels_in"] == sum(
        counts[k]
        for k in ("quarantined", "superseded", "conflict_labels", "labels_without_pair", "labels_used")
    )
    assert json.loads((out / "manifest.json").read_text())["counts"] == counts


def test_every_unused_label_is_listed_with_its_reason(built, jsonl):
    _, _, out = built
    excluded = {e["id"]: e["reason"] for e in jsonl(out / "excluded.jsonl")}
    assert excluded == {
        "l8": "superseded",
        "l4": "conflict",
        "l5": "conflict",
        "l6": "no_pair",
        "l7": "no_pair",
    }
    quarantined = {(q["source"], q["line"]): q["reason"] for q in jsonl(out / "quarantine.jsonl")}
    assert quarantined == {
        ("day1.jsonl", 9): "malformed_json",
        ("day1.jsonl", 10): "invalid_value:label",
        ("day1.jsonl", 11): "missing_field:doctor_id",
    }


def test_cap_keeps_the_best_agreed_pairs_spread_over_responses(tmp_path, write_lines, jsonl):
    good = [
        "多休息，必要时服用对乙酰氨基酚。",
        "记录头痛发作规律，持续不缓解请就医。",
        "保证睡眠，避免诱因。",
    ]
    bad = ["吃点安眠药就好。", "头痛不用管。", "直接做开颅手术。"]
    rows = [label(f"g{i}", Q_MANY, text, "acceptable", "d1") for i, text in enumerate(good)]
    rows += [label(f"b{i}", Q_MANY, text, "unacceptable", "d1") for i, text in enumerate(bad)]
    rows.append(label("g2-again", Q_MANY, good[2], "acceptable", "d2"))  # two doctors agree on good[2]
    write_lines(tmp_path / "labels.jsonl", rows)

    counts = build_preferences(
        tmp_path / "labels.jsonl", tmp_path / "out", PrefsConfig(max_pairs_per_prompt=4)
    )
    pairs = [_texts(p) for p in jsonl(tmp_path / "out" / "train.jsonl")]

    ranked_good = [good[2], good[0], good[1]]
    assert pairs == [(ranked_good[i], bad[j]) for i, j in [(0, 0), (0, 1), (1, 0), (0, 2)]]
    assert counts["pairs"] == 4 and counts["pairs_over_cap"] == 5


def test_output_is_deterministic(labels, tmp_path):
    build_preferences(labels, tmp_path / "a", PrefsConfig(max_quarantine_share=1.0))
    build_preferences(labels, tmp_path / "b", PrefsConfig(max_quarantine_share=1.0))
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()


def test_pair_order_walks_anti_diagonals():
    assert pair_order(2, 3) == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]


def test_too_much_quarantine_fails_the_step_after_writing_its_pairs(labels, tmp_path, jsonl):
    from medgo.data.accounting import StepFailed

    with pytest.raises(StepFailed, match=r"data\.prefs failed: 3 of 13 input units quarantined"):
        build_preferences(labels, tmp_path / "out", PrefsConfig())
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["status"] == "failed"
    assert jsonl(tmp_path / "out" / "train.jsonl")
    assert build_preferences(labels, tmp_path / "ok", PrefsConfig(allow_partial=True))["status"] == (
        "accepted_partial"
    )


def test_labels_overlapping_an_evaluation_set_are_excluded(labels, tmp_path, jsonl):
    eval_dir = tmp_path / "eval" / "CHIP-STS"
    eval_dir.mkdir(parents=True)
    (eval_dir / "dev.json").write_text(
        json.dumps([{"text1": "高血压患者可以喝酒吗？", "text2": "x", "label": "1"}], ensure_ascii=False)
    )
    config = PrefsConfig(
        max_quarantine_share=1.0, decontamination={"eval_dir": str(tmp_path / "eval"), "ngram_chars": 8}
    )
    counts = build_preferences(labels, tmp_path / "out", config)
    assert counts["pairs"] == 0 and counts["eval_overlaps"] == 8
    excluded = jsonl(tmp_path / "out" / "excluded.jsonl")
    assert {e["reason"] for e in excluded} >= {"eval_overlap:CHIP-STS"}
    assert json.loads((tmp_path / "out" / "data_card.json").read_text())["decontamination"]["hits"] == {
        "CHIP-STS": 8
    }


def test_unreadable_files_next_to_the_labels_are_listed_as_skipped(labels, tmp_path):
    (labels / "notes.txt").write_text("x")
    counts = build_preferences(labels, tmp_path / "out", PrefsConfig(max_quarantine_share=1.0))
    assert [s["relpath"] for s in counts["skipped_files"]] == ["notes.txt"]
