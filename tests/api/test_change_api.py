"""The Change service over gRPC, on both backends: what each write logs, in order; paging with
continuation tokens; kinds; bad input; tenancy; holes; retention; watching (live writes,
resuming, heartbeats, limits, slow consumers, shutdown)."""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import replace
from datetime import timedelta

import grpc
import pytest
from conftest import free_port

from helpers import error_info, error_reason, expect_error, field_violations, grant_policy, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2, change_pb2_grpc, policy_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import change_pb2 as cpb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as ppb
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb
from policyhub.bootstrap import build_application
from policyhub.manager.database import collection
from policyhub.model import ChangeDocument, RevisionDocument
from policyhub.server import PolicyHubServer
from policyhub.service.context import utc_now

KIND = cpb.ChangeInfo.Kind
OPERATION = cpb.ChangeInfo.Operation
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- helpers ---------------------------------------------------------------------------------


def triples(changes) -> list[tuple[str, str, str]]:
    return [(KIND.Name(c.kind), c.id, OPERATION.Name(c.operation)) for c in changes]


def list_changes(stub, domain: str, after: str = "", kinds=(), limit: int = 0, metadata=()) -> cpb.ChangesInfo:
    request = cpb.ChangeQuery(domain_id=domain, after=after, kinds=kinds)
    if limit:
        request.page.limit = limit
    return stub.list(request, timeout=10, metadata=metadata)


def everything(stub, domain: str, after: str = "", kinds=(), limit: int = 0) -> tuple[list, str]:
    """Every change after `after`, paging until the token stops moving; and the last token."""
    seen, token = [], after
    for _ in range(1000):
        page = list_changes(stub, domain, token, kinds, limit)
        seen += page.results
        if page.continuation_token == token:  # caught up: `after` itself comes back
            assert not page.results
            return seen, token
        token = page.continuation_token
    raise AssertionError("the continuation token never stopped moving")


def create_policy(client, domain: str, policy_id: str, **fields) -> ppb.PolicyInfo:
    return client.policy.create(
        ppb.CreatePolicyRequest(policy_id=policy_id, name=policy_id, domain_id=domain, **fields), timeout=10
    )


def ids_of(answer: apb.AssignmentChangesInfo) -> list[str]:
    return [result.assignment_id for result in answer.results]


class Watcher:
    """A watch running in the background; what it receives, in order."""

    def __init__(self, stub, domain: str, after: str = "", kinds=(), heartbeat: int = 0, timeout=60, metadata=()):
        request = cpb.WatchChangesRequest(domain_id=domain, after=after, kinds=kinds, heartbeat_seconds=heartbeat)
        self.call = stub.watch(request, timeout=timeout, metadata=metadata)
        self.received: queue.Queue = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for message in self.call:
                self.received.put(message)
        except grpc.RpcError as error:
            self.error = error
        self.received.put(None)

    def next(self, timeout: float = 15) -> cpb.WatchChangesResponse:
        message = self.received.get(timeout=timeout)
        assert message is not None, f"the watch ended: {self.error and (self.error.code(), self.error.details())}"
        return message

    def changes(self, count: int, timeout: float = 15) -> list[cpb.ChangeInfo]:
        """The next `count` changes (heartbeats in between are skipped)."""
        found: list[cpb.ChangeInfo] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            message = self.next(max(0.1, deadline - time.monotonic()))
            if message.HasField("change"):
                found.append(message.change)
        return found

    def heartbeat(self, timeout: float = 15) -> cpb.ChangeHeartbeat:
        """The next message, which must be a heartbeat."""
        message = self.next(timeout)
        assert message.HasField("heartbeat"), message
        return message.heartbeat

    def ready(self) -> cpb.ChangeHeartbeat:
        """The first heartbeat: the watch has caught up (sent everything before it)."""
        while True:
            message = self.next()
            if message.HasField("heartbeat"):
                return message.heartbeat

    def ended(self, timeout: float = 15) -> grpc.RpcError | None:
        """Waits for the end of the stream; its error (None: it ended OK)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the watch did not end"
        return self.error

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(10)


@pytest.fixture
def watchers():
    started: list[Watcher] = []

    def start(*args, **kwargs) -> Watcher:
        watcher = Watcher(*args, **kwargs)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.cancel()


@pytest.fixture
def server_with(client):
    """Extra servers (with their own application) on `client`'s database, config keys changed."""
    started = []

    def start(**changes):
        app = build_application(replace(client.app.config, port=free_port(), **changes), client.app.database)
        server = PolicyHubServer(app)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return app, server, change_pb2_grpc.ChangeStub(channel), channel

    yield start
    for server, channel in started:
        channel.close()
        server.stop(grace=0)


