"""The query compiler: behaviour is checked by running the compiled pipelines on mongomock
against a fixture of policies in two domains; structure is asserted where mongomock
cannot show the behaviour.

mongomock 4.3 gaps (real MongoDB and the secantusdb wire server support all of these):
- `{"$not": {"$regex": ..., "$options": "i"}}` fails with "unknown operator: $options", so the
  compiler emits not_contain / not_contain_in as `$nor`, which both support.
- `$type` in aggregation expressions (the `exists` group condition): structure only.
- `$not` in aggregation expressions evaluates wrongly (the `not_in` group condition): structure only.
- `%L` in `$dateToString` is not implemented: structure only.
- `$count` over no documents yields `{"n": 0}` where MongoDB yields no document: unpack_*
  is tested on both shapes.
`$facet`, `$dateToString` (other specifiers), `$mergeObjects`, `$literal`, `$isArray` work.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import bson
import mongomock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.query import (
    ListPlan,
    QueryKeys,
    QuerySchema,
    StatPlan,
    compile_list,
    compile_stat,
    compiler,
    count_of,
    page_total,
    unpack_stat,
)

UTC = timezone.utc
NOW = datetime(2024, 3, 13, 12, 0, tzinfo=UTC)  # a Wednesday
SCOPE = {"domain_id": "d1"}
# The fixture's fields; `permissions` holds objects, whose `scope` is free-form.
KEYS = QueryKeys(
    fields=frozenset(
        {
            "policy_id",
            "name",
            "domain_id",
            "version",
            "state",
            "labels",
            "permissions",
            "permissions.service",
            "permissions.action",
            "created_at",
            "score",
            # Named by the structure and error tests; the fixture does not hold them.
            *("a", "b", "c", "d", "e", "f", "k", "n", "p", "x"),
        }
    ),
    maps=frozenset({"tags", "permissions.scope"}),
)
SCHEMA = QuerySchema(
    keys=KEYS,
    keyword_fields=("policy_id", "name"),
    minimal_fields=("policy_id", "name"),
    datetime_fields=frozenset({"created_at"}),
    default_sort=(("name", False),),
    max_limit=50,
)

DOCS = [
    {
        "policy_id": "policy-a",
        "name": "Admin Access",
        "domain_id": "d1",
        "version": 1,
        "state": "ENABLED",
        "tags": {"team": "core", "env": "prod", "my key": "spaced"},
        "labels": ["admin", "prod"],
        "permissions": [{"service": "identity", "action": "read"}, {"service": "inventory", "action": "write"}],
        "created_at": datetime(2024, 3, 13, 8, 0),
        "score": 2.5,
    },
    {
        "policy_id": "policy-b",
        "name": "read only (viewer)",
        "domain_id": "d1",
        "version": 2,
        "state": "ENABLED",
        "tags": {"team": "core"},
        "labels": ["viewer"],
        "permissions": [{"service": "identity", "action": "read"}],
        "created_at": datetime(2024, 3, 11, 0, 0),
        "score": 1.5,
    },
    {
        "policy_id": "policy-c",
        "name": "a+b.*(",
        "domain_id": "d1",
        "version": 3,
        "state": "DISABLED",
        "tags": {"team": "ops"},
        "labels": [],
        "permissions": [],
        "created_at": datetime(2024, 3, 1, 0, 0),
        "score": 4.0,
    },
    {
        "policy_id": "policy-d",
        "name": "$state",
        "domain_id": "d1",
        "version": 2,
        "state": "DISABLED",
        "tags": {},
        "labels": "solo",
        "created_at": datetime(2024, 2, 1, 0, 0),
    },
    # Another domain, built to match almost every query: it must never appear.
    {
        "policy_id": "policy-x",
        "name": "Admin Access",
        "domain_id": "d2",
        "version": 2,
        "state": "ENABLED",
        "tags": {"team": "core", "env": "prod"},
        "labels": ["admin", "viewer", "other"],
        "permissions": [{"service": "identity", "action": "write"}],
        "created_at": datetime(2024, 3, 13, 9, 0),
        "score": 9.0,
    },
    {
        "policy_id": "policy-y",
        "name": "read only",
        "domain_id": "d2",
        "version": 1,
        "state": "DISABLED",
        "tags": {"team": "ops"},
        "labels": ["prod"],
        "permissions": [],
        "created_at": datetime(2024, 1, 1, 0, 0),
    },
    # A shared (global) document, visible only to scopes that include "".
    {
        "policy_id": "policy-g",
        "name": "Global Viewer",
        "domain_id": "",
        "version": 1,
        "state": "ENABLED",
        "tags": {"team": "core"},
        "labels": ["viewer"],
        "permissions": [],
        "created_at": datetime(2023, 12, 1, 0, 0),
    },
]
D1 = {"policy-a", "policy-b", "policy-c", "policy-d"}


@pytest.fixture(scope="module")
def coll():
    collection = mongomock.MongoClient().db.policies
    collection.insert_many([dict(doc) for doc in DOCS])
    return collection


def run_list(coll, query, schema=SCHEMA, scope=SCOPE):
    """As the managers run a plan, but always counting: whenever the page tells the total, it is
    the count's."""
    plan = compile_list(query, schema, scope, now=NOW)
    total = count_of(list(coll.aggregate(plan.count_pipeline)))
    if plan.count_only:
        return [], total
    results = list(coll.aggregate(plan.pipeline))
    assert page_total(plan, len(results)) in (None, total)
    return results, total


def list_ids(coll, query, **kwargs) -> list[str]:
    """policy_ids in result order, asserting nothing outside the d1 scope came back."""
    results, total = run_list(coll, query, **kwargs)
    ids = [doc["policy_id"] for doc in results]
    assert set(ids) <= D1
    assert total == len(ids)
    return ids


def matching(coll, *filters, **query) -> set[str]:
    return set(list_ids(coll, {"filter": list(filters), **query}))


def run_stat(coll, query, schema=SCHEMA, scope=SCOPE):
    plan = compile_stat(query, schema, scope, now=NOW)
    return unpack_stat(plan, list(coll.aggregate(plan.pipeline)))


def stat_results(coll, query):
    results, total = run_stat(coll, query)
    assert total is None
    return results


def invalid(path: str, call, *args, **kwargs) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        call(*args, **kwargs)
    assert info.value.field == path
    return info.value


def list_error(query, path: str) -> InvalidArgument:
    return invalid(path, compile_list, query, SCHEMA, SCOPE, now=NOW)


def stat_error(query, path: str) -> InvalidArgument:
    return invalid(path, compile_stat, query, SCHEMA, SCOPE, now=NOW)


def first_match(query) -> dict:
    return compile_list(query, SCHEMA, SCOPE, now=NOW).pipeline[0]["$match"]


def group_stat(coll, *fields, keys=None):
    group = {"fields": list(fields)}
    if keys is not None:
        group["keys"] = keys
    return stat_results(coll, {"aggregate": [{"group": group}]})


# ======================================================================== list: shape


def test_empty_query_lists_the_scope_sorted_by_default(coll):
    ids = list_ids(coll, {})
    assert ids == list_ids(coll, None)
    assert set(ids) == D1
    assert ids == [d["policy_id"] for d in sorted((d for d in DOCS if d["domain_id"] == "d1"), key=lambda d: d["name"])]


def test_list_pipeline_shape():
    plan = compile_list({"filter": [{"k": "name", "v": "x"}]}, SCHEMA, SCOPE, now=NOW)
    match = {"$match": {"domain_id": "d1", "name": {"$eq": "x"}}}
    sort = {"$sort": {"name": 1, "_id": 1}}
    assert plan == ListPlan(
        pipeline=[match, sort, {"$skip": 0}, {"$limit": 50}],
        count_pipeline=[match, {"$count": "n"}],
        count_only=False,
        skip=0,
        limit=50,
        sort={"name": 1, "_id": 1},
        top=[match, sort, {"$limit": 50}],
    )


def test_the_top_of_a_later_page_holds_every_result_up_to_its_end():
    plan = compile_list({"page": {"start": 21, "limit": 10}, "minimal": True}, SCHEMA, SCOPE, now=NOW)
    assert (plan.skip, plan.limit) == (20, 10)
    assert plan.top is not None and plan.top[-2:] == [{"$limit": 30}, plan.pipeline[-1]]
    assert "$project" in plan.top[-1]


@pytest.mark.parametrize(
    ("only", "sort", "kept"),
    [
        (None, [{"key": "version"}], True),
        (["name"], [{"key": "name"}], True),  # the default tie-breaker `_id` is always projected
        (["name"], [{"key": "version"}], False),
        (["tags"], [{"key": "tags.team"}], True),  # a projected object holds its fields
        (["tags.team"], [{"key": "tags"}], False),
    ],
)
def test_a_top_exists_only_where_the_projection_keeps_the_sort_keys(only, sort, kept):
    query: dict = {"sort": sort}
    if only:
        query["only"] = only
    plan = compile_list(query, SCHEMA, SCOPE, now=NOW)
    assert (plan.top is not None) is kept


def test_scope_alone_is_the_whole_match():
    assert first_match(None) == SCOPE


def test_scope_is_first_in_the_match():
    match = first_match({"filter": [{"k": "version", "v": 1}], "keyword": "admin"})
    assert list(match)[0] == "domain_id"
    match = first_match({"filter": [{"k": "name", "v": ["a", "b"], "o": "not_contain_in"}, {"k": "version", "v": 1}]})
    assert list(match)[0] == "domain_id"


def test_conditions_on_the_same_key_are_anded_not_merged():
    # Merging would let the second condition overwrite the first.
    match = first_match({"filter": [{"k": "version", "v": 1, "o": "gte"}, {"k": "version", "v": 2, "o": "lte"}]})
    assert match == {**SCOPE, "version": {"$gte": 1}, "$and": [{"version": {"$lte": 2}}]}
    assert list(match)[0] == "domain_id"


def test_filter_on_the_scope_key_cannot_widen_the_scope(coll):
    match = first_match({"filter": [{"k": "domain_id", "v": "d2"}]})
    assert match == {**SCOPE, "$and": [{"domain_id": {"$eq": "d2"}}]}
    assert list_ids(coll, {"filter": [{"k": "domain_id", "v": "d2"}]}) == []
    assert list_ids(coll, {"filter_or": [{"k": "domain_id", "v": "d2"}, {"k": "policy_id", "v": "policy-x"}]}) == []


def test_scope_with_in_includes_shared_documents(coll):
    results, total = run_list(coll, {}, scope={"domain_id": {"$in": ["d1", ""]}})
    assert {doc["policy_id"] for doc in results} == D1 | {"policy-g"}
    assert total == 5


