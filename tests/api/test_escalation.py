"""The escalation rule through the authenticated API: a caller other than SYSTEM or
DOMAIN_ADMIN may only give (by a policy write or a grant) what it already holds, and may only
lift a deny it would itself be allowed past; `repository.Policy.escalate` and
`repository.Assignment.bind`, granted by name, lift the rule."""

from __future__ import annotations

import uuid

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import create_sets, expect_error, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb

OPERATOR = {"effect": "ALLOW", "actions": ["repository.Policy.*", "repository.Assignment.*"], "resources": ["*"]}


def admin(secure, domain):
    return secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")


def user(secure, domain, name):
    return secure.metadata(name, did=domain)


def create(secure, domain, metadata, policy_id, statements=(), permissions=()):
    return secure.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {
                "policy_id": policy_id,
                "name": policy_id,
                "domain_id": domain,
                "statements": list(statements),
                "permissions": list(permissions),
            },
        ),
        metadata=metadata,
        timeout=10,
    )


def grant(secure, domain, metadata, subject, grant_type, grant_id, subject_type="USER"):
    return secure.assignment.create(
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": subject_type, "id": subject},
                "grant": {"type": grant_type, "id": grant_id},
                "domain_id": domain,
            },
        ),
        metadata=metadata,
        timeout=10,
    )


def assignments_request(domain, subject, grant_type, grant_id, subject_type="USER"):
    return parse(
        apb.AssignmentsRequest,
        {
            "grants": [{"type": grant_type, "id": grant_id}],
            "subject_type": subject_type,
            "subject_ids": [subject],
            "domain_id": domain,
        },
    )


def allowed(secure, domain, subject, action, resource) -> bool:
    result = secure.assignment.check(
        parse(
            apb.CheckRequest,
            {"subject": {"type": "USER", "id": subject}, "action": action, "resource": resource, "domain_id": domain},
        ),
        metadata=admin(secure, domain),
        timeout=10,
    )
    return result.decision == apb.CheckResult.ALLOW


def test_scoped_policy_admin_cannot_create_a_wider_policy_or_bind_it(secure, domain):
    """Allowed Policy.* and Assignment.* on policy/team-* only: no `team-root` with `*`."""
    create(
        secure,
        domain,
        admin(secure, domain),
        "scoped",
        statements=[
            {
                "effect": "ALLOW",
                "actions": ["repository.Policy.*", "repository.Assignment.*"],
                "resources": ["policy/team-*"],
            }
        ],
    )
    grant(secure, domain, admin(secure, domain), "carol", "POLICY", "scoped")
    carol = user(secure, domain, "carol")
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.create,
        parse(
            pb.CreatePolicyRequest, {"policy_id": "team-root", "name": "x", "domain_id": domain, "permissions": ["*"]}
        ),
        metadata=carol,
    )
    assert "permissions[0]" in error.details() and "repository.Policy.escalate" in error.details()
    # What she holds she may hand out.
    create(
        secure,
        domain,
        carol,
        "team-ok",
        statements=[{"effect": "ALLOW", "actions": ["repository.Policy.get"], "resources": ["policy/team-a"]}],
    )
    # A policy made by an admin is not hers to bind, even though Assignment.* matches `bind`.
    create(secure, domain, admin(secure, domain), "team-root", permissions=["*"])
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.create,
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "carol"},
                "grant": {"type": "POLICY", "id": "team-root"},
                "domain_id": domain,
            },
        ),
        metadata=carol,
    )
    assert "policy team-root statement 0" in error.details()
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.add,
        assignments_request(domain, "carol", "POLICY", "team-root"),
        metadata=carol,
    )
    assert not allowed(secure, domain, "carol", "inventory.Server.delete", "anything")


def test_updater_of_its_own_policy_cannot_widen_it(secure, domain):
    create(
        secure,
        domain,
        admin(secure, domain),
        "mine",
        statements=[{"effect": "ALLOW", "actions": ["repository.Policy.update"], "resources": ["policy/mine"]}],
    )
    grant(secure, domain, admin(secure, domain), "dave", "POLICY", "mine")
    dave = user(secure, domain, "dave")
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.update,
        parse(pb.UpdatePolicyRequest, {"policy_id": "mine", "domain_id": domain, "permissions": ["*"]}),
        metadata=dave,
    )
    assert "permissions[0]" in error.details()
    # Renaming and describing are not giving anything.
    secure.policy.update(
        pb.UpdatePolicyRequest(policy_id="mine", name="renamed", domain_id=domain), metadata=dave, timeout=10
    )
    assert not allowed(secure, domain, "dave", "identity.User.delete", "x")


