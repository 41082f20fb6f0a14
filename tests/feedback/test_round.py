"""The round's data: every export so far → preference pairs, and a data card whose counts reconcile."""

from __future__ import annotations

import json

import pytest

from medgo.config import FeedbackExportConfig, PrefsConfig
from medgo.errors import InputError
from medgo.feedback.round import build_round_data, export_new_feedback, gather_exports
from medgo.feedback.store import FeedbackStore, FeedbackSubmission


def ask(store, request_id, question, answer):
    prompt = [{"role": "system", "content": "你是医学助手。"}, {"role": "user", "content": question}]
    store.record(request_id, "medgo", prompt, answer, 1)
    return store.get(request_id)


def rate(store, feedback_id, response, rating, doctor, corrected=None):
    submission = FeedbackSubmission(feedback_id, response.request_id, rating, "心内科", doctor, corrected)
    store.submit(submission, response)


def test_data_card_counts_entries_pairs_conflicts_and_scrubbed_identifiers(tmp_path):
    db = tmp_path / "fb.sqlite"
    store = FeedbackStore(db)
    # 1) A corrected answer: one pair. The patient's phone number must be scrubbed.
    r1 = ask(store, "r1", "患者电话13812345678，血压高怎么办？", "多喝热水。")
    rate(store, "f1", r1, "unacceptable", "d-1", corrected="低盐饮食，遵医嘱服用降压药。")
    # 2) Two doctors disagree on one answer: a conflict, no pair from it.
    r2 = ask(store, "r2", "发热三天怎么办？", "建议查血常规。")
    rate(store, "f2", r2, "acceptable", "d-1")
    rate(store, "f3", r2, "unacceptable", "d-2")
    store.close()
    exports = tmp_path / "exports"
    config = FeedbackExportConfig(target_uri=str(exports))
    assert export_new_feedback(config, db_path=str(db))["entries"] == 3
    # 3) Later feedback lands in a second export; the round gathers both.
    store = FeedbackStore(db)
    r3 = ask(store, "r3", "咳嗽一周怎么办？", "没事。")
    rate(store, "f4", r3, "unacceptable", "d-3", corrected="咳嗽超过一周应就医，必要时拍胸片。")
    store.close()
    assert export_new_feedback(config, db_path=str(db))["entries"] == 1
    assert export_new_feedback(config, db_path=str(db))["entries"] == 0

    gathered = gather_exports(str(exports), tmp_path / "labels")
    assert gathered["exports"] == 2 and gathered["entries"] == 4 and gathered["labels"] == 6
    card = build_round_data(tmp_path / "labels", tmp_path / "prefs", tmp_path / "card", PrefsConfig())
    assert card["entries"] == 4 and card["corrections"] == 2 and card["labels"] == 6
    assert card["pairs"] == 2 and card["conflicts"] == 1 and card["conflict_labels"] == 2
    assert card["scrubbed_identifiers"] >= 1 and card["scrubbed_by_type"]["PHONE"] >= 1
    assert (
        card["labels_used"]
        + card["conflict_labels"]
        + card["labels_without_pair"]
        + card["superseded_labels"]
        + (card["labels_quarantined"])
        == card["labels"]
    )
    markdown = (tmp_path / "card" / "data_card.md").read_text()
    assert "| preference pairs | 2 |" in markdown and "| conflicts | 1 |" in markdown
    assert json.loads((tmp_path / "card" / "data_card.json").read_text()) == card
    pairs = [json.loads(line) for line in (tmp_path / "prefs" / "train.jsonl").read_text().splitlines()]
    assert {p["source"] for p in pairs} == {"feedback"}
    assert all("13812345678" not in json.dumps(p, ensure_ascii=False) for p in pairs)


def test_a_round_without_labels_is_a_clear_error(tmp_path):
    (tmp_path / "exports").mkdir()
    gather_exports(str(tmp_path / "exports"), tmp_path / "labels")
    with pytest.raises(InputError, match="no feedback labels"):
        build_round_data(tmp_path / "labels", tmp_path / "prefs", tmp_path / "card", PrefsConfig())


def test_export_needs_exactly_one_store(tmp_path):
    with pytest.raises(InputError, match="exactly one"):
        export_new_feedback(
            FeedbackExportConfig(target_uri=str(tmp_path)), service_url="http://x", db_path="y"
        )