# -- what each write logs ------------------------------------------------------------------------


def test_every_kind_of_write_is_listed_in_order(client, domain):
    created = create_policy(client, domain, "p1", permissions=["a.read"])
    client.policy.update(ppb.UpdatePolicyRequest(policy_id="p1", name="P one", domain_id=domain), timeout=10)
    client.policy.update(ppb.UpdatePolicyRequest(policy_id="p1", new_policy_id="p2", domain_id=domain), timeout=10)
    _, deleted = client.policy.delete.with_call(ppb.PolicyRequest(policy_id="p2", domain_id=domain), timeout=10)
    client.policy.restore(ppb.PolicyRequest(policy_id="p2", domain_id=domain), timeout=10)
    client.policy.disable(ppb.PolicyRequest(policy_id="p2", domain_id=domain), timeout=10)
    client.group.create(gpb.CreateGroupRequest(group_id="g1", name="G", domain_id=domain), timeout=10)
    members = client.group.add_users(
        gpb.GroupUsersRequest(group_id="g1", user_ids=["u1", "u2"], domain_id=domain), timeout=10
    )
    client.group.update(gpb.UpdateGroupRequest(group_id="g1", new_group_id="g2", domain_id=domain), timeout=10)
    client.role.create(rpb.CreateRoleRequest(role_id="r1", name="R", domain_id=domain), timeout=10)
    bound = client.role.bind_users(rpb.RoleUsersRequest(role_id="r1", user_ids=["u3"], domain_id=domain), timeout=10)
    pairs = {
        "grants": [{"type": "POLICY", "id": "p2"}],
        "subject_type": "USER",
        "subject_ids": ["u4"],
        "domain_id": domain,
    }
    added = client.assignment.add(parse(apb.AssignmentsRequest, pairs), timeout=10)
    removed = client.assignment.remove(parse(apb.AssignmentsRequest, pairs), timeout=10)
    client.group.delete(gpb.DeleteGroupRequest(group_id="g2", cascade=True, domain_id=domain), timeout=10)

    page = list_changes(client.change, domain)
    u1, u2 = ids_of(members)
    (u3,) = ids_of(bound)
    (u4,) = ids_of(added)
    listed = triples(page.results)
    assert listed[:-2] == [
        ("POLICY", "p1", "CREATE"),
        ("POLICY", "p1", "UPDATE"),
        ("POLICY", "p1", "DELETE"),  # a rename: the old id's DELETE, then the new id's CREATE
        ("POLICY", "p2", "CREATE"),
        ("POLICY", "p2", "DELETE"),
        ("POLICY", "p2", "CREATE"),  # restored
        ("POLICY", "p2", "UPDATE"),  # disabled
        ("GROUP", "g1", "CREATE"),
        ("ASSIGNMENT", u1, "CREATE"),
        ("ASSIGNMENT", u2, "CREATE"),
        ("GROUP", "g1", "DELETE"),
        ("GROUP", "g2", "CREATE"),
        ("ROLE", "r1", "CREATE"),
        ("ASSIGNMENT", u3, "CREATE"),
        ("ASSIGNMENT", u4, "CREATE"),
        ("ASSIGNMENT", u4, "DELETE"),
        ("GROUP", "g2", "DELETE"),
    ]
    # the cascade: the group's memberships went with it, in the same write
    assert sorted(listed[-2:]) == sorted([("ASSIGNMENT", u1, "DELETE"), ("ASSIGNMENT", u2, "DELETE")])
    assert len({c.consistency_token for c in page.results[-3:]}) == 1

    # Each change carries the consistency token its write answered with, the write's
    # transaction id and time.
    first, *_ = page.results
    assert first.consistency_token == created.consistency_token
    deleted_token = dict(deleted.trailing_metadata())["consistency-token"]
    assert [c.id for c in page.results if c.consistency_token == deleted_token] == ["p2"]
    assert [c.id for c in page.results if c.consistency_token == removed.consistency_token] == [u4]
    assert all(c.transaction_id and ISO.match(c.created_at) for c in page.results)
    assert [c.created_at for c in page.results] == sorted(c.created_at for c in page.results)
    audited = client.audit.list(audit_pb2.AuditQuery(domain_id=domain, resource_id="p1"), timeout=10)
    assert first.transaction_id in {entry.transaction_id for entry in audited.results}
    # the answer's token points after the last change; nothing follows it
    assert page.continuation_token == page.results[-1].continuation_token
    caught_up = list_changes(client.change, domain, page.continuation_token)
    assert caught_up.results == [] and caught_up.continuation_token == page.continuation_token