def test_policy_admin_cannot_give_itself_full_access(secure, domain):
    grant(secure, domain, admin(secure, domain), "erin", "POLICY", "managed-policy-admin")
    erin = user(secure, domain, "erin")
    for managed in ("managed-full-access", "managed-read-only"):
        expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            secure.assignment.create,
            parse(
                apb.CreateAssignmentRequest,
                {
                    "subject": {"type": "USER", "id": "erin"},
                    "grant": {"type": "POLICY", "id": managed},
                    "domain_id": domain,
                },
            ),
            metadata=erin,
        )
    # Nor through a group that carries it.
    create_sets(secure, domain, groups=["admins"], metadata=admin(secure, domain))
    grant(secure, domain, admin(secure, domain), "admins", "POLICY", "managed-full-access", subject_type="GROUP")
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.add,
        assignments_request(domain, "erin", "GROUP", "admins"),
        metadata=erin,
    )
    assert "via group/admins" in error.details()
    # It still manages what it holds: a policy-admin may grant policy-admin to a colleague.
    grant(secure, domain, erin, "frank", "POLICY", "managed-policy-admin")
    assert not allowed(secure, domain, "erin", "inventory.Server.read", "x")


def test_lifting_a_deny_needs_what_the_deny_denies(secure, domain):
    create(secure, domain, admin(secure, domain), "operator", statements=[OPERATOR])
    create(
        secure,
        domain,
        admin(secure, domain),
        "no-prod",
        statements=[{"effect": "DENY", "actions": ["repository.Policy.delete"], "resources": ["policy/prod-*"]}],
    )
    for policy_id in ("operator", "no-prod"):
        grant(secure, domain, admin(secure, domain), "gail", "POLICY", policy_id)
    gail = user(secure, domain, "gail")
    no_prod = [
        a
        for a in secure.assignment.list(
            apb.AssignmentQuery(domain_id=domain), metadata=admin(secure, domain), timeout=10
        ).results
        if a.grant.id == "no-prod"
    ][0]
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.delete,
        apb.AssignmentRequest(assignment_id=no_prod.assignment_id, domain_id=domain),
        metadata=gail,
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.remove,
        assignments_request(domain, "gail", "POLICY", "no-prod"),
        metadata=gail,
    )
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.update,
        parse(pb.UpdatePolicyRequest, {"policy_id": "no-prod", "domain_id": domain, "update_mask": "statements"}),
        metadata=gail,
    )
    assert "deny removed" in error.details()
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.disable,
        pb.PolicyRequest(policy_id="no-prod", domain_id=domain),
        metadata=gail,
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.delete,
        pb.PolicyRequest(policy_id="no-prod", domain_id=domain, cascade=True),
        metadata=gail,
    )
    # Adding a deny needs nothing; narrowing one that the caller is not subject to is fine.
    create(
        secure,
        domain,
        gail,
        "no-dev",
        statements=[{"effect": "DENY", "actions": ["repository.Policy.get"], "resources": ["policy/dev-*"]}],
    )
    assert allowed(secure, domain, "gail", "repository.Policy.get", "policy/x")
    assert not allowed(secure, domain, "gail", "repository.Policy.delete", "policy/prod-db")


def test_escalate_and_bind_granted_by_name_lift_the_rule(secure, domain):
    create(
        secure,
        domain,
        admin(secure, domain),
        "lead",
        statements=[
            OPERATOR,
            {
                "effect": "ALLOW",
                "actions": ["repository.Policy.escalate", "repository.Assignment.bind"],
                "resources": ["policy/team-*"],
            },
        ],
    )
    grant(secure, domain, admin(secure, domain), "hank", "POLICY", "lead")
    hank = user(secure, domain, "hank")
    create(secure, domain, hank, "team-wide", permissions=["*"])
    grant(secure, domain, hank, "ivy", "POLICY", "team-wide")
    assert allowed(secure, domain, "ivy", "anything.at.all", "x")
    # Outside policy/team-* the rule holds.
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.create,
        parse(
            pb.CreatePolicyRequest, {"policy_id": "other-wide", "name": "x", "domain_id": domain, "permissions": ["*"]}
        ),
        metadata=hank,
    )


def test_restore_and_enable_give_again(secure, domain):
    create(secure, domain, admin(secure, domain), "operator", statements=[OPERATOR])
    grant(secure, domain, admin(secure, domain), "jack", "POLICY", "operator")
    create(secure, domain, admin(secure, domain), "wide", permissions=["*"])
    secure.policy.disable(
        pb.PolicyRequest(policy_id="wide", domain_id=domain), metadata=admin(secure, domain), timeout=10
    )
    jack = user(secure, domain, "jack")
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.enable,
        pb.PolicyRequest(policy_id="wide", domain_id=domain),
        metadata=jack,
    )
    secure.policy.delete(
        pb.PolicyRequest(policy_id="wide", domain_id=domain), metadata=admin(secure, domain), timeout=10
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.policy.restore,
        pb.PolicyRequest(policy_id="wide", domain_id=domain),
        metadata=jack,
    )


