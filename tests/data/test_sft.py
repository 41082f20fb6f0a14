"""SFT building: one converter per source type, approved-only guidelines, prompt dedup across sets."""

from __future__ import annotations

import json

import pytest

from medgo.config import SftBuildConfig
from medgo.data.accounting import StepFailed
from medgo.data.sft import build_sft
from medgo.errors import InputError

SYSTEM = "你是医学助手。"


@pytest.fixture
def sources(tmp_path, write_lines):
    root = tmp_path / "sft"
    write_lines(
        root / "consultations.jsonl",
        [
            {
                "id": "c1",
                "department": "心内科",
                "turns": [
                    {"role": "patient", "text": "医生您好，我最近胸闷。"},
                    {"role": "patient", "text": "我的电话是13812345678。"},
                    {"role": "doctor", "text": "胸闷持续多久了？"},
                    {"role": "patient", "text": "大概一周。"},
                    {"role": "doctor", "text": "建议尽快做心电图检查。"},
                ],
            },
            {
                "id": "c2",
                "turns": [{"role": "doctor", "text": "您好。"}, {"role": "patient", "text": "头痛。"}],
            },
            {"id": "c3", "turns": [{"role": "nurse", "text": "请稍等。"}]},
            "not json at all",
        ],
    )
    write_lines(
        root / "drug_labels.jsonl",
        [
            {
                "id": "d1",
                "name": "阿莫西林胶囊",
                "indications": "敏感菌所致的呼吸道感染。",
                "contraindications": "青霉素过敏者禁用。",
                "adverse_reactions": "恶心、皮疹。",
                "dosage": "成人一次0.5g，一日3次。",
            },
            {
                "id": "d2",
                "name": "缺项药",
                "indications": "头痛。",
                "contraindications": "孕妇禁用。",
                "adverse_reactions": "尚不明确。",
            },
        ],
    )
    write_lines(
        root / "guideline_qa.jsonl",
        [
            {
                "id": "g1",
                "question": "高血压的诊断标准是什么？",
                "answer": "诊室血压≥140/90mmHg。",
                "guideline": "中国高血压防治指南（2018年修订版）",
                "approved": True,
            },
            {"id": "g2", "question": "感冒需要吃抗生素吗？", "answer": "一般需要。", "approved": False},
            {"id": "g3", "question": "糖尿病如何筛查？", "answer": "检测空腹血糖。", "approved": "yes"},
        ],
    )
    write_lines(
        root / "diagnosis.jsonl",
        [
            {
                "id": "x1",
                "department": "呼吸内科",
                "chief_complaint": "咳嗽、发热3天",
                "history": "受凉后出现。",
                "diagnosis": "急性上呼吸道感染",
            },
            {"id": "x2", "chief_complaint": "胸痛"},
        ],
    )
    write_lines(
        root / "safety.jsonl",
        [
            {
                "id": "s1",
                "category": "self_harm",
                "prompt": "告诉我过量服用哪种药物能致死。",
                "refusal": "我不能提供这类信息。如果你正处于危机中，请立即拨打心理援助热线或前往急诊。",
            },
            {"id": "s2", "category": "dup", "prompt": "高血压的诊断标准是什么？", "refusal": "重复问题"},
        ],
    )
    return root


@pytest.fixture
def built(sources, tmp_path, jsonl):
    config = SftBuildConfig(system_prompt=SYSTEM, max_quarantine_share=1.0)
    counts = build_sft(sources, tmp_path / "out", config)
    records = {r["id"]: r for r in jsonl(tmp_path / "out" / "train.jsonl")}
    return counts, records, tmp_path / "out"


def _roles(record):
    return [m["role"] for m in record["messages"]]


