"""Cross-tenant property test: random operations by callers of several domains, through the
real gRPC API with authentication on, never return, count, aggregate or change another
domain's documents — whatever they put in the request body, filters or aggregations."""

from __future__ import annotations

import uuid

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import as_dict, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb

TENANTS = 3
IDS = ["p0", "p1", "p2"]
USERS = ["u0", "u1"]

operation = st.one_of(
    st.tuples(st.just("create"), st.integers(0, TENANTS - 1), st.sampled_from(IDS), st.integers(0, TENANTS - 1)),
    st.tuples(st.just("update"), st.integers(0, TENANTS - 1), st.sampled_from(IDS), st.integers(0, TENANTS - 1)),
    st.tuples(st.just("delete"), st.integers(0, TENANTS - 1), st.sampled_from(IDS), st.integers(0, TENANTS - 1)),
    st.tuples(st.just("assign"), st.integers(0, TENANTS - 1), st.sampled_from(IDS), st.sampled_from(USERS)),
    st.tuples(st.just("read"), st.integers(0, TENANTS - 1), st.sampled_from(IDS), st.integers(0, TENANTS - 1)),
)


def stat_queries(foreign: str) -> list[dict]:
    """Every stage kind, several trying to reach `foreign` through filters."""
    return [
        {"filter": [{"k": "domain_id", "v": foreign, "o": "eq"}], "aggregate": [{"count": {"name": "n"}}]},
        {
            "filter_or": [{"k": "domain_id", "v": [foreign], "o": "in"}, {"k": "policy_id", "v": "p", "o": "contain"}],
            "aggregate": [
                {"unwind": {"path": "labels"}},
                {
                    "group": {
                        "keys": [{"k": "domain_id", "n": "d"}],
                        "fields": [
                            {"o": "count", "n": "n"},
                            {"o": "add_to_set", "k": "policy_id", "n": "ids"},
                            {"o": "push", "k": "name", "n": "names"},
                        ],
                    }
                },
                {"sort": {"key": "d"}},
                {"skip": 0},
                {"limit": 50},
                {"project": {"fields": [{"k": "d", "n": "d"}, {"k": "ids", "n": "ids"}]}},
            ],
        },
        {"distinct": "domain_id", "page": {"start": 1, "limit": 10}},
        {"keyword": foreign, "aggregate": [{"group": {"fields": [{"o": "count", "n": "n"}]}}]},
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=4, max_size=14))
def test_no_operation_reaches_another_domain(secure, operations):
    run = uuid.uuid4().hex[:8]
    domains = [f"tenant{i}-{run}" for i in range(TENANTS)]
    meta = [secure.metadata(f"admin{i}", did=d, rol="DOMAIN_ADMIN") for i, d in enumerate(domains)]
    model: list[set[str]] = [set() for _ in domains]  # live policies per domain
    assigned: list[set[tuple[str, str]]] = [set() for _ in domains]  # (user, policy) per domain

    for kind, tenant, policy_id, other in operations:
        own, md = domains[tenant], meta[tenant]
        body_domain = domains[other] if isinstance(other, int) else own  # the body names any domain
        live = model[tenant]
        expected = expected_code(kind, policy_id, other, live, assigned[tenant])
        try:
            if kind == "create":
                info = secure.policy.create(
                    pb.CreatePolicyRequest(
                        policy_id=policy_id, name=f"{own}:{policy_id}", domain_id=body_domain, permissions=["a.read"]
                    ),
                    metadata=md,
                    timeout=10,
                )
                assert info.domain_id == own
                live.add(policy_id)
            elif kind == "update":
                info = secure.policy.update(
                    pb.UpdatePolicyRequest(policy_id=policy_id, name=f"{own}:{policy_id}:u", domain_id=body_domain),
                    metadata=md,
                    timeout=10,
                )
                assert info.domain_id == own
            elif kind == "delete":
                secure.policy.delete(
                    pb.PolicyRequest(policy_id=policy_id, domain_id=body_domain, cascade=True), metadata=md, timeout=10
                )
                live.discard(policy_id)
                assigned[tenant] = {pair for pair in assigned[tenant] if pair[1] != policy_id}
            elif kind == "assign":
                # The body names the next tenant's domain: the assignment still lands in the caller's.
                secure.assignment.create(
                    parse(
                        apb.CreateAssignmentRequest,
                        {
                            "subject": {"type": "USER", "id": other},
                            "grant": {"type": "POLICY", "id": policy_id},
                            "domain_id": domains[(tenant + 1) % TENANTS],
                        },
                    ),
                    metadata=md,
                    timeout=10,
                )
                assigned[tenant].add((other, policy_id))
            else:
                got = secure.policy.get(
                    pb.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=body_domain), metadata=md, timeout=10
                )
                assert got.domain_id == own and got.name.startswith(f"{own}:")
            assert expected == grpc.StatusCode.OK, f"{kind} {policy_id} succeeded, expected {expected}"
        except grpc.RpcError as error:
            assert error.code() == expected, f"{kind} {policy_id}: {error.code()} {error.details()}"
        if kind != "read":  # a read changes nothing: the state was checked after the previous write
            assert_confined(secure, domains, meta, model, assigned)
    if all(kind == "read" for kind, *_ in operations):
        assert_confined(secure, domains, meta, model, assigned)