def test_trusted_scope_with_operators_is_kept_verbatim():
    scope = {"domain_id": {"$in": ["d1", ""]}}
    match = compile_list({"filter": [{"k": "domain_id", "v": "x", "o": "not"}]}, SCHEMA, scope).pipeline[0]["$match"]
    assert match == {**scope, "$and": [{"domain_id": {"$ne": "x"}}]}


def test_now_defaults_to_the_current_time():
    plan = compile_list({"filter": [{"k": "created_at", "v": "now", "o": "timediff_lt"}]}, SCHEMA, SCOPE)
    moment = plan.pipeline[0]["$match"]["created_at"]["$lt"]
    assert abs(moment - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


# ======================================================================== filter operators


@pytest.mark.parametrize(
    "dialect",
    [
        lambda k, v, o: {"key": k, "value": v, "operator": o},
        lambda k, v, o: {"k": k, "v": v, "o": o},
        lambda k, v, o: {"key": k, "v": v, "o": o},  # mixing the two names of different fields is fine
    ],
    ids=["long", "short", "mixed"],
)
@pytest.mark.parametrize(
    "key, value, operator, expected",
    [
        ("name", "Admin Access", "eq", {"policy-a"}),
        ("labels", "viewer", "eq", {"policy-b"}),  # equality on an array matches an element
        ("tags.team", "core", "eq", {"policy-a", "policy-b"}),
        ("tags.my key", "spaced", "eq", {"policy-a"}),
        ("version", 2.0, "eq", {"policy-b", "policy-d"}),  # Struct numbers arrive as floats
        ("tags.team", "core", "not", {"policy-c", "policy-d"}),
        ("version", 2, "lt", {"policy-a"}),
        ("version", 2, "lte", {"policy-a", "policy-b", "policy-d"}),
        ("version", 2, "gt", {"policy-c"}),
        ("version", 2, "gte", {"policy-b", "policy-c", "policy-d"}),
        ("name", "b", "gt", {"policy-b"}),  # strings compare as strings; "a+b.*(" < "b" < "read..."
        ("score", 2, "gte", {"policy-a", "policy-c"}),
        ("score", True, "exists", {"policy-a", "policy-b", "policy-c"}),
        ("score", False, "exists", {"policy-d"}),
        ("name", "ADMIN", "contain", {"policy-a"}),
        ("name", "admin", "not_contain", {"policy-b", "policy-c", "policy-d"}),
        ("version", [1.0, 3], "in", {"policy-a", "policy-c"}),
        ("labels", ["admin", "viewer"], "in", {"policy-a", "policy-b"}),
        ("version", [1, 3], "not_in", {"policy-b", "policy-d"}),
        ("version", [], "in", set()),
        ("name", ["admin", "VIEWER"], "contain_in", {"policy-a", "policy-b"}),
        ("name", ["admin", "VIEWER"], "not_contain_in", {"policy-c", "policy-d"}),
        ("permissions", {"service": "identity", "action": "write"}, "match", set()),
        ("permissions", {"service": "inventory", "action": "write"}, "match", {"policy-a"}),
        ("permissions", {"service": "identity"}, "match", {"policy-a", "policy-b"}),
        ("policy_id", "^policy-[ab]$", "regex", {"policy-a", "policy-b"}),
        ("name", "^Admin", "regex", {"policy-a"}),
        ("name", "^admin", "regex", set()),  # regex is case-sensitive, unlike contain
        ("policy_id", ["a$", "^policy-c"], "regex_in", {"policy-a", "policy-c"}),
        ("created_at", "2024-03-11T00:00:00Z", "datetime_lt", {"policy-c", "policy-d"}),
        ("created_at", "2024-03-11T00:00:00Z", "datetime_lte", {"policy-b", "policy-c", "policy-d"}),
        ("created_at", "2024-03-11T09:00:00+09:00", "datetime_gt", {"policy-a"}),  # = 2024-03-11T00:00Z
        ("created_at", "2024-03-11", "datetime_gte", {"policy-a", "policy-b"}),
        ("created_at", "now-2d", "timediff_lt", {"policy-b", "policy-c", "policy-d"}),
        ("created_at", "now/w", "timediff_lte", {"policy-b", "policy-c", "policy-d"}),
        ("created_at", "now/d", "timediff_gt", {"policy-a"}),
        ("created_at", "now/m-2w", "timediff_gte", {"policy-a", "policy-b", "policy-c"}),
    ],
)
def test_filter_operator(coll, dialect, key, value, operator, expected):
    assert matching(coll, dialect(key, value, operator)) == expected


def test_missing_operator_means_eq(coll):
    assert matching(coll, {"k": "version", "v": 3}) == {"policy-c"}


@pytest.mark.parametrize("operator", ["eq", None])
def test_missing_value_means_null_for_eq(coll, operator):
    item = {"k": "score"} if operator is None else {"k": "score", "o": "eq"}
    assert matching(coll, item) == {"policy-d"}
    assert first_match({"filter": [item]}) == {**SCOPE, "score": {"$eq": None}}


def test_missing_value_means_null_for_not(coll):
    assert matching(coll, {"k": "score", "o": "not"}) == {"policy-a", "policy-b", "policy-c"}


def test_eq_and_not_always_use_operators():
    assert first_match({"filter": [{"k": "tags", "v": {"team": "ops"}}]}) == {**SCOPE, "tags": {"$eq": {"team": "ops"}}}
    assert first_match({"filter": [{"k": "tags", "v": {"team": "ops"}, "o": "not"}]}) == {
        **SCOPE,
        "tags": {"$ne": {"team": "ops"}},
    }


def test_eq_on_an_object_value_is_equality(coll):
    assert matching(coll, {"k": "tags", "v": {"team": "ops"}}) == {"policy-c"}


@pytest.mark.parametrize(
    "value, expected",
    [
        (2.0, 2),
        (-0.0, 0),
        (2.5, 2.5),
        (1e300, 1e300),
        ([1.0, {"a": 2.0}], [1, {"a": 2}]),
        (True, True),
    ],
)
def test_integral_floats_become_ints(value, expected):
    compiled = first_match({"filter": [{"k": "version", "v": value}]})["version"]["$eq"]
    assert compiled == expected
    assert type(compiled) is type(expected)


def test_contain_is_a_regex_document_not_a_compiled_pattern():
    assert first_match({"filter": [{"k": "name", "v": "a.b", "o": "contain"}]})["name"] == {
        "$regex": re.escape("a.b"),
        "$options": "i",
    }


@pytest.mark.parametrize("text", [".*", "(", "a+b", "+b.*(", "*", "[", "\\", "$state", "^a", "?"])
def test_contain_matches_regex_metacharacters_literally(coll, text):
    expected = {d["policy_id"] for d in DOCS if d["domain_id"] == "d1" and text.lower() in d["name"].lower()}
    assert matching(coll, {"k": "name", "v": text, "o": "contain"}) == expected


def test_contain_in_escapes_every_value(coll):
    assert matching(coll, {"k": "name", "v": [".*", "(viewer)"], "o": "contain_in"}) == {"policy-b", "policy-c"}


def test_not_contain_structure():
    assert first_match({"filter": [{"k": "name", "v": "a(", "o": "not_contain"}]})["$nor"] == [
        {"name": {"$regex": re.escape("a("), "$options": "i"}}
    ]


def test_not_contain_in_structure():
    match = first_match({"filter": [{"k": "name", "v": ["x", "y"], "o": "not_contain_in"}]})
    assert match == {
        **SCOPE,
        "$nor": [
            {"name": {"$regex": "x", "$options": "i"}},
            {"name": {"$regex": "y", "$options": "i"}},
        ],
    }


def test_not_contain_in_excludes_a_document_containing_any_value(coll):
    assert matching(coll, {"k": "name", "v": ["access", "only"], "o": "not_contain_in"}) == {"policy-c", "policy-d"}


def test_contain_in_and_regex_in_with_one_value_need_no_or():
    assert first_match({"filter": [{"k": "name", "v": ["x"], "o": "contain_in"}]}) == {
        **SCOPE,
        "name": {"$regex": "x", "$options": "i"},
    }
    assert first_match({"filter": [{"k": "name", "v": ["^x"], "o": "regex_in"}]}) == {**SCOPE, "name": {"$regex": "^x"}}


def test_match_structure():
    item = {"k": "permissions", "v": {"service": "identity", "scope.a": 1.0}, "o": "match"}
    assert first_match({"filter": [item]}) == {
        **SCOPE,
        "permissions": {"$elemMatch": {"service": {"$eq": "identity"}, "scope.a": {"$eq": 1}}},
    }


def test_datetime_fields_convert_iso_strings(coll):
    assert matching(coll, {"k": "created_at", "v": "2024-03-11T00:00:00Z"}) == {"policy-b"}
    assert matching(coll, {"k": "created_at", "v": "2024-03-11", "o": "not"}) == D1 - {"policy-b"}
    assert matching(coll, {"k": "created_at", "v": "2024-03-11T00:00:00", "o": "gte"}) == {"policy-a", "policy-b"}
    assert matching(coll, {"k": "created_at", "v": ["2024-03-01", "2024-02-01T00:00:00Z"], "o": "in"}) == {
        "policy-c",
        "policy-d",
    }
    assert matching(coll, {"k": "created_at", "v": ["2024-03-01"], "o": "not_in"}) == D1 - {"policy-c"}
    assert first_match({"filter": [{"k": "created_at", "v": "2024-03-11", "o": "lt"}]})["created_at"] == {
        "$lt": datetime(2024, 3, 11)
    }  # naive UTC, as pymongo reads BSON dates back


def test_non_datetime_fields_keep_iso_looking_strings():
    assert first_match({"filter": [{"k": "name", "v": "2024-03-11"}]})["name"] == {"$eq": "2024-03-11"}


def test_datetime_field_with_null_value_stays_null():
    assert first_match({"filter": [{"k": "created_at", "o": "eq"}]})["created_at"] == {"$eq": None}


def test_timediff_is_relative_to_the_injected_now():
    assert first_match({"filter": [{"k": "created_at", "v": "now/d-1d", "o": "timediff_gte"}]})["created_at"] == {
        "$gte": datetime(2024, 3, 12)
    }


# ======================================================================== filter errors


@pytest.mark.parametrize(
    "item, path",
    [
        ({"k": "version", "v": [1], "o": "lt"}, "query.filter[0].v"),
        ({"k": "version", "v": {"a": 1}, "o": "gte"}, "query.filter[0].v"),
        ({"k": "version", "o": "gt"}, "query.filter[0].value"),  # missing value for an operator that needs one
        ({"key": "version", "value": None, "operator": "lte"}, "query.filter[0].value"),
        ({"k": "score", "v": "true", "o": "exists"}, "query.filter[0].v"),
        ({"k": "score", "v": 1, "o": "exists"}, "query.filter[0].v"),
        ({"k": "score", "o": "exists"}, "query.filter[0].value"),
        ({"k": "name", "v": 5, "o": "contain"}, "query.filter[0].v"),
        ({"k": "name", "v": ["a"], "o": "not_contain"}, "query.filter[0].v"),
        ({"k": "name", "v": "a\x00", "o": "contain"}, "query.filter[0].v"),
        ({"k": "name", "v": "x" * 1025, "o": "contain"}, "query.filter[0].v"),
        ({"k": "version", "v": 1, "o": "in"}, "query.filter[0].v"),
        ({"k": "version", "v": "1", "o": "not_in"}, "query.filter[0].v"),
        ({"k": "version", "v": {"a": 1}, "o": "in"}, "query.filter[0].v"),
        ({"k": "name", "v": "a", "o": "contain_in"}, "query.filter[0].v"),
        ({"k": "name", "v": [], "o": "contain_in"}, "query.filter[0].v"),
        ({"k": "name", "v": ["a", 1], "o": "contain_in"}, "query.filter[0].v[1]"),
        ({"k": "name", "v": [], "o": "not_contain_in"}, "query.filter[0].v"),
        ({"k": "name", "v": ["a", None], "o": "not_contain_in"}, "query.filter[0].v[1]"),
        ({"k": "p", "v": [{"a": 1}], "o": "match"}, "query.filter[0].v"),
        ({"k": "p", "v": {}, "o": "match"}, "query.filter[0].v"),
        ({"k": "p", "v": "x", "o": "match"}, "query.filter[0].v"),
        ({"k": "p", "v": {"a": [1]}, "o": "match"}, "query.filter[0].v.a"),
        ({"k": "p", "v": {"a": {"b": 1}}, "o": "match"}, "query.filter[0].v.a"),
        ({"k": "p", "v": {"a": None}, "o": "match"}, "query.filter[0].v.a"),
        ({"k": "p", "v": {"_id": 1}, "o": "match"}, "query.filter[0].v._id"),
        ({"k": "p", "v": {"a..b": 1}, "o": "match"}, "query.filter[0].v.a..b"),
        ({"k": "p", "v": {"$where": "1"}, "o": "match"}, "query.filter[0].v"),
        ({"k": "name", "v": "(", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "a" * 257, "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "a\x00", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": 1, "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "(" * 600 + ")" * 600, "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "^a", "o": "regex_in"}, "query.filter[0].v"),
        ({"k": "name", "v": ["^a", "["], "o": "regex_in"}, "query.filter[0].v[1]"),
        ({"k": "created_at", "v": "yesterday", "o": "datetime_lt"}, "query.filter[0].v"),
        ({"k": "created_at", "v": 1710000000, "o": "datetime_gt"}, "query.filter[0].v"),
        ({"k": "created_at", "v": "now-5x", "o": "timediff_lt"}, "query.filter[0].v"),
        ({"k": "created_at", "v": "yesterday", "o": "timediff_gte"}, "query.filter[0].v"),
        ({"k": "created_at", "v": 5, "o": "timediff_gt"}, "query.filter[0].v"),
        ({"k": "created_at", "v": "now+999999999w", "o": "timediff_lte"}, "query.filter[0].v"),
        ({"k": "created_at", "v": "not a date"}, "query.filter[0].v"),  # datetime field: ISO required
        ({"k": "created_at", "v": ["2024-01-01", "soon"], "o": "in"}, "query.filter[0].v[1]"),
        ({"k": "version", "v": 2**63}, "query.filter[0].v"),
        ({"k": "version", "v": [1, 2**64]}, "query.filter[0].v[1]"),
        ({"k": "version", "v": b"bytes"}, "query.filter[0].v"),
        ({"k": "version", "v": (1, 2), "o": "in"}, "query.filter[0].v"),
        ({"k": "version", "v": re.compile("x")}, "query.filter[0].v"),
        ({"k": "version", "v": {1: "a"}}, "query.filter[0].v"),
    ],
)
def test_filter_value_errors(item, path):
    list_error({"filter": [item]}, path)


@pytest.mark.parametrize(
    "operator, path",
    [
        ("bogus", "query.filter[0].o"),
        ("EQ", "query.filter[0].o"),
        ("$eq", "query.filter[0].o"),
        ("", "query.filter[0].o"),
        (5, "query.filter[0].o"),
        (["eq"], "query.filter[0].o"),
    ],
)
def test_unknown_operator(operator, path):
    error = list_error({"filter": [{"k": "name", "v": "x", "o": operator}]}, path)
    assert "unknown operator" in error.description
    assert "_FILTER" not in error.description and "compile" not in error.description


def test_unknown_operator_in_the_long_dialect():
    list_error({"filter": [{"key": "name", "value": "x", "operator": "like"}]}, "query.filter[0].operator")


@pytest.mark.parametrize(
    "item, path",
    [
        ({"key": "a", "k": "a"}, "query.filter[0].k"),
        ({"k": "a", "value": 1, "v": 1}, "query.filter[0].v"),
        ({"k": "a", "operator": "eq", "o": "eq"}, "query.filter[0].o"),
    ],
)
def test_both_names_of_a_field_is_an_error(item, path):
    list_error({"filter": [item]}, path)


def test_missing_key_is_required():
    error = list_error({"filter": [{"v": 1}]}, "query.filter[0].key")
    assert isinstance(error, RequiredParameter)
    list_error({"filter": [{"k": None, "v": 1}]}, "query.filter[0].key")


@pytest.mark.parametrize(
    "item, path",
    [
        ({"k": "a", "x": 1}, "query.filter[0].x"),
        ("name=x", "query.filter[0]"),
        (["name", "x"], "query.filter[0]"),
        (None, "query.filter[0]"),
    ],
)
def test_malformed_filter_items(item, path):
    list_error({"filter": [item]}, path)


@pytest.mark.parametrize("group", ["filter", "filter_or"])
def test_filter_groups_must_be_lists(group):
    list_error({group: {"k": "a", "v": 1}}, f"query.{group}")
    list_error({group: "a=1"}, f"query.{group}")


def test_error_path_names_the_failing_item():
    list_error({"filter": [{"k": "a", "v": 1}, {"k": "b", "v": 1, "o": "nope"}]}, "query.filter[1].o")
    list_error({"filter_or": [{"k": "a", "v": 1}, {"k": "b", "v": 1, "o": "in"}]}, "query.filter_or[1].v")


# ======================================================================== keys and hostile input


@pytest.mark.parametrize(
    "key",
    [
        "$where",
        "$expr",
        "_id",
        "_secret",
        "a..b",
        "a.",
        ".a",
        "a.$b",
        "a.b$",
        "1abc",
        "a-b",
        "a b",
        "",
        "a\x00",
        "a.\x00",
        "x" * 257,
        "tags.$gt",
        "é",
    ],
)
def test_bad_filter_keys(key):
    list_error({"filter": [{"k": key, "v": 1}]}, "query.filter[0].k")


@pytest.mark.parametrize("key", [5, None, ["a"], {"a": 1}, True])
def test_non_string_keys(key):
    path = "query.filter[0].key" if key is None else "query.filter[0].k"
    list_error({"filter": [{"k": key, "v": 1}]}, path)


@pytest.mark.parametrize("key", ["tags.my key", "a.b.c", "tags.-x", "tags.é", "A1_b", "x" * 256, "tags._id"])
def test_good_keys(key):
    schema = QuerySchema(QueryKeys(fields=frozenset({key}), maps=frozenset({"tags"})), (), ())
    assert key in compile_list({"filter": [{"k": key, "v": 1}]}, schema, SCOPE).pipeline[0]["$match"]


@pytest.mark.parametrize(
    "value, path",
    [
        ({"$gt": ""}, "query.filter[0].v"),
        ({"$where": "sleep(1000)"}, "query.filter[0].v"),
        ({"a": {"$ne": 1}}, "query.filter[0].v.a"),
        ({"a": [{"b": {"$regex": "."}}]}, "query.filter[0].v.a[0].b"),
        ([{"$gt": 1}], "query.filter[0].v[0]"),
        ({"a\x00b": 1}, "query.filter[0].v"),
    ],
)
def test_operators_are_not_allowed_in_values(value, path):
    for operator in ("eq", "not", "in"):
        candidate = [value] if operator == "in" else value
        candidate_path = path.replace("query.filter[0].v", "query.filter[0].v[0]", 1) if operator == "in" else path
        error = list_error({"filter": [{"k": "tags", "v": candidate, "o": operator}]}, candidate_path)
        assert error.description == "operators are not allowed in values"


def test_operator_injection_does_not_match(coll):
    # `{"$gt": ""}` as an eq value would match every string; it is refused instead.
    list_error({"filter": [{"k": "name", "v": {"$gt": ""}}]}, "query.filter[0].v")
    assert matching(coll, {"k": "name", "v": "$state"}) == {"policy-d"}  # a `$` string is plain data


def test_deeply_nested_values_are_refused():
    value: object = 1
    for _ in range(40):
        value = {"a": value}
    error = list_error({"filter": [{"k": "tags", "v": value}]}, "query.filter[0].v" + ".a" * 33)
    assert "nested" in error.description


# ======================================================================== filter_or and keyword


def test_filter_or_ors_and_ands_with_filter(coll):
    either = [{"k": "version", "v": 1}, {"k": "state", "v": "DISABLED"}]
    assert set(list_ids(coll, {"filter_or": either})) == {"policy-a", "policy-c", "policy-d"}
    assert set(list_ids(coll, {"filter_or": either, "filter": [{"k": "tags.team", "v": "ops"}]})) == {"policy-c"}


def test_single_filter_or_item_needs_no_or():
    assert first_match({"filter_or": [{"k": "version", "v": 1}]}) == {**SCOPE, "version": {"$eq": 1}}


def test_empty_groups_add_no_condition():
    assert first_match({"filter": [], "filter_or": [], "keyword": ""}) == SCOPE


@pytest.mark.parametrize(
    "keyword, expected",
    [
        ("admin", {"policy-a"}),
        ("ADMIN", {"policy-a"}),
        ("policy-c", {"policy-c"}),
        ("admin viewer", {"policy-a", "policy-b"}),  # any token
        ("  admin   ", {"policy-a"}),
        ("+b.*(", {"policy-c"}),  # tokens are literal text
        (".*", {"policy-c"}),
        ("$state", {"policy-d"}),
        ("policy", D1),
        ("nothing-like-this", set()),
    ],
)
def test_keyword(coll, keyword, expected):
    assert set(list_ids(coll, {"keyword": keyword})) == expected


@pytest.mark.parametrize("keyword", ["", "   ", "\t\n"])
def test_blank_keyword_is_no_condition(keyword):
    assert first_match({"keyword": keyword}) == SCOPE


def test_keyword_ands_with_filter_or(coll):
    # SpaceONE OR-merges the keyword into filter_or; here it narrows both groups.
    query = {"filter_or": [{"k": "version", "v": 1}, {"k": "version", "v": 3}], "keyword": "access"}
    assert list_ids(coll, query) == ["policy-a"]
    match = first_match(query)
    assert list(match) == ["domain_id", "$or", "$and"] and len(match["$and"]) == 1


def test_keyword_structure_searches_every_field_for_every_token():
    match = first_match({"keyword": "a b a"})
    assert match == {
        **SCOPE,
        "$or": [
            {"policy_id": {"$regex": "a", "$options": "i"}},
            {"name": {"$regex": "a", "$options": "i"}},
            {"policy_id": {"$regex": "b", "$options": "i"}},
            {"name": {"$regex": "b", "$options": "i"}},
        ],
    }


@pytest.mark.parametrize("keyword", [5, ["a"], {"a": 1}, "a\x00", "x" * 1025, " ".join(f"w{i}" for i in range(33))])
def test_keyword_errors(keyword):
    list_error({"keyword": keyword}, "query.keyword")


def test_keyword_without_searchable_fields_is_an_error():
    schema = QuerySchema(keys=KEYS, keyword_fields=(), minimal_fields=())
    invalid("query.keyword", compile_list, {"keyword": "a"}, schema, SCOPE)
    assert compile_list({"keyword": " "}, schema, SCOPE).pipeline[0] == {"$match": SCOPE}


# ======================================================================== page


def test_page_start_and_limit(coll):
    query = {"sort": {"key": "policy_id"}}
    results, total = run_list(coll, {**query, "page": {"start": 1, "limit": 2}})
    assert [d["policy_id"] for d in results] == ["policy-a", "policy-b"] and total == 4
    results, total = run_list(coll, {**query, "page": {"start": 3, "limit": 2}})
    assert [d["policy_id"] for d in results] == ["policy-c", "policy-d"] and total == 4
    results, total = run_list(coll, {**query, "page": {"start": 4}})
    assert [d["policy_id"] for d in results] == ["policy-d"] and total == 4
    results, total = run_list(coll, {**query, "page": {"start": 9, "limit": 2}})
    assert results == [] and total == 4


@pytest.mark.parametrize(
    "page, skip, limit",
    [
        ({}, 0, 50),
        ({"start": 0, "limit": 0}, 0, 50),
        ({"start": 1}, 0, 50),
        ({"start": 5, "limit": 10}, 4, 10),
        ({"limit": 50}, 0, 50),
        ({"limit": 51}, 0, 50),  # capped, not an error
        ({"limit": 10**12}, 0, 50),
        ({"start": 2.0, "limit": 3.0}, 1, 3),  # Struct numbers may arrive as floats
        ({"start": 2**40}, 2**40 - 1, 50),
    ],
)
def test_page_structure(page, skip, limit):
    plan = compile_list({"page": page}, SCHEMA, SCOPE)
    assert plan.pipeline[2:] == [{"$skip": skip}, {"$limit": limit}]
    assert (plan.skip, plan.limit) == (skip, limit)


def test_no_page_returns_at_most_max_limit(coll):
    schema = QuerySchema(keys=KEYS, keyword_fields=(), minimal_fields=(), max_limit=3)
    results, total = run_list(coll, {}, schema=schema)
    assert len(results) == 3 and total == 4


@pytest.mark.parametrize(
    "page, path",
    [
        ({"limit": -1}, "query.page.limit"),
        ({"start": -1}, "query.page.start"),
        ({"limit": 2.5}, "query.page.limit"),
        ({"limit": "10"}, "query.page.limit"),
        ({"limit": True}, "query.page.limit"),
        ({"limit": None}, "query.page.limit"),
        ({"start": 2**63}, "query.page.start"),
        ({"start": float("inf")}, "query.page.start"),
        ({"start": float("nan")}, "query.page.start"),
        ({"size": 1}, "query.page.size"),
        ([1, 10], "query.page"),
        ("1-10", "query.page"),
    ],
)
def test_page_errors(page, path):
    list_error({"page": page}, path)


# ======================================================================== sort


@pytest.mark.parametrize(
    "sort",
    [
        {"key": "version", "desc": True},
        {"keys": [{"key": "version", "desc": True}]},
        [{"key": "version", "desc": True}],
    ],
)
def test_sort_forms(coll, sort):
    ids = list_ids(coll, {"sort": sort})
    assert ids[0] == "policy-c" and ids[-1] == "policy-a"


def test_sort_on_several_keys(coll):
    sort = {"keys": [{"key": "version"}, {"key": "name", "desc": True}]}
    assert list_ids(coll, {"sort": sort}) == ["policy-a", "policy-b", "policy-d", "policy-c"]


def test_sort_always_ends_with_the_id_tie_breaker():
    def sort_of(query, schema=SCHEMA):
        return compile_list(query, schema, SCOPE).pipeline[1]["$sort"]

    assert list(sort_of({"sort": {"key": "version", "desc": True}}).items()) == [("version", -1), ("_id", 1)]
    assert list(sort_of({}).items()) == [("name", 1), ("_id", 1)]
    assert list(sort_of({}, QuerySchema(KEYS, (), ())).items()) == [("_id", 1)]
    assert list(sort_of({}, QuerySchema(KEYS, (), (), default_sort=(("_id", True),))).items()) == [("_id", -1)]


def test_paging_over_tied_sort_keys_is_stable(coll):
    # versions 1, 2, 2, 3: the two policies with version 2 tie.
    pages = [
        run_list(coll, {"sort": {"key": "version"}, "page": {"start": start, "limit": 1}}) for start in range(1, 5)
    ]
    assert all(total == 4 for _, total in pages)
    seen = [results[0]["policy_id"] for results, _ in pages]
    assert sorted(seen) == sorted(D1)
    assert seen == list_ids(coll, {"sort": {"key": "version"}})


def test_empty_sort_uses_the_default(coll):
    for sort in ({}, [], {"keys": []}):
        assert compile_list({"sort": sort}, SCHEMA, SCOPE).pipeline[1] == {"$sort": {"name": 1, "_id": 1}}


@pytest.mark.parametrize(
    "sort, path",
    [
        ({"key": "a", "keys": [{"key": "b"}]}, "query.sort"),
        ({"desc": True, "keys": [{"key": "b"}]}, "query.sort"),
        ({"desc": True}, "query.sort.key"),
        ({"key": "_id"}, "query.sort.key"),
        ({"key": "$natural"}, "query.sort.key"),
        ({"key": "a", "desc": "yes"}, "query.sort.desc"),
        ({"key": "a", "order": 1}, "query.sort.order"),
        ({"keys": [{"key": "a"}, {"desc": True}]}, "query.sort.keys[1].key"),
        ({"keys": [{"key": "a"}, "b"]}, "query.sort.keys[1]"),
        ({"keys": "a"}, "query.sort.keys"),
        ([{"key": "a"}, {"key": "a.."}], "query.sort[1].key"),
        ([{"key": "a"}, {"key": "a", "desc": True}], "query.sort"),  # the same key twice
        ({"keys": [{"key": f"k{i}"} for i in range(32)]}, "query.sort.keys"),  # MongoDB allows 32 with _id
        ("name", "query.sort"),
    ],
)
def test_sort_errors(sort, path):
    list_error({"sort": sort}, path)


def test_31_sort_keys_are_allowed():
    schema = QuerySchema(QueryKeys(fields=frozenset(f"k{i}" for i in range(31))), (), ())
    sort = compile_list({"sort": [{"key": f"k{i}"} for i in range(31)]}, schema, SCOPE).pipeline[1]["$sort"]
    assert len(sort) == 32


# ======================================================================== only, minimal, count_only


def test_only_projects_the_listed_keys(coll):
    results, _ = run_list(
        coll, {"only": ["policy_id", "tags.team"], "sort": {"key": "policy_id"}, "page": {"limit": 1}}
    )
    assert {key for key in results[0] if key != "_id"} == {"policy_id", "tags"}
    assert set(results[0]["tags"]) == {"team"}


def test_minimal_projects_the_schema_fields(coll):
    results, total = run_list(coll, {"minimal": True})
    assert total == 4 and all(set(doc) - {"_id"} == {"policy_id", "name"} for doc in results)


def test_only_wins_over_minimal():
    pipeline = compile_list({"only": ["state"], "minimal": True}, SCHEMA, SCOPE).pipeline
    assert pipeline[-1] == {"$project": {"state": 1}}


def test_no_projection_by_default():
    assert compile_list({"minimal": False, "only": []}, SCHEMA, SCOPE).pipeline[2:] == [
        {"$skip": 0},
        {"$limit": 50},
    ]


def test_minimal_with_no_minimal_fields_projects_nothing():
    plan = compile_list({"minimal": True}, QuerySchema(KEYS, (), ()), SCOPE)
    assert plan.pipeline[2:] == [{"$skip": 0}, {"$limit": 1000}]


@pytest.mark.parametrize(
    "query, path",
    [
        ({"only": "name"}, "query.only"),
        ({"only": ["name", "_id"]}, "query.only[1]"),
        ({"only": ["name", "$where"]}, "query.only[1]"),
        ({"only": ["name", 1]}, "query.only[1]"),
        ({"only": ["tags", "tags.team"]}, "query.only"),  # MongoDB refuses overlapping projections
        ({"only": [f"k{i}" for i in range(101)]}, "query.only"),
        ({"minimal": "true"}, "query.minimal"),
        ({"count_only": 1}, "query.count_only"),
    ],
)
def test_projection_errors(query, path):
    list_error(query, path)


def test_count_only(coll):
    plan = compile_list({"count_only": True, "filter": [{"k": "state", "v": "ENABLED"}]}, SCHEMA, SCOPE)
    assert plan.count_only
    assert plan.count_pipeline == [{"$match": {**SCOPE, "state": {"$eq": "ENABLED"}}}, {"$count": "n"}]
    assert run_list(coll, {"count_only": True, "filter": [{"k": "state", "v": "ENABLED"}]}) == ([], 2)
    assert run_list(coll, {"count_only": True, "page": {"limit": 1}}) == ([], 4)


def test_count_only_still_validates_the_whole_query():
    list_error({"count_only": True, "page": {"limit": -1}}, "query.page.limit")
    list_error({"count_only": True, "sort": {"key": "$x"}}, "query.sort.key")


def test_count_of_on_empty_outputs():
    assert count_of([]) == 0  # MongoDB: $count of nothing emits no document
    assert count_of([{"n": 0}]) == 0
    assert count_of([{"n": 3}]) == 3


@pytest.mark.parametrize(
    "page, returned, total",
    [
        ({"limit": 10}, 3, 3),  # a short first page is everything
        ({"limit": 10}, 0, 0),  # an empty first page: nothing matched
        ({"start": 21, "limit": 10}, 4, 24),  # a short later page ends the results
        ({"limit": 10}, 10, None),  # a full page: more may follow
        ({"start": 21, "limit": 10}, 0, None),  # empty past the start: anything up to 20 matched
    ],
)
def test_page_total_tells_the_total_only_from_a_page_that_ends_the_results(page, returned, total):
    assert page_total(compile_list({"page": page}, SCHEMA, SCOPE), returned) == total


@pytest.mark.parametrize("start", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5])
def test_every_page_reports_the_exact_total(coll, start, limit):
    # run_list checks that page_total, when it answers, agrees with the count.
    assert run_list(coll, {"page": {"start": start, "limit": limit}})[1] == 4