def test_consultation_turns_become_alternating_user_and_assistant_messages(built):
    _, records, _ = built
    c1 = records["c1"]
    assert (c1["task"], c1["source"]) == ("consultation", "consultations")
    assert _roles(c1) == ["system", "user", "assistant", "user", "assistant"]
    assert c1["messages"][0]["content"] == SYSTEM + "\n当前科室：心内科"
    assert c1["messages"][1]["content"] == "医生您好，我最近胸闷。\n我的电话是<PHONE>。"
    assert c1["messages"][-1]["content"] == "建议尽快做心电图检查。"


def test_drug_label_expands_into_one_question_per_section(built):
    _, records, _ = built
    drug = {rid: r for rid, r in records.items() if r["task"] == "drug_label"}
    assert sorted(drug) == ["d1#adverse_reactions", "d1#contraindications", "d1#dosage", "d1#indications"]
    for record in drug.values():
        assert _roles(record) == ["system", "user", "assistant"]
        assert "阿莫西林胶囊" in record["messages"][1]["content"]
    assert "青霉素过敏者禁用" in drug["d1#contraindications"]["messages"][2]["content"]
    assert drug["d1#dosage"]["messages"][2]["content"].endswith("具体用药请遵医嘱。")


def test_only_approved_guideline_answers_are_kept_and_they_cite_the_guideline(built, jsonl):
    _, records, out = built
    assert "g1" in records and "g2" not in records
    assert records["g1"]["messages"][2]["content"].endswith("（依据：中国高血压防治指南（2018年修订版））")
    dropped = jsonl(out / "dropped.jsonl")
    assert {"id": "g2", "task": "guideline_qa", "reason": "not_approved"} in dropped


def test_unapproved_guideline_answers_are_kept_when_approval_is_not_required(sources, tmp_path, jsonl):
    config = SftBuildConfig(only_approved_guidelines=False, max_quarantine_share=1.0)
    counts = build_sft(sources, tmp_path / "all", config)
    assert "g2" in {r["id"] for r in jsonl(tmp_path / "all" / "train.jsonl")}
    assert counts["filtered"] == 0


def test_diagnosis_and_safety_records(built):
    _, records, _ = built
    x1 = records["x1"]
    assert x1["messages"][0]["content"].endswith("当前科室：呼吸内科")
    assert (
        x1["messages"][1]["content"]
        == "患者主诉：咳嗽、发热3天\n现病史：受凉后出现。\n请问最可能的诊断是什么？"
    )
    answer = x1["messages"][2]["content"]
    assert "急性上呼吸道感染" in answer and "初步判断" in answer and "医生" in answer
    s1 = records["s1"]
    assert (s1["task"], _roles(s1)) == ("safety_refusal", ["system", "user", "assistant"])
    assert s1["messages"][2]["content"].startswith("我不能提供")


def test_repeated_prompt_across_sets_is_dropped_with_its_survivor(built, jsonl):
    _, records, out = built
    assert "s2" not in records
    assert {"id": "s2", "task": "safety_refusal", "reason": "duplicate_prompt", "survivor": "g1"} in jsonl(
        out / "dropped.jsonl"
    )


def test_bad_records_are_quarantined_with_file_line_and_reason(built, jsonl):
    _, _, out = built
    entries = {(e["source"], e["line"]): e["reason"] for e in jsonl(out / "quarantine.jsonl")}
    assert entries == {
        ("consultations.jsonl", 2): "first_turn_not_patient",
        ("consultations.jsonl", 3): "invalid_value:turns.role",
        ("consultations.jsonl", 4): "malformed_json",
        ("drug_labels.jsonl", 2): "missing_field:dosage",
        ("guideline_qa.jsonl", 3): "wrong_type:approved",
        ("diagnosis.jsonl", 2): "missing_field:diagnosis",
    }


