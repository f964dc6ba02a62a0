"""Storage conformance: the manager methods the services rely on, run with identical
expectations on both backends (the embedded store and the MongoDB wire protocol), so a
behaviour one store has and the other lacks fails here rather than in an API test."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from policyhub.domain import MANAGED_DOMAIN_ID
from policyhub.errors import Aborted, AlreadyExists, ConcurrentChange, NotFound
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service.context import utc_now
from policyhub.service.repository_service import LOCAL_REPOSITORY_ID


@pytest.fixture
def managers(app):
    return app.managers


def policy(domain, policy_id="p", **fields):
    now = utc_now()
    return {
        "policy_id": policy_id,
        "name": policy_id,
        "domain_id": domain,
        "repository_id": LOCAL_REPOSITORY_ID,
        "statements": [{"effect": "ALLOW", "actions": ["a.read"], "resources": ["*"]}],
        "created_at": now,
        "updated_at": now,
        **fields,
    }


def assignment(domain, subject_id="u", grant_id="p", **fields):
    return {
        "assignment_id": f"asg-{uuid.uuid4().hex[:12]}",
        "subject_type": "USER",
        "subject_id": subject_id,
        "grant_type": "POLICY",
        "grant_id": grant_id,
        "domain_id": domain,
        "created_at": utc_now(),
        **fields,
    }


# --- policies -------------------------------------------------------------------------------


def test_policy_create_then_get_returns_what_was_stored(managers, domain):
    created = managers.policy.create(policy(domain))
    got = managers.policy.get(domain, "p")
    assert got == created
    assert got["version"] == 1 and got["etag"]
    assert got["repository_info"]["repository_id"] == LOCAL_REPOSITORY_ID
    assert got["created_at"].tzinfo is not None


def test_policy_create_of_a_taken_id_is_already_exists(managers, domain):
    managers.policy.create(policy(domain))
    with pytest.raises(AlreadyExists):
        managers.policy.create(policy(domain))


def test_policy_get_of_another_domain_is_not_found(managers, domain, other_domain):
    managers.policy.create(policy(domain))
    with pytest.raises(NotFound):
        managers.policy.get(other_domain, "p")


def test_policy_update_is_compare_and_set_on_the_etag(managers, domain):
    created = managers.policy.create(policy(domain))
    updated = managers.policy.update(domain, "p", {"name": "renamed"}, created["etag"], utc_now())
    assert updated["name"] == "renamed" and updated["version"] == 2 and updated["etag"] != created["etag"]
    with pytest.raises(Aborted):
        managers.policy.update(domain, "p", {"name": "stale"}, created["etag"], utc_now())
    assert managers.policy.get(domain, "p")["name"] == "renamed"


def test_what_an_update_answers_is_what_it_stored(managers, domain):
    created = managers.policy.create(policy(domain, tags={"team": "a"}))
    statements = [{"effect": "DENY", "actions": ["a.write"], "resources": ["r/*"]}]
    updated = managers.policy.update(domain, "p", {"statements": statements, "tags": {}}, None, utc_now())
    assert updated == managers.policy.get(domain, "p")
    assert updated["version"] == created["version"] + 1
    restored_from = managers.policy.get(domain, "p")
    now = utc_now()
    managers.policy.soft_delete(domain, "p", None, now, now + timedelta(days=1), [])
    restored, _ = managers.policy.restore(domain, "p", utc_now())
    assert restored == managers.policy.get(domain, "p")
    assert restored["version"] == restored_from["version"] + 2 and "deleted_at" not in restored


@pytest.mark.parametrize("with_etag", [True, False])
def test_a_write_landing_between_an_updates_read_and_its_write(managers, domain, monkeypatch, with_etag):
    """With the caller's etag the update is ABORTED (the policy changed since that etag); without
    one it applies to the version that landed, keeping that version's change."""
    from policyhub.manager import policy_manager

    created = managers.policy.create(policy(domain))
    read = policy_manager._live
    landed: list[dict] = []

    def read_then_another_write_lands(domain_id, policy_id):
        current = read(domain_id, policy_id)
        if not landed:
            landed.append({})  # the other write reads through here too: it lands once
            landed[0] = managers.policy.update(domain_id, policy_id, {"description": "theirs"}, None, utc_now())
        return current

    monkeypatch.setattr(policy_manager, "_live", read_then_another_write_lands)
    etag = created["etag"] if with_etag else None
    if with_etag:
        with pytest.raises(Aborted):
            managers.policy.update(domain, "p", {"name": "ours"}, etag, utc_now())
        assert managers.policy.get(domain, "p") == landed[0]
    else:
        updated = managers.policy.update(domain, "p", {"name": "ours"}, etag, utc_now())
        assert updated["name"] == "ours" and updated["description"] == "theirs" and updated["version"] == 3
        assert updated == managers.policy.get(domain, "p")