def test_a_write_that_fails_logs_no_change(client, domain):
    create_policy(client, domain, "p")
    expect_error(
        grpc.StatusCode.ABORTED,
        client.policy.update,
        ppb.UpdatePolicyRequest(policy_id="p", name="x", etag="stale", domain_id=domain),
    )
    create_policy(client, domain, "q")
    assert triples(list_changes(client.change, domain).results) == [
        ("POLICY", "p", "CREATE"),
        ("POLICY", "q", "CREATE"),
    ]


def test_kinds_filter(client, domain):
    create_policy(client, domain, "p")
    client.group.create(gpb.CreateGroupRequest(group_id="g", name="G", domain_id=domain), timeout=10)
    client.role.create(rpb.CreateRoleRequest(role_id="r", name="R", domain_id=domain), timeout=10)
    (assignment,) = ids_of(
        client.group.add_users(gpb.GroupUsersRequest(group_id="g", user_ids=["u"], domain_id=domain), timeout=10)
    )
    groups = list_changes(client.change, domain, kinds=[KIND.GROUP])
    assert triples(groups.results) == [("GROUP", "g", "CREATE")]
    # the token moved past what the filter left out: nothing more of that kind after it
    assert list_changes(client.change, domain, groups.continuation_token, kinds=[KIND.GROUP]).results == []
    both = list_changes(client.change, domain, kinds=[KIND.ROLE, KIND.ASSIGNMENT])
    assert triples(both.results) == [("ROLE", "r", "CREATE"), ("ASSIGNMENT", assignment, "CREATE")]
    assert len(list_changes(client.change, domain).results) == 4
    # a page may look only at other kinds and answer none: its token has moved on all the same
    page = list_changes(client.change, domain, kinds=[KIND.ROLE], limit=1)
    assert page.results == [] and page.continuation_token
    found, _ = everything(client.change, domain, kinds=[KIND.ROLE], limit=1)
    assert triples(found) == [("ROLE", "r", "CREATE")]


def test_paging_with_continuation_tokens_gives_every_change_exactly_once(client, domain):
    create_policy(client, domain, "p0")
    client.assignment.add(
        parse(
            apb.AssignmentsRequest,
            {
                "grants": [{"type": "POLICY", "id": "p0"}],
                "subject_type": "USER",
                "subject_ids": [f"u{i}" for i in range(7)],
                "domain_id": domain,
            },
        ),
        timeout=10,
    )  # one write of seven changes: pages cut inside it
    for i in range(1, 4):
        create_policy(client, domain, f"p{i}")
    whole = list_changes(client.change, domain).results
    assert len(whole) == 11
    for limit in (1, 2, 3, 4):
        paged, last = everything(client.change, domain, limit=limit)
        assert [(c.id, c.continuation_token) for c in paged] == [(c.id, c.continuation_token) for c in whole]
        # the same position; its time bound (the last part) is read apart and differs once a second has passed
        assert last.rsplit(".", 1)[0] == whole[-1].continuation_token.rsplit(".", 1)[0]
    # resuming from any change's own token gives exactly what follows it
    for position, change in enumerate(whole):
        rest, _ = everything(client.change, domain, after=change.continuation_token)
        assert [c.id for c in rest] == [c.id for c in whole[position + 1 :]]
    # page.start 1 (SpaceONE's first page) is accepted; a limit above the most is capped
    request = cpb.ChangeQuery(domain_id=domain, page={"start": 1, "limit": 100000})
    assert len(client.change.list(request, timeout=10).results) == 11


