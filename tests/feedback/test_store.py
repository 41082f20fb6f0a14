"""The feedback store: durable settings, retention, idempotency by feedback id, export claims."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from medgo.errors import MedgoError
from medgo.feedback.store import FeedbackConflict, FeedbackStore, FeedbackSubmission

PROMPT = [{"role": "system", "content": "你是医学助手。"}, {"role": "user", "content": "高血压怎么办？"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock) -> FeedbackStore:
    s = FeedbackStore(
        tmp_path / "fb.sqlite", response_retention_s=100, exported_retention_s=1000, clock=clock
    )
    yield s
    s.close()


def submission(feedback_id="fb-1", response_id="r-1", **kw) -> FeedbackSubmission:
    values = {"rating": "unacceptable", "department": "心内科", "doctor_id": "d-7f3a", **kw}
    return FeedbackSubmission(feedback_id=feedback_id, response_id=response_id, **values)


def test_database_is_wal_with_full_sync(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the store's own connection is the one that commits.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_responses_expire_after_retention(store, clock):
    store.record("r-1", "medgo", PROMPT, "低盐饮食。", 123)
    got = store.get("r-1")
    assert (
        got.messages == PROMPT and got.answer == "低盐饮食。" and got.model == "medgo" and got.created == 123
    )
    clock.now += 101
    assert store.get("r-1") is None
    assert store.purge()["responses"] == 1 and store.stats()["responses"] == 0


def test_submit_copies_the_rated_answer_and_is_idempotent(store, clock):
    store.record("r-1", "medgo", PROMPT, "低盐饮食。", 123)
    entry, created = store.submit(submission(corrected_answer="低盐饮食，规律服药。"), store.get("r-1"))
    assert created and entry.messages == PROMPT and entry.answer == "低盐饮食。"
    again, created_again = store.submit(submission(corrected_answer="低盐饮食，规律服药。"), store.get("r-1"))
    assert not created_again and again.seq == entry.seq
    with pytest.raises(FeedbackConflict, match="fb-1"):
        store.submit(submission(rating="acceptable"), store.get("r-1"))
    assert len(store.entries()) == 1
    clock.now += 101  # the response expires; the entry keeps its prompt and answer
    assert store.get("r-1") is None and store.entry("fb-1").answer == "低盐饮食。"


def test_concurrent_submissions_of_one_id_store_one_entry(store):
    store.record("r-1", "medgo", PROMPT, "答", 1)
    response = store.get("r-1")
    results = []

    def post():
        results.append(store.submit(submission(), response)[1])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.stats()["entries"] == 1


def test_export_claims_each_entry_once_and_resumes_an_unfinished_claim(store, clock):
    for i in range(5):
        store.record(f"r-{i}", "medgo", PROMPT, f"答{i}", 1)
        store.submit(submission(f"fb-{i}", f"r-{i}"), store.get(f"r-{i}"))
    first = store.claim_export("/exports", max_entries=3)
    assert [e.feedback_id for e in first.entries] == ["fb-0", "fb-1", "fb-2"] and not first.resumed
    # Not committed (a crash): the next claim returns the same batch, to the same target.
    again = store.claim_export("/elsewhere", max_entries=3)
    assert again.export_id == first.export_id and again.resumed and again.target == "/exports"
    assert [e.feedback_id for e in again.entries] == ["fb-0", "fb-1", "fb-2"]
    store.commit_export(first.export_id, "sha", {"entries": 3})
    with pytest.raises(MedgoError, match="not an unfinished export"):
        store.commit_export(first.export_id, "sha", {})
    second = store.claim_export("/exports", max_entries=3)
    assert [e.feedback_id for e in second.entries] == ["fb-3", "fb-4"]
    store.commit_export(second.export_id, "sha2", {"entries": 2})
    assert store.claim_export("/exports", max_entries=3) is None
    # Exported entries are purged after their retention; pending ones never are.
    store.record("r-9", "medgo", PROMPT, "答", 1)
    store.submit(submission("fb-9", "r-9"), store.get("r-9"))
    clock.now += 1001
    assert store.purge()["exported_entries"] == 5
    assert [e.feedback_id for e in store.entries()] == ["fb-9"]


def test_reopening_keeps_everything(tmp_path, clock):
    path = tmp_path / "fb.sqlite"
    store = FeedbackStore(path, clock=clock)
    store.record("r-1", "medgo", PROMPT, "答", 1)
    store.submit(submission(), store.get("r-1"))
    store.close()
    reopened = FeedbackStore(path, clock=clock)
    assert reopened.entry("fb-1").answer == "答" and reopened.get("r-1") is not None
    reopened.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "fb.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MedgoError, match="cannot be opened"):
        FeedbackStore(bad)
