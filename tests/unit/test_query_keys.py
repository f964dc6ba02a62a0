"""The keys a query may name: every part of a query refuses a key that names no field of the
resource (INVALID_ARGUMENT at the key's path, listing the valid keys), answers' names resolve to
where the value is stored, a joined field joins first, and each resource declares every field
its answers show. Joins are run on mongomock to show what they select."""

from __future__ import annotations

from datetime import datetime

import mongomock
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from policyhub._gen.spaceone.api.repository.v1 import (
    api_key_pb2,
    assignment_pb2,
    audit_pb2,
    group_pb2,
    policy_pb2,
    repository_pb2,
    role_pb2,
)
from policyhub.errors import InvalidArgument
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.model import GroupDocument, RoleDocument
from policyhub.query import Join, QueryKeys, QuerySchema, compile_list, compile_stat, unpack_stat
from policyhub.query.keys import UnknownKey

SCOPE = {"domain_id": "d1"}
LOOKUP = {"$lookup": {"from": "repository", "localField": "repository_id", "foreignField": "repository_id", "as": "r"}}
UNWIND = {"$unwind": {"path": "$r", "preserveNullAndEmptyArrays": True}}
KEYS = QueryKeys(
    fields=frozenset(
        {"policy_id", "name", "created_at", "repository_id", "subject_type", "statements", "statements.effect"}
    ),
    maps=frozenset({"tags"}),
    aliases={"subject.type": "subject_type", "r.repository_id": "repository_id"},
    computed={"member_count": "counted when the answer is built"},
    joins=(Join(prefix="r", fields=frozenset({"name"}), local_field="repository_id", stages=(LOOKUP, UNWIND)),),
)
SCHEMA = QuerySchema(
    keys=KEYS, keyword_fields=("name",), minimal_fields=("policy_id",), default_sort=(("created_at", False),)
)
# Every key but the computed member_count, sorted.
VALID = (
    "valid keys: created_at, name, policy_id, r.name, r.repository_id, repository_id, statements, "
    "statements.effect, subject.type, subject_type, tags, tags.<key>"
)


def invalid(path: str, call, query) -> str:
    with pytest.raises(InvalidArgument) as info:
        call(query, SCHEMA, SCOPE)
    assert info.value.field == path
    return str(info.value)


# ---------------------------------------------------------------- every part refuses an unknown key


@pytest.mark.parametrize(
    "query, path",
    [
        ({"filter": [{"k": "nmae", "v": "x"}]}, "query.filter[0].k"),
        ({"filter": [{"key": "nmae", "value": "x"}]}, "query.filter[0].key"),
        ({"filter_or": [{"k": "name", "v": "x"}, {"k": "nmae", "v": "x"}]}, "query.filter_or[1].k"),
        ({"filter": [{"k": "statements", "v": {"efect": "ALLOW"}, "o": "match"}]}, "query.filter[0].v.efect"),
        ({"sort": {"key": "nmae"}}, "query.sort.key"),
        ({"sort": {"keys": [{"key": "name"}, {"key": "nmae"}]}}, "query.sort.keys[1].key"),
        ({"sort": [{"key": "nmae", "desc": True}]}, "query.sort[0].key"),
        ({"only": ["name", "nmae"]}, "query.only[1]"),
    ],
)
def test_list_parts_refuse_unknown_keys(query, path):
    message = invalid(path, compile_list, query)
    assert "'nmae' names no field" in message or "'statements.efect' names no field" in message
    assert VALID in message


A = "query.aggregate[0]"