def test_an_update_that_other_writes_keep_overtaking_is_aborted(managers, domain, monkeypatch):
    from policyhub.manager import policy_manager

    managers.policy.create(policy(domain))
    read = policy_manager._live
    others = []

    def read_then_another_write_lands(domain_id, policy_id):
        current = read(domain_id, policy_id)
        if len(others) % 2 == 0:  # an update of ours, not one of the others
            others.append(None)
            others.append(managers.policy.update(domain_id, policy_id, {"description": "theirs"}, None, utc_now()))
        return current

    monkeypatch.setattr(policy_manager, "_live", read_then_another_write_lands)
    with pytest.raises(ConcurrentChange, match="kept changing"):
        managers.policy.update(domain, "p", {"name": "ours"}, None, utc_now())
    assert len(others) == 2 * policy_manager.UPDATE_ATTEMPTS
    monkeypatch.setattr(policy_manager, "_live", read)
    assert managers.policy.get(domain, "p")["name"] == "p"  # nothing of ours was written


def test_a_delete_overtaken_by_another_write_is_aborted(managers, domain, monkeypatch):
    from policyhub.manager import policy_manager

    managers.policy.create(policy(domain))
    read = policy_manager._live

    def read_then_another_write_lands(domain_id, policy_id):
        current = read(domain_id, policy_id)
        monkeypatch.setattr(policy_manager, "_live", read)
        managers.policy.update(domain_id, policy_id, {"description": "theirs"}, None, utc_now())
        return current

    monkeypatch.setattr(policy_manager, "_live", read_then_another_write_lands)
    now = utc_now()
    with pytest.raises(Aborted, match="changed while it was being deleted"):
        managers.policy.soft_delete(domain, "p", None, now, now + timedelta(days=1), [])
    assert managers.policy.get(domain, "p")["description"] == "theirs"


def test_policy_rename_to_a_taken_id_is_already_exists(managers, domain):
    managers.policy.create(policy(domain, "a"))
    managers.policy.create(policy(domain, "b"))
    with pytest.raises(AlreadyExists):
        managers.policy.update(domain, "a", {"policy_id": "b"}, None, utc_now())


def test_policy_soft_delete_restore_and_purge(managers, domain):
    created = managers.policy.create(policy(domain))
    now = utc_now()
    parked = [assignment(domain)]
    managers.policy.soft_delete(domain, "p", created["etag"], now, now + timedelta(days=1), parked)
    with pytest.raises(NotFound):
        managers.policy.get(domain, "p")
    deleted = managers.policy.get(domain, "p", include_deleted=True)
    assert deleted["state"] == "DELETED" and deleted["purge_at"] > deleted["deleted_at"]
    with pytest.raises(NotFound):
        managers.policy.update(domain, "p", {"name": "x"}, None, utc_now())
    restored, given_back = managers.policy.restore(domain, "p", utc_now())
    assert restored["state"] == "ENABLED" and "purge_at" not in restored
    assert [a["assignment_id"] for a in given_back] == [parked[0]["assignment_id"]]
    with pytest.raises(AlreadyExists):
        managers.policy.restore(domain, "p", utc_now())


