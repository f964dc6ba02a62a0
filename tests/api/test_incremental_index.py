"""The evaluation index follows each kind of write by its delta (read from the change log), in
the process that wrote and in another one whose index was warm: every check after a write
answers as the domain now is. In the writing process the test also pins the path taken: a delta
(no whole build) after every write the log describes, a whole build when it does not (a hole in
the log, a record of a write that failed part-way)."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from pymongo import _csot
from test_multi_process import policyhub_processes

from helpers import assign, check_user, create_policy, create_sets, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import bulk_pb2
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb
from policyhub.manager.database import collection
from policyhub.model import AssignmentDocument, ChangeDocument, PolicyDocument, RevisionDocument


@contextlib.contextmanager
def other_process(client):
    """Another server process on the same database (wire protocol only), or None."""
    if client.backend != "wire":
        yield None
        return
    with policyhub_processes(client, 1) as (process,):
        yield process


class Probe:
    """Checks alice's actions in both processes and counts how the writer's cache got there."""

    def __init__(self, client, other, domain: str):
        self.client, self.other, self.domain = client, other, domain
        self.cache = client.app.services.authorization.cache
        self.counted = (self.cache.builds, self.cache.deltas)

    def warm(self, read: str, write: str) -> None:
        """Builds (or brings up to date) both processes' indexes: later writes are deltas."""
        assert self.decisions(self.client) == {"a.read": read, "a.write": write}
        if self.other is not None:
            assert self.decisions(self.other) == {"a.read": read, "a.write": write}
        self.counted = (self.cache.builds, self.cache.deltas)

    def decisions(self, stub) -> dict[str, str]:
        return {action: check_user(stub, self.domain, "alice", action)["decision"] for action in ("a.read", "a.write")}

    def expect(self, read: str, write: str, how: str = "delta") -> None:
        """The decisions after the writes since the last call; `how` the writer's index got
        there (the write's own authorization or answer may already have brought it up to date)."""
        assert self.decisions(self.client) == {"a.read": read, "a.write": write}
        builds, deltas = self.cache.builds - self.counted[0], self.cache.deltas - self.counted[1]
        self.counted = (self.cache.builds, self.cache.deltas)
        if how == "delta":
            assert builds == 0 and deltas >= 1
        else:
            assert builds >= 1
        if self.other is not None:
            assert self.decisions(self.other) == {"a.read": read, "a.write": write}


def _import_membership(client, domain, user: str, role: str):
    """A bulk import (merge) of one assignment: the user holds the role."""
    items = [{"assignment": {"subject": {"type": "USER", "id": user}, "grant": {"type": "ROLE", "id": role}}}]
    chunks = [
        parse(bulk_pb2.BulkChunk, {"header": {"domain_id": domain}}),
        parse(bulk_pb2.BulkChunk, {"items": items}),
    ]
    return client.bulk.import_domain(iter(chunks), timeout=30)


def _pairs(client, domain, method, user: str, grant_type: str, grant_id: str):
    request = parse(
        apb.AssignmentsRequest,
        {
            "grants": [{"type": grant_type, "id": grant_id}],
            "subject_type": "USER",
            "subject_ids": [user],
            "domain_id": domain,
        },
    )
    return getattr(client.assignment, method)(request, timeout=10)


