"""engine/ehr/store.py: each write is one transaction (feedback whole or absent), replay refused."""

import time
from pathlib import Path

import pytest

from jakcds.ehr.store import CARD_DAYS, FeedbackQuota, QuotaExceeded, Store

QUOTA = FeedbackQuota()


def record(card: str) -> dict[str, str]:
    return {"card": card, "outcome": "accepted"}


def test_a_feedback_request_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite3")
    # the second record's insert fails inside the transaction: the first must not stay behind
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON feedback WHEN NEW.card = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(Exception, match="refused"):
        store.add_feedback([record("good"), record("bad")], "ehr", QUOTA)
    assert store.feedback() == []
    store.add_feedback([record("good"), record("also good")], "ehr", QUOTA)
    assert [r["card"] for r in Store(tmp_path / "store.sqlite3").feedback()] == ["good", "also good"]


def test_a_token_id_is_refused_until_forgotten_and_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    assert Store(path).first_use("iss jti-1", time.time() + 60)
    assert not Store(path).first_use("iss jti-1", time.time() + 60)
    assert Store(path).first_use("iss jti-2", time.time() - 1)
    assert Store(path).first_use("iss jti-2", time.time() + 60)  # the expired entry was forgotten


def test_a_card_past_its_feedback_window_is_refused_before_any_purge(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite3")
    store.remember([("card-1", "jak-options", "R-1")])
    assert store.issued("card-1") == ("jak-options", "R-1")
    store._db.execute("UPDATE card SET issued = issued - ?", (CARD_DAYS * 86400 + 1,))  # as if issued long ago
    assert store.issued("card-1") is None


def test_feedback_past_an_issuers_quota_is_refused_with_when_to_retry(tmp_path: Path) -> None:
    store, size = Store(tmp_path / "store.sqlite3"), len('{"card": "c-0", "outcome": "accepted"}')
    quota = FeedbackQuota(per_minute=3 * size, per_day=5 * size)
    for n in range(3):
        store.add_feedback([record(f"c-{n}")], "ehr-a", quota)
    with pytest.raises(QuotaExceeded, match="per minute") as refused:
        store.add_feedback([record("c-3")], "ehr-a", quota)
    assert 1 <= refused.value.retry_after <= 61
    store.add_feedback([record("c-0")], "ehr-b", quota)  # another issuer has its own quota
    store._db.execute("UPDATE feedback_use SET at = at - 120")  # as if two minutes ago
    store.add_feedback([record("c-4")], "ehr-a", quota)
    store.add_feedback([record("c-5")], "ehr-a", quota)
    with pytest.raises(QuotaExceeded, match="per day") as refused:
        store.add_feedback([record("c-6")], "ehr-a", quota)
    assert 86_000 <= refused.value.retry_after <= 86_401
    assert [r["card"] for r in store.feedback()].count("c-6") == 0 and len(store.feedback()) == 6