# ======================================================================== top level


@pytest.mark.parametrize("query", ["filter", 5, [], ["filter"], True, 1.5])
def test_non_object_query(query):
    list_error(query, "query")
    stat_error(query, "query")


def test_unknown_top_level_fields():
    error = list_error({"filter": [], "limit": 5}, "query.limit")
    assert error.description == "unknown field"
    list_error({"aggregate": []}, "query.aggregate")  # a stat field in a list query
    stat_error({"distinct": "name", "sort": {"key": "name"}}, "query.sort")
    stat_error({"distinct": "name", "only": ["name"]}, "query.only")


def test_unset_fields_may_be_null(coll):
    query = {
        "filter": None,
        "filter_or": None,
        "keyword": None,
        "sort": None,
        "page": None,
        "only": None,
        "minimal": None,
        "count_only": None,
    }
    assert set(list_ids(coll, query)) == D1


def test_caps_on_filter_items():
    items = [{"k": "version", "v": i} for i in range(compiler.MAX_FILTERS)]
    compile_list({"filter": items, "filter_or": items}, SCHEMA, SCOPE)
    list_error({"filter": items + [{"k": "a", "v": 1}]}, "query.filter")
    list_error({"filter_or": items + [{"k": "a", "v": 1}]}, "query.filter_or")