@pytest.mark.parametrize(
    "query, path",
    [
        ({"distinct": "nmae"}, "query.distinct"),
        ({"filter": [{"k": "nmae", "v": 1}], "distinct": "name"}, "query.filter[0].k"),
        ({"aggregate": [{"group": {"keys": [{"k": "nmae", "n": "x"}]}}]}, f"{A}.group.keys[0].k"),
        ({"aggregate": [{"group": {"fields": [{"k": "nmae", "n": "x", "o": "max"}]}}]}, f"{A}.group.fields[0].k"),
        (
            {"aggregate": [{"group": {"fields": [{"n": "x", "o": "push", "fields": [{"k": "nmae", "n": "y"}]}]}}]},
            f"{A}.group.fields[0].fields[0].k",
        ),
        (
            {"aggregate": [{"group": {"fields": [{"n": "x", "o": "count", "conditions": [{"k": "nmae", "v": 1}]}]}}]},
            f"{A}.group.fields[0].conditions[0].k",
        ),
        ({"aggregate": [{"project": {"fields": [{"k": "nmae", "n": "x"}]}}]}, f"{A}.project.fields[0].k"),
        ({"aggregate": [{"unwind": {"path": "nmae"}}]}, f"{A}.unwind.path"),
        ({"aggregate": [{"sort": {"key": "nmae"}}]}, f"{A}.sort.key"),
    ],
)
def test_stat_parts_refuse_unknown_keys(query, path):
    message = invalid(path, compile_stat, query)
    assert "'nmae' names no field" in message and VALID in message


def test_a_computed_field_is_refused_with_the_reason():
    message = invalid("query.sort.key", compile_list, {"sort": {"key": "member_count"}})
    assert "'member_count' is counted when the answer is built; it cannot be filtered, sorted or grouped by" in message
    invalid("query.filter[0].k", compile_list, {"filter": [{"k": "member_count", "v": 1}]})
    invalid("query.distinct", compile_stat, {"distinct": "member_count"})


def test_after_a_reshaping_stage_keys_are_its_outputs():
    group = {"group": {"keys": [{"k": "name", "n": "who"}], "fields": [{"n": "total", "o": "count"}]}}
    compile_stat({"aggregate": [group, {"sort": {"key": "total", "desc": True}}]}, SCHEMA, SCOPE)
    message = invalid("query.aggregate[1].sort.key", compile_stat, {"aggregate": [group, {"sort": {"key": "name"}}]})
    assert "'name' names no output of the stages before it; valid keys: total, total.<key>, who, who.<key>" in message
    project = {"project": {"fields": [{"k": "tags", "n": "t"}]}}
    compile_stat({"aggregate": [project, {"unwind": {"path": "t.team"}}]}, SCHEMA, SCOPE)
    invalid("query.aggregate[1].unwind.path", compile_stat, {"aggregate": [project, {"unwind": {"path": "tags"}}]})
    count = {"count": {"name": "n"}}
    invalid("query.aggregate[1].project.fields[0].k", compile_stat, {"aggregate": [count, project]})


def test_free_form_maps_accept_any_key_under_them():
    match = compile_list({"filter": [{"k": "tags.any thing", "v": 1}, {"k": "tags", "v": {}}]}, SCHEMA, SCOPE)
    assert match.pipeline[0]["$match"] == {**SCOPE, "tags.any thing": {"$eq": 1}, "tags": {"$eq": {}}}
    invalid("query.filter[0].k", compile_list, {"filter": [{"k": "tagsx.a", "v": 1}]})


def test_keys_resolve():
    assert KEYS.resolve("subject.type").path == "subject_type"
    assert KEYS.resolve("r.name").join is KEYS.joins[0]
    assert KEYS.resolve("tags.x.y").path == "tags.x.y"
    for key in ("subject", "r", "r.endpoint", "statements.effect.x", "policy_id.x"):
        with pytest.raises(UnknownKey):
            KEYS.resolve(key)


def test_schema_keys_must_be_declared():
    for bad in (
        {"keyword_fields": ("nmae",), "minimal_fields": ()},
        {"keyword_fields": (), "minimal_fields": ("subject.type",)},  # an alias: not stored under it
        {"keyword_fields": (), "minimal_fields": (), "default_sort": (("r.name", False),)},
        {"keyword_fields": (), "minimal_fields": (), "datetime_fields": frozenset({"updated_at"})},
    ):
        with pytest.raises(ValueError):
            QuerySchema(keys=KEYS, **bad)


# ---------------------------------------------------------------- aliases compile to the stored field