# ---------------------------------------------------------------------------- property

# Few patterns, so that statements of different policies often meet on the same pairs.
ACTIONS = ["inv.read", "inv.write", "id.read"]
RESOURCES = ["r/1", "s/1"]
ACTION_PATTERNS = ["*", "inv.*", "inv.read", "*.read", "i?v.write"]
RESOURCE_PATTERNS = ["*", "r/*", "?/1"]
SUBJECTS = [("USER", "eve"), ("USER", "bob"), ("GROUP", "g1"), ("ROLE", "r1")]
POLICY_IDS = ["p1", "p2", "p3"]

statement = st.fixed_dictionaries(
    {
        "effect": st.sampled_from(["ALLOW", "DENY"]),
        "actions": st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2, unique=True),
        "resources": st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=2, unique=True),
    }
)
statements = st.lists(statement, min_size=1, max_size=3)
grants = st.one_of(
    st.tuples(st.just("POLICY"), st.sampled_from(POLICY_IDS)),
    st.tuples(st.sampled_from(["GROUP", "ROLE"]), st.sampled_from(["g1", "r1"])),
)
operation = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(POLICY_IDS), statements),
    st.tuples(st.just("update"), st.sampled_from(POLICY_IDS), statements),
    st.tuples(st.sampled_from(["delete", "disable", "enable", "restore"]), st.sampled_from(POLICY_IDS)),
    st.tuples(st.sampled_from(["add", "remove"]), st.sampled_from(SUBJECTS), grants),
    # Weighted: undoing an existing edge is the likeliest way to lift a deny.
    *[st.tuples(st.just("unassign"), st.integers(0, 5))] * 3,
)


def permissions_of_everyone(secure, domain) -> dict:
    items = [
        {"subject": {"type": t, "id": i}, "action": a, "resource": r}
        for t, i in SUBJECTS
        for a in ACTIONS
        for r in RESOURCES
    ]
    results = secure.assignment.batch_check(
        parse(apb.BatchCheckRequest, {"items": items, "domain_id": domain}), metadata=admin(secure, domain), timeout=10
    ).results
    held: dict = {subject: set() for subject in SUBJECTS}
    for item, result in zip(items, results, strict=True):
        if result.decision == apb.CheckResult.ALLOW:
            held[(item["subject"]["type"], item["subject"]["id"])].add((item["action"], item["resource"]))
    return held


def run(secure, domain, metadata, op) -> None:
    kind = op[0]
    try:
        if kind == "create":
            create(secure, domain, metadata, op[1], statements=op[2])
        elif kind == "update":
            secure.policy.update(
                parse(pb.UpdatePolicyRequest, {"policy_id": op[1], "domain_id": domain, "statements": op[2]}),
                metadata=metadata,
                timeout=10,
            )
        elif kind in ("delete", "disable", "enable", "restore"):
            request = pb.PolicyRequest(policy_id=op[1], domain_id=domain, cascade=kind == "delete")
            getattr(secure.policy, kind)(request, metadata=metadata, timeout=10)
        else:
            (subject_type, subject_id), (grant_type, grant_id) = op[1], op[2]
            getattr(secure.assignment, kind)(
                assignments_request(domain, subject_id, grant_type, grant_id, subject_type),
                metadata=metadata,
                timeout=10,
            )
    except grpc.RpcError as error:
        assert error.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.ABORTED,
        ), error.details()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.tuples(*[statements] * len(POLICY_IDS)),
    edges=st.lists(st.tuples(st.sampled_from(SUBJECTS), grants), min_size=3, max_size=6),
    operations=st.lists(operation, min_size=1, max_size=8),
)
def test_no_sequence_of_calls_gives_anyone_more_than_the_caller_held(embedded_app, secure, initial, edges, operations):
    """Whatever eve (Policy.* and Assignment.* on everything, no escalate/bind) does, no subject
    ends up allowed a pair that neither it nor eve was allowed before: eve never gains anything,
    and what others gain, eve held. (The rule lives above storage: the embedded store is enough
    for this long property, skipped on the other before any example is drawn.)"""
    domain = f"domain-{uuid.uuid4().hex[:12]}"
    boss = admin(secure, domain)
    create(secure, domain, boss, "operator", statements=[OPERATOR])
    grant(secure, domain, boss, "eve", "POLICY", "operator")
    for policy_id, content in zip(POLICY_IDS, initial, strict=True):
        create(secure, domain, boss, policy_id, statements=content)
    # The group and role exist, else every edge naming them is refused and nothing is tried.
    create_sets(secure, domain, groups=["g1"], roles=["r1"], metadata=boss)
    for (subject_type, subject_id), (grant_type, grant_id) in edges:
        run(secure, domain, boss, ("add", (subject_type, subject_id), (grant_type, grant_id)))
    before = permissions_of_everyone(secure, domain)
    eve = user(secure, domain, "eve")
    for op in operations:
        if op[0] == "unassign":
            op = ("remove", *edges[op[1] % len(edges)])
        run(secure, domain, eve, op)
        now = permissions_of_everyone(secure, domain)
        assert now[("USER", "eve")] <= before[("USER", "eve")], op
        for subject in SUBJECTS:
            assert now[subject] <= before[subject] | before[("USER", "eve")], (subject, op)