def test_cap_on_list_values():
    compile_list({"filter": [{"k": "version", "v": list(range(1000)), "o": "in"}]}, SCHEMA, SCOPE)
    list_error({"filter": [{"k": "version", "v": list(range(1001)), "o": "in"}]}, "query.filter[0].v")
    list_error({"filter": [{"k": "tags", "v": {"a": list(range(1001))}}]}, "query.filter[0].v.a")


# ======================================================================== stat: distinct


def test_distinct_values(coll):
    # labels: arrays unwound, the scalar "solo" passes through, [] drops; nothing from d2.
    assert stat_results(coll, {"distinct": "labels"}) == ["admin", "prod", "solo", "viewer"]
    assert stat_results(coll, {"distinct": "tags.team"}) == ["core", "ops"]
    assert stat_results(coll, {"distinct": "score"}) == [1.5, 2.5, 4.0]  # missing drops


def test_distinct_with_filter_and_keyword(coll):
    assert stat_results(coll, {"distinct": "labels", "filter": [{"k": "state", "v": "ENABLED"}]}) == [
        "admin",
        "prod",
        "viewer",
    ]
    assert stat_results(coll, {"distinct": "state", "keyword": "viewer"}) == ["ENABLED"]


def test_distinct_paged(coll):
    assert run_stat(coll, {"distinct": "labels", "page": {"start": 2, "limit": 2}}) == (["prod", "solo"], 4)
    assert run_stat(coll, {"distinct": "labels", "page": {}}) == (["admin", "prod", "solo", "viewer"], 4)


