"""Corpus preparation: every input line ends up in exactly one output, and the counts prove it."""

from __future__ import annotations

import json

import pytest

from medgo.config import PrepareConfig
from medgo.data.accounting import Tally
from medgo.data.prepare import prepare_corpus
from medgo.errors import InputError
from medgo.storage import verify_manifest

LONG = "高血压是以体循环动脉压升高为主要特征的临床综合征，需长期规律治疗并监测血压。"
OTHER = "2型糖尿病患者应控制饮食，适量运动，遵医嘱使用降糖药物，并定期复查糖化血红蛋白。"
PHONE_TEXT = "患者张某某，男，56岁，联系电话13812345678，因反复胸闷胸痛三年入院，诊断为冠心病。"
TRADITIONAL = "醫院門診部提醒：流感季節請注意個人衛生，出現發熱症狀應及時就醫。"


def _raw_corpus(tmp_path, write_lines):
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl",
        [
            {"id": "a1", "text": LONG, "category": "textbook", "source": "人卫教材"},  # 1 kept
            "{broken json",  # 2 malformed
            {"id": "a3", "text": "太短了", "category": "textbook"},  # 3 too_short
            {"id": "a4", "text": OTHER, "category": "astrology"},  # 4 unknown category
            {"id": "a5", "category": "textbook"},  # 5 missing text
            {"id": "a6", "text": 42, "category": "textbook"},  # 6 wrong type
            {
                "id": "a7",
                "text": "Hypertension is a chronic condition requiring lifelong care.",
                "category": "journal_article",
            },  # 7 low chinese ratio
            {"id": "a8", "text": "  " + LONG + "\u3000", "category": "encyclopedia"},  # 8 duplicate of a1
            {"text": PHONE_TEXT, "category": "medical_record", "meta": {"hospital": "H1"}},  # 9 kept, auto id
            {"id": "a1", "text": OTHER, "category": "textbook"},  # 10 duplicate id
            {"id": 7, "text": OTHER, "category": "textbook"},  # 11 wrong type id
        ],
    )
    write_lines(
        raw / "b.jsonl.gz",
        [
            {
                "id": "b1",
                "text": "<p>" + LONG + "</p>",
                "category": "clinical_guideline",
            },  # dup of a1 after cleaning
            {"id": "b2", "text": TRADITIONAL, "category": "public_health"},  # kept, converted
        ],
    )
    write_lines(raw / "c.jsonl", [{"id": "c1", "text": OTHER, "category": "nursing"}], encoding="gbk")
    return raw


@pytest.fixture
def prepared(tmp_path, write_lines):
    raw = _raw_corpus(tmp_path, write_lines)
    out = tmp_path / "out"
    counts = prepare_corpus(str(raw), out, PrepareConfig(min_chars=10))
    return raw, out, counts