def test_a_wildcard_holder_cannot_mint_escalate_or_bind(secure, domain):
    """`repository.Assignment.*` held does not cover handing out `repository.Assignment.bind` by
    name (nor `repository.Policy.escalate`): else a policy admin mints itself the bypass."""
    create(secure, domain, admin(secure, domain), "operator", statements=[OPERATOR])
    grant(secure, domain, admin(secure, domain), "mal", "POLICY", "operator")
    mal = user(secure, domain, "mal")
    for action in ("repository.Assignment.bind", "REPOSITORY.POLICY.ESCALATE"):
        error = expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            secure.policy.create,
            parse(
                pb.CreatePolicyRequest,
                {
                    "policy_id": "mint",
                    "name": "mint",
                    "domain_id": domain,
                    "statements": [{"effect": "ALLOW", "actions": [action], "resources": ["*"]}],
                },
            ),
            metadata=mal,
        )
        assert action in error.details()
    # An admin-made policy carrying bind is not the operator's to take either.
    create(
        secure,
        domain,
        admin(secure, domain),
        "binder",
        statements=[{"effect": "ALLOW", "actions": ["repository.Assignment.bind"], "resources": ["*"]}],
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.add,
        assignments_request(domain, "mal", "POLICY", "binder"),
        metadata=mal,
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.create,
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "mal"},
                "grant": {"type": "POLICY", "id": "managed-full-access"},
                "domain_id": domain,
            },
        ),
        metadata=mal,
    )
    assert not allowed(secure, domain, "mal", "anything.at.all", "x")


def test_joining_a_group_counts_its_disabled_policies(secure, domain):
    """Enabling a group's policy later must not widen a membership granted now."""
    boss = admin(secure, domain)
    create(secure, domain, boss, "operator", statements=[OPERATOR])
    grant(secure, domain, boss, "nia", "POLICY", "operator")
    create(secure, domain, boss, "breakglass", permissions=["*"])
    create_sets(secure, domain, groups=["admins"], metadata=boss)
    grant(secure, domain, boss, "admins", "POLICY", "breakglass", subject_type="GROUP")
    secure.policy.disable(pb.PolicyRequest(policy_id="breakglass", domain_id=domain), metadata=boss, timeout=10)
    error = expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        secure.assignment.add,
        assignments_request(domain, "nia", "GROUP", "admins"),
        metadata=user(secure, domain, "nia"),
    )
    assert "policy breakglass" in error.details()


def test_a_checked_change_acts_only_on_the_version_it_checked(secure, domain, monkeypatch):
    """The policy is momentarily not live when read (a concurrent rename moved its id away and
    back): the change must not be written unchecked onto whatever holds the id at write time."""
    boss = admin(secure, domain)
    create(secure, domain, boss, "operator", statements=[OPERATOR])
    create(secure, domain, boss, "benign", permissions=["repository.Policy.get"])
    for policy_id in ("operator", "benign"):
        grant(secure, domain, boss, "oz", "POLICY", policy_id)
    manager = secure.app.managers.policy
    original = manager.live
    calls = []

    def not_live_once(domain_id, policy_ids):
        calls.append(policy_ids)
        if policy_ids == ["benign"] and calls.count(["benign"]) == 1:
            return {}
        return original(domain_id, policy_ids)

    monkeypatch.setattr(manager, "live", not_live_once)
    request = parse(pb.UpdatePolicyRequest, {"policy_id": "benign", "domain_id": domain, "permissions": ["*"]})
    expect_error(grpc.StatusCode.ABORTED, secure.policy.update, request, metadata=user(secure, domain, "oz"))
    monkeypatch.setattr(manager, "live", original)
    assert not allowed(secure, domain, "oz", "anything.at.all", "x")
