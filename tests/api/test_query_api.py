"""list and stat through the API: the query language end to end, confined to the caller's domain."""

from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, expect_error, field_violations, grant_policy, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2 as gpb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import role_pb2 as rpb

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


# ---------------------------------------------------------------- keys: the names answers show


def stat_(client, domain, query):
    return as_dict(client.policy.stat(parse(pb.PolicyStatQuery, {"domain_id": domain, "query": query}), timeout=10))


def test_list_filters_and_sorts_by_repository_info(client, seeded):
    managed = list_(client, seeded, {"filter": [{"k": "repository_info.repository_id", "v": "repo-managed"}]})
    assert managed["total_count"] == MANAGED_COUNT
    assert {r["repository_info"]["repository_id"] for r in managed["results"]} == {"repo-managed"}
    local = list_(client, seeded, {"filter": [{"k": "repository_info.name", "v": "Local", "o": "contain"}]})
    assert local["total_count"] == 12 and ids(local) == [f"pol-{i:02d}" for i in range(12)]
    assert {r["repository_info"]["name"] for r in local["results"]} == {"Local Repository"}
    for key in ("repository_info.repository_id", "repository_info.repository_type", "repository_info.name"):
        page = list_(client, seeded, {"sort": {"key": key, "desc": True}, "page": {"limit": 5}})
        # repo-managed / MANAGED / "Managed Repository" sort after their local counterparts.
        assert [r.get("is_managed", False) for r in page["results"]] == [True] * 4 + [False], key
        assert page["total_count"] == 12 + MANAGED_COUNT


def test_stat_groups_and_filters_by_repository_info(client, seeded):
    def counts(key, **query):
        group = {"keys": [{"k": key, "n": "repo"}], "fields": [{"o": "count", "n": "n"}]}
        results = stat_(client, seeded, {"aggregate": [{"group": group}, {"sort": {"key": "repo"}}], **query})
        return [(r["repo"], r["n"]) for r in results["results"]]

    assert counts("repository_info.repository_id") == [("repo-local", 12), ("repo-managed", MANAGED_COUNT)]
    assert counts("repository_info.repository_type") == [("local", 12), ("managed", MANAGED_COUNT)]
    only_managed = [{"k": "repository_info.name", "v": "Managed Repository"}]
    assert counts("repository_info.repository_id", filter=only_managed) == [("repo-managed", MANAGED_COUNT)]
    assert stat_(client, seeded, {"distinct": "repository_info.name"})["results"] == [
        "Local Repository",
        "Managed Repository",
    ]


@pytest.mark.parametrize(
    "call, query, field",
    [
        ("list", {"filter": [{"k": "repository_info.nmae", "v": "x"}]}, "query.filter[0].k"),
        ("list", {"filter_or": [{"k": "name", "v": "x"}, {"key": "nmae", "value": "x"}]}, "query.filter_or[1].key"),
        ("list", {"sort": {"key": "nmae"}}, "query.sort.key"),
        ("list", {"only": ["name", "nmae"]}, "query.only[1]"),
        ("stat", {"distinct": "nmae"}, "query.distinct"),
        ("stat", {"aggregate": [{"group": {"keys": [{"k": "nmae", "n": "x"}]}}]}, "query.aggregate[0].group.keys[0].k"),
        (
            "stat",
            {"aggregate": [{"group": {"fields": [{"k": "nmae", "n": "x", "o": "sum"}]}}]},
            "query.aggregate[0].group.fields[0].k",
        ),
    ],
)
def test_a_key_naming_no_field_is_invalid_argument_listing_the_valid_keys(client, domain, call, query, field):
    request = (pb.PolicyQuery if call == "list" else pb.PolicyStatQuery)(domain_id=domain)
    request = parse(type(request), {"domain_id": domain, "query": query})
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, getattr(client.policy, call), request)
    assert field_violations(error) == [field]
    assert "names no field; valid keys: " in error.details()
    for key in ("policy_id", "repository_info.name", "repository_info.repository_id", "tags.<key>"):
        assert key in error.details()
    assert "parked_assignments" not in error.details()


def test_assignment_keys_under_the_names_answers_show(client, domain):
    grant_policy(client, domain, "u1", "managed-read-only")
    grant_policy(client, domain, "u2", "managed-full-access")

    def listed(query):
        answer = client.assignment.list(parse(apb.AssignmentQuery, {"domain_id": domain, "query": query}), timeout=10)
        return [a.subject.id for a in answer.results]

    assert listed({"filter": [{"k": "grant.id", "v": "managed-full-access"}]}) == ["u2"]
    assert listed({"sort": {"key": "subject.id", "desc": True}}) == ["u2", "u1"]
    assert listed({"filter": [{"k": "subject_id", "v": "u1"}]}) == ["u1"]  # the stored name works too
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.assignment.list,
        parse(apb.AssignmentQuery, {"domain_id": domain, "query": {"filter": [{"k": "subject", "v": "u1"}]}}),
    )
    assert field_violations(error) == ["query.filter[0].k"] and "subject.id" in error.details()


def test_a_computed_field_is_invalid_argument_saying_why(client, domain):
    for call, request_type in ((client.group.list, gpb.GroupQuery), (client.role.list, rpb.RoleQuery)):
        error = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            call,
            parse(request_type, {"domain_id": domain, "query": {"sort": {"key": "member_count"}}}),
        )
        assert field_violations(error) == ["query.sort.key"]
        assert "counted from the assignments when the answer is built" in error.details()
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.role.list,
        parse(rpb.RoleQuery, {"domain_id": domain, "query": {"filter": [{"k": "is_bound", "v": True}]}}),
    )
    assert field_violations(error) == ["query.filter[0].k"] and "is_bound" in error.details()


@pytest.mark.parametrize(
    "sort",
    [
        {"key": "name", "desc": True},
        {"key": "name"},
        # numbers, and missing (the managed policies' tags)
        {"keys": [{"key": "tags.tier"}, {"key": "name", "desc": True}]},
        {"key": "created_at", "desc": True},
    ],
)
def test_pages_over_the_domain_and_the_managed_policies_are_one_order(client, seeded, sort):
    """On a server the page is read from the domain's and the managed policies' first results
    apart and merged; a projection without the sort keys reads it in one query. Both answer the
    same order, and consecutive pages make up the whole list."""
    whole = list_(client, seeded, {"sort": sort})
    assert whole["total_count"] == 12 + MANAGED_COUNT
    in_one_query = list_(client, seeded, {"sort": sort, "only": ["policy_id"]})
    assert ids(in_one_query) == ids(whole)
    paged = []
    for start in range(1, 12 + MANAGED_COUNT + 1, 5):
        page = list_(client, seeded, {"sort": sort, "page": {"start": start, "limit": 5}})
        assert page["total_count"] == 12 + MANAGED_COUNT
        paged += ids(page)
    assert paged == ids(whole)
    assert len(set(paged)) == 12 + MANAGED_COUNT


def test_a_page_merged_from_the_parts_keeps_the_repository_and_the_projection(client, seeded):
    page = list_(client, seeded, {"sort": {"key": "name"}, "page": {"limit": 3}, "only": ["name", "policy_id"]})
    assert [{key for key, value in result.items() if value} for result in page["results"]] == [
        {"name", "policy_id"}
    ] * 3
    whole = list_(client, seeded, {"sort": {"key": "name"}, "page": {"limit": 3}})
    assert ids(page) == ids(whole)
    assert all(result["repository_info"]["repository_id"] for result in whole["results"])
