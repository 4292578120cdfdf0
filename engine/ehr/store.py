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
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jti (jti TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS card (uuid TEXT PRIMARY KEY, service TEXT NOT NULL, rule TEXT NOT NULL, issued REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, card TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jti_forget ON jti (forget_after);
CREATE INDEX IF NOT EXISTS card_issued ON card (issued);
"""
# the indexes keep each write's purge of forgotten ids and expired cards from scanning the table
# (an hour of token ids at 240 requests/s is ~860,000 rows)
CARD_DAYS = 30  # how long an issued card can receive feedback


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

    def add_feedback(self, records: list[dict[str, Any]]) -> None:
        """All of one request's feedback records, in one transaction."""
        with self._transaction() as db:
            db.executemany("INSERT INTO feedback (card, record) VALUES (?, ?)",
                           [(r["card"], json.dumps(r, sort_keys=True, default=str)) for r in records])

    def feedback(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(row[0]) for row in self._db.execute("SELECT record FROM feedback ORDER BY id")]
