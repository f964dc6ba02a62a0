"""Groups and roles stay consistent with the assignments that name them: a rename is seen by
checks all at once, and sets that only assignments named get documents at start."""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import json_format

from helpers import create_sets, expect_error, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2, policy_pb2, role_pb2
from policyhub.service.context import utc_now
from policyhub.service.subject_set_service import adopt_named_sets

MEMBERS = 300
RENAMES = 12


def question(domain: str, user: str) -> apb.CheckRequest:
    return parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": user}, "action": "a.read", "resource": "r/1", "domain_id": domain},
    )


def setup_group(client, domain: str) -> None:
    """u-0..u-N in `inner`, `inner` in `team`, `team` holds `reader`; `direct` is in team too."""
    client.policy.create(
        policy_pb2.CreatePolicyRequest(policy_id="reader", name="r", domain_id=domain, permissions=["a.read"]),
        timeout=10,
    )
    create_sets(client, domain, groups=["team", "inner"])
    client.group.add_users(
        group_pb2.GroupUsersRequest(group_id="inner", user_ids=[f"u-{i}" for i in range(MEMBERS)], domain_id=domain),
        timeout=30,
    )
    client.group.add_users(group_pb2.GroupUsersRequest(group_id="team", user_ids=["direct"], domain_id=domain))
    for subject, grant in ((("GROUP", "inner"), ("GROUP", "team")), (("GROUP", "team"), ("POLICY", "reader"))):
        client.assignment.create(
            parse(
                apb.CreateAssignmentRequest,
                {
                    "subject": {"type": subject[0], "id": subject[1]},
                    "grant": {"type": grant[0], "id": grant[1]},
                    "domain_id": domain,
                },
            ),
            timeout=10,
        )


def hammer(check, requests, stop: threading.Event) -> list[str]:
    """Asks the questions over and over until stopped; returns every answer that was not ALLOW."""
    wrong = []
    while not stop.is_set():
        for request in requests:
            decision = check(request, timeout=30).decision
            if decision != apb.CheckResult.ALLOW:
                wrong.append(f"{request.subject.id}: {apb.CheckResult.Decision.Name(decision)}")
    return wrong


def churn(client, domain: str, stop: threading.Event) -> None:
    turn = 0
    while not stop.is_set():
        client.policy.create(
            policy_pb2.CreatePolicyRequest(policy_id=f"noise-{turn}", name="n", domain_id=domain), timeout=30
        )
        turn += 1


def renaming_while_checking(client, check, domain: str, rename) -> list[str]:
    requests = [question(domain, "direct"), question(domain, "u-0"), question(domain, f"u-{MEMBERS - 1}")]
    for request in requests:
        assert check(request, timeout=10).decision == apb.CheckResult.ALLOW
    stop = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        checkers = [pool.submit(hammer, check, requests, stop) for _ in range(2)]
        # Unrelated writes keep the checkers rebuilding their index, also while a rename runs.
        pool.submit(churn, client, domain, stop)
        try:
            for turn in range(RENAMES):
                rename(turn)
        finally:
            stop.set()
        return [answer for checker in checkers for answer in checker.result()]


def test_a_group_rename_is_never_seen_half_done(client, domain):
    setup_group(client, domain)
    names = ["team", "crew"]

    def rename(turn):
        client.group.update(
            group_pb2.UpdateGroupRequest(
                group_id=names[turn % 2], new_group_id=names[(turn + 1) % 2], domain_id=domain
            ),
            timeout=30,
        )

    assert renaming_while_checking(client, client.assignment.check, domain, rename) == []
    via = client.assignment.check(question(domain, "u-0"), timeout=10).via
    assert [s.id for s in via] == ["u-0", "inner", names[RENAMES % 2]]


def test_a_policy_rename_is_never_seen_half_done(client, domain):
    setup_group(client, domain)
    names = ["reader", "viewer"]

    def rename(turn):
        client.policy.update(
            parse(
                policy_pb2.UpdatePolicyRequest,
                {"policy_id": names[turn % 2], "new_policy_id": names[(turn + 1) % 2], "domain_id": domain},
            ),
            timeout=30,
        )

    assert renaming_while_checking(client, client.assignment.check, domain, rename) == []


def test_groups_and_roles_only_assignments_named_get_documents_at_start(client, domain, caplog):
    # As an earlier version stored them: ids in assignments, no documents, looser id rules.
    assignments = client.app.managers.assignment
    legacy = {"group": "Team_A.legacy", "role": "Ops"}
    for subject_type, subject_id, grant_type, grant_id in (
        ("USER", "ann", "GROUP", legacy["group"]),
        ("GROUP", legacy["group"], "ROLE", legacy["role"]),
    ):
        assignments.create(
            {
                "assignment_id": f"asg-{uuid.uuid4().hex[:16]}",
                "subject_type": subject_type,
                "subject_id": subject_id,
                "grant_type": grant_type,
                "grant_id": grant_id,
                "domain_id": domain,
                "created_at": utc_now(),
            }
        )
    services = [client.app.services.group, client.app.services.role]
    with caplog.at_level(logging.INFO, logger="policyhub.service.subject_set_service"):
        created = adopt_named_sets(assignments, services)
    assert created["GROUP"] >= 1 and created["ROLE"] >= 1
    assert any("only assignments named" in record.getMessage() for record in caplog.records)
    assert adopt_named_sets(assignments, services) == {"GROUP": 0, "ROLE": 0}  # idempotent

    group = client.group.get(group_pb2.GroupRequest(group_id=legacy["group"], domain_id=domain), timeout=10)
    assert (group.name, group.member_count) == (legacy["group"], 1)
    users = client.group.list_users(group_pb2.ListGroupUsersRequest(group_id=legacy["group"], domain_id=domain))
    assert [m.user_id for m in users.results] == ["ann"]
    # Listed like any other, and usable again: a new member through the API.
    listed = client.group.list(group_pb2.GroupQuery(domain_id=domain), timeout=10)
    assert [g.group_id for g in listed.results] == [legacy["group"]]
    client.group.add_users(group_pb2.GroupUsersRequest(group_id=legacy["group"], user_ids=["bo"], domain_id=domain))
    role = json_format.MessageToDict(
        client.role.get(role_pb2.RoleRequest(role_id=legacy["role"], domain_id=domain), timeout=10),
        preserving_proto_field_name=True,
    )
    assert role["name"] == legacy["role"] and role["is_bound"] is True
    # A new group still follows the strict id rule.
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.group.create,
        group_pb2.CreateGroupRequest(group_id="Team_B", name="b", domain_id=domain),
    )
