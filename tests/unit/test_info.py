"""policyhub.api.info: records <-> messages in both directions, the enum fallback, the time codec."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, policy_pb2, repository_pb2
from policyhub.api.info.assignment import to_assignment_info
from policyhub.api.info.common import enum_name, from_iso, from_stat_struct, to_iso, to_stat_struct
from policyhub.api.info.policy import from_policies_info, from_policy_info, to_policy_info
from policyhub.api.info.repository import to_repository_info

CREATED = datetime(2024, 5, 1, 10, 20, 30, 456000, tzinfo=timezone.utc)
UPDATED = CREATED + timedelta(days=1)


def a_policy(**changes) -> dict:
    record = {
        "policy_id": "p",
        "name": "n",
        "state": "DISABLED",
        "permissions": ["a.*"],
        "labels": ["l", 2],
        "tags": {"k": "v", "nested": {"x": [1, True, None]}},
        "project_id": "project-1",
        "domain_id": "domain-1",
        "created_at": CREATED,
        "updated_at": UPDATED,
        "description": "d",
        "statements": [
            {"effect": "DENY", "actions": ["x"], "resources": ["r/*"], "conditions": {}},
            {"effect": "ALLOW", "actions": ["*"], "resources": ["*"], "conditions": {"ip": {"in": ["10.0.0.0/8"]}}},
        ],
        "version": 3,
        "etag": "e",
        "is_managed": False,
    }
    record.update(changes)
    return record


# -- round trips -------------------------------------------------------------------------------


def test_policy_round_trip():
    record = a_policy()
    assert from_policy_info(to_policy_info(record)) == record
    deleted = a_policy(state="DELETED", deleted_at=UPDATED, purge_at=UPDATED + timedelta(days=30))
    assert from_policy_info(to_policy_info(deleted)) == deleted


def test_policy_round_trip_through_the_wire_and_a_list():
    records = [a_policy(), a_policy(policy_id="q", labels=[], tags={}, statements=[])]
    reply = policy_pb2.PoliciesInfo(results=[to_policy_info(r) for r in records], total_count=7)
    assert from_policies_info(policy_pb2.PoliciesInfo.FromString(reply.SerializeToString())) == (records, 7)


def test_policy_info_says_what_records_leave_unsaid():
    info = to_policy_info(
        {
            "policy_id": "p",
            "is_managed": True,
            "domain_id": "ignored",
            "statements": [{}],
            "repository_info": {"repository_id": "r", "name": "local"},
        }
    )
    assert info.state == policy_pb2.PolicyInfo.NONE and info.domain_id == ""  # managed: no domain
    assert info.statements[0].effect == policy_pb2.Statement.EFFECT_NONE
    assert info.repository_info.repository_id == "r" and info.created_at == ""
    assert to_policy_info(a_policy(), only=["policy_id", "name"]) == policy_pb2.PolicyInfo(policy_id="p", name="n")


def test_policy_record_from_a_remote_message():
    info = policy_pb2.PolicyInfo(
        policy_id="p",
        name="n",
        state=policy_pb2.PolicyInfo.DISABLED,
        permissions=["a.*"],
        created_at="2024-05-01T10:20:30.456Z",
        updated_at="garbage",
        statements=[policy_pb2.Statement(effect=policy_pb2.Statement.DENY, actions=["x"], resources=["r/*"])],
        version=3,
        etag="e",
    )
    info.labels.extend(["l"])
    info.tags.update({"k": "v"})
    info.repository_info.repository_id = "the remote's own"
    record = from_policy_info(info)
    assert record["state"] == "DISABLED" and record["labels"] == ["l"] and record["tags"] == {"k": "v"}
    assert record["created_at"].isoformat() == "2024-05-01T10:20:30.456000+00:00"
    assert record["updated_at"] is None and "deleted_at" not in record and "repository_info" not in record
    assert record["statements"] == [{"effect": "DENY", "actions": ["x"], "resources": ["r/*"], "conditions": {}}]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_remote_policy_with_non_finite_numbers_does_not_read(bad):
    info = policy_pb2.PolicyInfo(policy_id="p")
    info.tags.update({"x": bad})
    with pytest.raises(ValueError):
        from_policy_info(info)


def test_repository_info():
    record = {
        "repository_id": "repo-1",
        "name": "upstream",
        "repository_type": "remote",
        "endpoint": "grpc://remote:50051",
        "created_at": CREATED,
    }
    info = to_repository_info(record)
    assert (info.repository_id, info.name, info.repository_type, info.endpoint, info.created_at) == (
        "repo-1",
        "upstream",
        "remote",
        "grpc://remote:50051",
        "2024-05-01T10:20:30.456Z",
    )
    assert to_repository_info(record, only=["name"]) == repository_pb2.RepositoryInfo(name="upstream")


@pytest.mark.parametrize("expires_at", [None, UPDATED])
def test_assignment_info(expires_at):
    record = {
        "assignment_id": "a-1",
        "subject_type": "GROUP",
        "subject_id": "g",
        "grant_type": "POLICY",
        "grant_id": "p",
        "expires_at": expires_at,
        "labels": ["l"],
        "tags": {"k": "v"},
        "domain_id": "domain-1",
        "created_at": CREATED,
    }
    info = to_assignment_info(record)
    assert (info.subject.type, info.subject.id, info.grant.type, info.grant.id) == (
        assignment_pb2.Subject.GROUP,
        "g",
        assignment_pb2.Grant.POLICY,
        "p",
    )
    assert info.expires_at == ("" if expires_at is None else "2024-05-02T10:20:30.456Z")
    assert list(info.labels) == ["l"] and dict(info.tags) == {"k": "v"} and info.domain_id == "domain-1"


def test_assignment_projected_to_one_half_of_a_pair():
    info = to_assignment_info({"assignment_id": "a-1", "grant_id": "p"}, only=["assignment_id", "grant"])
    assert not info.HasField("subject") and info.grant == assignment_pb2.Grant(type="TYPE_NONE", id="p")


def test_stat_round_trip():
    assert from_stat_struct(to_stat_struct([{"name": "n", "count": 3}], 1)) == ([{"name": "n", "count": 3}], 1)
    assert from_stat_struct(to_stat_struct([], None)) == ([], None)


# -- enum names --------------------------------------------------------------------------------


def test_enum_name_of_a_known_number():
    assert enum_name(policy_pb2.Statement.Effect, policy_pb2.Statement.DENY) == "DENY"
    assert enum_name(policy_pb2.Statement.Effect, policy_pb2.Statement.DENY, lenient=True) == "DENY"


def test_unknown_enum_number_in_a_request_is_its_digits_for_validation_to_refuse():
    assert enum_name(policy_pb2.Statement.Effect, 99) == "99"
    assert enum_name(assignment_pb2.Subject.Type, 42) == "42"


def test_unknown_enum_number_in_an_answer_is_the_zero_value():
    assert enum_name(policy_pb2.PolicyInfo.State, 99, lenient=True) == "NONE"
    info = policy_pb2.PolicyInfo(policy_id="p", state=99, statements=[policy_pb2.Statement(effect=77)])
    record = from_policy_info(policy_pb2.PolicyInfo.FromString(info.SerializeToString()))
    assert record["state"] == "NONE" and record["statements"][0]["effect"] == "EFFECT_NONE"


# -- time codec --------------------------------------------------------------------------------


def test_to_iso_is_utc_with_milliseconds_and_z():
    assert to_iso(None) == ""
    assert to_iso(datetime(2024, 5, 1, 10, 20, 30, 456789, tzinfo=timezone.utc)) == "2024-05-01T10:20:30.456Z"
    assert to_iso(datetime(2024, 5, 1, 10, 20, 30)) == "2024-05-01T10:20:30.000Z"  # naive is UTC
    plus_two = timezone(timedelta(hours=2))
    assert to_iso(datetime(2024, 5, 1, 1, 0, 0, tzinfo=plus_two)) == "2024-04-30T23:00:00.000Z"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-05-01T10:20:30.456Z", CREATED),
        ("2024-05-01T12:20:30.456+02:00", CREATED),
        ("2024-05-01T10:20:30.456", CREATED),  # no offset: UTC
        ("", None),
        ("garbage", None),
        ("2024-13-01T00:00:00Z", None),
    ],
)
def test_from_iso(text, expected):
    value = from_iso(text)
    assert value == expected
    assert value is None or value.tzinfo == timezone.utc


def test_time_round_trip_keeps_milliseconds():
    assert from_iso(to_iso(CREATED)) == CREATED
    assert from_iso(to_iso(CREATED.replace(microsecond=456999))) == CREATED