def test_distinct_structure():
    plan = compile_stat({"distinct": "labels"}, SCHEMA, SCOPE)
    assert plan == StatPlan(
        [
            {"$match": SCOPE},
            {"$unwind": "$labels"},
            {"$group": {"_id": "$labels"}},
            {"$sort": {"_id": 1}},
            {"$limit": 50},
        ],
        paged=False,
        distinct=True,
    )


@pytest.mark.parametrize("distinct", ["_id", "$labels", "a..b", 5, "", ["labels"]])
def test_distinct_errors(distinct):
    stat_error({"distinct": distinct}, "query.distinct")


def test_stat_needs_aggregate_or_distinct():
    error = stat_error({}, "query.aggregate")
    assert error.description == "aggregate or distinct is required"
    stat_error(None, "query.aggregate")
    stat_error({"aggregate": []}, "query.aggregate")
    stat_error({"filter": [{"k": "a", "v": 1}]}, "query.aggregate")


def test_stat_refuses_both_aggregate_and_distinct():
    stat_error({"distinct": "labels", "aggregate": [{"count": {"name": "n"}}]}, "query.aggregate")


# ======================================================================== stat: group


def test_group_by_key_with_count(coll):
    results = group_stat(coll, {"operator": "count", "name": "total"}, keys=[{"key": "state", "name": "state"}])
    assert sorted(results, key=lambda r: r["state"]) == [
        {"state": "DISABLED", "total": 2},
        {"state": "ENABLED", "total": 2},
    ]


def test_group_short_dialect_and_nested_keys(coll):
    results = group_stat(
        coll,
        {"o": "sum", "k": "version", "n": "versions"},
        keys=[{"k": "tags.team", "n": "team"}, {"k": "state", "n": "state"}],
    )
    assert sorted(results, key=lambda r: (r.get("team", ""), r["state"])) == [
        {"state": "DISABLED", "versions": 2},  # no tags.team: the key name is absent
        {"team": "core", "state": "ENABLED", "versions": 3},
        {"team": "ops", "state": "DISABLED", "versions": 3},
    ]


def test_group_structure():
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "group": {
                        "keys": [
                            {"key": "state", "name": "state"},
                            {"key": "created_at", "name": "month", "date_format": "%Y-%m"},
                        ],
                        "fields": [{"key": "version", "name": "total", "operator": "sum"}],
                    }
                }
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1:] == [
        {
            "$group": {
                "_id": {"state": "$state", "month": {"$dateToString": {"format": "%Y-%m", "date": "$created_at"}}},
                "total": {"$sum": "$version"},
            }
        },
        {"$project": {"_id": 0, "state": "$_id.state", "month": "$_id.month", "total": 1}},
        {"$limit": 50},
    ]
    assert plan.paged is False and plan.distinct is False


def test_group_without_keys_groups_everything(coll):
    plan = compile_stat({"aggregate": [{"group": {"fields": [{"o": "count", "n": "n"}]}}]}, SCHEMA, SCOPE)
    assert plan.pipeline[1:3] == [{"$group": {"_id": None, "n": {"$sum": 1}}}, {"$project": {"_id": 0, "n": 1}}]
    assert group_stat(coll, {"o": "count", "n": "n"}) == [{"n": 4}]


def test_group_with_only_keys(coll):
    results = group_stat(coll, keys=[{"k": "state", "n": "s"}])
    assert sorted(r["s"] for r in results) == ["DISABLED", "ENABLED"]


@pytest.mark.parametrize(
    "operator, key, expected",
    [
        ("count", None, 4),
        ("count", "version", 4),  # the key is optional for count and not used
        ("sum", "version", 8),
        ("average", "version", 2),
        ("max", "version", 3),
        ("min", "version", 1),
        ("max", "created_at", datetime(2024, 3, 13, 8, 0)),
        ("sum", "score", 8.0),
        ("min", "score", 1.5),  # missing values are ignored
    ],
)
def test_group_field_operators(coll, operator, key, expected):
    field = {"o": operator, "n": "value"} | ({"k": key} if key else {})
    assert group_stat(coll, field) == [{"value": expected}]


def test_group_first_last_push_after_sort(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {"sort": {"key": "policy_id"}},
                {
                    "group": {
                        "fields": [
                            {"o": "first", "k": "policy_id", "n": "first"},
                            {"o": "last", "k": "policy_id", "n": "last"},
                            {"o": "push", "k": "version", "n": "versions"},
                        ]
                    }
                },
            ]
        },
    )
    assert results == [{"first": "policy-a", "last": "policy-d", "versions": [1, 2, 3, 2]}]


def test_group_add_to_set(coll):
    [result] = group_stat(coll, {"o": "add_to_set", "k": "version", "n": "versions"})
    assert sorted(result["versions"]) == [1, 2, 3]


def test_group_merge_objects(coll):
    results = group_stat(coll, {"o": "merge_objects", "k": "tags", "n": "tags"}, keys=[{"k": "state", "n": "state"}])
    by_state = {r["state"]: r["tags"] for r in results}
    assert by_state["ENABLED"]["env"] == "prod" and by_state["DISABLED"] == {"team": "ops"}


def test_group_push_and_add_to_set_objects(coll):
    sub_fields = [{"key": "policy_id", "name": "id"}, {"k": "version", "n": "v"}]
    [pushed] = group_stat(coll, {"o": "push", "n": "items", "fields": sub_fields})
    assert sorted(pushed["items"], key=lambda i: i["id"]) == [
        {"id": "policy-a", "v": 1},
        {"id": "policy-b", "v": 2},
        {"id": "policy-c", "v": 3},
        {"id": "policy-d", "v": 2},
    ]
    [unique] = group_stat(coll, {"o": "add_to_set", "n": "items", "fields": [{"k": "state", "n": "s"}]})
    assert sorted(unique["items"], key=lambda i: i["s"]) == [{"s": "DISABLED"}, {"s": "ENABLED"}]