def test_a_domain_without_changes_answers_a_token_that_follows_its_first_write(client, domain):
    empty = list_changes(client.change, domain)
    assert empty.results == [] and empty.continuation_token.startswith("cn1.")
    create_policy(client, domain, "first")
    assert triples(list_changes(client.change, domain, empty.continuation_token).results) == [
        ("POLICY", "first", "CREATE")
    ]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"after": "garbage"}, "after"),
        ({"after": "ct1.5"}, "after"),
        ({"after": "cn1.0.0.0"}, "after"),
        ({"after": "cn1." + "9" * 200}, "after"),
        ({"kinds": [99]}, "kinds[0]"),
        ({"kinds": [KIND.POLICY, KIND.KIND_NONE]}, "kinds[1]"),
        ({"page": {"start": 2}}, "page.start"),
        ({"domain_id": ""}, "domain_id"),
    ],
)
def test_bad_list_requests_are_invalid_argument_naming_the_field(client, domain, fields, field):
    request = cpb.ChangeQuery(**{"domain_id": domain, **fields})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.change.list, request)
    assert field_violations(error) == [field]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"heartbeat_seconds": 61}, "heartbeat_seconds"),
        ({"heartbeat_seconds": -1}, "heartbeat_seconds"),
        ({"after": "cn1.x.0.0"}, "after"),
        ({"kinds": [7]}, "kinds[0]"),
        ({"domain_id": "bad domain"}, "domain_id"),
    ],
)
def test_bad_watch_requests_are_invalid_argument_naming_the_field(client, domain, fields, field):
    request = cpb.WatchChangesRequest(**{"domain_id": domain, **fields})
    with pytest.raises(grpc.RpcError) as info:
        list(client.change.watch(request, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert field_violations(info.value) == [field]


# -- tenancy -----------------------------------------------------------------------------------


def test_a_domain_never_sees_another_domains_changes(client, domain, other_domain):
    for i in range(3):
        create_policy(client, domain, f"mine-{i}")
    create_policy(client, other_domain, "theirs")
    theirs = list_changes(client.change, other_domain)
    assert triples(theirs.results) == [("POLICY", "theirs", "CREATE")]
    # A token does not carry its domain: the request's domain decides what is read.
    mine = list_changes(client.change, domain)
    assert [c.id for c in list_changes(client.change, other_domain, mine.results[0].continuation_token).results] == []
    # ... a position past the other domain's log is refused, revealing nothing of either
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.change.list,
        cpb.ChangeQuery(domain_id=other_domain, after=mine.continuation_token),
    )
    assert error_reason(error) == "ERROR_RESYNC_REQUIRED"
    assert "mine" not in error.details()


def test_authenticated_callers_read_their_own_domains_log_with_the_permission(secure, domain, other_domain):
    stub = change_pb2_grpc.ChangeStub(secure.channel)
    admin = secure.metadata("admin", domain, rol="DOMAIN_ADMIN")
    secure.policy.create(ppb.CreatePolicyRequest(policy_id="p", name="p", domain_id=domain), metadata=admin, timeout=10)
    secure.policy.create(
        ppb.CreatePolicyRequest(policy_id="elsewhere", name="e", domain_id=other_domain),
        metadata=secure.metadata("admin", other_domain, rol="DOMAIN_ADMIN"),
        timeout=10,
    )
    nobody = secure.metadata("nobody", domain)
    for call, request in (
        (stub.list, cpb.ChangeQuery(domain_id=domain)),
        (lambda r, **kw: list(stub.watch(r, **kw)), cpb.WatchChangesRequest(domain_id=domain)),
    ):
        error = expect_error(grpc.StatusCode.PERMISSION_DENIED, call, request, metadata=nobody)
        assert "repository.Change." in error.details()
    grant_policy(secure, domain, "reader", "managed-read-only", metadata=admin)
    reader = secure.metadata("reader", domain)
    # the body's domain_id is replaced by the caller's own
    page = stub.list(cpb.ChangeQuery(domain_id=other_domain), metadata=reader, timeout=10)
    assert [c.id for c in page.results if c.kind == KIND.POLICY] == ["p"]
    watcher = Watcher(stub, other_domain, metadata=reader, timeout=30)
    try:
        assert [c.id for c in watcher.changes(2)] == ["p", page.results[1].id]
    finally:
        watcher.cancel()


# -- holes -------------------------------------------------------------------------------------


def die_after_bump(domain: str) -> None:
    """A writer that bumped the domain's revision and died before writing its change record."""
    collection(RevisionDocument).update_one({"domain_id": domain}, {"$inc": {"revision": 1}}, upsert=True)


def test_a_hole_holds_readers_back_until_it_is_old_then_it_is_stepped_over(client, domain, monkeypatch):
    create_policy(client, domain, "before")
    die_after_bump(domain)
    create_policy(client, domain, "after")
    page = list_changes(client.change, domain)
    assert [c.id for c in page.results] == ["before"]  # never "after" before the hole is settled
    assert [c.id for c in list_changes(client.change, domain, page.continuation_token).results] == []
    service = client.app.services.change
    later = utc_now() + timedelta(seconds=service.limits.grace + 1)
    monkeypatch.setattr(service, "clock", lambda: later)
    assert [c.id for c in list_changes(client.change, domain, page.continuation_token).results] == ["after"]


def test_a_record_that_lands_late_is_delivered_in_its_place(client, domain):
    create_policy(client, domain, "first")
    die_after_bump(domain)  # revision 2: its writer is slow
    create_policy(client, domain, "third")
    page = list_changes(client.change, domain)
    assert [c.id for c in page.results] == ["first"]
    now = utc_now()
    collection(ChangeDocument).insert_one(
        {
            "domain_id": domain,
            "seq": 2,
            "changes": [{"kind": "POLICY", "id": "second", "operation": "CREATE"}],
            "transaction_id": "late",
            "created_at": now,
            "purge_at": now + timedelta(days=7),
        }
    )
    rest = list_changes(client.change, domain, page.continuation_token).results
    assert [(c.id, c.consistency_token) for c in rest] == [("second", "ct1.2"), ("third", "ct1.3")]


def test_a_watcher_waits_for_a_hole_then_steps_over_it(client, domain, watchers, monkeypatch):
    create_policy(client, domain, "before")
    watcher = watchers(client.change, domain)
    assert [c.id for c in watcher.changes(1)] == ["before"]
    watcher.ready()
    die_after_bump(domain)
    create_policy(client, domain, "after")
    time.sleep(1)
    assert all(m is None or m.HasField("heartbeat") for m in list(watcher.received.queue))
    service = client.app.services.change
    later = utc_now() + timedelta(seconds=service.limits.grace + 1)
    monkeypatch.setattr(service, "clock", lambda: later)
    assert [c.id for c in watcher.changes(1)] == ["after"]


# -- retention ---------------------------------------------------------------------------------


def backdate(domain: str, seqs: list[int], retention: float, age: float) -> None:
    """As if the records were written `age` seconds ago (expiring `retention` after that)."""
    written = utc_now() - timedelta(seconds=age)
    collection(ChangeDocument).update_many(
        {"domain_id": domain, "seq": {"$in": seqs}},
        {"$set": {"created_at": written, "purge_at": written + timedelta(seconds=retention)}},
    )


def test_a_token_older_than_the_oldest_record_kept_must_resync(client, domain, monkeypatch):
    service = client.app.services.change
    for i in range(1, 5):
        create_policy(client, domain, f"p{i}")
    # records 1 and 2 were written long ago: they expire in 30 s
    backdate(domain, [1, 2], service.limits.retention, service.limits.retention - 30)
    first = list_changes(client.change, domain, limit=1)
    assert [c.id for c in first.results] == ["p1"]
    # a minute later they are gone (the sweep; MongoDB's TTL index does the same)
    later = utc_now() + timedelta(seconds=60)
    monkeypatch.setattr(service, "clock", lambda: later)
    assert service.purge_expired() >= 2
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.change.list,
        cpb.ChangeQuery(domain_id=domain, after=first.continuation_token),
    )
    assert error_reason(error) == "ERROR_RESYNC_REQUIRED"
    assert "may have expired" in error.details() and "resync" in error.details()
    # the same for a watch
    with pytest.raises(grpc.RpcError) as info:
        list(client.change.watch(cpb.WatchChangesRequest(domain_id=domain, after=first.continuation_token), timeout=10))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # the fresh token of the error follows on from the present; an empty token from the oldest kept
    fresh = error_info(error).metadata["continuation_token"]
    create_policy(client, domain, "p5")
    assert [c.id for c in list_changes(client.change, domain, fresh).results] == ["p5"]
    assert [c.id for c in list_changes(client.change, domain).results] == ["p3", "p4", "p5"]
    # a reader that is still at the head is never refused, however old its token
    head = list_changes(client.change, domain, fresh).continuation_token
    assert list_changes(client.change, domain, head).results == []