def test_every_kind_of_write_is_applied_as_a_delta(client, domain):
    with other_process(client) as other:
        create_policy(client, domain, "reader", ["a.read"])
        create_sets(client, domain, groups=["team"], roles=["ops"])
        assign(client, domain, "USER", "alice", "GROUP", "team")
        assign(client, domain, "GROUP", "team", "POLICY", "reader")
        probe = Probe(client, other, domain)
        probe.warm("ALLOW", "DENY")

        client.policy.update(
            parse(ppb.UpdatePolicyRequest, {"policy_id": "reader", "domain_id": domain, "permissions": ["a.write"]}),
            timeout=10,
        )
        probe.expect("DENY", "ALLOW")
        client.policy.disable(ppb.PolicyRequest(policy_id="reader", domain_id=domain), timeout=10)
        probe.expect("DENY", "DENY")
        client.policy.enable(ppb.PolicyRequest(policy_id="reader", domain_id=domain), timeout=10)
        probe.expect("DENY", "ALLOW")

        # A rename moves the grants without logging them: they follow the policy to its new id,
        # and a new policy under the old id inherits none.
        client.policy.update(
            ppb.UpdatePolicyRequest(policy_id="reader", new_policy_id="writer", domain_id=domain), timeout=10
        )
        probe.expect("DENY", "ALLOW")
        create_policy(client, domain, "reader", ["a.read"])
        probe.expect("DENY", "ALLOW")

        # Assignments added and removed in batches, through a role.
        assign(client, domain, "ROLE", "ops", "POLICY", "reader")
        probe.expect("DENY", "ALLOW")
        _pairs(client, domain, "add", "alice", "ROLE", "ops")
        probe.expect("ALLOW", "ALLOW")
        _pairs(client, domain, "remove", "alice", "ROLE", "ops")
        probe.expect("DENY", "ALLOW")

        # A group renamed keeps its members and grants (moved without a change of their own).
        client.group.update(gpb.UpdateGroupRequest(group_id="team", new_group_id="crew", domain_id=domain), timeout=10)
        probe.expect("DENY", "ALLOW")

        # Soft delete with cascade, then restore (the grants come back).
        client.policy.delete(ppb.PolicyRequest(policy_id="writer", domain_id=domain, cascade=True), timeout=10)
        probe.expect("DENY", "DENY")
        client.policy.restore(ppb.PolicyRequest(policy_id="writer", domain_id=domain), timeout=10)
        probe.expect("DENY", "ALLOW")

        # A group deleted with its memberships and grants.
        client.group.delete(gpb.DeleteGroupRequest(group_id="crew", domain_id=domain, cascade=True), timeout=10)
        probe.expect("DENY", "DENY")

        # A bulk import (merge) granting alice the role back.
        assert _import_membership(client, domain, "alice", "ops").consistency_token
        probe.expect("ALLOW", "DENY")

        # An assignment deleted by id.
        listed = client.assignment.list(apb.AssignmentQuery(domain_id=domain), timeout=10)
        (grant,) = [a for a in listed.results if a.subject.id == "alice"]
        client.assignment.delete(apb.AssignmentRequest(assignment_id=grant.assignment_id, domain_id=domain), timeout=10)
        probe.expect("DENY", "DENY")


def test_a_policy_update_is_applied_from_the_log_alone(client, domain, monkeypatch):
    """Policy/update, disable and enable log the policy's rule fields as written: the writer's index
    applies them without reading the policy back, and answers as the domain now is."""
    create_policy(
        client,
        domain,
        "reader",
        ["a.read"],
        statements=[{"effect": "DENY", "actions": ["a.read"], "resources": ["secret/*"]}],
    )
    assign(client, domain, "USER", "alice", "POLICY", "reader")
    cache = client.app.services.authorization.cache
    policies = client.app.managers.policy
    loaded = []
    rules_of = policies.rules_of
    monkeypatch.setattr(policies, "rules_of", lambda *args: loaded.append(args) or rules_of(*args))
    assert check_user(client, domain, "alice", "a.read")["decision"] == "ALLOW"
    deltas = cache.deltas
    client.policy.update(
        parse(ppb.UpdatePolicyRequest, {"policy_id": "reader", "domain_id": domain, "permissions": ["a.write"]}),
        timeout=10,
    )
    assert check_user(client, domain, "alice", "a.write")["decision"] == "ALLOW"
    assert check_user(client, domain, "alice", "a.write", resource="secret/x")["decision"] == "ALLOW"
    client.policy.disable(ppb.PolicyRequest(policy_id="reader", domain_id=domain), timeout=10)
    assert check_user(client, domain, "alice", "a.write")["decision"] == "DENY"
    assert cache.deltas == deltas + 2 and loaded == []
    (record,) = collection(ChangeDocument).find({"domain_id": domain}).sort("seq", -1).limit(1)
    stored = collection(PolicyDocument).find_one({"domain_id": domain, "policy_id": "reader", "deleted_at": None})
    (change,) = record["changes"]
    assert change["rules"] == {
        key: stored[key] for key in ("state", "permissions", "statements", "created_at", "version")
    }


def _write_behind_the_log(domain: str) -> None:
    """Grants alice the policy straight in the database (no service involved)."""
    collection(AssignmentDocument).insert_one(
        {
            "assignment_id": f"asg-{domain}",
            "subject_type": "USER",
            "subject_id": "alice",
            "grant_type": "POLICY",
            "grant_id": "reader",
            "domain_id": domain,
            "labels": [],
            "tags": {},
            "created_at": datetime.now(timezone.utc),
        }
    )


def test_a_hole_in_the_change_log_makes_the_next_check_rebuild(client, domain):
    """A writer that died between its revision bump and its change record: the delta cannot be
    read, and the index is built again from the domain rather than left short of that write."""
    with other_process(client) as other:
        create_policy(client, domain, "reader", ["a.read"])
        probe = Probe(client, other, domain)
        probe.warm("DENY", "DENY")
        _write_behind_the_log(domain)
        collection(RevisionDocument).update_one({"domain_id": domain}, {"$inc": {"revision": 1}})
        probe.expect("ALLOW", "DENY", how="build")
        # The log goes on after the hole: the next write is a delta again.
        create_policy(client, domain, "writer", ["a.write"])
        assign(client, domain, "USER", "alice", "POLICY", "writer")
        probe.expect("ALLOW", "ALLOW")