def test_group_push_object_structure():
    plan = compile_stat(
        {
            "aggregate": [
                {"group": {"fields": [{"o": "push", "n": "items", "fields": [{"k": "policy_id", "n": "id"}]}]}}
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1] == {"$group": {"_id": None, "items": {"$push": {"id": "$policy_id"}}}}


def test_group_date_format(coll):
    results = group_stat(
        coll, {"o": "count", "n": "n"}, keys=[{"k": "created_at", "n": "month", "date_format": "%Y-%m"}]
    )
    assert sorted((r["month"], r["n"]) for r in results) == [("2024-02", 1), ("2024-03", 3)]


def test_group_date_format_all_specifiers_structure():
    # mongomock lacks %L: structure only.
    fmt = "%Y-%m-%dT%H:%M:%S.%L %j %w %u %U %V %G %Z %z %% week"
    plan = compile_stat(
        {"aggregate": [{"group": {"keys": [{"k": "created_at", "n": "d", "date_format": fmt}]}}]}, SCHEMA, SCOPE
    )
    assert plan.pipeline[1]["$group"]["_id"]["d"] == {"$dateToString": {"format": fmt, "date": "$created_at"}}


def test_group_empty_date_format_means_none():
    plan = compile_stat(
        {"aggregate": [{"group": {"keys": [{"k": "state", "n": "s", "date_format": ""}]}}]}, SCHEMA, SCOPE
    )
    assert plan.pipeline[1]["$group"]["_id"] == {"s": "$state"}


# ---- group conditions


@pytest.mark.parametrize(
    "condition, expected",
    [
        ({"k": "state", "v": "ENABLED"}, 2),
        ({"k": "state", "v": "ENABLED", "o": "eq"}, 2),
        ({"key": "state", "value": "ENABLED", "operator": "not"}, 2),
        ({"k": "version", "v": 2, "o": "lt"}, 1),
        ({"k": "version", "v": 2.0, "o": "lte"}, 3),
        ({"k": "version", "v": 2, "o": "gt"}, 1),
        ({"k": "version", "v": 2, "o": "gte"}, 3),
        ({"k": "version", "v": [1, 3], "o": "in"}, 2),
        ({"k": "created_at", "v": "2024-03-11T00:00:00Z", "o": "gte"}, 2),  # datetime field conversion
        ({"k": "name", "v": "$state"}, 1),  # a `$` string is a literal, not a field path
        ({"k": "state", "v": "$state"}, 0),  # as a field path it would compare state to itself: 4
    ],
)
def test_group_count_conditions(coll, condition, expected):
    assert group_stat(coll, {"o": "count", "n": "n", "conditions": [condition]}) == [{"n": expected}]


def test_group_not_in_condition_structure():
    # mongomock 4.3 evaluates the expression `$not` wrongly (it counts 0 here): structure only.
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "group": {
                        "fields": [
                            {"o": "count", "n": "n", "conditions": [{"k": "version", "v": [1.0, 3], "o": "not_in"}]}
                        ]
                    }
                }
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1]["$group"]["n"] == {
        "$sum": {"$cond": [{"$not": [{"$in": ["$version", {"$literal": [1, 3]}]}]}, 1, 0]}
    }


def test_group_conditions_and_together(coll):
    conditions = [{"k": "state", "v": "ENABLED"}, {"k": "version", "v": 1, "o": "gt"}]
    assert group_stat(coll, {"o": "count", "n": "n", "conditions": conditions}) == [{"n": 1}]


def test_group_conditions_on_other_operators(coll):
    condition = [{"k": "state", "v": "DISABLED"}]
    assert group_stat(coll, {"o": "sum", "k": "version", "n": "v", "conditions": condition}) == [{"v": 5}]
    assert group_stat(coll, {"o": "max", "k": "policy_id", "n": "v", "conditions": condition}) == [{"v": "policy-d"}]
    [pushed] = group_stat(coll, {"o": "push", "k": "version", "n": "v", "conditions": condition})
    assert sorted(pushed["v"], key=lambda v: (v is not None, v)) == [None, None, 2, 3]  # as SpaceONE: None otherwise


def test_group_condition_structure():
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "group": {
                        "fields": [
                            {"o": "count", "n": "c", "conditions": [{"k": "state", "v": "$x"}]},
                            {
                                "o": "sum",
                                "k": "version",
                                "n": "s",
                                "conditions": [
                                    {"k": "labels", "v": ["a"], "o": "not_in"},
                                    {"k": "score", "v": True, "o": "exists"},
                                ],
                            },
                            {
                                "o": "average",
                                "k": "version",
                                "n": "a",
                                "conditions": [{"k": "score", "v": False, "o": "exists"}],
                            },
                        ]
                    }
                }
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1]["$group"] == {
        "_id": None,
        "c": {"$sum": {"$cond": [{"$eq": ["$state", {"$literal": "$x"}]}, 1, 0]}},
        "s": {
            "$sum": {
                "$cond": [
                    {
                        "$and": [
                            {"$not": [{"$in": ["$labels", {"$literal": ["a"]}]}]},
                            {"$ne": [{"$type": "$score"}, "missing"]},
                        ]
                    },
                    "$version",
                    None,
                ]
            }
        },
        "a": {"$avg": {"$cond": [{"$eq": [{"$type": "$score"}, "missing"]}, "$version", None]}},
    }


def test_group_condition_object_values_are_literal():
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "group": {
                        "fields": [{"o": "count", "n": "c", "conditions": [{"k": "tags", "v": {"team": "$state"}}]}]
                    }
                }
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1]["$group"]["c"]["$sum"]["$cond"][0] == {"$eq": ["$tags", {"$literal": {"team": "$state"}}]}


# ---- group errors

G = "query.aggregate[0].group"


@pytest.mark.parametrize(
    "group, path",
    [
        ({}, G),
        ({"keys": [], "fields": []}, G),
        ("state", G),
        ({"keys": "state"}, f"{G}.keys"),
        ({"fields": {"o": "count"}}, f"{G}.fields"),
        ({"by": ["state"]}, f"{G}.by"),
        ({"keys": [{"n": "s"}]}, f"{G}.keys[0].key"),
        ({"keys": [{"k": "state"}]}, f"{G}.keys[0].name"),
        ({"keys": [{"k": "$state", "n": "s"}]}, f"{G}.keys[0].k"),
        ({"keys": [{"k": "state", "n": "s.t"}]}, f"{G}.keys[0].n"),
        ({"keys": [{"k": "state", "n": "_id"}]}, f"{G}.keys[0].n"),
        ({"keys": [{"k": "state", "n": "$s"}]}, f"{G}.keys[0].n"),
        ({"keys": [{"k": "state", "key": "state", "n": "s"}]}, f"{G}.keys[0].k"),
        ({"keys": [{"k": "state", "n": "s", "x": 1}]}, f"{G}.keys[0].x"),
        ({"keys": [{"k": "created_at", "n": "d", "date_format": "%Q"}]}, f"{G}.keys[0].date_format"),
        ({"keys": [{"k": "created_at", "n": "d", "date_format": "$year"}]}, f"{G}.keys[0].date_format"),
        ({"keys": [{"k": "created_at", "n": "d", "date_format": "%"}]}, f"{G}.keys[0].date_format"),
        ({"keys": [{"k": "created_at", "n": "d", "date_format": 5}]}, f"{G}.keys[0].date_format"),
        ({"keys": [{"k": "created_at", "n": "d", "date_format": "%Y" * 200}]}, f"{G}.keys[0].date_format"),
        ({"keys": [{"k": "state", "n": "s"}, {"k": "version", "n": "s"}]}, f"{G}.keys[1].n"),
        ({"keys": [{"k": "state", "n": "s"}], "fields": [{"o": "count", "n": "s"}]}, f"{G}.fields[0].n"),
        ({"fields": [{"o": "count"}]}, f"{G}.fields[0].name"),
        ({"fields": [{"n": "c"}]}, f"{G}.fields[0].operator"),
        ({"fields": [{"o": "median", "k": "version", "n": "m"}]}, f"{G}.fields[0].o"),
        ({"fields": [{"operator": "avg", "key": "version", "name": "m"}]}, f"{G}.fields[0].operator"),
        ({"fields": [{"o": 5, "n": "m"}]}, f"{G}.fields[0].o"),
        ({"fields": [{"o": "sum", "n": "m"}]}, f"{G}.fields[0].key"),
        ({"fields": [{"o": "sum", "k": "_id", "n": "m"}]}, f"{G}.fields[0].k"),
        ({"fields": [{"o": "count", "k": "a..b", "n": "m"}]}, f"{G}.fields[0].k"),
        (
            {"fields": [{"o": "sum", "k": "version", "n": "m", "fields": [{"k": "a", "n": "b"}]}]},
            f"{G}.fields[0].fields",
        ),
        ({"fields": [{"o": "push", "n": "m", "fields": [{"k": "a"}]}]}, f"{G}.fields[0].fields[0].name"),
        ({"fields": [{"o": "push", "n": "m", "fields": [{"n": "a"}]}]}, f"{G}.fields[0].fields[0].key"),
        ({"fields": [{"o": "push", "n": "m", "fields": [{"k": "$a", "n": "a"}]}]}, f"{G}.fields[0].fields[0].k"),
        (
            {"fields": [{"o": "push", "n": "m", "fields": [{"k": "a", "n": "a"}, {"k": "b", "n": "a"}]}]},
            f"{G}.fields[0].fields[1].n",
        ),
        ({"fields": [{"o": "push", "n": "m", "fields": ["a"]}]}, f"{G}.fields[0].fields[0]"),
        (
            {"fields": [{"o": "push", "n": "m", "fields": [{"k": "a", "n": "a", "o": "sum"}]}]},
            f"{G}.fields[0].fields[0].o",
        ),
        ({"fields": [{"o": "count", "n": "c", "extra": 1}]}, f"{G}.fields[0].extra"),
        ({"fields": [{"o": "count", "n": "c", "conditions": {"k": "a"}}]}, f"{G}.fields[0].conditions"),
        ({"fields": [{"o": "count", "n": "c", "conditions": [{"v": 1}]}]}, f"{G}.fields[0].conditions[0].key"),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": 1, "o": "contain"}]}]},
            f"{G}.fields[0].conditions[0].o",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": 1, "o": "in"}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": "x", "o": "not_in"}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": "yes", "o": "exists"}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": [1], "o": "gt"}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "o": "lt"}]}]},
            f"{G}.fields[0].conditions[0].value",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": {"$gt": 1}}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "created_at", "v": "soon"}]}]},
            f"{G}.fields[0].conditions[0].v",
        ),
        (
            {"fields": [{"o": "count", "n": "c", "conditions": [{"k": "$where", "v": 1}]}]},
            f"{G}.fields[0].conditions[0].k",
        ),
        ({"fields": [{"o": "count", "n": "c", "conditions": [{"k": "a", "v": 1}] * 101}]}, f"{G}.fields[0].conditions"),
        ({"fields": [{"o": "count", "n": f"c{i}"} for i in range(101)]}, f"{G}.fields"),
    ],
)
def test_group_errors(group, path):
    stat_error({"aggregate": [{"group": group}]}, path)