def test_a_deleted_id_can_be_created_again_and_each_record_stays_apart(managers, domain):
    first = managers.policy.create(policy(domain, name="first"))
    now = utc_now()
    managers.policy.soft_delete(domain, "p", first["etag"], now, now + timedelta(days=1), [assignment(domain)])
    second = managers.policy.create(policy(domain, name="second"))
    with pytest.raises(AlreadyExists):
        managers.policy.create(policy(domain, name="third"))
    assert managers.policy.get(domain, "p", include_deleted=True)["name"] == "second"
    with pytest.raises(AlreadyExists):
        managers.policy.restore(domain, "p", utc_now())
    # Deleted records of one id are told apart by deleted_at: a delete in the millisecond of the
    # previous one would collide, and is ABORTED (retry) rather than lost.
    with pytest.raises(Aborted):
        managers.policy.soft_delete(domain, "p", second["etag"], now, now + timedelta(days=1), [])
    later = now + timedelta(milliseconds=1)
    managers.policy.soft_delete(domain, "p", second["etag"], later, later + timedelta(days=1), [])
    results, total = managers.policy.list(domain, None, include_managed=False, include_deleted=True)
    assert total == 2 and {r["name"] for r in results} == {"first", "second"}
    restored, given_back = managers.policy.restore(domain, "p", utc_now())
    assert restored["name"] == "second" and given_back == []
    managers.policy.soft_delete(domain, "p", restored["etag"], utc_now(), utc_now() + timedelta(days=1), [])
    restored, given_back = managers.policy.restore(domain, "p", utc_now())
    assert restored["name"] == "second"


def test_purge_removes_only_policies_past_their_retention(managers, domain):
    # Retention ends in the future (a past purge_at is the TTL index's to remove, on either store).
    for policy_id, retention in (("short", timedelta(days=1)), ("long", timedelta(days=5))):
        created = managers.policy.create(policy(domain, policy_id))
        now = utc_now()
        managers.policy.soft_delete(domain, policy_id, created["etag"], now, now + retention, [])
    later = utc_now() + timedelta(days=2)
    with pytest.raises(NotFound):
        managers.policy.restore(domain, "short", later)
    purged = managers.policy.purge_expired(later)
    assert (domain, "short") in purged and (domain, "long") not in purged
    assert managers.policy.get(domain, "long", include_deleted=True)["state"] == "DELETED"
    with pytest.raises(NotFound):
        managers.policy.get(domain, "short", include_deleted=True)


def test_policy_list_dates_are_aware_on_every_backend(managers, domain):
    managers.policy.create(policy(domain))
    results, total = managers.policy.list(domain, None, include_managed=False)
    assert total == 1 and results[0]["created_at"].tzinfo is not None


# --- assignments ----------------------------------------------------------------------------


def test_assignment_insert_find_by_keys_and_delete(managers, domain):
    records = [assignment(domain, "u1"), assignment(domain, "u2")]
    assert managers.assignment.insert_new(records) == {}
    found = managers.assignment.find_by_keys(domain, [("USER", "u1", "POLICY", "p"), ("USER", "u3", "POLICY", "p")])
    assert [record["assignment_id"] for record in found.values()] == [records[0]["assignment_id"]]
    managers.assignment.delete(domain, records[0]["assignment_id"])
    with pytest.raises(NotFound):
        managers.assignment.get(domain, records[0]["assignment_id"])
    with pytest.raises(NotFound):
        managers.assignment.delete(domain, records[0]["assignment_id"])


def test_assignment_insert_of_a_taken_pair_returns_its_holder(managers, domain):
    held = assignment(domain)
    managers.assignment.insert_new([held])
    taken = managers.assignment.insert_new([assignment(domain), assignment(domain, "other")])
    assert [record["assignment_id"] for record in taken.values()] == [held["assignment_id"]]
    assert managers.assignment.list(domain, None)[1] == 2


def test_assignment_create_of_a_taken_pair_is_already_exists(managers, domain):
    managers.assignment.create(assignment(domain))
    with pytest.raises(AlreadyExists):
        managers.assignment.create(assignment(domain))


def test_assignment_remove_ids_counts_each_removal_once(managers, domain):
    records = [assignment(domain, "u1"), assignment(domain, "u2")]
    managers.assignment.insert_new(records)
    ids = [record["assignment_id"] for record in records]
    assert managers.assignment.remove_ids(domain, ids) == set(ids)
    assert managers.assignment.remove_ids(domain, ids) == set()


def test_assignment_expiry_is_aware(managers, domain):
    expires_at = utc_now() + timedelta(days=1)
    managers.assignment.insert_new([assignment(domain, expires_at=expires_at)])
    [edge] = managers.assignment.edges(domain)
    assert edge["expires_at"] == expires_at and edge["expires_at"].tzinfo is not None