def test_retention_with_a_short_change_retention(client, domain, server_with, monkeypatch):
    app, _, stub, channel = server_with(change_retention_seconds=60)
    policies = policy_pb2_grpc.PolicyStub(channel)
    for i in range(1, 4):
        policies.create(ppb.CreatePolicyRequest(policy_id=f"p{i}", name="p", domain_id=domain), timeout=10)
    first = list_changes(stub, domain, limit=1)
    assert [c.id for c in first.results] == ["p1"]
    # 75 s later the records (kept 60 s) are gone
    later = utc_now() + timedelta(seconds=75)
    monkeypatch.setattr(app.services.change, "clock", lambda: later)
    assert app.services.change.purge_expired() >= 3
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        stub.list,
        cpb.ChangeQuery(domain_id=domain, after=first.continuation_token),
    )
    assert error_reason(error) == "ERROR_RESYNC_REQUIRED"
    fresh = error_info(error).metadata["continuation_token"]
    assert list_changes(stub, domain, fresh).results == []
    assert list_changes(stub, domain).results == []  # nothing is kept; an empty token is the head


def test_a_watcher_sees_writes_made_after_it_started(client, domain, watchers):
    create_policy(client, domain, "old")
    watcher = watchers(client.change, domain)
    assert [c.id for c in watcher.changes(1)] == ["old"]
    ready = watcher.ready()
    assert ready.continuation_token.startswith("cn1.") and ISO.match(ready.time)
    created = create_policy(client, domain, "new")
    client.group.create(gpb.CreateGroupRequest(group_id="g", name="G", domain_id=domain), timeout=10)
    client.policy.delete(ppb.PolicyRequest(policy_id="new", domain_id=domain), timeout=10)
    seen = watcher.changes(3)
    assert triples(seen) == [("POLICY", "new", "CREATE"), ("GROUP", "g", "CREATE"), ("POLICY", "new", "DELETE")]
    assert seen[0].consistency_token == created.consistency_token
    # what a watch sends is what list answers
    listed = list_changes(client.change, domain, ready.continuation_token).results
    assert [(c.id, c.continuation_token, c.created_at) for c in seen] == [
        (c.id, c.continuation_token, c.created_at) for c in listed
    ]


