"""invalidation.settled: which assignment changes a writer logs as told whole, read against the
store once its revision has moved, and which it marks for an index to load."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policyhub.errors import Unavailable
from policyhub.service import invalidation
from policyhub.service.invalidation import assignment_change, policy_update_change, settled

SOON = datetime(2026, 12, 2, 10, 30, 0, 123456, tzinfo=timezone.utc)
PAIR = ("USER", "alice", "POLICY", "reader")


def _assignment(assignment_id: str = "a1", user: str = "alice", expires_at: datetime | None = None) -> dict:
    return {
        "assignment_id": assignment_id,
        "subject_type": "USER",
        "subject_id": user,
        "grant_type": "POLICY",
        "grant_id": "reader",
        "expires_at": expires_at,
    }


def _holders(held: dict):
    asked = []

    def holders(keys):
        asked.append(list(keys))
        return {key: value for key, value in held.items() if key in keys}

    return holders, asked


def _marked(changes: list[dict], held: dict) -> list[bool]:
    holders, _ = _holders(held)
    return [bool(change.get("recheck")) for change in settled(changes, holders)]


def test_a_creation_the_store_holds_as_logged_is_told_whole():
    change = assignment_change(_assignment(expires_at=SOON), "CREATE")
    # the store keeps milliseconds, naive UTC: the same instant
    stored = {"assignment_id": "a1", "expires_at": SOON.replace(microsecond=123000, tzinfo=None)}
    assert _marked([change], {PAIR: stored}) == [False]
    assert _marked([assignment_change(_assignment(), "CREATE")], {PAIR: {"assignment_id": "a1"}}) == [False]


@pytest.mark.parametrize(
    "held",
    [
        {},  # deleted since: a remover logged its DELETE first
        {PAIR: {"assignment_id": "a2", "expires_at": SOON}},  # created again by someone else
        {PAIR: {"assignment_id": "a1", "expires_at": SOON + timedelta(seconds=1)}},  # its expiry changed
        {PAIR: {"assignment_id": "a1", "expires_at": None}},
    ],
    ids=["gone", "another-assignment", "another-expiry", "no-expiry"],
)
def test_a_creation_the_store_no_longer_holds_as_logged_is_marked(held):
    assert _marked([assignment_change(_assignment(expires_at=SOON), "CREATE")], held) == [True]


def test_a_deletion_is_told_whole_while_its_pair_is_free():
    deletion = assignment_change(_assignment(), "DELETE")
    assert _marked([deletion], {}) == [False]
    # the pair was created again, logged before this deletion: the store decides
    assert _marked([deletion], {PAIR: {"assignment_id": "a2"}}) == [True]


def test_only_assignment_changes_are_read_back_and_the_rest_kept_as_they_are():
    policy = policy_update_change({"policy_id": "reader", "state": "ENABLED", "version": 2})
    group = {"kind": "GROUP", "id": "team", "operation": "CREATE"}
    update = assignment_change(_assignment(user="bob"), "UPDATE")
    creation = assignment_change(_assignment(), "CREATE")
    holders, asked = _holders({PAIR: {"assignment_id": "a1"}})
    out = settled([policy, group, update, creation], holders)
    assert out == [policy, group, update, creation]
    assert asked == [[PAIR, ("USER", "bob", "POLICY", "reader")]]  # one read for the write
    holders, asked = _holders({})
    assert settled([policy, group], holders) == [policy, group] and asked == []


def test_without_a_reading_every_assignment_change_is_marked(monkeypatch):
    changes = [assignment_change(_assignment(), "CREATE"), assignment_change(_assignment(user="bob"), "DELETE")]
    assert [c.get("recheck") for c in settled(changes, None)] == [True, True]

    def failing(keys):
        raise Unavailable("database unavailable")

    assert [c.get("recheck") for c in settled(changes, failing)] == [True, True]
    monkeypatch.setattr(invalidation, "SETTLE_PAIRS_MAX", 1)
    holders, asked = _holders({})
    assert [c.get("recheck") for c in settled(changes, holders)] == [True, True] and asked == []
    # the changes given are left as they were
    assert all("recheck" not in change for change in changes)