# --- revisions and audit --------------------------------------------------------------------


def test_revision_starts_at_zero_and_bumps(managers, domain, other_domain):
    assert managers.revision.current([domain, other_domain]) == (0, 0)
    managers.revision.bump(domain)
    managers.revision.bump(domain)
    assert managers.revision.current([domain, other_domain]) == (2, 0)


def test_concurrent_first_bumps_of_a_domain_each_get_their_own_revision(managers):
    """The first writes of a domain race to create its counter: each bump still learns the
    revision it counted (the wire server may answer a racing counting upsert without it)."""
    for trial in range(10):
        domain = f"domain-race-{uuid.uuid4().hex[:8]}-{trial}"
        with ThreadPoolExecutor(8) as pool:
            revisions = list(pool.map(managers.revision.bump, [domain] * 8))
        assert sorted(revisions) == list(range(1, 9))
        assert managers.revision.current([domain]) == (8,)


def test_audit_entries_are_listed_per_domain(managers, domain, other_domain):
    entry = {
        "transaction_id": "t",
        "caller_type": "USER",
        "caller_id": "alice",
        "method": "m",
        "resource_type": "Policy",
        "resource_id": "p",
        "before": None,
        "after": {"x": 1},
        "created_at": utc_now(),
    }
    managers.audit.add_many(
        [{**entry, "audit_id": "a1", "domain_id": domain}, {**entry, "audit_id": "a2", "domain_id": other_domain}]
    )
    results, total = managers.audit.list(domain, None)
    assert total == 1 and results[0]["audit_id"] == "a1" and results[0]["after"] == {"x": 1}
    assert results[0]["created_at"].tzinfo is not None


# --- write marks ----------------------------------------------------------------------------


def test_a_write_mark_stands_until_it_lands_with_a_bump(managers, domain, other_domain):
    revisions = managers.revision
    assert revisions.state([domain, other_domain]).writing is False
    first = revisions.begin_write(domain)
    second = revisions.begin_write(domain)
    state = revisions.state([domain, other_domain])
    assert state.writing is True and state.revisions == (0, 0) and state.landed == 0
    revisions.end_write(domain, first)
    state = revisions.state([domain, other_domain])
    assert state.writing is True and state.revisions == (1, 0) and state.landed == 1
    revisions.end_write(domain, second)
    assert revisions.state([domain, other_domain]) == revisions.state([domain, other_domain])
    state = revisions.state([domain, other_domain])
    assert state.writing is False and state.revisions == (2, 0) and state.landed == 2


def test_a_run_out_write_mark_is_ignored_and_cleared(managers, domain, monkeypatch):
    from policyhub.manager import revision_manager

    revisions = managers.revision
    monkeypatch.setattr(revision_manager, "WRITE_MARK_SECONDS", -1.0)
    revisions.begin_write(domain)  # a writer that died: its mark has already run out
    assert revisions.state([domain]).writing is False
    monkeypatch.setattr(revision_manager, "WRITE_MARK_SECONDS", 30.0)
    mark = revisions.begin_write(domain)
    revisions.end_write(domain, mark)
    stored = managers.revision  # the stale mark went with the next begin_write
    assert stored.state([domain]).writing is False


# --- groups and roles -----------------------------------------------------------------------


def subject_set(domain, set_id, id_field="group_id"):
    now = utc_now()
    return {id_field: set_id, "name": set_id, "domain_id": domain, "created_at": now, "updated_at": now}


def test_group_create_get_update_and_duplicates(managers, domain, other_domain):
    groups = managers.group
    created = groups.create(subject_set(domain, "g"))
    assert groups.get(domain, "g") == created
    with pytest.raises(AlreadyExists):
        groups.create(subject_set(domain, "g"))
    groups.create(subject_set(other_domain, "g"))  # ids are per domain
    renamed = groups.update(domain, "g", {"group_id": "h", "name": "H"}, utc_now())
    assert (renamed["group_id"], renamed["name"]) == ("h", "H")
    with pytest.raises(NotFound):
        groups.get(domain, "g")
    groups.create(subject_set(domain, "g"))
    with pytest.raises(AlreadyExists):
        groups.update(domain, "g", {"group_id": "h"}, utc_now())
    assert groups.existing_ids(domain, ["g", "h", "x"]) == {"g", "h"}


