"""The feedback store: served answers by request id, and doctors' ratings of them, in one SQLite file.

Why SQLite in WAL mode with ``synchronous=FULL``: a feedback entry is acknowledged (HTTP 201) only
after its transaction committed, and in WAL mode with ``synchronous=FULL`` SQLite fsyncs the WAL at
every commit. So an acknowledged entry survives a killed process *and* a power loss (as far as the
volume honours fsync), while readers never block the writer.

Why one writer: SQLite's locking is only as good as the filesystem's. On a ReadWriteMany volume
(NFS, CephFS) several processes on several nodes writing one database can corrupt it, and WAL's
shared-memory index does not work across hosts at all. So exactly one process owns a store file:
a single model server (laptop, one replica), or the ``medgo-feedback`` service when the model
server runs several replicas (they reach it through :mod:`medgo.feedback.client`). The file sits on
a ReadWriteOnce volume.

What is kept: ``responses`` holds each served answer (the conversation the model saw and its
answer) for ``response_retention_s``, so feedback can name a response id; a feedback entry copies
the prompt and answer it rates, so it stays complete after the response expired. Entries stay until
exported, then ``exported_retention_s`` longer. Export bookkeeping (which entries went into which
export file) lives in the same database, so an entry is exported exactly once (see
:mod:`medgo.feedback.export`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medgo.chat import Messages
from medgo.config import FeedbackConfig, FeedbackRating
from medgo.errors import MedgoError
from medgo.logs import fields

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Expired responses are deleted at most this often (seconds), from within ``record``.
_PURGE_INTERVAL_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    request_id  TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    messages    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    created     INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses(recorded_at);
CREATE TABLE IF NOT EXISTS exports (
    export_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    state        TEXT NOT NULL CHECK (state IN ('claimed', 'committed')),
    target       TEXT NOT NULL,
    entries      INTEGER NOT NULL,
    claimed_at   REAL NOT NULL,
    committed_at REAL,
    sha256       TEXT,
    counts       TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    feedback_id      TEXT NOT NULL UNIQUE,
    response_id      TEXT NOT NULL,
    rating           TEXT NOT NULL CHECK (rating IN ('acceptable', 'unacceptable')),
    corrected_answer TEXT,
    department       TEXT NOT NULL,
    doctor_id        TEXT NOT NULL,
    model            TEXT NOT NULL,
    messages         TEXT NOT NULL,
    answer           TEXT NOT NULL,
    response_created INTEGER NOT NULL,
    received_at      REAL NOT NULL,
    export_id        INTEGER REFERENCES exports(export_id)
);
CREATE INDEX IF NOT EXISTS feedback_by_export ON feedback(export_id);
"""


@dataclass(frozen=True)
class StoredResponse:
    """One served answer: the conversation the model saw (system turn included) and what it answered.

    The same fields as the model server's response log entries, so either can back a feedback route.
    """

    request_id: str
    model: str
    messages: Messages
    answer: str
    created: int


@dataclass(frozen=True)
class FeedbackSubmission:
    """What a doctor sends: a verdict on one response, optionally with a corrected answer."""

    feedback_id: str
    response_id: str
    rating: FeedbackRating
    department: str
    doctor_id: str
    corrected_answer: str | None = None

    def same_as(self, entry: FeedbackEntry) -> bool:
        return (
            self.response_id,
            self.rating,
            self.department,
            self.doctor_id,
            self.corrected_answer,
        ) == (entry.response_id, entry.rating, entry.department, entry.doctor_id, entry.corrected_answer)


@dataclass(frozen=True)
class FeedbackEntry:
    """A stored feedback entry, with the prompt and answer of the response it rates."""

    seq: int
    feedback_id: str
    response_id: str
    rating: FeedbackRating
    corrected_answer: str | None
    department: str
    doctor_id: str
    model: str
    messages: Messages
    answer: str
    response_created: int
    received_at: float
    export_id: int | None

    def summary(self) -> dict[str, Any]:
        """The entry without patient text (no prompt, answer or correction), for API answers and logs."""
        return {
            "id": self.feedback_id,
            "object": "feedback",
            "response_id": self.response_id,
            "rating": self.rating,
            "department": self.department,
            "doctor_id": self.doctor_id,
            "model": self.model,
            "has_correction": self.corrected_answer is not None,
            "created": int(self.received_at),
            "exported": self.export_id is not None,
        }