def test_a_write_that_failed_part_way_makes_the_next_check_rebuild(client, domain):
    with other_process(client) as other:
        create_policy(client, domain, "reader", ["a.read"])
        probe = Probe(client, other, domain)
        probe.warm("DENY", "DENY")
        _write_behind_the_log(domain)
        client.app.managers.revision.bump(domain, complete=False)
        probe.expect("ALLOW", "DENY", how="build")


@pytest.mark.parametrize("count", [1, 3])
def test_a_failed_write_through_the_api_leaves_checks_right(client, domain, count):
    """An update refused half-way (a stale etag: ABORTED) logs an incomplete record; the answer
    stays what the domain holds."""
    create_policy(client, domain, "reader", ["a.read"])
    assign(client, domain, "USER", "alice", "POLICY", "reader")
    probe = Probe(client, None, domain)
    probe.warm("ALLOW", "DENY")
    for _ in range(count):
        with pytest.raises(Exception, match="ABORTED"):
            client.policy.update(
                parse(
                    ppb.UpdatePolicyRequest,
                    {"policy_id": "reader", "domain_id": domain, "permissions": ["a.write"], "etag": "stale"},
                ),
                timeout=10,
            )
    probe.expect("ALLOW", "DENY", how="build")


def _logged_creations(domain: str) -> list[dict]:
    record = collection(ChangeDocument).find_one({"domain_id": domain}, sort=[("seq", -1)])
    return [c for c in record["changes"] if c["kind"] == "ASSIGNMENT" and c["operation"] == "CREATE"]


def test_every_way_of_creating_an_assignment_logs_its_edge(client, domain):
    """The log tells a creation whole (its expiry too), so an index applies it without reading
    it back; one with an expiry is applied and then lapses on time."""
    create_policy(client, domain, "reader", ["a.read"])
    create_sets(client, domain, groups=["team"], roles=["ops"])
    probe = Probe(client, None, domain)
    probe.warm("DENY", "DENY")
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    client.assignment.create(
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "alice"},
                "grant": {"type": "POLICY", "id": "reader"},
                "expires_at": soon.isoformat(),
                "domain_id": domain,
            },
        ),
        timeout=10,
    )
    (created,) = _logged_creations(domain)
    stored = collection(AssignmentDocument).find_one({"domain_id": domain, "subject_id": "alice"})
    assert created["expires_at"] == stored["expires_at"]
    probe.expect("ALLOW", "DENY")
    assign(client, domain, "USER", "frank", "GROUP", "team")  # never expires
    _pairs(client, domain, "add", "bob", "ROLE", "ops")
    client.group.add_users(gpb.GroupUsersRequest(group_id="team", user_ids=["carol"], domain_id=domain), timeout=10)
    client.role.bind_users(rpb.RoleUsersRequest(role_id="ops", user_ids=["dave"], domain_id=domain), timeout=10)
    _import_membership(client, domain, "erin", "ops")
    logged = collection(ChangeDocument).find({"domain_id": domain, "changes.kind": "ASSIGNMENT"})
    creations = [c for r in logged for c in r["changes"] if c["kind"] == "ASSIGNMENT" and c["operation"] == "CREATE"]
    assert {c["subject"]["id"] for c in creations} == {"alice", "bob", "carol", "dave", "erin", "frank"}
    # each read back as logged once its revision moved: told whole
    assert all("expires_at" in c and "recheck" not in c for c in creations)
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    probe.expect("DENY", "DENY", how="build")  # the expiry lapsed: a whole build, by design


