"""Statement conditions through the public API: written and refused with the path of the
fault, evaluated against the context of check, batch_check and list_authorized_resources."""

from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, expect_error, field_violations, grant_policy, parse, without_token
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2

OFFICE = {"all": [{"key": "request.ip", "operator": "ip_address", "value": ["10.0.0.0/8", "fd00::/8"]}]}
PROD = {"any": [{"key": "resource.tags.env", "operator": "string_equals", "value": "prod"}]}


def create_policy(client, domain, policy_id, statements):
    return client.policy.create(
        parse(
            policy_pb2.CreatePolicyRequest,
            {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "statements": statements},
        ),
        timeout=10,
    )


def check(client, domain, user, action="doc.read", resource="doc/secret-1", context=None):
    body = {"subject": {"type": "USER", "id": user}, "action": action, "resource": resource, "domain_id": domain}
    if context is not None:
        body["context"] = context
    return as_dict(client.assignment.check(parse(apb.CheckRequest, body), timeout=10))


@pytest.fixture
def office_reader(client, domain):
    """ann may read docs from the office network, but not secret production docs without MFA."""
    create_policy(
        client,
        domain,
        "office-read",
        [
            {"effect": "ALLOW", "actions": ["doc.read"], "resources": ["doc/*"], "conditions": OFFICE},
            {
                "effect": "DENY",
                "actions": ["doc.read"],
                "resources": ["doc/secret-*"],
                "conditions": {
                    "all": [PROD, {"key": "request.mfa", "operator": "bool", "value": False}],
                },
            },
        ],
    )
    grant_policy(client, domain, "ann", "office-read")
    return "ann"


def test_a_true_condition_applies_its_statement(client, domain, office_reader):
    result = check(
        client, domain, office_reader, context={"request": {"ip": "10.1.2.3"}, "resource": {"tags": {"env": "dev"}}}
    )
    assert result["decision"] == "ALLOW" and result["policy_id"] == "office-read"


def test_a_false_condition_drops_its_statement(client, domain, office_reader):
    result = check(client, domain, office_reader, context={"request": {"ip": "192.168.1.1"}})
    assert (result["decision"], result["reason"]) == ("DENY", "NO_MATCHING_ALLOW")
    assert "missing_context" not in result


def test_missing_context_is_conditional_and_names_the_keys(client, domain, office_reader):
    result = check(client, domain, office_reader)
    assert (result["decision"], result["reason"]) == ("CONDITIONAL", "MISSING_CONTEXT")
    # every key the undecided statements need: the allow's, and both of the deny's
    assert result["missing_context"] == ["request.ip", "request.mfa", "resource.tags.env"]
    # The allow is settled, the deny is not: still CONDITIONAL, naming what the deny needs.
    result = check(client, domain, office_reader, context={"request.ip": "10.0.0.1", "resource.tags.env": "prod"})
    assert (result["decision"], result["missing_context"]) == ("CONDITIONAL", ["request.mfa"])
    result = check(
        client,
        domain,
        office_reader,
        context={"request": {"ip": "10.0.0.1", "mfa": False}, "resource.tags.env": "prod"},
    )
    assert (result["decision"], result["reason"], result["statement_index"]) == ("DENY", "EXPLICIT_DENY", 1)


def test_batch_check_merges_the_item_context_over_the_shared_one(client, domain, office_reader):
    request = parse(
        apb.BatchCheckRequest,
        {
            "domain_id": domain,
            "context": {"request": {"ip": "10.9.9.9"}, "resource": {"tags": {"env": "dev"}}},
            "items": [
                {"subject": {"type": "USER", "id": office_reader}, "action": "doc.read", "resource": "doc/secret-1"},
                {
                    "subject": {"type": "USER", "id": office_reader},
                    "action": "doc.read",
                    "resource": "doc/secret-2",
                    "context": {"request": {"ip": "8.8.8.8"}},
                },
                {
                    "subject": {"type": "USER", "id": office_reader},
                    "action": "doc.read",
                    "resource": "doc/secret-3",
                    "context": {"resource.tags.env": "prod"},
                },
            ],
        },
    )
    results = as_dict(client.assignment.batch_check(request, timeout=10))["results"]
    assert [r["decision"] for r in results] == ["ALLOW", "DENY", "CONDITIONAL"]
    assert results[2]["missing_context"] == ["request.mfa"]


