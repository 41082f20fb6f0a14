"""Corpus preparation: every input unit ends up in exactly one outcome, per shard and in total."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.config import PrepareConfig
from medgo.data.accounting import StepFailed, Tally
from medgo.data.prepare import default_work_dir, prepare_corpus
from medgo.errors import InputError
from medgo.storage import verify_manifest

LONG = "高血压是以体循环动脉压升高为主要特征的临床综合征，需长期规律治疗并监测血压。"
OTHER = "2型糖尿病患者应控制饮食，适量运动，遵医嘱使用降糖药物，并定期复查糖化血红蛋白。"
PHONE_TEXT = "患者张某某，男，56岁，联系电话13812345678，因反复胸闷胸痛三年入院，诊断为冠心病。"
TRADITIONAL = "醫院門診部提醒：流感季節請注意個人衛生，出現發熱症狀應及時就醫。"
LENIENT = {"min_chars": 10, "max_quarantine_share": 1.0, "workers": 1}


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
            {"id": "b1", "text": "<p>" + LONG + "</p>", "category": "clinical_guideline"},  # dup of a1
            {"id": "b2", "text": TRADITIONAL, "category": "public_health"},  # kept, converted
        ],
    )
    write_lines(raw / "c.jsonl", [{"id": "c1", "text": OTHER, "category": "nursing"}], encoding="gbk")
    return raw


def _clean(out: Path) -> list[dict]:
    return [
        json.loads(line) for p in sorted((out / "clean").glob("*.jsonl")) for line in p.open(encoding="utf-8")
    ]


def _entries(out: Path, kind: str) -> list[dict]:
    return [
        json.loads(line) for p in sorted((out / kind).glob("*.jsonl")) for line in p.open(encoding="utf-8")
    ]


@pytest.fixture
def prepared(tmp_path, write_lines):
    raw = _raw_corpus(tmp_path, write_lines)
    out = tmp_path / "out"
    counts = prepare_corpus(str(raw), out, PrepareConfig(**LENIENT))
    return raw, out, counts


def test_counts_reconcile_and_match_the_manifest(prepared):
    _, out, counts = prepared
    assert counts["in"] == 14
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert (counts["kept"], counts["filtered"], counts["duplicates"], counts["quarantined"]) == (4, 2, 2, 6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "data.prepare" and manifest["counts"]["in"] == 14
    assert manifest["status"] == "complete" and manifest["problems"] == []
    assert set(manifest["files"]) == {
        "clean/part-00000.jsonl",
        "quarantine/part-00000.jsonl",
        "dropped/part-00000.jsonl",
        "data_card.json",
        "data_card.html",
    }
    verify_manifest(out)
    assert not default_work_dir(out).exists()  # removed after a successful run


def test_quarantine_names_file_line_and_reason(prepared):
    _, out, _ = prepared
    entries = {(e["source"], e["line"]): e["reason"] for e in _entries(out, "quarantine")}
    assert entries == {
        ("a.jsonl", 2): "malformed_json",
        ("a.jsonl", 4): "unknown_category:astrology",
        ("a.jsonl", 5): "missing_field:text",
        ("a.jsonl", 6): "wrong_type:text",
        ("a.jsonl", 10): "duplicate_id",
        ("a.jsonl", 11): "wrong_type:id",
    }


def test_dropped_records_carry_reason_and_survivor_but_no_text(prepared):
    _, out, _ = prepared
    dropped = _entries(out, "dropped")
    assert sorted((d["id"], d["stage"], d["reason"], d.get("survivor")) for d in dropped) == [
        ("a3", "filter", "too_short", None),
        ("a7", "filter", "low_chinese_ratio", None),
        ("a8", "dedup", "duplicate", "a1"),
        ("b1", "dedup", "duplicate", "a1"),
    ]
    assert all("text" not in d for d in dropped)
    assert LONG not in (out / "dropped" / "part-00000.jsonl").read_text()


def test_clean_records_are_normalised_scrubbed_and_traceable(prepared):
    _, out, _ = prepared
    clean = {r["id"]: r for r in _clean(out)}
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


def test_data_card_breaks_counts_down_by_step_and_category(prepared):
    _, out, _ = prepared
    card = json.loads((out / "data_card.json").read_text())
    textbook = card["categories"]["textbook"]
    assert {k: textbook[k] for k in ("in", "kept", "filtered", "duplicates", "quarantined")} == {
        "in": 3,
        "kept": 1,
        "filtered": 1,
        "duplicates": 0,
        "quarantined": 1,
    }
    assert textbook["filters"] == {"too_short": 1} and textbook["tokens_out"] > 0
    assert card["categories"]["clinical_guideline"]["duplicate_rate"] == 1.0
    assert card["categories"]["tcm"]["in"] == 0
    assert card["pii"] == {"NAME": 1, "PHONE": 1}
    assert card["reasons"]["malformed_json"] == 1 and card["reasons"]["duplicate"] == 2
    steps = {s["step"]: s for s in card["steps"]}
    assert steps["read"]["in"] == 14 and steps["read"]["quarantined"] == 1
    assert steps["validate"]["quarantined"] == 4 and steps["quality"]["filtered"] == 2
    assert steps["dedup"]["duplicates"] == 2 and steps["dedup"]["quarantined"] == 1
    assert steps["mixture"]["out"] == 4
    for step in card["steps"]:
        assert step["in"] == step["out"] + step["quarantined"] + step["filtered"] + step["duplicates"]
    page = (out / "data_card.html").read_text()
    assert page.count("<svg") >= 4 and "<script" not in page and "http" not in page.split("<pre>")[0]


def test_rerun_gives_identical_records_and_replaces_the_previous_artifact(prepared):
    raw, out, counts = prepared
    first = (out / "clean" / "part-00000.jsonl").read_bytes()
    again = prepare_corpus(str(raw), out, PrepareConfig(**LENIENT))
    assert {k: again[k] for k in ("in", "kept", "filtered", "duplicates", "quarantined")} == {
        k: counts[k] for k in ("in", "kept", "filtered", "duplicates", "quarantined")
    }
    assert (out / "clean" / "part-00000.jsonl").read_bytes() == first


def test_scrubbing_and_conversion_can_be_switched_off(tmp_path, write_lines):
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl", [{"id": "x", "text": PHONE_TEXT + TRADITIONAL, "category": "medical_record"}]
    )
    prepare_corpus(
        str(raw), tmp_path / "out", PrepareConfig(scrub_pii=False, traditional_to_simplified=False, workers=1)
    )
    [record] = _clean(tmp_path / "out")
    assert record["text"] == PHONE_TEXT + TRADITIONAL and record["meta"]["pii"] == {}


RESIDENT_ID = "11010519491231002X"  # check digit and birth date valid


def test_quarantine_and_metadata_carry_no_patient_identifiers(tmp_path, write_lines):
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
    counts = prepare_corpus(str(raw), out, PrepareConfig(**LENIENT))
    assert (counts["kept"], counts["quarantined"], counts["pii"]) == (1, 2, 1)
    quarantine_text = (out / "quarantine" / "part-00000.jsonl").read_text(encoding="utf-8")
    assert RESIDENT_ID not in quarantine_text and "13812345678" not in quarantine_text
    [record] = _clean(out)
    assert record["meta"]["contact"] == {"phones": ["家属电话<PHONE>"]} and record["meta"]["pii"] == {
        "PHONE": 1
    }


def test_output_inside_the_input_is_refused_in_both_directions(tmp_path, write_lines):
    raw = _raw_corpus(tmp_path, write_lines)
    with pytest.raises(InputError, match="would overwrite"):
        prepare_corpus(str(raw), raw, PrepareConfig())
    with pytest.raises(InputError, match="inside the input"):
        prepare_corpus(str(raw), raw / "clean", PrepareConfig())
    assert not (raw / "clean").exists()


def test_a_foreign_non_empty_output_is_refused(tmp_path, write_lines):
    raw = _raw_corpus(tmp_path, write_lines)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep")
    with pytest.raises(InputError, match="not a medgo artifact"):
        prepare_corpus(str(raw), tmp_path / "out", PrepareConfig(**LENIENT))
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep"


def _many(tmp_path, write_lines, corpus_record, files=6, per_file=40):
    raw = tmp_path / "raw"
    n = 0
    for f in range(files):
        records = []
        for _ in range(per_file):
            records.append(corpus_record(n, category=("textbook", "tcm", "nursing")[n % 3]))
            n += 1
        if f >= 1:  # a cross-file exact copy and a near copy (one character changed) of earlier documents
            exact = corpus_record(f * 1000 + 1, text=corpus_record(0)["text"], category="textbook")
            near_text = corpus_record(1)["text"]
            near = corpus_record(f * 1000 + 2, text=near_text[:60] + "肺" + near_text[61:], category="tcm")
            records += [exact, near]
        write_lines(raw / f"part-{f}.jsonl", records)
    return raw


def test_many_shards_on_two_workers_give_exactly_the_single_worker_output(
    tmp_path, write_lines, corpus_record
):
    raw = _many(tmp_path, write_lines, corpus_record)
    one = prepare_corpus(str(raw), tmp_path / "one", PrepareConfig(workers=1, shard_size_mb=0.01))
    two = prepare_corpus(str(raw), tmp_path / "two", PrepareConfig(workers=2, shard_size_mb=0.01))
    assert one["shards"] > 3 and one["shards"] == two["shards"]
    for kind in ("clean", "quarantine", "dropped"):
        a = sorted(p.name for p in (tmp_path / "one" / kind).iterdir())
        assert a == sorted(p.name for p in (tmp_path / "two" / kind).iterdir())
        for name in a:
            assert (tmp_path / "one" / kind / name).read_bytes() == (
                tmp_path / "two" / kind / name
            ).read_bytes()
    dropped = _entries(tmp_path / "two", "dropped")
    assert {d["reason"] for d in dropped} == {"duplicate", "near_duplicate"}
    assert {d["survivor"] for d in dropped if d["reason"] == "duplicate"} == {"d00000"}
    assert {d["survivor"] for d in dropped if d["reason"] == "near_duplicate"} == {"d00001"}
    assert one["exact_duplicates"] == 5 and one["near_duplicates"] == 5


def test_near_duplicates_merge_only_when_their_true_jaccard_passes(tmp_path, write_lines, corpus_record):
    from medgo.data.minhash import comparison_text, jaccard, ngram_hashes

    base = corpus_record(1, text=None)["text"]
    similar = base[:-15] + corpus_record(2)["text"][:10]  # J ≈ 0.77
    different = base[: len(base) // 2] + corpus_record(3)["text"][len(base) // 2 :]  # J ≈ 0.3

    def j(a, b):
        return jaccard(ngram_hashes(comparison_text(a), 5), ngram_hashes(comparison_text(b), 5))

    assert j(base, similar) >= 0.7 > 0.5 > j(base, different)
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl",
        [corpus_record(1, base), corpus_record(2, similar), corpus_record(3, different)],
    )
    # one band of one row: every pair sharing any MinHash value is a candidate, so only the check decides
    config = PrepareConfig(workers=1, near_dedup={"bands": 1, "rows": 1, "num_perm": 1, "threshold": 0.7})
    counts = prepare_corpus(str(raw), tmp_path / "out", config)
    [dropped] = _entries(tmp_path / "out", "dropped")
    assert (dropped["id"], dropped["survivor"], dropped["reason"]) == ("d00002", "d00001", "near_duplicate")
    assert dropped["jaccard"] >= 0.7 and counts["kept"] == 2


def test_memory_bounded_passes_give_the_same_result(tmp_path, write_lines, corpus_record):
    raw = _many(tmp_path, write_lines, corpus_record, files=3, per_file=400)
    whole = prepare_corpus(str(raw), tmp_path / "a", PrepareConfig(workers=1))
    passes = prepare_corpus(
        str(raw), tmp_path / "b", PrepareConfig(workers=1, near_dedup={"max_index_rows": 1000})
    )
    assert _entries(tmp_path / "a", "dropped") == _entries(tmp_path / "b", "dropped")
    assert whole["duplicates"] == passes["duplicates"] == 4


def test_a_truncated_file_fails_the_step_after_writing_everything(
    tmp_path, write_lines, corpus_record, compressed
):
    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(i) for i in range(5)])
    payload = "".join(json.dumps(corpus_record(i), ensure_ascii=False) + "\n" for i in range(10, 400))
    blob = compressed(payload.encode(), "b.jsonl.gz")
    (raw / "b.jsonl.gz").write_bytes(blob[: len(blob) * 2 // 3])
    out = tmp_path / "out"
    with pytest.raises(StepFailed, match=r"b\.jsonl\.gz \(truncated_gzip\)") as failed:
        prepare_corpus(str(raw), out, PrepareConfig(workers=1, max_quarantine_share=1.0))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "truncated_gzip" in manifest["problems"][0]
    assert failed.value.counts["kept"] == len(_clean(out)) > 5  # what could be read was written
    assert default_work_dir(out).is_dir()  # kept: a re-run resumes
    accepted = prepare_corpus(
        str(raw), out, PrepareConfig(workers=1, max_quarantine_share=1.0, allow_partial=True)
    )
    assert accepted["status"] == "accepted_partial" and accepted["resumed_shards"] == 1
    assert json.loads((out / "manifest.json").read_text())["status"] == "accepted_partial"


def test_quarantining_more_than_the_allowed_share_fails_the_step(tmp_path, write_lines, corpus_record):
    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(i) for i in range(97)] + ["{bad"] * 3)
    with pytest.raises(
        StepFailed, match=r"3 of 100 input units quarantined \(3\.0% > max_quarantine_share 1\.0%\)"
    ):
        prepare_corpus(str(raw), tmp_path / "out", PrepareConfig(workers=1))
    assert (
        prepare_corpus(str(raw), tmp_path / "ok", PrepareConfig(workers=1, max_quarantine_share=0.05))[
            "status"
        ]
        == "complete"
    )


def test_every_format_and_encoding_in_one_corpus(tmp_path, write_lines, corpus_record):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(1)])
    write_lines(raw / "b.jsonl.zst", [corpus_record(2)])
    write_lines(
        raw / "c.jsonl",
        [corpus_record(3, text=TRADITIONAL + "糖尿病患者應定期監測血糖。", category="public_health")],
        encoding="big5",
    )
    write_lines(raw / "d.jsonl", [corpus_record(4)], encoding="utf-16-le")
    rows = [corpus_record(5), corpus_record(6, text=None, category="nursing")]
    pq.write_table(pa.Table.from_pylist(rows), raw / "e.parquet")
    (raw / "f.csv").write_text("id,text\n")
    counts = prepare_corpus(str(raw), tmp_path / "out", PrepareConfig(workers=1))
    assert counts["kept"] == 6 and counts["quarantined"] == 0
    assert counts["skipped_files"] == [{"relpath": "f.csv", "reason": counts["skipped_files"][0]["reason"]}]
    clean = {r["id"]: r for r in _clean(tmp_path / "out")}
    assert (
        clean["d00003"]["text"].startswith("医院门诊部提醒")
        and clean["d00003"]["meta"]["source_encoding"] == "cp950"
    )
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["skipped_files"][0]["relpath"] == "f.csv" and card["encodings"]["d.jsonl"] == "utf-16-le"


def test_quality_rules_apply_per_category_and_every_drop_names_its_rule(tmp_path, write_lines, corpus_record):
    digits = "，".join(f"第{n}项检测值{n * 37 % 1000}.{n % 10}" for n in range(10, 40))
    repeated = "\n".join(["请遵医嘱按时服药。"] * 6 + ["高血压患者应低盐饮食。"])
    japanese = "高血圧の患者は塩分を控えてください。毎日血圧を測定し、薬を飲み忘れないようにしましょう。"
    symbols = "★☆★☆★☆■□■□▲△▲△●○●○◆◇◆◇" + "高血压患者应低盐饮食"
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl",
        [
            corpus_record(1, digits, "textbook"),
            corpus_record(2, digits, "lab_medicine"),
            corpus_record(3, repeated, "nursing"),
            corpus_record(4, japanese, "textbook"),
            corpus_record(5, symbols, "textbook"),
            corpus_record(6, "头痛" * 40, "textbook"),
        ],
    )
    config = PrepareConfig(
        workers=1,
        max_symbol_ratio=0.3,
        quality_by_category={"lab_medicine": {"max_digit_ratio": 0.9}},
    )
    prepare_corpus(str(raw), tmp_path / "out", config)
    reasons = {d["id"]: d["reason"] for d in _entries(tmp_path / "out", "dropped")}
    assert reasons == {
        "d00001": "high_digit_ratio",
        "d00003": "repeated_lines",
        "d00004": "language:ja",
        "d00005": "high_symbol_ratio",
        "d00006": "repeated_ngrams",
    }
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["categories"]["textbook"]["filters"] == {
        "high_digit_ratio": 1,
        "high_symbol_ratio": 1,
        "language:ja": 1,
        "repeated_ngrams": 1,
    }
    assert card["categories"]["lab_medicine"]["kept"] == 1


def test_category_falls_back_to_the_source_then_keywords(tmp_path, write_lines, corpus_record):
    raw = tmp_path / "raw"
    write_lines(
        raw / "a.jsonl",
        [
            {"id": "s", "text": corpus_record(1)["text"], "source": "crawl/tcm/site"},
            {
                "id": "k",
                "text": "【适应症】用于高血压。【用法用量】口服，一次一片。【不良反应】偶见头痛。【禁忌】孕妇禁用。",
            },
            {"id": "a", "text": corpus_record(3)["text"], "category": "指南"},
            {"id": "u", "text": "今天天气很好，我们一起去公园散步吧，顺便买点水果回家。"},
        ],
    )
    config = PrepareConfig(
        workers=1, min_chars=10, max_quarantine_share=1, category_aliases={"指南": "clinical_guideline"}
    )
    prepare_corpus(str(raw), tmp_path / "out", config)
    clean = {r["id"]: r for r in _clean(tmp_path / "out")}
    assert (clean["s"]["category"], clean["s"]["meta"]["category_from"]) == ("tcm", "source")
    assert (clean["k"]["category"], clean["k"]["meta"]["category_from"]) == ("drug_label", "keywords")
    assert clean["a"]["category"] == "clinical_guideline" and "category_from" not in clean["a"]["meta"]
    [q] = _entries(tmp_path / "out", "quarantine")
    assert q["reason"] == "uncategorized"


def test_mixture_resamples_categories_to_their_target_shares(tmp_path, write_lines, corpus_record):
    raw = tmp_path / "raw"
    records = [corpus_record(i, category="textbook") for i in range(300)]
    records += [corpus_record(1000 + i, category="tcm") for i in range(60)]
    write_lines(raw / "a.jsonl", records)
    config = PrepareConfig(workers=1, mixture={"target_shares": {"tcm": 0.5, "textbook": 0.5}, "seed": 7})
    counts = prepare_corpus(str(raw), tmp_path / "out", config)
    clean = _clean(tmp_path / "out")
    by_cat = {c: sum(1 for r in clean if r["category"] == c) for c in ("textbook", "tcm")}
    assert 150 < by_cat["textbook"] < 210 and 150 < by_cat["tcm"] < 210  # 360 docs → ≈180 each
    assert counts["records_out"] == len(clean) == len({r["id"] for r in clean})
    assert all(r["meta"]["repeat_of"].startswith("d010") for r in clean if "repeat_of" in r["meta"])
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["categories"]["tcm"]["mixture_rate"] == pytest.approx(3.0, rel=0.01)
    assert card["categories"]["textbook"]["tokens_out"] < card["categories"]["textbook"]["tokens_after_dedup"]
    again = prepare_corpus(str(raw), tmp_path / "again", config)
    assert _clean(tmp_path / "again") == clean and again["records_out"] == counts["records_out"]


def test_documents_overlapping_an_evaluation_set_are_removed_and_counted_per_task(
    tmp_path, write_lines, corpus_record
):
    eval_dir = tmp_path / "eval"
    (eval_dir / "CMeEE").mkdir(parents=True)
    question = corpus_record(7)["text"][10:40]
    (eval_dir / "CMeEE" / "dev.json").write_text(
        json.dumps([{"text": question, "entities": []}], ensure_ascii=False)
    )
    (eval_dir / "qa.jsonl").write_text(json.dumps({"q": corpus_record(8)["text"][:20], "label": "1"}) + "\n")
    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(i) for i in range(6, 10)])
    config = PrepareConfig(workers=1, decontamination={"eval_dir": str(eval_dir), "ngram_chars": 13})
    counts = prepare_corpus(str(raw), tmp_path / "out", config)
    assert counts["kept"] == 2 and counts["eval_overlaps"] == 2
    dropped = {d["id"]: d for d in _entries(tmp_path / "out", "dropped")}
    assert dropped["d00007"]["reason"] == "eval_overlap:CMeEE" and dropped["d00008"]["eval_tasks"] == ["qa"]
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["decontamination"]["hits"] == {"CMeEE": 1, "qa": 1}


def test_a_killed_runs_debris_never_blocks_the_next_run(tmp_path, write_lines, corpus_record):
    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(i) for i in range(20)])
    out = tmp_path / "out"
    work = default_work_dir(out)
    (work / "signed" / ".shard-00000.tmp-123-abc").mkdir(parents=True)
    (work / "plan.json").write_text("{}")
    (out / "clean").mkdir(parents=True)
    (out / "clean" / "part-00000.jsonl").write_text("half written\n")
    counts = prepare_corpus(str(raw), out, PrepareConfig(workers=1))
    assert counts["kept"] == 20 and len(_clean(out)) == 20


def test_s3_input_is_streamed_and_s3_output_is_published(s3_server, tmp_path, corpus_record):
    from medgo.storage import localize, s3_client, split_s3

    bucket, _ = split_s3(s3_server)
    body = "".join(json.dumps(corpus_record(i), ensure_ascii=False) + "\n" for i in range(12)).encode()
    s3_client().put_object(Bucket=bucket, Key="prepare/raw/a.jsonl", Body=body)
    counts = prepare_corpus(
        f"{s3_server}/prepare/raw", f"{s3_server}/prepare/clean", PrepareConfig(workers=1)
    )
    assert counts["kept"] == 12
    local = localize(f"{s3_server}/prepare/clean")
    verify_manifest(local)
    assert len(_clean(local)) == 12


def test_tally_refuses_counts_that_do_not_add_up():
    tally = Tally()
    tally.add_kept()
    tally.add_quarantined("malformed_json")
    tally.check("test")
    tally.records_in += 1
    with pytest.raises(RuntimeError, match="do not reconcile"):
        tally.check("test")


def test_the_bundled_samples_come_out_as_their_readme_says(samples_dir, tmp_path):
    out = tmp_path / "out"
    counts = prepare_corpus(
        str(samples_dir / "corpus"), out, PrepareConfig(workers=1, max_quarantine_share=0.1)
    )
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (110, 98, 7)
    assert (counts["exact_duplicates"], counts["near_duplicates"]) == (3, 2)
    clean = {r["id"]: r for r in _clean(out)}
    web = clean["web-big5-01"]
    assert web["meta"]["source_encoding"] == "cp950" and web["text"].startswith("高血压患者的日常饮食\n")
    for furniture in ("首页", "当前位置", "阅读", "免责声明", "上一篇", "下一篇", "扫码", "版权所有", "ICP"):
        assert furniture not in web["text"]
    assert clean["edge-trad-01"]["text"].startswith("糖尿病是一组以慢性血糖水平升高为特征的代谢性疾病")
    dropped = {d["id"]: d for d in _entries(out, "dropped")}
    assert dropped["near-01"]["survivor"] == "ja-005" and dropped["dup-03"]["survivor"] == "cg-001"
