"""Export: scrubbed labels the preference builder reads, each entry exactly once, even across a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.config import FeedbackExportConfig, PrefsConfig
from medgo.data.prefs import build_preferences
from medgo.feedback.export import export_pending
from medgo.feedback.store import FeedbackStore, FeedbackSubmission

# A resident ID with a valid checksum and a mobile number: both must leave the store as placeholders.
PATIENT = "患者张伟，身份证号110101199003077578，电话13812345678，"


def prompt(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "你是医学助手。"},
        {"role": "user", "content": f"{PATIENT}血压{150 + i}怎么办？"},
    ]


def fill(store: FeedbackStore, n: int, *, corrected_every: int = 2) -> None:
    for i in range(n):
        store.record(f"r-{i}", "medgo", prompt(i), f"回答{i}：多喝水。", 1)
        corrected = "应低盐饮食并复诊，必要时调整降压药。" if i % corrected_every == 0 else None
        store.submit(
            FeedbackSubmission(
                feedback_id=f"fb-{i}",
                response_id=f"r-{i}",
                rating="unacceptable" if corrected else "acceptable",
                department="心内科",
                doctor_id=f"d-{i % 3}",
                corrected_answer=corrected,
            ),
            store.get(f"r-{i}"),
        )


def read_labels(target: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(target.glob("feedback-*.jsonl"))
        for line in f.read_text().splitlines()
    ]


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(tmp_path / "fb.sqlite")
    yield s
    s.close()


def test_export_scrubs_and_writes_labels_the_preference_builder_pairs(store, tmp_path):
    fill(store, 4)
    target = tmp_path / "exports"
    summary = export_pending(store, FeedbackExportConfig(target_uri=str(target)))
    assert summary["entries"] == 4 and summary["labels"] == 6  # two entries carry a correction
    labels = read_labels(target)
    text = json.dumps(labels, ensure_ascii=False)
    assert "110101199003077578" not in text and "13812345678" not in text and "张伟" not in text
    assert summary["scrubbed_by_type"].get("ID", 0) >= 4 and summary["scrubbed_by_type"].get("PHONE", 0) >= 4
    corrected = [lab for lab in labels if lab.get("corrected")]
    assert {lab["id"] for lab in corrected} == {"fb-0/corrected", "fb-2/corrected"}
    assert all(lab["label"] == "acceptable" for lab in corrected)
    card = json.loads((target / "feedback-00000001.jsonl.card.json").read_text())
    assert card["entries"] == 4 and card["scrubbed_identifiers"] == summary["scrubbed_identifiers"]
    counts = build_preferences(target, tmp_path / "prefs", PrefsConfig(), source_name="feedback")
    assert counts["pairs"] == 2  # each correction against the answer it corrects
    pair = json.loads((tmp_path / "prefs" / "train.jsonl").read_text().splitlines()[0])
    assert pair["source"] == "feedback" and pair["prompt"][0]["role"] == "system"


def test_each_entry_is_exported_exactly_once_even_when_an_export_crashes(store, tmp_path, monkeypatch):
    fill(store, 5)
    config = FeedbackExportConfig(target_uri=str(tmp_path / "exports"), max_entries=2)
    real_commit = store.commit_export
    calls = {"n": 0}

    def crash_on_second_commit(export_id, sha256, counts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("pod killed between writing the file and committing it")
        real_commit(export_id, sha256, counts)

    monkeypatch.setattr(store, "commit_export", crash_on_second_commit)
    with pytest.raises(OSError):
        export_pending(store, config)
    monkeypatch.setattr(store, "commit_export", real_commit)
    fill_more = FeedbackSubmission("fb-late", "r-0", "acceptable", "心内科", "d-9")
    store.submit(fill_more, store.get("r-0"))
    summary = export_pending(store, config)
    ids = [lab["id"] for lab in read_labels(tmp_path / "exports") if not lab.get("corrected")]
    assert sorted(ids) == sorted([f"fb-{i}" for i in range(5)] + ["fb-late"])
    assert len(ids) == len(set(ids))
    assert [e["state"] for e in store.exports()] == ["committed"] * 3
    assert summary["exports"][0]["export_id"] == 2  # the interrupted export was finished first
    assert export_pending(store, config)["entries"] == 0


def test_export_to_s3(store, s3_server, tmp_path):
    from medgo.storage import localize

    fill(store, 3)
    uri = f"{s3_server}/feedback-export-test"
    summary = export_pending(store, FeedbackExportConfig(target_uri=uri))
    assert summary["exports"][0]["uri"] == f"{uri}/feedback-00000001.jsonl"
    local = localize(uri, what="exported feedback")
    assert len(read_labels(local)) == 5
    assert json.loads((local / "feedback-00000001.jsonl.card.json").read_text())["entries"] == 3
