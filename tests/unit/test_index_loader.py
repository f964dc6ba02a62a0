"""IndexLoader.advance on scripted change records: which deltas come from the log alone (exact,
nothing loaded) and which load what they touched, and that both answer as a fresh build."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policyhub.engine import DomainIndex, Edge, PolicyRules, Subject
from policyhub.service.index_cache import IndexLoader
from policyhub.service.invalidation import assignment_change, policy_update_change

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
CREATED = datetime(2026, 11, 1, tzinfo=timezone.utc)  # when p1 and p2 were created
# version 1 of each, as the store held them when the index was built
RULES = [PolicyRules.from_policy(p, [], [f"{p}.*"], written=(CREATED.isoformat(), 1)) for p in ("p1", "p2")]
USERS = [Subject("USER", u) for u in ("u1", "u2", "u3")]
ACTIONS = ["p1.read", "p2.read"]


class Log:
    """One record per revision, as RevisionManager.changes_after answers."""

    def __init__(self, *records: list[dict]):
        self.records = [{"seq": seq, "changes": changes} for seq, changes in enumerate(records, start=1)]

    def changes_after(self, domain_id, since, limit, upto):
        return [r for r in self.records if since < r["seq"] <= upto][:limit]


class Store:
    """The domain as it is now; counts what the loader reads from it."""

    def __init__(self, edges: list[Edge]):
        self.edges = edges
        self.loads = 0

    def rules_of(self, domain_id, policy_ids):
        self.loads += 1
        return [{"policy_id": p, "permissions": [f"{p}.*"], "state": "ENABLED"} for p in policy_ids]

    def edges_naming(self, domain_id, keys, policy_ids, sets):
        self.loads += 1
        wanted = set(keys)
        return [
            {
                "subject_type": e.subject.type,
                "subject_id": e.subject.id,
                "grant_type": e.grant_type,
                "grant_id": e.grant_id,
                "expires_at": e.expires_at,
            }
            for e in self.edges
            if (e.subject.type, e.subject.id, e.grant_type, e.grant_id) in wanted
        ]


def _assignment(user: str, policy: str, **extra) -> dict:
    return {"subject_type": "USER", "subject_id": user, "grant_type": "POLICY", "grant_id": policy, **extra}


def _advance(log: Log, store: Store, start: list[Edge]):
    loader = IndexLoader(store, store, log)  # type: ignore[arg-type]
    index = DomainIndex(RULES, start, NOW)
    return loader.advance("d", index, 0, len(log.records), NOW)


def _answers(index: DomainIndex) -> dict:
    return {(u, a): index.check(u, a, "r").allowed for u in USERS for a in ACTIONS}


def test_creations_and_deletions_logged_with_their_edges_are_applied_from_the_log_alone():
    later = NOW + timedelta(hours=1)
    start = [Edge(USERS[0], "POLICY", "p1"), Edge(USERS[1], "POLICY", "p2")]
    log = Log(
        [assignment_change(_assignment("u3", "p1", expires_at=later), "CREATE")],
        [assignment_change(_assignment("u1", "p1"), "DELETE")],
        # deleted and created again in later writes: the last change tells the edge
        [assignment_change(_assignment("u2", "p2"), "DELETE")],
        [assignment_change(_assignment("u2", "p2", expires_at=None), "CREATE")],
    )
    now_edges = [Edge(USERS[2], "POLICY", "p1", later), Edge(USERS[1], "POLICY", "p2")]
    store = Store(now_edges)
    advanced = _advance(log, store, start)
    assert advanced is not None and advanced.exact
    assert store.loads == 0
    fresh = DomainIndex(RULES, now_edges, NOW)
    assert _answers(advanced.index) == _answers(fresh)
    assert advanced.index.next_expiry == later


@pytest.mark.parametrize(
    "change",
    [
        {k: v for k, v in assignment_change(_assignment("u3", "p1"), "CREATE").items() if k != "expires_at"},
        assignment_change(_assignment("u3", "p1", expires_at=None), "UPDATE"),
        {"kind": "POLICY", "id": "p1", "operation": "UPDATE"},
        {**assignment_change(_assignment("u3", "p1", expires_at=None), "CREATE"), "recheck": True},
        {**assignment_change(_assignment("u3", "p1"), "DELETE"), "recheck": True},
    ],
    ids=["create-logged-by-an-earlier-version", "update", "policy", "create-to-recheck", "delete-to-recheck"],
)
def test_what_the_log_does_not_tell_whole_is_loaded(change):
    held = [Edge(USERS[2], "POLICY", "p1")]
    store = Store(held)
    log = Log([assignment_change(_assignment("u1", "p1", expires_at=None), "CREATE")], [change])
    advanced = _advance(log, store, held)
    assert advanced is not None and not advanced.exact
    assert store.loads >= 1
    # u1's creation is loaded as the store holds it now (not there): the store decides
    assert _answers(advanced.index) == _answers(DomainIndex(RULES, store.edges, NOW))


def test_a_creation_logged_after_the_deletion_that_undid_it_is_loaded():
    """A remover deleted what a creator had just inserted and bumped the revision first, so the
    DELETE is logged before the CREATE; the creator, reading the pair back after its bump, found
    it gone and marked its CREATE: the store decides (the pair is not granted), not the log."""
    start = [Edge(USERS[1], "POLICY", "p2")]
    created = assignment_change(_assignment("u1", "p1", assignment_id="a1", expires_at=None), "CREATE")
    deleted = assignment_change(_assignment("u1", "p1", assignment_id="a1"), "DELETE")
    log = Log([deleted], [{**created, "recheck": True}])
    store = Store(start)
    advanced = _advance(log, store, start)
    assert advanced is not None and not advanced.exact and store.loads >= 1
    assert not advanced.index.check(USERS[0], "p1.read", "r").allowed
    # unmarked, the same log would keep a grant the store does not hold: what the mark prevents
    unmarked = _advance(Log([deleted], [created]), Store(start), start)
    assert unmarked is not None and unmarked.exact and unmarked.index.check(USERS[0], "p1.read", "r").allowed


def test_only_creations_carry_the_expiry_in_the_log():
    assignment = _assignment("u1", "p1", expires_at=NOW, assignment_id="a1")
    assert assignment_change(assignment, "CREATE")["expires_at"] == NOW
    assert assignment_change({**assignment, "expires_at": None}, "CREATE")["expires_at"] is None
    # a stored assignment that never expires has no expires_at
    assert assignment_change(_assignment("u1", "p1"), "CREATE")["expires_at"] is None
    assert "expires_at" not in assignment_change(assignment, "DELETE")
    assert "expires_at" not in assignment_change(assignment, "UPDATE")


def _policy_update(
    policy_id: str, version: int, state: str = "ENABLED", permissions: list[str] | None = None, created=CREATED
) -> dict:
    return policy_update_change(
        {
            "policy_id": policy_id,
            "state": state,
            "permissions": permissions or [],
            "statements": [],
            "created_at": created,
            "version": version,
        }
    )


def test_policy_updates_logged_with_their_rules_are_applied_from_the_log_alone():
    start = [Edge(USERS[0], "POLICY", "p1"), Edge(USERS[1], "POLICY", "p2")]
    log = Log(
        [_policy_update("p1", 2, permissions=["p2.read"])],
        [_policy_update("p2", 2, state="DISABLED", permissions=["p2.*"])],
        [_policy_update("p1", 3, permissions=["p1.read", "p2.read"])],  # the latest write of p1 tells it
    )
    store = Store(start)
    advanced = _advance(log, store, start)
    assert advanced is not None and advanced.exact
    assert store.loads == 0
    fresh = DomainIndex(
        [
            PolicyRules.from_policy("p1", [], ["p1.read", "p2.read"]),
            PolicyRules.from_policy("p2", [], ["p2.*"], enabled=False),
        ],
        start,
        NOW,
    )
    assert _answers(advanced.index) == _answers(fresh)
    assert _answers(advanced.index)[(USERS[1], "p2.read")] is False


@pytest.mark.parametrize(
    "later, allowed",
    [
        # a later update without its rules: loaded as the store holds it now (enabled, p1.*)
        ({"kind": "POLICY", "id": "p1", "operation": "UPDATE"}, True),
        # deleted: its edges are loaded again too, and the store holds none now
        ({"kind": "POLICY", "id": "p1", "operation": "DELETE"}, False),
    ],
    ids=["update-without-rules", "delete"],
)
def test_a_policy_whose_last_change_the_log_does_not_tell_whole_is_loaded(later, allowed):
    start = [Edge(USERS[0], "POLICY", "p1")]
    store = Store(start)
    log = Log([_policy_update("p1", 2, state="DISABLED")], [later])
    advanced = _advance(log, store, start)
    assert advanced is not None and not advanced.exact
    assert store.loads >= 1
    assert _answers(advanced.index)[(USERS[0], "p1.read")] is allowed


def test_a_policy_created_then_updated_is_loaded_with_the_edges_that_grant_it():
    store = Store([Edge(USERS[2], "POLICY", "p3")])
    log = Log(
        [{"kind": "POLICY", "id": "p3", "operation": "CREATE"}], [_policy_update("p3", 2, permissions=["p3.read"])]
    )
    advanced = _advance(log, store, [])
    assert advanced is not None and not advanced.exact
    assert store.loads >= 1


def test_updates_of_one_policy_logged_in_the_other_order_than_written_keep_the_later_write():
    """Each write bumps the revision after it wrote: two updates of one policy may be logged in
    either order. The version decides, within one delta and across deltas."""
    start = [Edge(USERS[0], "POLICY", "p1")]
    store = Store(start)
    enabled = _policy_update("p1", 3, permissions=["p1.read"])
    disabled = _policy_update("p1", 2, state="DISABLED", permissions=["p1.read"])
    advanced = _advance(Log([enabled], [disabled]), store, start)  # v3 told before v2
    assert advanced is not None and advanced.exact and store.loads == 0
    assert _answers(advanced.index)[(USERS[0], "p1.read")] is True
    # the index holds v3; a delta that only brings v2, logged late, changes nothing
    loader = IndexLoader(store, store, Log([disabled]))  # type: ignore[arg-type]
    later = loader.advance("d", advanced.index, 0, 1, NOW)
    assert later is not None and later.exact
    assert _answers(later.index)[(USERS[0], "p1.read")] is True
    assert later.index.policy("p1").written == (CREATED.isoformat(), 3)


def test_an_update_of_another_document_of_the_id_is_loaded():
    """p1 deleted and created again: an update of the new document does not follow the old one's
    version; the policy is loaded as the store holds it."""
    start = [Edge(USERS[0], "POLICY", "p1")]
    store = Store(start)
    again = datetime(2026, 11, 30, tzinfo=timezone.utc)
    advanced = _advance(
        Log([_policy_update("p1", 2, state="DISABLED", permissions=["p1.read"], created=again)]), store, start
    )
    assert advanced is not None and not advanced.exact and store.loads >= 1
    assert _answers(advanced.index)[(USERS[0], "p1.read")] is True  # the store's p1


def test_an_update_told_whole_after_one_that_was_not_is_loaded():
    start = [Edge(USERS[0], "POLICY", "p1")]
    store = Store(start)
    log = Log([{"kind": "POLICY", "id": "p1", "operation": "UPDATE"}], [_policy_update("p1", 2, state="DISABLED")])
    advanced = _advance(log, store, start)
    assert advanced is not None and not advanced.exact and store.loads >= 1
    assert _answers(advanced.index)[(USERS[0], "p1.read")] is True  # the store's p1, not the logged one