def test_a_watcher_resumes_from_its_token_with_nothing_missed_or_repeated(client, domain, watchers):
    watcher = watchers(client.change, domain)
    watcher.ready()
    for i in range(3):
        create_policy(client, domain, f"a{i}")
    first = watcher.changes(2)
    watcher.cancel()  # gone after two of three
    for i in range(2):
        create_policy(client, domain, f"b{i}")  # written while nobody watched
    # heartbeats every second: the heartbeat awaited below comes without the default's wait
    again = watchers(client.change, domain, after=first[-1].continuation_token, heartbeat=1)
    create_policy(client, domain, "c0")
    second = again.changes(4)
    assert [c.id for c in first + second] == ["a0", "a1", "a2", "b0", "b1", "c0"]
    # a heartbeat's token resumes too
    beat = again.ready()
    create_policy(client, domain, "d0")
    again.cancel()
    assert [c.id for c in watchers(client.change, domain, after=beat.continuation_token).changes(1)] == ["d0"]


def test_an_idle_watcher_gets_heartbeats(client, domain, watchers):
    watcher = watchers(client.change, domain, heartbeat=1)
    first = watcher.ready()
    started = time.monotonic()
    beats = [watcher.heartbeat(timeout=5) for _ in range(2)]
    assert 1.5 <= time.monotonic() - started < 5
    assert all(b.continuation_token == first.continuation_token for b in beats)