def test_ensure_creates_only_what_is_missing(managers, domain):
    roles = managers.role
    roles.create({**subject_set(domain, "r1", "role_id"), "name": "Kept"})
    created = roles.ensure([subject_set(domain, "r1", "role_id"), subject_set(domain, "r2", "role_id")])
    assert created == 1
    assert roles.get(domain, "r1")["name"] == "Kept"
    assert roles.ensure([subject_set(domain, "r2", "role_id")]) == 0


def test_assignments_naming_a_set_are_counted_moved_and_deleted(managers, domain, other_domain):
    assignments = managers.assignment
    member = assignment(domain, "u", "g", grant_type="GROUP")
    holder = assignment(domain, "g", "p", subject_type="GROUP")
    nested = assignment(domain, "g", "outer", subject_type="GROUP", grant_type="GROUP")
    elsewhere = assignment(other_domain, "u", "g", grant_type="GROUP")
    for record in (member, holder, nested, elsewhere):
        assignments.create(record)
    assert assignments.count_naming(domain, "GROUP", ["g", "outer", "none"]) == {"g": (1, 2), "outer": (1, 0)}
    assert (domain, "GROUP", "outer") in assignments.named_sets()
    assert assignments.rename_set(domain, "GROUP", "g", "g2") == 3
    assert assignments.count_naming(domain, "GROUP", ["g"]) == {}
    assert {a["assignment_id"] for a in assignments.naming(domain, "GROUP", ["g2"])} == {
        member["assignment_id"],
        holder["assignment_id"],
        nested["assignment_id"],
    }
    assert (
        assignments.delete_ids(domain, [a["assignment_id"] for a in assignments.naming(domain, "GROUP", ["g2"])]) == 3
    )
    assert assignments.naming(domain, "GROUP", ["g2"]) == []
    assert assignments.count_naming(other_domain, "GROUP", ["g"]) == {"g": (1, 0)}


# --- the change log ---------------------------------------------------------------------------


def test_each_bump_writes_one_change_record_at_the_new_revision(managers, domain):
    revisions, changes = managers.revision, managers.change
    assert revisions.bump(domain, [{"kind": "POLICY", "id": "p", "operation": "CREATE"}], "tx-1") == 1
    assert revisions.bump(domain) == 2  # a write that changed nothing: an empty record
    mark = revisions.begin_write(domain)
    assert revisions.end_write(domain, mark, [{"kind": "GROUP", "id": "g", "operation": "DELETE"}]) == 3
    records = changes.after(domain, 1, 10)
    assert [(r["seq"], r["changes"], r["transaction_id"]) for r in records] == [
        (1, [{"kind": "POLICY", "id": "p", "operation": "CREATE"}], "tx-1"),
        (2, [], ""),
        (3, [{"kind": "GROUP", "id": "g", "operation": "DELETE"}], ""),
    ]
    assert all(r["created_at"].tzinfo is not None and r["purge_at"] > r["created_at"] for r in records)
    # after a position, ascending, limited; never another domain's
    assert [r["seq"] for r in changes.after(domain, 2, 1)] == [2]
    assert changes.after(f"{domain}-other", 0, 10) == []


def test_expired_change_records_are_purged(managers, domain):
    RevisionManager(timedelta(seconds=1)).bump(domain, [{"kind": "ROLE", "id": "r", "operation": "CREATE"}])
    (record,) = managers.change.after(domain, 0, 10)
    assert managers.change.purge_expired(record["purge_at"] - timedelta(seconds=1)) == 0
    assert managers.change.purge_expired(record["purge_at"] + timedelta(seconds=1)) >= 1
    assert managers.change.after(domain, 0, 10) == []


# --- bulk writes (the bulk import's) ----------------------------------------------------------


def no_progress():
    pass


def test_bulk_insert_is_all_or_nothing_and_undone_exactly(managers, domain):
    kept = assignment(domain, subject_id="kept")
    managers.assignment.create(kept)
    ids = managers.assignment.insert_bulk([assignment(domain, subject_id=f"u{i}") for i in range(3)], no_progress)
    assert len(managers.assignment.snapshot(domain)) == 4
    # a pair taken (here: by the first insert) refuses the whole batch and leaves nothing of it
    with pytest.raises(ConcurrentChange):
        managers.assignment.insert_bulk(
            [assignment(domain, subject_id="new"), assignment(domain, subject_id="u1")], no_progress
        )
    assert sorted(a["subject_id"] for a in managers.assignment.snapshot(domain)) == ["kept", "u0", "u1", "u2"]
    managers.assignment.remove_bulk(ids, no_progress)
    assert [a["subject_id"] for a in managers.assignment.snapshot(domain)] == ["kept"]