def test_a_creation_removed_before_its_revision_moved_is_not_granted(client, domain, monkeypatch):
    """A remover finds and removes what a creator has just inserted, and bumps the revision
    first: its DELETE is logged before the CREATE. The creator reads the pair back once its
    revision has moved, finds it gone and marks its CREATE, so no index keeps the grant."""
    create_policy(client, domain, "reader", ["a.read"])
    probe = Probe(client, None, domain)
    probe.warm("DENY", "DENY")
    revisions = client.app.managers.revision
    bump = revisions.bump
    raced = []

    def remover_first(domain_id, changes=None, *args):
        if not raced and any(c.get("operation") == "CREATE" for c in changes or []):
            raced.append(_pairs(client, domain, "remove", "alice", "POLICY", "reader"))
        return bump(domain_id, changes, *args)

    monkeypatch.setattr(revisions, "bump", remover_first)
    assign(client, domain, "USER", "alice", "POLICY", "reader")
    assert [apb.AssignmentChange.Outcome.Name(r.outcome) for r in raced[0].results] == ["REMOVED"]
    creation, deletion = collection(ChangeDocument).find({"domain_id": domain}).sort("seq", -1).limit(2)
    assert [c["operation"] for c in deletion["changes"]] == ["DELETE"] and "recheck" not in deletion["changes"][0]
    assert creation["changes"][0]["operation"] == "CREATE" and creation["changes"][0]["recheck"] is True
    probe.expect("DENY", "DENY")
    assert collection(AssignmentDocument).count_documents({"domain_id": domain}) == 0


def test_a_pair_created_again_before_the_removal_moved_the_revision_stays_granted(client, domain, monkeypatch):
    """The other order: a creator adds the pair again right after a remover deleted it, and bumps
    first. The remover finds the pair held once its revision has moved and marks its DELETE."""
    create_policy(client, domain, "reader", ["a.read"])
    assign(client, domain, "USER", "alice", "POLICY", "reader")
    probe = Probe(client, None, domain)
    probe.warm("ALLOW", "DENY")
    revisions = client.app.managers.revision
    bump = revisions.bump
    raced = []

    def creator_first(domain_id, changes=None, *args):
        if not raced and any(c.get("operation") == "DELETE" for c in changes or []):
            raced.append(_pairs(client, domain, "add", "alice", "POLICY", "reader"))
        return bump(domain_id, changes, *args)

    monkeypatch.setattr(revisions, "bump", creator_first)
    _pairs(client, domain, "remove", "alice", "POLICY", "reader")
    assert [apb.AssignmentChange.Outcome.Name(r.outcome) for r in raced[0].results] == ["CREATED"]
    deletion, creation = collection(ChangeDocument).find({"domain_id": domain}).sort("seq", -1).limit(2)
    assert creation["changes"][0]["operation"] == "CREATE" and "recheck" not in creation["changes"][0]
    assert deletion["changes"][0]["operation"] == "DELETE" and deletion["changes"][0]["recheck"] is True
    probe.expect("ALLOW", "DENY")


def test_a_whole_build_runs_free_of_the_calls_bound_and_deadline(client, domain, monkeypatch):
    """A domain too large to read within db_timeout_ms, or within its caller's deadline, still
    gets its index: the build's reads run under the build limit (index_build_timeout_ms), free of
    the calling check's bound, and the next check finds the index."""
    seen = []
    policies = client.app.managers.policy
    rules = policies.rules

    def recording(domain_id):
        seen.append(_csot.get_timeout())
        return rules(domain_id)

    monkeypatch.setattr(policies, "rules", recording)
    create_policy(client, domain, "reader", ["a.read"])
    assert check_user(client, domain, "alice", "a.read")["decision"] == "DENY"  # 10 s deadline
    assert seen == [client.app.database.build_timeout_ms / 1000]


def test_a_check_whose_caller_gave_up_leaves_the_index_built(client, domain, monkeypatch):
    cache = client.app.services.authorization.cache
    build = cache._build

    def slow(domain_id, now):
        time.sleep(1.5)
        return build(domain_id, now)

    monkeypatch.setattr(cache, "_build", slow)
    create_policy(client, domain, "reader", ["a.read"])
    assign(client, domain, "USER", "alice", "POLICY", "reader")
    request = parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": "alice"}, "action": "a.read", "resource": "r", "domain_id": domain},
    )
    read = cache._read
    served = []

    def timed(domain_id):
        # how long the server's thread waited in the index read, and how it ended
        started = time.monotonic()
        try:
            return read(domain_id)
        except Exception as exc:
            served.append((time.monotonic() - started, type(exc).__name__))
            raise

    monkeypatch.setattr(cache, "_read", timed)
    builds = cache.builds
    with pytest.raises(grpc.RpcError) as raised:
        client.assignment.check(request, timeout=0.3)
    # The server's bound is what was left of the deadline when the call reached it: its UNAVAILABLE
    # may reach the caller just before the caller's own deadline passes.
    assert raised.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    time.sleep(2.0)  # the build goes on after the caller gave up, and is kept
    # The server's thread was released by the caller's deadline, not held until the build ended.
    ((waited, error),) = served
    assert waited < 1.0 and error == "Unavailable"
    assert cache.builds == builds + 1
    assert check_user(client, domain, "alice", "a.read")["decision"] == "ALLOW"
    assert cache.builds == builds + 1  # the next check found it