def test_counts_reconcile_and_match_the_manifest(prepared):
    _, out, counts = prepared
    assert counts["in"] == 14
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert (counts["kept"], counts["filtered"], counts["duplicates"], counts["quarantined"]) == (4, 2, 2, 6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "data.prepare" and manifest["counts"] == counts
    assert set(manifest["files"]) == {
        "clean/part-00000.jsonl",
        "quarantine.jsonl",
        "dropped.jsonl",
        "data_card.json",
    }
    verify_manifest(out)


def test_quarantine_names_file_line_and_reason(prepared, jsonl):
    _, out, _ = prepared
    entries = {(e["source"], e["line"]): e["reason"] for e in jsonl(out / "quarantine.jsonl")}
    assert entries == {
        ("a.jsonl", 2): "malformed_json",
        ("a.jsonl", 4): "unknown_category:astrology",
        ("a.jsonl", 5): "missing_field:text",
        ("a.jsonl", 6): "wrong_type:text",
        ("a.jsonl", 10): "duplicate_id",
        ("a.jsonl", 11): "wrong_type:id",
    }


def test_dropped_records_carry_reason_and_survivor_but_no_text(prepared, jsonl):
    _, out, _ = prepared
    dropped = jsonl(out / "dropped.jsonl")
    assert [(d["id"], d["stage"], d["reason"], d.get("survivor")) for d in dropped] == [
        ("a3", "filter", "too_short", None),
        ("a7", "filter", "low_chinese_ratio", None),
        ("a8", "dedup", "duplicate", "a1"),
        ("b1", "dedup", "duplicate", "a1"),
    ]
    assert all("text" not in d for d in dropped)
    assert LONG not in (out / "dropped.jsonl").read_text()


def test_clean_records_are_normalised_scrubbed_and_traceable(prepared, jsonl):
    _, out, _ = prepared
    clean = {r["id"]: r for r in jsonl(out / "clean" / "part-00000.jsonl")}
    assert list(clean)[0] == "a1" and clean["a1"]["source"] == "人卫教材"
    assert clean["b2"]["text"] == "医院门诊部提醒：流感季节请注意个人卫生，出现发热症状应及时就医。"
    assert clean["b2"]["source"] == "b" and clean["b2"]["meta"]["source_file"] == "b.jsonl.gz"
    assert clean["c1"]["text"] == OTHER and clean["c1"]["meta"]["source_encoding"] == "gb18030"
    [auto_id] = [rid for rid in clean if rid.startswith("auto-")]
    record = clean[auto_id]
    assert "13812345678" not in record["text"] and "<PHONE>" in record["text"] and "<NAME>" in record["text"]
    assert record["meta"] == {
        "hospital": "H1",
        "pii": {"NAME": 1, "PHONE": 1},
        "source_file": "a.jsonl",
        "line": 9,
    }
    assert set(record) == {"id", "text", "category", "source", "meta"}


def test_data_card_breaks_counts_down_by_category(prepared):
    _, out, _ = prepared
    card = json.loads((out / "data_card.json").read_text())
    assert card["categories"]["textbook"] == {
        "in": 3,
        "kept": 1,
        "filtered": 1,
        "duplicates": 0,
        "quarantined": 1,
        "chars_kept": len(LONG),
    }
    assert card["categories"]["clinical_guideline"]["duplicates"] == 1
    assert card["categories"]["tcm"] == {
        "in": 0,
        "kept": 0,
        "filtered": 0,
        "duplicates": 0,
        "quarantined": 0,
        "chars_kept": 0,
    }
    assert card["pii"] == {"NAME": 1, "PHONE": 1}
    assert card["reasons"]["malformed_json"] == 1 and card["reasons"]["duplicate"] == 2


def test_rerun_gives_identical_records_and_replaces_the_previous_artifact(prepared):
    raw, out, counts = prepared
    first = (out / "clean" / "part-00000.jsonl").read_bytes()
    assert prepare_corpus(str(raw), out, PrepareConfig(min_chars=10)) == counts
    assert (out / "clean" / "part-00000.jsonl").read_bytes() == first


def test_scrubbing_and_conversion_can_be_switched_off(tmp_path, write_lines, jsonl):
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl", [{"id": "x", "text": PHONE_TEXT + TRADITIONAL, "category": "medical_record"}]
    )
    prepare_corpus(
        str(raw), tmp_path / "out", PrepareConfig(scrub_pii=False, traditional_to_simplified=False)
    )
    [record] = jsonl(tmp_path / "out" / "clean" / "part-00000.jsonl")
    assert record["text"] == PHONE_TEXT + TRADITIONAL and record["meta"]["pii"] == {}


RESIDENT_ID = "11010519491231002X"  # check digit and birth date valid


def test_quarantine_and_metadata_carry_no_patient_identifiers(tmp_path, write_lines, jsonl):
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl",
        [
            f'{{"text": "患者身份证{RESIDENT_ID}，电话13812345678", "category": ',  # malformed
            {"id": "q", "text": f"身份证{RESIDENT_ID}", "category": "astrology"},  # unknown category
            {
                "id": "m",
                "text": LONG,
                "category": "medical_record",
                "meta": {"ward": "心内科", "contact": {"phones": ["家属电话13912345678"]}, "bed": 12},
            },
        ],
    )
    out = tmp_path / "out"
    counts = prepare_corpus(str(raw), out, PrepareConfig(min_chars=10))
    assert (counts["kept"], counts["quarantined"], counts["pii"]) == (1, 2, 1)

    quarantine_text = (out / "quarantine.jsonl").read_text(encoding="utf-8")
    assert RESIDENT_ID not in quarantine_text and "13812345678" not in quarantine_text
    raws = [e["raw"] for e in jsonl(out / "quarantine.jsonl")]
    assert raws[0] == '{"text": "患者身份证<ID>，电话<PHONE>", "category": '
    assert "身份证<ID>" in raws[1]

    [record] = jsonl(out / "clean" / "part-00000.jsonl")
    assert record["meta"] == {
        "ward": "心内科",
        "contact": {"phones": ["家属电话<PHONE>"]},
        "bed": 12,
        "pii": {"PHONE": 1},
        "source_file": "a.jsonl",
        "line": 3,
    }
    assert "13912345678" not in (out / "clean" / "part-00000.jsonl").read_text(encoding="utf-8")


def test_output_inside_the_input_is_refused(tmp_path, write_lines):
    raw = _raw_corpus(tmp_path, write_lines)
    with pytest.raises(InputError, match="would overwrite"):
        prepare_corpus(str(raw), raw, PrepareConfig())


def test_tally_refuses_counts_that_do_not_add_up():
    tally = Tally()
    tally.add_kept()
    tally.add_quarantined("malformed_json")
    tally.check("test")
    tally.records_in += 1
    with pytest.raises(RuntimeError, match="do not reconcile"):
        tally.check("test")