def test_a_watch_filters_kinds(client, domain, watchers):
    watcher = watchers(client.change, domain, kinds=[KIND.GROUP])
    watcher.ready()
    create_policy(client, domain, "p")
    client.group.create(gpb.CreateGroupRequest(group_id="g", name="G", domain_id=domain), timeout=10)
    assert triples(watcher.changes(1)) == [("GROUP", "g", "CREATE")]


def test_a_watch_ends_at_its_deadline(client, domain):
    watcher = Watcher(client.change, domain, timeout=1.5)
    watcher.ready()
    error = watcher.ended(timeout=10)
    assert error is not None and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_watches_per_process_and_per_domain_are_bounded(client, domain, other_domain, server_with):
    app, _, stub, _ = server_with(max_workers=4)  # two watches, one per domain
    assert (app.services.change.slots.per_process, app.services.change.slots.per_domain) == (2, 1)
    first = Watcher(stub, domain)
    first.ready()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.watch(cpb.WatchChangesRequest(domain_id=domain), timeout=10))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ERROR_TOO_MANY_WATCHES" in info.value.details()
    second = Watcher(stub, other_domain)
    second.ready()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.watch(cpb.WatchChangesRequest(domain_id="domain-third"), timeout=10))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # unary calls still have their workers
    assert list_changes(stub, domain).results == []
    first.cancel()
    deadline = time.monotonic() + 10
    while app.services.change.slots.running() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    Watcher(stub, domain).ready()  # the slot is free again
    second.cancel()


def test_a_watcher_that_stops_reading_is_disconnected(client, domain, server_with):
    app, server, _, _ = server_with()
    app.change_api.stalls.stall_seconds = 1.0
    # one write of 5,000 changes (through the revision manager: the write path is not the point)
    client.app.managers.revision.bump(
        domain, [{"kind": "ASSIGNMENT", "id": f"asg-{i:012d}", "operation": "CREATE"} for i in range(5000)]
    )
    # A small receive window (no BDP growth): the server's sends block once it is full.
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.http2.bdp_probe", 0)])
    try:
        call = change_pb2_grpc.ChangeStub(channel).watch(cpb.WatchChangesRequest(domain_id=domain), timeout=60)
        received = [next(call)]
        time.sleep(3)  # reads nothing meanwhile
        with pytest.raises(grpc.RpcError) as info:
            for message in call:
                received.append(message)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ERROR_SLOW_CONSUMER" in info.value.details() and "reconnect" in info.value.details()
        assert 1 < len(received) < 5000
        # what it got is a prefix of the log: it can resume from its last token
        resumed, _ = everything(client.change, domain, after=received[-1].change.continuation_token)
        assert [m.change.id for m in received] + [c.id for c in resumed] == [f"asg-{i:012d}" for i in range(5000)]
    finally:
        channel.close()
    deadline = time.monotonic() + 10
    while app.services.change.slots.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.services.change.slots.running() == 0


def test_a_watch_ends_when_its_server_stops_without_holding_the_shutdown(client, domain, server_with):
    app, server, stub, _ = server_with(shutdown_grace_seconds=30)
    watcher = Watcher(stub, domain)
    watcher.ready()
    started = time.monotonic()
    server.stop(grace=30)
    assert time.monotonic() - started < 5  # not the grace: the watch ended at once
    error = watcher.ended()
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "reconnect" in error.details()
    assert app.services.change.slots.running() == 0
    # the servers of other applications (the session's) still watch
    other = Watcher(client.change, domain)
    other.ready()
    other.cancel()


def test_starting_a_watch_counts_against_the_domains_rate_limit(client, domain, server_with):
    _, _, stub, _ = server_with(rate_limit_domain_per_second=0.01, rate_limit_domain_burst=1)
    watcher = Watcher(stub, domain, heartbeat=1)
    watcher.ready()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.watch(cpb.WatchChangesRequest(domain_id=domain), timeout=10))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(info.value) == "ERROR_RATE_LIMITED"
    watcher.heartbeat(timeout=10)  # the running watch is not a call: it goes on
    watcher.cancel()
