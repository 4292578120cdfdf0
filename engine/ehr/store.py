"""The service's state in one SQLite file (WAL), shared by its worker processes and kept across
restarts: the JWT ids already used (replay), the cards issued (for feedback), and the feedback.

Every write is one transaction: a `kill -9` leaves a feedback record whole or absent, never half.
Point `jakcds serve --store PATH` elsewhere (a shared volume) to move it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jti (jti TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS card (uuid TEXT PRIMARY KEY, service TEXT NOT NULL, rule TEXT NOT NULL, issued REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, card TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback_use (issuer TEXT NOT NULL, at REAL NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jti_forget ON jti (forget_after);
CREATE INDEX IF NOT EXISTS feedback_use_at ON feedback_use (issuer, at);
CREATE INDEX IF NOT EXISTS feedback_use_purge ON feedback_use (at);
CREATE INDEX IF NOT EXISTS card_issued ON card (issued);
"""
# the indexes keep each write's purge of forgotten ids, expired cards and old feedback use from scanning the table
# (an hour of token ids at 240 requests/s is ~860,000 rows)
CARD_DAYS = 30  # how long an issued card can receive feedback


@dataclass(frozen=True)
class FeedbackQuota:
    """Bytes of feedback records one issuer (EHR) may store per minute and per day: a day's quota
    bounds the disk one EHR can fill; the minute's, how fast. An EHR whose clinicians answer every
    card stays far below (a record is ~0.5 KB; 64 MiB a day is ~130,000 records)."""

    per_minute: int = 2 * 2**20
    per_day: int = 64 * 2**20


class QuotaExceeded(Exception):
    """An issuer's feedback is over its quota; `retry_after` seconds until it is not."""

    def __init__(self, window: str, retry_after: int):
        super().__init__(f"feedback quota per {window} reached")
        self.retry_after = retry_after


def _cards_since() -> float:
    """The issue time of the oldest card that can still receive feedback."""
    return time.time() - CARD_DAYS * 86400


class Store:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed whole or rolled back. The connection is in autocommit
        mode (isolation_level=None), where `with connection:` opens none: each statement would be
        its own. IMMEDIATE takes the write lock at once, so two workers never deadlock upgrading."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:  # the writes or the commit failed
                    self._db.execute("ROLLBACK")

    def first_use(self, jti: str, forget_after: float) -> bool:
        """Record a token id; False if it was used before and not yet forgotten."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM jti WHERE forget_after <= ?", (now,))
            inserted = db.execute("INSERT OR IGNORE INTO jti VALUES (?, ?)", (jti, forget_after)).rowcount
        return inserted == 1

    def remember(self, cards: list[tuple[str, str, str]]) -> None:
        """(uuid, service, rule) of the cards just issued."""
        with self._transaction() as db:
            db.execute("DELETE FROM card WHERE issued < ?", (_cards_since(),))
            db.executemany("INSERT OR REPLACE INTO card VALUES (?, ?, ?, ?)", [(*card, time.time()) for card in cards])

    def issued(self, uuid: str) -> tuple[str, str] | None:
        """(service, rule) of a card issued in the last CARD_DAYS, or None (an expired card is
        refused even before a write has purged it)."""
        with self._lock:
            row = self._db.execute("SELECT service, rule FROM card WHERE uuid = ? AND issued >= ?", (uuid, _cards_since())).fetchone()
        return (row[0], row[1]) if row else None

    def add_feedback(self, records: list[dict[str, Any]], issuer: str, quota: FeedbackQuota) -> None:
        """All of one request's feedback records, in one transaction; QuotaExceeded (nothing stored)
        if they would take the issuer past its quota. Checked and written in one write transaction,
        so concurrent workers cannot both pass the check."""
        rows = [(r["card"], json.dumps(r, sort_keys=True, default=str)) for r in records]
        size, now = sum(len(text) for _, text in rows), time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM feedback_use WHERE at < ?", (now - 86400,))
            for window, seconds, limit in (("minute", 60, quota.per_minute), ("day", 86400, quota.per_day)):
                used, oldest = db.execute("SELECT COALESCE(SUM(bytes), 0), MIN(at) FROM feedback_use WHERE issuer = ? AND at >= ?",
                                          (issuer, now - seconds)).fetchone()
                if used + size > limit:
                    raise QuotaExceeded(window, max(1, int((oldest or now) + seconds - now) + 1))
            db.executemany("INSERT INTO feedback (card, record) VALUES (?, ?)", rows)
            db.execute("INSERT INTO feedback_use VALUES (?, ?, ?)", (issuer, now, size))

    def feedback(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(row[0]) for row in self._db.execute("SELECT record FROM feedback ORDER BY id")]
