"""The services in process (no gRPC), as the started application wires them, on the embedded store."""

from __future__ import annotations

import pytest

from policyhub.errors import Aborted, NotFound, PermissionDenied, RequiredParameter
from policyhub.service.context import ANONYMOUS, RequestContext


def context(domain, caller_id="root", role_type="SYSTEM"):
    return RequestContext(
        domain_id=domain,
        caller_type="USER",
        caller_id=caller_id,
        role_type=role_type,
        transaction_id="tx-test",
        authenticated=True,
    )


@pytest.fixture
def services(embedded_app):
    return embedded_app.services


def create(services, ctx, policy_id="p", actions=("a.read",)):
    return services.policy.create(
        ctx,
        {
            "policy_id": policy_id,
            "name": policy_id,
            "statements": [{"effect": "ALLOW", "actions": list(actions), "resources": ["*"]}],
        },
    )


def test_policy_create_update_delete(services, domain):
    ctx = context(domain)
    created = create(services, ctx)
    updated = services.policy.update(ctx, {"policy_id": "p", "name": "renamed", "etag": created["etag"]})
    assert updated["name"] == "renamed" and updated["version"] == 2
    with pytest.raises(Aborted):
        services.policy.update(ctx, {"policy_id": "p", "name": "stale", "etag": created["etag"]})
    services.policy_lifecycle.delete(ctx, {"policy_id": "p"})
    with pytest.raises(NotFound):
        services.policy.get(ctx, {"policy_id": "p"})
    audited = {entry["method"] for entry in services.audit.list(ctx, {})[0]}
    assert audited == {"repository.Policy.create", "repository.Policy.update", "repository.Policy.delete"}


def test_a_non_admin_cannot_create_a_policy_giving_more_than_it_holds(services, domain):
    admin = context(domain, "admin", "DOMAIN_ADMIN")
    create(services, admin, "creator", actions=("repository.Policy.create",))
    services.assignment.create(
        admin, {"subject": {"type": "USER", "id": "bob"}, "grant": {"type": "POLICY", "id": "creator"}}
    )
    bob = context(domain, "bob", "USER")
    with pytest.raises(PermissionDenied):
        create(services, bob, "escalated", actions=("*",))
    with pytest.raises(NotFound):
        services.policy.get(admin, {"policy_id": "escalated"})


def test_assignment_add_reports_each_pair(services, domain):
    ctx = context(domain)
    create(services, ctx)
    params = {"grants": [{"type": "POLICY", "id": "p"}], "subject_type": "USER", "subject_ids": ["u1"]}
    first = services.assignment.add(ctx, params)
    assert [r["outcome"] for r in first["results"]] == ["CREATED"] and first["changed_count"] == 1
    again = services.assignment.add(ctx, {**params, "subject_ids": ["u1", "u2"]})
    assert [r["outcome"] for r in again["results"]] == ["ALREADY_EXISTS", "CREATED"]
    assert again["results"][0]["assignment_id"] == first["results"][0]["assignment_id"]
    assert again["changed_count"] == 1


def test_a_check_about_the_caller_needs_no_permission_only_an_authenticated_caller(services, domain):
    carol = context(domain, "carol", "USER")
    question = {"action": "a.read", "resource": "r"}
    assert not services.authorization.check(carol, question).decision.allowed
    itself = {**question, "subject": {"type": "USER", "id": "carol"}}
    assert not services.authorization.check(carol, itself).decision.allowed
    with pytest.raises(PermissionDenied):
        services.authorization.check(carol, {**question, "subject": {"type": "USER", "id": "dave"}})
    # Without authentication (development mode's stand-in, an anonymous reader) nobody is "the
    # caller": the subject stays required, and an anonymous reader may ask about nobody.
    developer = RequestContext(
        domain_id=domain,
        caller_type="USER",
        caller_id="developer",
        role_type="SYSTEM",
        transaction_id="tx-test",
        authenticated=False,
    )
    anonymous = RequestContext(
        domain_id=domain,
        caller_type=ANONYMOUS,
        caller_id="anonymous",
        role_type=ANONYMOUS,
        transaction_id="tx-test",
        authenticated=False,
    )
    for ctx in (developer, anonymous):
        with pytest.raises(RequiredParameter) as info:
            services.authorization.check(ctx, question)
        assert info.value.field == "subject"
        with pytest.raises(RequiredParameter) as info:
            services.authorization.batch_check(ctx, {"items": [question]})
        assert info.value.field == "items[0].subject"
    with pytest.raises(PermissionDenied):
        services.authorization.check(anonymous, {**question, "subject": {"type": "USER", "id": "anonymous"}})