# ======================================================================== stat: other stages


def test_unwind_and_count(coll):
    assert stat_results(coll, {"aggregate": [{"unwind": {"path": "labels"}}, {"count": {"name": "total"}}]}) == [
        {"total": 4}
    ]  # admin, prod, viewer and the scalar "solo"


def test_unwind_nested_path(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {"unwind": {"path": "permissions"}},
                {
                    "group": {
                        "keys": [{"k": "permissions.service", "n": "service"}],
                        "fields": [{"o": "count", "n": "n"}],
                    }
                },
                {"sort": {"key": "service"}},
            ]
        },
    )
    assert results == [{"service": "identity", "n": 2}, {"service": "inventory", "n": 1}]


def test_sort_limit_skip(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {"sort": {"keys": [{"key": "version", "desc": True}, {"key": "policy_id"}]}},
                {"skip": 1.0},
                {"limit": 2},
                {"project": {"fields": [{"k": "policy_id", "n": "id"}], "exclude_keys": True}},
            ]
        },
    )
    assert results == [{"id": "policy-b"}, {"id": "policy-d"}]


def test_sort_by_a_group_output_name(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {
                    "group": {
                        "keys": [{"k": "state", "n": "state"}],
                        "fields": [{"o": "sum", "k": "version", "n": "total"}],
                    }
                },
                {"sort": {"key": "total", "desc": True}},
            ]
        },
    )
    assert results == [{"state": "DISABLED", "total": 5}, {"state": "ENABLED", "total": 3}]


def test_project_operators(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {"sort": {"key": "policy_id"}},
                {
                    "project": {
                        "exclude_keys": True,
                        "fields": [
                            {"key": "policy_id", "name": "id"},
                            {"k": "permissions", "n": "size", "o": "size"},
                            {"k": "permissions.service", "n": "services"},
                            {"k": "labels", "n": "label_count", "o": "size"},
                        ],
                    }
                },
            ]
        },
    )
    assert results == [
        {"id": "policy-a", "size": 2, "services": ["identity", "inventory"], "label_count": 2},
        {"id": "policy-b", "size": 1, "services": ["identity"], "label_count": 1},
        {"id": "policy-c", "size": 0, "services": [], "label_count": 0},
        {"id": "policy-d", "size": 0, "label_count": 0},  # missing array and scalar labels count 0
    ]


def test_project_array_aggregates(coll):
    results = stat_results(
        coll,
        {
            "aggregate": [
                {
                    "group": {
                        "keys": [{"k": "state", "n": "state"}],
                        "fields": [{"o": "push", "k": "version", "n": "vs"}],
                    }
                },
                {
                    "project": {
                        "exclude_keys": True,
                        "fields": [
                            {"k": "state", "n": "state"},
                            {"k": "vs", "n": "sum", "o": "sum"},
                            {"k": "vs", "n": "avg", "o": "average"},
                            {"k": "vs", "n": "max", "o": "max"},
                            {"k": "vs", "n": "min", "o": "min"},
                        ],
                    }
                },
                {"sort": {"key": "state"}},
            ]
        },
    )
    assert results == [
        {"state": "DISABLED", "sum": 5, "avg": 2.5, "max": 3, "min": 2},
        {"state": "ENABLED", "sum": 3, "avg": 1.5, "max": 2, "min": 1},
    ]


def test_project_structure():
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "project": {
                        "fields": [
                            {"k": "a", "n": "a"},
                            {"k": "b", "n": "b", "o": "size"},
                            {"k": "c", "n": "c", "o": "sum"},
                            {"k": "d", "n": "d", "o": "average"},
                            {"k": "e", "n": "e", "o": "max"},
                            {"k": "f", "n": "f", "o": "min"},
                        ]
                    }
                }
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1] == {
        "$project": {
            "a": "$a",
            "b": {"$cond": [{"$isArray": "$b"}, {"$size": "$b"}, 0]},
            "c": {"$sum": "$c"},
            "d": {"$avg": "$d"},
            "e": {"$max": "$e"},
            "f": {"$min": "$f"},
        }
    }


def test_project_keeps_id_unless_excluded(coll):
    results = stat_results(coll, {"aggregate": [{"project": {"fields": [{"k": "policy_id", "n": "id"}]}}]})
    assert all(set(doc) == {"_id", "id"} for doc in results)