def test_bulk_update_is_compare_and_set_and_its_undo_spares_later_changes(managers, domain):
    managers.policy.create(policy(domain, "a"))
    managers.policy.create(policy(domain, "b"))
    raws = {raw["policy_id"]: raw for raw in managers.policy.local_snapshot(domain)}
    # b changes after it was read: the update of both is refused, a is left as it was
    managers.policy.update(domain, "b", {"name": "changed meanwhile"}, None, utc_now())
    with pytest.raises(ConcurrentChange):
        managers.policy.update_bulk([(raws["a"], {"name": "A"}), (raws["b"], {"name": "B"})], utc_now(), no_progress)
    assert managers.policy.get(domain, "a")["etag"] == raws["a"]["etag"]
    # applied, then a changes again, then the update is undone: only b goes back
    fresh = {raw["policy_id"]: raw for raw in managers.policy.local_snapshot(domain)}
    reverts = managers.policy.update_bulk(
        [(fresh["a"], {"name": "A"}), (fresh["b"], {"name": "B"})], utc_now(), no_progress
    )
    assert managers.policy.get(domain, "a")["version"] == fresh["a"]["version"] + 1
    managers.policy.update(domain, "a", {"name": "changed after"}, None, utc_now())
    managers.policy.revert_bulk(reverts, no_progress)
    assert managers.policy.get(domain, "a")["name"] == "changed after"
    assert managers.policy.get(domain, "b")["etag"] == fresh["b"]["etag"]


def test_bulk_delete_is_undone_without_overwriting_what_took_its_place(managers, domain):
    for group_id in ("g1", "g2"):
        managers.group.create(
            {
                "group_id": group_id,
                "name": group_id,
                "domain_id": domain,
                "created_at": utc_now(),
                "updated_at": utc_now(),
            }
        )
    raws = managers.group.snapshot(domain)
    removed = managers.group.delete_bulk(raws, no_progress)
    assert managers.group.ids(domain) == set()
    with pytest.raises(ConcurrentChange):  # already gone
        managers.group.delete_bulk(raws, no_progress)
    managers.group.create(
        {
            "group_id": "g1",
            "name": "taken meanwhile",
            "domain_id": domain,
            "created_at": utc_now(),
            "updated_at": utc_now(),
        }
    )
    managers.group.put_back_bulk(removed, no_progress)
    assert managers.group.ids(domain) == {"g1", "g2"}
    assert managers.group.get(domain, "g1")["name"] == "taken meanwhile"


def test_the_managed_domains_own_list_counts_each_policy_once(managers):
    # What an anonymous caller lists without a public domain: the managed domain, with the managed ones.
    managed = managers.policy.managed_ids()
    policies, total = managers.policy.list(MANAGED_DOMAIN_ID, {"page": {"limit": 1}}, include_managed=True)
    assert managed and total == len(managed) and len(policies) == 1


# --- start-up migrations --------------------------------------------------------------------


def test_a_migration_is_recorded_once_and_seen_by_every_process(managers):
    name = f"test-{uuid.uuid4().hex[:8]}"
    migrations = managers.migration
    assert not migrations.done(name)
    first = utc_now()
    with ThreadPoolExecutor(4) as pool:  # processes starting together record it together
        list(pool.map(lambda _: migrations.record(name, first), range(4)))
    migrations.record(name, first + timedelta(days=1))
    assert migrations.done(name)


def test_the_named_sets_migration_runs_at_the_first_start_only(app, monkeypatch):
    from policyhub.bootstrap import ADOPT_NAMED_SETS

    # The fixture's application started on this database: the migration ran and was recorded.
    assert app.managers.migration.done(ADOPT_NAMED_SETS)

    def scan():
        raise AssertionError("a later start read every assignment again")

    monkeypatch.setattr(app.managers.assignment, "named_sets", scan)
    app.prepare()