def test_aliases_compile_to_the_stored_field():
    plan = compile_list(
        {"filter": [{"k": "subject.type", "v": "USER"}], "sort": {"key": "r.repository_id"}, "only": ["subject.type"]},
        SCHEMA,
        SCOPE,
    )
    assert plan.pipeline[0] == {"$match": {**SCOPE, "subject_type": {"$eq": "USER"}}}
    assert plan.pipeline[1] == {"$sort": {"repository_id": 1, "_id": 1}}
    assert plan.pipeline[-1] == {"$project": {"subject_type": 1}}
    stat = compile_stat({"aggregate": [{"group": {"keys": [{"k": "subject.type", "n": "t"}]}}]}, SCHEMA, SCOPE)
    assert stat.pipeline[1]["$group"]["_id"] == {"t": "$subject_type"}


# ---------------------------------------------------------------- joined keys join first


def test_own_keys_need_no_join():
    plan = compile_list({"filter": [{"k": "name", "v": "x"}], "sort": {"key": "r.repository_id"}}, SCHEMA, SCOPE)
    assert LOOKUP not in plan.pipeline and LOOKUP not in plan.count_pipeline


def test_a_joined_filter_joins_page_and_count_after_the_own_match():
    plan = compile_list(
        {"filter": [{"k": "name", "v": "a"}, {"k": "r.name", "v": "local"}], "only": ["r.name", "name"]}, SCHEMA, SCOPE
    )
    joined = [LOOKUP, UNWIND, {"$match": {"r.name": {"$eq": "local"}}}]
    assert plan.pipeline[:4] == [{"$match": {**SCOPE, "name": {"$eq": "a"}}}, *joined]
    assert plan.count_pipeline == [{"$match": {**SCOPE, "name": {"$eq": "a"}}}, *joined, {"$count": "n"}]
    # `only` keeps the field the answer's join matches on.
    assert plan.pipeline[-1] == {"$project": {"repository_id": 1, "name": 1}}


def test_a_filter_or_naming_a_joined_key_runs_after_the_join():
    plan = compile_list({"filter_or": [{"k": "name", "v": "a"}, {"k": "r.name", "v": "b"}]}, SCHEMA, SCOPE)
    assert plan.pipeline[:4] == [
        {"$match": SCOPE},
        LOOKUP,
        UNWIND,
        {"$match": {"$or": [{"name": {"$eq": "a"}}, {"r.name": {"$eq": "b"}}]}},
    ]


def test_a_joined_sort_joins_the_page_only():
    plan = compile_list({"sort": {"key": "r.name"}}, SCHEMA, SCOPE)
    assert plan.pipeline[:4] == [{"$match": SCOPE}, LOOKUP, UNWIND, {"$sort": {"r.name": 1, "_id": 1}}]
    assert plan.count_pipeline == [{"$match": SCOPE}, {"$count": "n"}]


@pytest.fixture(scope="module")
def db():
    database = mongomock.MongoClient().db
    database.repository.insert_many(
        [{"repository_id": "rl", "name": "local"}, {"repository_id": "rm", "name": "managed"}]
    )
    database.policy.insert_many(
        [
            {
                "policy_id": "p1",
                "name": "one",
                "repository_id": "rl",
                "domain_id": "d1",
                "created_at": datetime(2024, 1, 1),
            },
            {
                "policy_id": "p2",
                "name": "two",
                "repository_id": "rm",
                "domain_id": "d1",
                "created_at": datetime(2024, 1, 2),
            },
            {
                "policy_id": "p3",
                "name": "three",
                "repository_id": "rl",
                "domain_id": "d1",
                "created_at": datetime(2024, 1, 3),
            },
            {
                "policy_id": "p4",
                "name": "four",
                "repository_id": "gone",
                "domain_id": "d1",
                "created_at": datetime(2024, 1, 4),
            },
            # another domain's, in the joined repository: never seen
            {
                "policy_id": "x1",
                "name": "one",
                "repository_id": "rl",
                "domain_id": "d2",
                "created_at": datetime(2024, 1, 1),
            },
        ]
    )
    return database