def test_time_windows_read_the_request_time(client, domain):
    create_policy(
        client,
        domain,
        "business-hours",
        [
            {
                "effect": "ALLOW",
                "actions": ["doc.read"],
                "resources": ["*"],
                "conditions": {
                    "all": [
                        {
                            "operator": "time_of_day",
                            "value": {"start": "09:00", "end": "17:00", "time_zone": "Europe/Paris"},
                        },
                        {
                            "operator": "day_of_week",
                            "value": {"days": ["mon", "tue", "wed", "thu", "fri"], "time_zone": "Europe/Paris"},
                        },
                    ]
                },
            }
        ],
    )
    grant_policy(client, domain, "bo", "business-hours")
    # A Monday, 10:30 in Paris (09:30 UTC, winter) / 18:30 in Paris / a Sunday.
    assert check(client, domain, "bo", context={"request": {"time": "2026-11-30T09:30:00Z"}})["decision"] == "ALLOW"
    assert check(client, domain, "bo", context={"request": {"time": "2026-11-30T17:30:00Z"}})["decision"] == "DENY"
    assert check(client, domain, "bo", context={"request": {"time": "2026-11-29T09:30:00Z"}})["decision"] == "DENY"
    # Without request.time the server's clock decides: never CONDITIONAL.
    assert check(client, domain, "bo")["decision"] in ("ALLOW", "DENY")


def test_list_authorized_resources_follows_the_context(client, domain, office_reader):
    def listing(context=None):
        body = {"subject": {"type": "USER", "id": office_reader}, "domain_id": domain}
        if context is not None:
            body["context"] = context
        return without_token(
            as_dict(
                client.assignment.list_authorized_resources(parse(apb.ListAuthorizedResourcesRequest, body), timeout=10)
            )
        )

    assert listing() == {"missing_context": ["request.ip", "request.mfa", "resource.tags.env"]}
    inside = listing({"request": {"ip": "10.1.1.1"}})
    # the undecided deny is carved out: what is listed is what check answers ALLOW for
    assert inside["results"] == [
        {
            "resource": "doc/*",
            "actions": ["doc.read"],
            "exceptions": [{"resource": "doc/secret-*", "actions": ["doc.read"]}],
        }
    ]
    assert inside["missing_context"] == ["request.mfa", "resource.tags.env"]
    settled = listing({"request": {"ip": "10.1.1.1", "mfa": True}, "resource": {"tags": {"env": "prod"}}})
    assert settled["results"] == [{"resource": "doc/*", "actions": ["doc.read"]}]
    assert "missing_context" not in settled


def test_effective_permissions_show_the_conditions(client, domain, office_reader):
    found = as_dict(
        client.assignment.effective_permissions(
            parse(
                apb.EffectivePermissionsRequest, {"subject": {"type": "USER", "id": office_reader}, "domain_id": domain}
            ),
            timeout=10,
        )
    )
    assert found["results"][0]["statement"]["conditions"] == OFFICE
    stored = as_dict(
        client.policy.get(policy_pb2.GetRepositoryPolicyRequest(policy_id="office-read", domain_id=domain))
    )
    assert stored["statements"][0]["conditions"] == OFFICE


