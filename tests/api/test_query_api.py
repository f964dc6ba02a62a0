"""list and stat through the API: the query language end to end, confined to the caller's domain."""

from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, expect_error, field_violations, grant_policy, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb

MANAGED_COUNT = 4


@pytest.fixture
def seeded(client, domain, other_domain):
    for index in range(12):
        client.policy.create(
            parse(
                pb.CreatePolicyRequest,
                {
                    "policy_id": f"pol-{index:02d}",
                    "name": f"{'Admin' if index % 3 == 0 else 'Viewer'} {index}",
                    "domain_id": domain,
                    "permissions": [f"svc{index % 2}.*"],
                    "labels": ["even" if index % 2 == 0 else "odd"],
                    "tags": {"tier": index % 4},
                },
            ),
            timeout=10,
        )
    client.policy.create(pb.CreatePolicyRequest(policy_id="pol-00", name="Admin intruder", domain_id=other_domain))
    return domain


def list_(client, domain, query=None, **fields):
    request = parse(pb.PolicyQuery, {"domain_id": domain, **({"query": query} if query is not None else {}), **fields})
    return as_dict(client.policy.list(request, timeout=10))


def ids(result):
    return [r["policy_id"] for r in result.get("results", [])]


def test_list_includes_managed_unless_excluded(client, seeded):
    assert list_(client, seeded)["total_count"] == 12 + MANAGED_COUNT
    assert list_(client, seeded, exclude_managed=True)["total_count"] == 12


def test_list_filter_both_dialects(client, seeded):
    long_form = list_(
        client, seeded, {"filter": [{"key": "labels", "value": "even", "operator": "eq"}]}, exclude_managed=True
    )
    short_form = list_(client, seeded, {"filter": [{"k": "labels", "v": "even", "o": "eq"}]}, exclude_managed=True)
    assert long_form == short_form and long_form["total_count"] == 6


def test_list_filter_or_and_keyword_and_together(client, seeded):
    result = list_(
        client,
        seeded,
        {
            "filter": [{"k": "labels", "v": "even", "o": "eq"}],
            "filter_or": [{"k": "tags.tier", "v": 0, "o": "eq"}, {"k": "tags.tier", "v": 2, "o": "eq"}],
            "keyword": "admin",
        },
        exclude_managed=True,
    )
    # even indexes with tier 0/2 and "Admin" in the name: 0, 6
    assert sorted(ids(result)) == ["pol-00", "pol-06"]


def test_list_sort_and_paging_is_stable(client, seeded):
    query = {"sort": {"key": "labels"}, "page": {"start": 1, "limit": 5}}
    pages = []
    for start in (1, 6, 11):
        query["page"]["start"] = start
        result = list_(client, seeded, query, exclude_managed=True)
        assert result["total_count"] == 12
        pages.extend(ids(result))
    assert sorted(pages) == [f"pol-{i:02d}" for i in range(12)]


def test_list_count_only_minimal_and_shortcuts(client, seeded):
    assert list_(client, seeded, {"count_only": True}, exclude_managed=True) == {"total_count": 12}
    minimal = list_(client, seeded, {"minimal": True, "page": {"limit": 1}}, policy_id="pol-03")
    assert ids(minimal) == ["pol-03"] and "permissions" not in minimal["results"][0]
    assert list_(client, seeded, repository_id="repo-managed")["total_count"] == MANAGED_COUNT


def test_list_contain_is_literal(client, seeded):
    assert list_(client, seeded, {"filter": [{"k": "name", "v": ".*", "o": "contain"}]}).get("total_count", 0) == 0


def test_huge_page_limit_is_capped(client, seeded):
    result = list_(client, seeded, {"page": {"limit": 4_000_000_000}}, exclude_managed=True)
    assert len(result["results"]) == 12