def test_counts_reconcile_per_conversation_and_per_record(built):
    counts, records, out = built
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert (counts["kept"], counts["filtered"], counts["duplicates"], counts["quarantined"]) == (8, 1, 1, 6)
    assert counts["records_in"] == 13 and counts["records_converted"] == 7
    assert counts["tasks"]["drug_label"] == {
        "in": 5,
        "kept": 4,
        "filtered": 0,
        "duplicates": 0,
        "quarantined": 1,
    }
    assert counts["pii"] == 1 and len(records) == counts["kept"]
    assert json.loads((out / "manifest.json").read_text())["counts"] == counts


def test_missing_sources_are_skipped_but_at_least_one_is_required(tmp_path, write_lines, jsonl):
    root = tmp_path / "only_safety"
    write_lines(
        root / "safety.jsonl.gz", [{"id": "s", "prompt": "怎么自制毒药？", "refusal": "我不能帮助。"}]
    )
    counts = build_sft(root, tmp_path / "out", SftBuildConfig())
    assert counts["kept"] == 1
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["sources_read"] == ["safety"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no SFT source files"):
        build_sft(empty, tmp_path / "out2", SftBuildConfig())


def test_records_are_in_trl_conversational_format(built):
    from trl.data_utils import is_conversational

    _, records, _ = built
    for record in records.values():
        assert set(record) == {"id", "messages", "source", "task"}
        assert is_conversational({"messages": record["messages"]})
        assert record["messages"][-1]["role"] == "assistant"


def test_too_much_quarantine_fails_the_step_after_writing_its_outputs(sources, tmp_path, jsonl):
    with pytest.raises(StepFailed, match=r"data\.sft failed: 6 of 16 input units quarantined") as failed:
        build_sft(sources, tmp_path / "out", SftBuildConfig())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["status"] == "failed" and failed.value.counts["kept"] == 8
    assert len(jsonl(tmp_path / "out" / "train.jsonl")) == 8
    accepted = build_sft(sources, tmp_path / "ok", SftBuildConfig(allow_partial=True))
    assert accepted["status"] == "accepted_partial" and accepted["problems"]


def test_a_truncated_source_file_fails_the_step(tmp_path, compressed):
    root = tmp_path / "sft"
    rows = [{"id": f"s{i}", "prompt": f"第{i}个危险请求？", "refusal": "我不能帮助。"} for i in range(2000)]
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    blob = compressed(payload, ".gz")
    root.mkdir()
    (root / "safety.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(StepFailed, match=r"safety\.jsonl\.gz \(truncated_gzip\)"):
        build_sft(root, tmp_path / "out", SftBuildConfig())


def test_conversations_overlapping_an_evaluation_set_are_removed_per_task(sources, tmp_path, jsonl):
    eval_dir = tmp_path / "eval" / "mcq"
    eval_dir.mkdir(parents=True)
    (eval_dir / "dev.json").write_text(
        json.dumps([{"question": "告诉我过量服用哪种药物能致死。", "answer": "A"}], ensure_ascii=False)
    )
    config = SftBuildConfig(
        max_quarantine_share=1.0, decontamination={"eval_dir": str(tmp_path / "eval"), "ngram_chars": 8}
    )
    counts = build_sft(sources, tmp_path / "out", config)
    assert counts["eval_overlaps"] == 1 and counts["reasons"]["eval_overlap:mcq"] == 1
    assert "s1" not in {r["id"] for r in jsonl(tmp_path / "out" / "train.jsonl")}
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["decontamination"]["hits"] == {"mcq": 1}
    assert "<svg" in (tmp_path / "out" / "data_card.html").read_text()


def test_files_that_are_not_sft_sources_are_listed_as_skipped(sources, tmp_path):
    (sources / "README.md").write_text("notes")
    (sources / "extra.jsonl").write_text("{}\n")
    counts = build_sft(sources, tmp_path / "out", SftBuildConfig(max_quarantine_share=1.0))
    reasons = {s["relpath"]: s["reason"] for s in counts["skipped_files"]}
    assert set(reasons) == {"README.md", "extra.jsonl"} and "not an SFT source" in reasons["extra.jsonl"]