def test_stage_structures():
    plan = compile_stat(
        {
            "aggregate": [
                {"unwind": {"path": "tags.my key"}},
                {"count": {"name": "n"}},
                {"sort": {"keys": [{"key": "n", "desc": True}]}},
                {"limit": 3.0},
                {"skip": 0},
            ]
        },
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[1:] == [
        {"$unwind": "$tags.my key"},
        {"$count": "n"},
        {"$sort": {"n": -1}},
        {"$limit": 3},
        {"$skip": 0},
        {"$limit": 50},
    ]


A = "query.aggregate"


@pytest.mark.parametrize(
    "stage, path",
    [
        ({}, f"{A}[0]"),
        ({"match": {"a": 1}}, f"{A}[0]"),
        ({"$match": {"a": 1}}, f"{A}[0]"),
        ({"$lookup": {"from": "users"}}, f"{A}[0]"),
        ({"limit": 1, "skip": 1}, f"{A}[0]"),
        ({"group": {"fields": [{"o": "count", "n": "n"}]}, "count": {"name": "n"}}, f"{A}[0]"),
        ("group", f"{A}[0]"),
        ([{"limit": 1}], f"{A}[0]"),
        ({"unwind": {}}, f"{A}[0].unwind.path"),
        ({"unwind": {"path": "$labels"}}, f"{A}[0].unwind.path"),
        (
            {"unwind": {"path": "labels", "preserveNullAndEmptyArrays": True}},
            f"{A}[0].unwind.preserveNullAndEmptyArrays",
        ),
        ({"unwind": "labels"}, f"{A}[0].unwind"),
        ({"count": {}}, f"{A}[0].count.name"),
        ({"count": {"name": "a.b"}}, f"{A}[0].count.name"),
        ({"count": {"name": "$n"}}, f"{A}[0].count.name"),
        ({"count": "n"}, f"{A}[0].count"),
        ({"sort": {}}, f"{A}[0].sort"),
        ({"sort": {"key": "$n"}}, f"{A}[0].sort.key"),
        ({"sort": {"key": "n", "keys": [{"key": "m"}]}}, f"{A}[0].sort"),
        ({"sort": {"keys": [{"key": "n", "desc": 1}]}}, f"{A}[0].sort.keys[0].desc"),
        ({"sort": [{"key": "n"}]}, f"{A}[0].sort"),  # the proto's AggregateSort is an object
        ({"project": {}}, f"{A}[0].project.fields"),
        ({"project": {"fields": []}}, f"{A}[0].project.fields"),
        ({"project": {"fields": [{"k": "a"}]}}, f"{A}[0].project.fields[0].name"),
        ({"project": {"fields": [{"n": "a"}]}}, f"{A}[0].project.fields[0].key"),
        ({"project": {"fields": [{"k": "a", "n": "a", "o": "len"}]}}, f"{A}[0].project.fields[0].o"),
        ({"project": {"fields": [{"k": "a", "n": "a", "operator": "$size"}]}}, f"{A}[0].project.fields[0].operator"),
        ({"project": {"fields": [{"k": "_id", "n": "a"}]}}, f"{A}[0].project.fields[0].k"),
        ({"project": {"fields": [{"k": "a", "n": "a"}, {"k": "b", "n": "a"}]}}, f"{A}[0].project.fields[1].n"),
        ({"project": {"fields": [{"k": "a", "n": "a"}], "exclude_keys": "yes"}}, f"{A}[0].project.exclude_keys"),
        ({"project": {"fields": [{"k": "a", "n": "a"}], "include": 1}}, f"{A}[0].project.include"),
        ({"limit": 0}, f"{A}[0].limit"),
        ({"limit": -1}, f"{A}[0].limit"),
        ({"limit": 1.5}, f"{A}[0].limit"),
        ({"limit": "3"}, f"{A}[0].limit"),
        ({"limit": True}, f"{A}[0].limit"),
        ({"skip": -1}, f"{A}[0].skip"),
        ({"skip": 2**63}, f"{A}[0].skip"),
        ({"skip": [1]}, f"{A}[0].skip"),
    ],
)
def test_stage_errors(stage, path):
    stat_error({"aggregate": [stage]}, path)


def test_stage_error_names_the_stage_index():
    stat_error({"aggregate": [{"limit": 1}, {"skip": 1}, {"bogus": {}}]}, "query.aggregate[2]")
    stat_error(
        {"aggregate": [{"limit": 1}, {"skip": 1}, {"group": {"fields": [{"o": "nope", "n": "x"}]}}]},
        "query.aggregate[2].group.fields[0].o",
    )


def test_aggregate_must_be_a_list_of_at_most_50_stages():
    compile_stat({"aggregate": [{"skip": 0}] * compiler.MAX_AGGREGATE_STAGES}, SCHEMA, SCOPE)
    stat_error({"aggregate": [{"skip": 0}] * (compiler.MAX_AGGREGATE_STAGES + 1)}, "query.aggregate")
    stat_error({"aggregate": {"limit": 1}}, "query.aggregate")


# ======================================================================== stat: page, scope, filters


def test_stat_page_is_one_facet(coll):
    query = {
        "aggregate": [
            {"sort": {"key": "policy_id"}},
            {"project": {"fields": [{"k": "policy_id", "n": "id"}], "exclude_keys": True}},
        ],
        "page": {"start": 2, "limit": 2},
    }
    plan = compile_stat(query, SCHEMA, SCOPE)
    assert plan.paged is True
    assert plan.pipeline[-1] == {"$facet": {"results": [{"$skip": 1}, {"$limit": 2}], "total_count": [{"$count": "n"}]}}
    assert run_stat(coll, query) == ([{"id": "policy-b"}, {"id": "policy-c"}], 4)


def test_stat_page_limit_is_capped():
    plan = compile_stat({"distinct": "name", "page": {"limit": 10**6}}, SCHEMA, SCOPE)
    assert plan.pipeline[-1]["$facet"]["results"] == [{"$skip": 0}, {"$limit": 50}]


def test_stat_page_errors():
    stat_error({"distinct": "name", "page": {"limit": -5}}, "query.page.limit")
    stat_error({"distinct": "name", "page": "all"}, "query.page")


def test_stat_without_page_is_capped(coll):
    schema = QuerySchema(KEYS, (), (), max_limit=2)
    plan = compile_stat({"aggregate": [{"unwind": {"path": "labels"}}]}, schema, SCOPE)
    assert plan.pipeline[-1] == {"$limit": 2}
    assert len(unpack_stat(plan, list(coll.aggregate(plan.pipeline)))[0]) == 2


def test_stat_filters_and_scope(coll):
    query = {
        "aggregate": [{"group": {"fields": [{"o": "count", "n": "n"}]}}],
        "filter": [{"k": "labels", "v": "admin"}],
        "filter_or": [{"k": "version", "v": 1}],
    }
    assert stat_results(coll, query) == [{"n": 1}]
    assert list(compile_stat(query, SCHEMA, SCOPE).pipeline[0]["$match"])[0] == "domain_id"
    assert stat_results(
        coll, {"aggregate": [{"group": {"fields": [{"o": "count", "n": "n"}]}}], "keyword": "only"}
    ) == [{"n": 1}]
    assert stat_results(coll, {"distinct": "policy_id", "filter": [{"k": "domain_id", "v": "d2"}]}) == []


def test_stat_filter_errors():
    stat_error({"distinct": "name", "filter": [{"k": "a", "v": 1, "o": "like"}]}, "query.filter[0].o")
    stat_error({"distinct": "name", "keyword": 5}, "query.keyword")


def test_unpack_stat_on_empty_outputs():
    paged = compile_stat({"aggregate": [{"skip": 0}], "page": {}}, SCHEMA, SCOPE)
    distinct = compile_stat({"distinct": "name", "page": {}}, SCHEMA, SCOPE)
    plain = compile_stat({"aggregate": [{"skip": 0}]}, SCHEMA, SCOPE)
    assert unpack_stat(paged, []) == ([], 0)
    assert unpack_stat(paged, [{"results": [], "total_count": []}]) == ([], 0)
    assert unpack_stat(paged, [{"results": [{"a": 1}], "total_count": [{"n": 9}]}]) == ([{"a": 1}], 9)
    assert unpack_stat(distinct, [{"results": [{"_id": "x"}], "total_count": [{"n": 1}]}]) == (["x"], 1)
    assert unpack_stat(plain, []) == ([], None)
    assert unpack_stat(plain, [{"a": 1}]) == ([{"a": 1}], None)


# ======================================================================== fuzzing: only InvalidArgument escapes

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _mostly(strategy):
    """Usually the well-typed strategy, sometimes arbitrary JSON in its place."""
    return st.one_of(strategy, strategy, strategy, _json)


_keys = _mostly(
    st.sampled_from(["name", "tags.team", "labels", "created_at", "version", "permissions"])
    | st.sampled_from(["$where", "_id", "a..b", "", "a.$b", "tags.my key"])
)
_names = _mostly(st.sampled_from(["n", "total", "value"]) | st.sampled_from(["_id", "$n", "a.b", ""]))
_operators = _mostly(
    st.sampled_from(sorted(compiler._FILTER_OPERATORS))
    | st.sampled_from(["bogus", "size", "count", "sum", "push", "add_to_set", "merge_objects", "average"])
)
_values = st.one_of(
    _json,
    st.sampled_from(["now-1d", "now/w+1h", "2024-03-01T00:00:00Z", "^a", "a("]),
    st.lists(st.sampled_from(["a", "b", "now", "2024-01-01"]), max_size=3),
)
_filter_item = st.fixed_dictionaries({"k": _keys}, optional={"v": _values, "o": _operators}) | st.fixed_dictionaries(
    {}, optional={"key": _keys, "value": _values, "operator": _operators, "k": _keys}
)
_filter_items = _mostly(st.lists(_mostly(_filter_item), max_size=3))
_page = _mostly(
    st.fixed_dictionaries({}, optional={"start": _mostly(st.integers(-1, 5)), "limit": _mostly(st.integers(-1, 5))})
)
_sort_key = st.fixed_dictionaries({"key": _keys}, optional={"desc": _mostly(st.booleans())})
_sort = _mostly(
    _sort_key
    | st.lists(_sort_key, max_size=2)
    | st.fixed_dictionaries({"keys": _mostly(st.lists(_sort_key, max_size=2))})
)
_common = {"filter": _filter_items, "filter_or": _filter_items, "keyword": _mostly(st.text(max_size=8)), "page": _page}
_list_queries = _mostly(
    st.fixed_dictionaries(
        {},
        optional={
            **_common,
            "sort": _sort,
            "only": _mostly(st.lists(_keys, max_size=3)),
            "minimal": _mostly(st.booleans()),
            "count_only": _mostly(st.booleans()),
        },
    )
)

_named_key = st.fixed_dictionaries(
    {"k": _keys, "n": _names}, optional={"date_format": _mostly(st.sampled_from(["%Y-%m", "%Q", "$x", ""]))}
)
_group_field = st.fixed_dictionaries(
    {"n": _names, "o": _operators},
    optional={"k": _keys, "fields": _mostly(st.lists(_named_key, max_size=2)), "conditions": _filter_items},
)
_stage = _mostly(
    st.one_of(
        st.fixed_dictionaries(
            {
                "group": _mostly(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "keys": _mostly(st.lists(_named_key, max_size=2)),
                            "fields": _mostly(st.lists(_group_field, max_size=2)),
                        },
                    )
                )
            }
        ),
        st.fixed_dictionaries({"unwind": _mostly(st.fixed_dictionaries({"path": _keys}))}),
        st.fixed_dictionaries({"count": _mostly(st.fixed_dictionaries({"name": _names}))}),
        st.fixed_dictionaries({"sort": _sort}),
        st.fixed_dictionaries(
            {
                "project": _mostly(
                    st.fixed_dictionaries(
                        {
                            "fields": _mostly(
                                st.lists(
                                    st.fixed_dictionaries({"k": _keys, "n": _names}, optional={"o": _operators}),
                                    max_size=2,
                                )
                            )
                        },
                        optional={"exclude_keys": _mostly(st.booleans())},
                    )
                )
            }
        ),
        st.fixed_dictionaries({"limit": _mostly(st.integers(-1, 3))}),
        st.fixed_dictionaries({"skip": _mostly(st.integers(-1, 3))}),
        st.dictionaries(st.sampled_from(["limit", "skip", "match", "$out"]), _json, max_size=2),
    )
)
_stat_queries = _mostly(
    st.fixed_dictionaries({}, optional=_common).flatmap(
        lambda common: st.one_of(
            st.fixed_dictionaries({"aggregate": _mostly(st.lists(_stage, max_size=3))}),
            st.fixed_dictionaries({"distinct": _keys}),
            st.fixed_dictionaries({}, optional={"aggregate": _json, "distinct": _json}),
        ).map(lambda body: {**common, **body})
    )
)
_aggregate_queries = st.fixed_dictionaries(
    {"aggregate": st.lists(_stage, min_size=1, max_size=4)}, optional={"page": _page}
)

_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compiles_or_is_invalid(compile_, query) -> None:
    """The only acceptable outcomes: a well-formed pipeline, or InvalidArgument under `query`."""
    try:
        pipeline = compile_(query, SCHEMA, SCOPE, now=NOW).pipeline
    except InvalidArgument as error:
        assert error.field == "query" or error.field.startswith("query.")
        return
    bson.encode({"pipeline": pipeline})  # encodable: no NUL keys, no out-of-range ints, no foreign types
    match = pipeline[0]["$match"]
    assert next(iter(match.items())) in SCOPE.items() or match["$and"][0] == SCOPE


@_FUZZ
@given(_list_queries)
def test_fuzz_list(query):
    _compiles_or_is_invalid(compile_list, query)


@_FUZZ
@given(_stat_queries)
def test_fuzz_stat(query):
    _compiles_or_is_invalid(compile_stat, query)


@_FUZZ
@given(_aggregate_queries)
def test_fuzz_aggregate_stages(query):
    _compiles_or_is_invalid(compile_stat, query)


@_FUZZ
@given(_json)
def test_fuzz_arbitrary_json(query):
    _compiles_or_is_invalid(compile_list, query)
    _compiles_or_is_invalid(compile_stat, query)


# -- user regexes: the safe subset and the per-query budget -------------------------------------


@pytest.mark.parametrize(
    "item, path",
    [
        ({"k": "name", "v": "^(a+)+$", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "(a|aa)*", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": r"(a)\1", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "^.*a.*b", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "a{1000}", "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": "x" * 257, "o": "regex"}, "query.filter[0].v"),
        ({"k": "name", "v": ["^a", r"(\w+\s?)+$"], "o": "regex_in"}, "query.filter[0].v[1]"),
    ],
)
def test_unsafe_regexes_name_their_field(item, path):
    with pytest.raises(InvalidArgument) as info:
        first_match({"filter": [item]})
    assert info.value.field == path


def test_filter_or_regex_paths_are_exact():
    with pytest.raises(InvalidArgument) as info:
        first_match({"filter_or": [{"k": "name", "v": "^a"}, {"k": "name", "v": "(a*)*b", "o": "regex"}]})
    assert info.value.field == "query.filter_or[1].v"


def test_a_leading_dot_star_is_not_sent():
    assert first_match({"filter": [{"k": "name", "v": ".*prod.*", "o": "regex"}]}) == {
        **SCOPE,
        "name": {"$regex": "prod.*"},
    }


def test_a_query_cannot_send_thousands_of_searches():
    """Each search is cheap; together they are bounded: the first one over the budget is named."""
    many = [f"team-{i:04d}-[a-z]+-prod" for i in range(compiler.MAX_VALUES)]
    with pytest.raises(InvalidArgument) as info:
        first_match({"filter": [{"k": "name", "v": many, "o": "regex_in"}]})
    assert info.value.field.startswith("query.filter[0].v[")
    texts = ["a" * 1024] * 20
    with pytest.raises(InvalidArgument) as info:
        first_match({"filter": [{"k": "name", "v": texts, "o": "contain_in"}]})
    assert info.value.field == "query.filter[0].v[8]"


def test_the_budget_allows_a_full_keyword_and_several_regexes():
    words = " ".join(f"w{i:03d}" + "x" * 27 for i in range(32))[:1024]
    first_match({"keyword": words, "filter": [{"k": "name", "v": ["^a", "b$", "prod", r"web-\d+$"], "o": "regex_in"}]})