@pytest.mark.parametrize(
    "query, field",
    [
        ({"filter": [{"k": "name", "v": "x", "o": "like"}]}, "query.filter[0].o"),
        ({"filter": [{"key": "name", "value": "x", "operator": "like"}]}, "query.filter[0].operator"),
        ({"filter": [{"k": "name", "v": "x", "o": "in"}]}, "query.filter[0].v"),
        ({"filter": [{"k": "name", "v": "yes", "o": "exists"}]}, "query.filter[0].v"),
        ({"filter": [{"k": "created_at", "v": "now-5x", "o": "timediff_gt"}]}, "query.filter[0].v"),
        ({"filter": [{"k": "$where", "v": "1", "o": "eq"}]}, "query.filter[0].k"),
        ({"filter": [{"key": "name", "value": {"$gt": ""}, "operator": "eq"}]}, "query.filter[0].value"),
    ],
)
def test_bad_list_queries_are_invalid_argument(client, domain, query, field):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.list,
        parse(pb.PolicyQuery, {"domain_id": domain, "query": query}),
    )
    assert field_violations(error) == [field]


def test_stat_group_count_in_domain_only(client, seeded):
    query = {
        "filter": [{"k": "is_managed", "v": False, "o": "eq"}],
        "aggregate": [
            {"group": {"keys": [{"key": "labels", "name": "label"}], "fields": [{"operator": "count", "name": "n"}]}},
            {"sort": {"key": "label"}},
        ],
    }
    result = as_dict(client.policy.stat(parse(pb.PolicyStatQuery, {"domain_id": seeded, "query": query}), timeout=10))
    assert result["results"] == [{"label": ["even"], "n": 6}, {"label": ["odd"], "n": 6}]


def test_stat_distinct_paged(client, seeded):
    query = {"distinct": "permissions", "page": {"start": 1, "limit": 50}}
    result = as_dict(client.policy.stat(parse(pb.PolicyStatQuery, {"domain_id": seeded, "query": query}), timeout=10))
    assert {"svc0.*", "svc1.*", "*"} <= set(result["results"])
    assert result["total_count"] == len(result["results"])


@pytest.mark.parametrize(
    "query, field",
    [
        ({}, "query"),
        ({"aggregate": [{}]}, "query.aggregate[0]"),
        (
            {"aggregate": [{"group": {"fields": [{"operator": "median", "name": "m", "key": "version"}]}}]},
            "query.aggregate[0].group.fields[0].operator",
        ),
    ],
)
def test_bad_stat_queries_are_invalid_argument(client, domain, query, field):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.stat,
        parse(pb.PolicyStatQuery, {"domain_id": domain, "query": query}),
    )
    assert field_violations(error) == [field]


def test_only_with_half_of_a_pair_still_answers(client, domain):
    grant_policy(client, domain, "u", "managed-read-only")
    for only in (["subject_type"], ["grant_id"]):
        listed = client.assignment.list(
            parse(apb.AssignmentQuery, {"domain_id": domain, "query": {"only": only}}), timeout=10
        )
        assert listed.total_count == 1
    client.policy.create(
        parse(
            pb.CreatePolicyRequest,
            {
                "policy_id": "st",
                "name": "n",
                "domain_id": domain,
                "statements": [{"effect": "DENY", "actions": ["a"], "resources": ["*"]}],
            },
        ),
        timeout=10,
    )
    listed = client.policy.list(
        parse(
            pb.PolicyQuery, {"domain_id": domain, "exclude_managed": True, "query": {"only": ["statements.actions"]}}
        ),
        timeout=10,
    )
    assert [list(s.actions) for s in listed.results[0].statements] == [["a"]]


def test_stat_the_store_cannot_evaluate_is_invalid_argument_not_internal(client, domain):
    client.policy.create(pb.CreatePolicyRequest(policy_id="s", name="n", domain_id=domain), timeout=10)
    query = {
        "aggregate": [
            {"group": {"keys": [{"k": "name", "n": "m", "date_format": "%Y"}], "fields": [{"o": "count", "n": "c"}]}}
        ]
    }
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.stat,
        parse(pb.PolicyStatQuery, {"domain_id": domain, "query": query}),
    )
    assert field_violations(error) == ["query"]