BAD_CONDITIONS = [
    ({"some": []}, "statements[0].conditions"),
    ({"all": []}, "statements[0].conditions.all"),
    ({"all": [{"key": "k", "operator": "regex", "value": "x"}]}, "statements[0].conditions.all[0].operator"),
    ({"all": [{"operator": "string_equals", "value": "x"}]}, "statements[0].conditions.all[0].key"),
    ({"all": [{"key": "k", "operator": "string_equals"}]}, "statements[0].conditions.all[0].value"),
    ({"all": [{"key": "k", "operator": "numeric_lt", "value": "ten"}]}, "statements[0].conditions.all[0].value"),
    (
        {"all": [{"key": "k", "operator": "ip_address", "value": ["10.0.0.0/8", "10.300.0.0/16"]}]},
        "statements[0].conditions.all[0].value[1]",
    ),
    ({"all": [{"key": "k", "operator": "date_gt", "value": "yesterday"}]}, "statements[0].conditions.all[0].value"),
    (
        {
            "any": [
                {
                    "all": [
                        {
                            "operator": "time_of_day",
                            "value": {"start": "09:00", "end": "17:00", "time_zone": "Mars/Olympus"},
                        }
                    ]
                }
            ]
        },
        "statements[0].conditions.any[0].all[0].value.time_zone",
    ),
    (
        {"all": [{"operator": "day_of_week", "value": {"days": ["someday"]}}]},
        "statements[0].conditions.all[0].value.days[0]",
    ),
    ({"all": [{"key": "k\u202e", "operator": "bool", "value": True}]}, "statements[0].conditions.all[0].key"),
]


@pytest.mark.parametrize(("conditions", "field"), BAD_CONDITIONS)
def test_bad_conditions_are_refused_with_the_path_of_the_fault(client, domain, conditions, field):
    statement = {"effect": "ALLOW", "actions": ["a"], "resources": ["*"], "conditions": conditions}
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.create,
        parse(
            policy_pb2.CreatePolicyRequest,
            {"policy_id": "p", "name": "p", "domain_id": domain, "statements": [statement]},
        ),
    )
    assert field_violations(error) == [field]
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        policy_pb2.GetRepositoryPolicyRequest(policy_id="p", domain_id=domain),
    )


def test_bad_context_is_invalid_argument(client, domain):
    body = {"subject": {"type": "USER", "id": "x"}, "action": "a", "resource": "r", "domain_id": domain}
    too_big = {f"blob{i}": "x" * 2_000 for i in range(10)}
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.assignment.check, parse(apb.CheckRequest, {**body, "context": too_big})
    )
    assert field_violations(error) == ["context"]
    many = {f"k{i}": i for i in range(300)}
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.batch_check,
        parse(
            apb.BatchCheckRequest,
            {"domain_id": domain, "items": [{**{k: v for k, v in body.items() if k != "domain_id"}, "context": many}]},
        ),
    )
    assert field_violations(error) == ["items[0].context"]


def test_the_callers_own_conditions_are_evaluated_and_never_given_away(secure, domain):
    """A conditional allow lets its holder act while the condition holds (the guard evaluates
    it at the time of the call), but counts for nothing it could hand out: the escalation rule
    only counts statements that apply whatever the context."""
    admin = secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    always = {"all": [{"operator": "time_of_day", "value": {"start": "00:00", "end": "24:00"}}]}
    never = {
        "all": [{"operator": "date_range", "value": {"start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"}}]
    }
    for policy_id, conditions in (("ops-now", always), ("ops-never", never)):
        statement = {
            "effect": "ALLOW",
            "actions": ["repository.Policy.*", "doc.read"],
            "resources": ["*"],
            "conditions": conditions,
        }
        secure.policy.create(
            parse(
                policy_pb2.CreatePolicyRequest,
                {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "statements": [statement]},
            ),
            metadata=admin,
            timeout=10,
        )
    grant_policy(secure, domain, "cara", "ops-now", admin)
    grant_policy(secure, domain, "dan", "ops-never", admin)

    def request(policy_id, statements):
        body = {"policy_id": policy_id, "name": policy_id, "domain_id": domain, "statements": statements}
        return parse(policy_pb2.CreatePolicyRequest, body)

    deny_only = [{"effect": "DENY", "actions": ["nothing.at.all"], "resources": ["x"]}]
    cara, dan = secure.metadata("cara", did=domain), secure.metadata("dan", did=domain)
    secure.policy.create(request("caras", deny_only), metadata=cara, timeout=10)
    expect_error(grpc.StatusCode.PERMISSION_DENIED, secure.policy.create, request("dans", deny_only), metadata=dan)
    reader = [{"effect": "ALLOW", "actions": ["doc.read"], "resources": ["*"]}]
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED, secure.policy.create, request("reader", reader), metadata=cara
    )
    assert "does not hold itself" in error.details()