def listed(db, query) -> tuple[list[str], int]:
    plan = compile_list(query, SCHEMA, SCOPE)
    page = list(db.policy.aggregate(plan.pipeline))
    count = list(db.policy.aggregate(plan.count_pipeline))
    return [doc["policy_id"] for doc in page], count[0]["n"] if count else 0


def test_joined_filters_and_sorts_select_by_the_joined_document(db):
    assert listed(db, {"filter": [{"k": "r.name", "v": "local"}]}) == (["p1", "p3"], 2)
    assert listed(db, {"filter": [{"k": "r.name", "v": "man", "o": "contain"}]}) == (["p2"], 1)
    assert listed(db, {"filter": [{"k": "r.name", "v": False, "o": "exists"}]}) == (["p4"], 1)
    assert listed(db, {"filter": [{"k": "r.repository_id", "v": "rl"}]}) == (["p1", "p3"], 2)
    ordered, _ = listed(db, {"sort": [{"key": "r.name", "desc": True}, {"key": "name"}]})
    assert ordered == ["p2", "p1", "p3", "p4"]


def test_joined_stat_groups_by_the_joined_value(db):
    query = {
        "aggregate": [
            {"group": {"keys": [{"k": "r.name", "n": "repository"}], "fields": [{"n": "n", "o": "count"}]}},
            {"sort": {"key": "n", "desc": True}},
        ]
    }
    plan = compile_stat(query, SCHEMA, SCOPE)
    results, _ = unpack_stat(plan, list(db.policy.aggregate(plan.pipeline)))
    assert results[0] == {"repository": "local", "n": 2}
    assert sorted((r.get("repository") or "", r["n"]) for r in results) == [("", 1), ("local", 2), ("managed", 1)]
    distinct = compile_stat({"distinct": "r.name"}, SCHEMA, SCOPE)
    assert unpack_stat(distinct, list(db.policy.aggregate(distinct.pipeline)))[0] == ["local", "managed"]


# ---------------------------------------------------------------- each resource declares what it shows


def shown_keys(descriptor: Descriptor, prefix: str = "") -> list[str]:
    """The keys of every field an answer shows: nested messages by their fields, free-form
    Struct and ListValue fields as themselves."""
    keys = []
    for field in descriptor.fields:
        key = prefix + field.name
        message = field.message_type
        if field.type == FieldDescriptor.TYPE_MESSAGE and message.full_name.split(".")[0] != "google":
            keys += [key] if message.name == "RolePermissionGroup" else shown_keys(message, key + ".")
        else:
            keys.append(key)
    return keys


@pytest.mark.parametrize(
    "info, keys",
    [
        (policy_pb2.PolicyInfo, PolicyManager(10).schema.keys),
        (repository_pb2.RepositoryInfo, RepositoryManager(10).schema.keys),
        (assignment_pb2.AssignmentInfo, AssignmentManager(10).schema.keys),
        (group_pb2.GroupInfo, SubjectSetManager(GroupDocument, "Group", "group_id", 10).schema.keys),
        (role_pb2.RoleInfo, SubjectSetManager(RoleDocument, "Role", "role_id", 10).schema.keys),
        (audit_pb2.AuditInfo, AuditManager(10).schema.keys),
        (api_key_pb2.ApiKeyInfo, ApiKeyManager(10).schema.keys),
    ],
)
def test_every_field_an_answer_shows_is_a_key_or_computed(info, keys):
    for key in shown_keys(info.DESCRIPTOR):
        if key not in keys.computed:
            keys.resolve(key)
    assert set(keys.computed) <= set(shown_keys(info.DESCRIPTOR))  # nothing refused that no answer shows


def test_hidden_stored_fields_are_not_keys():
    with pytest.raises(UnknownKey):
        ApiKeyManager(10).schema.keys.resolve("key_hash")
    for hidden in ("state_before_delete", "parked_assignments"):
        with pytest.raises(UnknownKey):
            PolicyManager(10).schema.keys.resolve(hidden)
    with pytest.raises(UnknownKey):
        AssignmentManager(10).schema.keys.resolve("removal.until")