@dataclass(frozen=True)
class ExportBatch:
    """Entries claimed for one export file; ``resumed`` when a crashed export is being finished."""

    export_id: int
    target: str
    entries: list[FeedbackEntry]
    resumed: bool


class UnknownResponse(MedgoError):
    """Feedback names a response id the store does not have (never served, or past retention)."""


class FeedbackConflict(MedgoError):
    """A feedback id is reused with different content; the stored entry is kept."""


class FeedbackStore:
    """One SQLite store file, owned by this process; every method is thread-safe and blocking.

    Calls are serialised on one connection: the store serves ~1,000 entries a day and a few
    answers a second, far below what one SQLite writer sustains, and one connection keeps the
    single-writer rule inside the process too. ``clock`` (seconds since the epoch) is injectable
    for retention tests.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        response_retention_s: float = FeedbackConfig.model_fields["response_retention_s"].default,
        exported_retention_s: float = FeedbackConfig.model_fields["exported_retention_s"].default,
        clock=time.time,
    ) -> None:
        self.path = Path(path)
        self.response_retention_s = response_retention_s
        self.exported_retention_s = exported_retention_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise MedgoError(f"feedback store {self.path}: the filesystem refuses WAL mode ({mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise MedgoError(
                    f"feedback store {self.path} has schema version {version}; this medgo reads {SCHEMA_VERSION}"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise MedgoError(f"feedback store {self.path} cannot be opened: {exc}") from None
        log.info("feedback store opened", extra=fields(path=str(self.path), **self.stats()))

    @classmethod
    def from_config(cls, config: FeedbackConfig) -> FeedbackStore:
        if not config.db_path:
            raise MedgoError("feedback: no db_path configured for a local store")
        return cls(
            config.db_path,
            response_retention_s=config.response_retention_s,
            exported_retention_s=config.exported_retention_s,
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed (and fsynced) when the block exits cleanly."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- the response log ---------------------------------------------------------------------------
    def record(self, request_id: str, model: str, messages: Messages, answer: str, created: int) -> None:
        """Keep one served answer for ``response_retention_s``; the same id again replaces it."""
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, model, _dump_messages(messages), answer, int(created), now),
            )
        if now - self._last_purge >= _PURGE_INTERVAL_S:
            self.purge()

    def get(self, request_id: str) -> StoredResponse | None:
        """The served answer ``request_id``, or None when unknown or past retention."""
        rows = self._read(
            "SELECT * FROM responses WHERE request_id = ? AND recorded_at >= ?",
            (request_id, self._clock() - self.response_retention_s),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredResponse(
            row["request_id"], row["model"], json.loads(row["messages"]), row["answer"], row["created"]
        )

    # -- feedback -----------------------------------------------------------------------------------
    def submit(self, submission: FeedbackSubmission, response: StoredResponse) -> tuple[FeedbackEntry, bool]:
        """Store one entry with the prompt and answer of ``response``; returns ``(entry, created)``.

        Idempotent by feedback id: the same submission again returns the stored entry with
        ``created=False``; the same id with different content raises :class:`FeedbackConflict`.
        When this returns, the entry is committed to disk.
        """
        if response.request_id != submission.response_id:
            raise ValueError("response does not match the submission's response_id")
        with self._transaction() as db:
            existing = db.execute(
                "SELECT * FROM feedback WHERE feedback_id = ?", (submission.feedback_id,)
            ).fetchone()
            if existing is not None:
                entry = _entry(existing)
                if not submission.same_as(entry):
                    raise FeedbackConflict(
                        f"feedback id {submission.feedback_id!r} was already used for a different entry"
                    )
                return entry, False
            cursor = db.execute(
                "INSERT INTO feedback (feedback_id, response_id, rating, corrected_answer, department, "
                "doctor_id, model, messages, answer, response_created, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    submission.feedback_id,
                    submission.response_id,
                    submission.rating,
                    submission.corrected_answer,
                    submission.department,
                    submission.doctor_id,
                    response.model,
                    _dump_messages(response.messages),
                    response.answer,
                    int(response.created),
                    self._clock(),
                ),
            )
            row = db.execute("SELECT * FROM feedback WHERE seq = ?", (cursor.lastrowid,)).fetchone()
        return _entry(row), True

    def entry(self, feedback_id: str) -> FeedbackEntry | None:
        rows = self._read("SELECT * FROM feedback WHERE feedback_id = ?", (feedback_id,))
        return _entry(rows[0]) if rows else None

    def entries(self) -> list[FeedbackEntry]:
        """Every stored entry in arrival order (tests and audits; the export reads in batches)."""
        return [_entry(row) for row in self._read("SELECT * FROM feedback ORDER BY seq")]

    # -- export bookkeeping -------------------------------------------------------------------------
    def claim_export(self, target: str, max_entries: int) -> ExportBatch | None:
        """The next batch to export: an export left unfinished by a crash first, else up to
        ``max_entries`` entries never exported (claimed for a new export id), else None."""
        with self._transaction() as db:
            unfinished = db.execute(
                "SELECT export_id, target FROM exports WHERE state = 'claimed' ORDER BY export_id LIMIT 1"
            ).fetchone()
            if unfinished is not None:
                export_id, claimed_target, resumed = unfinished["export_id"], unfinished["target"], True
            else:
                seqs = [
                    row["seq"]
                    for row in db.execute(
                        "SELECT seq FROM feedback WHERE export_id IS NULL ORDER BY seq LIMIT ?",
                        (max_entries,),
                    )
                ]
                if not seqs:
                    return None
                export_id = db.execute(
                    "INSERT INTO exports (state, target, entries, claimed_at) VALUES ('claimed', ?, ?, ?)",
                    (target, len(seqs), self._clock()),
                ).lastrowid
                db.execute(
                    "UPDATE feedback SET export_id = ? WHERE export_id IS NULL AND seq <= ?",
                    (export_id, seqs[-1]),
                )
                claimed_target, resumed = target, False
            rows = db.execute(
                "SELECT * FROM feedback WHERE export_id = ? ORDER BY seq", (export_id,)
            ).fetchall()
        return ExportBatch(export_id, claimed_target, [_entry(row) for row in rows], resumed)

    def commit_export(self, export_id: int, sha256: str, counts: Mapping[str, Any]) -> None:
        """Mark an export written: its entries are never claimed again."""
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE exports SET state = 'committed', committed_at = ?, sha256 = ?, counts = ? "
                "WHERE export_id = ? AND state = 'claimed'",
                (self._clock(), sha256, json.dumps(dict(counts), sort_keys=True), export_id),
            ).rowcount
        if updated != 1:
            raise MedgoError(f"export {export_id} is not an unfinished export of {self.path}")

    def exports(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM exports ORDER BY export_id")
        return [{**dict(row), "counts": json.loads(row["counts"]) if row["counts"] else None} for row in rows]

    # -- retention ----------------------------------------------------------------------------------
    def purge(self) -> dict[str, int]:
        """Delete responses past retention and exported entries past theirs; returns the counts."""
        now = self._clock()
        with self._transaction() as db:
            responses = db.execute(
                "DELETE FROM responses WHERE recorded_at < ?", (now - self.response_retention_s,)
            ).rowcount
            entries = db.execute(
                "DELETE FROM feedback WHERE received_at < ? AND export_id IN "
                "(SELECT export_id FROM exports WHERE state = 'committed')",
                (now - self.exported_retention_s,),
            ).rowcount
        self._last_purge = now
        if responses or entries:
            log.info("feedback store purged", extra=fields(responses=responses, exported_entries=entries))
        return {"responses": responses, "exported_entries": entries}

    def stats(self) -> dict[str, int]:
        """Counts only: responses kept, entries, entries waiting for export, exports."""
        with self._lock:
            one = self._db.execute
            return {
                "responses": one("SELECT COUNT(*) FROM responses").fetchone()[0],
                "entries": one("SELECT COUNT(*) FROM feedback").fetchone()[0],
                "pending_export": one("SELECT COUNT(*) FROM feedback WHERE export_id IS NULL").fetchone()[0],
                "exports": one("SELECT COUNT(*) FROM exports").fetchone()[0],
            }


def _dump_messages(messages: Messages) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False)


def _entry(row: sqlite3.Row) -> FeedbackEntry:
    return FeedbackEntry(
        seq=row["seq"],
        feedback_id=row["feedback_id"],
        response_id=row["response_id"],
        rating=row["rating"],
        corrected_answer=row["corrected_answer"],
        department=row["department"],
        doctor_id=row["doctor_id"],
        model=row["model"],
        messages=json.loads(row["messages"]),
        answer=row["answer"],
        response_created=row["response_created"],
        received_at=row["received_at"],
        export_id=row["export_id"],
    )