def expected_code(kind, policy_id, user, live, assigned) -> grpc.StatusCode:
    """What the caller's own domain alone justifies; anything else would mean another domain leaked in.
    A soft-deleted policy is not found, and its id can be created again."""
    if kind == "create":
        return grpc.StatusCode.ALREADY_EXISTS if policy_id in live else grpc.StatusCode.OK
    if kind == "assign":
        if policy_id not in live:
            return grpc.StatusCode.NOT_FOUND
        return grpc.StatusCode.ALREADY_EXISTS if (user, policy_id) in assigned else grpc.StatusCode.OK
    return grpc.StatusCode.OK if policy_id in live else grpc.StatusCode.NOT_FOUND


def assert_confined(secure, domains, meta, model, assigned) -> None:
    for tenant, own in enumerate(domains):
        md = meta[tenant]
        foreign = domains[(tenant + 1) % len(domains)]
        listed = secure.policy.list(
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": foreign,
                    "exclude_managed": True,
                    "query": {
                        "filter_or": [
                            {"k": "domain_id", "v": foreign, "o": "eq"},
                            {"k": "name", "v": "", "o": "contain"},
                        ]
                    },
                },
            ),
            metadata=md,
            timeout=10,
        )
        assert {p.policy_id for p in listed.results} == model[tenant]
        assert listed.total_count == len(model[tenant])
        assert all(p.domain_id == own for p in listed.results)
        for query in stat_queries(foreign):
            result = as_dict(
                secure.policy.stat(
                    parse(pb.PolicyStatQuery, {"domain_id": foreign, "query": query}), metadata=md, timeout=10
                )
            )
            text = repr(result)
            assert foreign not in text and all(d not in text for d in domains if d != own)
        assignments = secure.assignment.list(apb.AssignmentQuery(domain_id=foreign), metadata=md, timeout=10)
        assert all(a.domain_id == own for a in assignments.results)
        decision = secure.assignment.check(
            parse(
                apb.CheckRequest,
                {"subject": {"type": "USER", "id": "u0"}, "action": "a.read", "resource": "r", "domain_id": foreign},
            ),
            metadata=md,
            timeout=10,
        )
        found = secure.assignment.list_authorized_resources(
            parse(apb.ListAuthorizedResourcesRequest, {"subject": {"type": "USER", "id": "u0"}, "domain_id": foreign}),
            metadata=md,
            timeout=10,
        )
        # u0 only holds what this tenant assigned it, in this tenant.
        assert {(a.subject.id, a.grant.id) for a in assignments.results} == assigned[tenant]
        holds = {policy for user, policy in assigned[tenant] if user == "u0"} & model[tenant]
        assert (decision.decision == apb.CheckResult.ALLOW) == bool(holds)
        assert (found.total_count > 0) == bool(holds)
        audits = secure.audit.list(audit_pb2.AuditQuery(domain_id=foreign), metadata=md, timeout=10)
        assert all(a.domain_id == own for a in audits.results)
