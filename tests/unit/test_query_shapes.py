"""The shapes of the queries the common list, stat, get and update paths send, pinned so that an
index can serve them: the first stage a $match opening with domain_id and the live-state
equality, sort, skip and limit before any heavy stage, no $ne/$nin on the state, and a declared
domain-first index for each default list order. `tests/manager/test_query_plans.py` asks the
wire-protocol server's planner about the same shapes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from policyhub.manager import policy_manager, queries
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.policy_manager import PolicyManager, point_read
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.model import (
    ALL_DOCUMENTS,
    ApiKeyDocument,
    AssignmentDocument,
    AuditDocument,
    GroupDocument,
    PolicyDocument,
    RoleDocument,
)
from policyhub.query import compile_list, compile_stat

LABEL_FILTER = {"filter": [{"k": "labels", "v": "ops"}], "page": {"start": 1, "limit": 10}}
GROUP_BY = {"aggregate": [{"group": {"keys": [{"k": "labels", "n": "label"}], "fields": [{"o": "count", "n": "n"}]}}]}
POLICY_MANAGER = PolicyManager(1000)


def negations(value: Any) -> list[str]:
    """Every $ne/$nin/$not anywhere in a filter."""
    if isinstance(value, dict):
        found = [key for key in value if key in ("$ne", "$nin", "$not")]
        return found + [op for item in value.values() for op in negations(item)]
    if isinstance(value, list):
        return [op for item in value for op in negations(item)]
    return []


def index_keys(document) -> list[list[str]]:
    return [[field for field, _ in spec["fields"]] for spec in document._meta["index_specs"]]


@pytest.mark.parametrize("include_managed", [True, False])
def test_policy_list_page_is_match_sort_skip_limit_then_the_join(include_managed):
    plan = compile_list(LABEL_FILTER, POLICY_MANAGER.schema, POLICY_MANAGER.scope("d1", include_managed))
    match, sort, skip, limit = plan.pipeline
    assert list(match["$match"])[:2] == ["domain_id", "deleted_at"]
    assert match["$match"]["deleted_at"] is None
    assert match["$match"]["labels"] == {"$eq": "ops"}
    assert negations(match) == []
    assert sort == {"$sort": {"created_at": 1, "_id": 1}}
    assert (skip, limit) == ({"$skip": 0}, {"$limit": 10})
    # The total: the same $match, counted apart (no $facet holding every match).
    assert plan.count_pipeline == [match, {"$count": "n"}]


def test_policy_scopes_use_equalities_on_the_live_state():
    for include_managed in (True, False):
        scope = POLICY_MANAGER.scope("d1", include_managed)
        assert scope["deleted_at"] is None and "state" not in scope and negations(scope) == []
    assert POLICY_MANAGER.scope("d1", True)["domain_id"] == {"$in": ["d1", "*"]}
    assert POLICY_MANAGER.scope("d1", False, include_deleted=True) == {"domain_id": "d1"}


def test_a_user_filter_on_a_scope_field_keeps_the_scope_first():
    query = {"filter": [{"k": "deleted_at", "v": "2024-01-01T00:00:00Z", "o": "datetime_gt"}]}
    match = compile_list(query, POLICY_MANAGER.schema, POLICY_MANAGER.scope("d1", False)).pipeline[0]["$match"]
    assert list(match) == ["domain_id", "deleted_at", "$and"]


def test_the_users_own_negations_stay_as_they_are():
    query = {"filter": [{"k": "state", "v": "DISABLED", "o": "not"}, {"k": "labels", "v": ["x"], "o": "not_in"}]}
    match = compile_list(query, POLICY_MANAGER.schema, POLICY_MANAGER.scope("d1", True)).pipeline[0]["$match"]
    assert match["state"] == {"$ne": "DISABLED"} and match["labels"] == {"$nin": ["x"]}


def test_policy_stat_matches_the_scope_before_any_other_stage():
    plan = compile_stat(GROUP_BY, POLICY_MANAGER.schema, POLICY_MANAGER.scope("d1", include_managed=True))
    first, *rest = plan.pipeline
    assert list(first) == ["$match"] and list(first["$match"]) == ["domain_id", "deleted_at"]
    assert negations(first) == []
    assert all("$match" not in stage for stage in rest)


def on_the_embedded_store(monkeypatch, embedded: bool) -> None:
    monkeypatch.setattr(queries, "collection", lambda document: document)
    monkeypatch.setattr(queries, "embedded", lambda stored: embedded)


def test_policy_list_joins_the_repository_after_the_page_only(monkeypatch):
    on_the_embedded_store(monkeypatch, True)
    sent: list[list[dict]] = []
    monkeypatch.setattr(queries, "aggregate", lambda document, pipeline: sent.append(pipeline) or [])
    POLICY_MANAGER.list("d1", LABEL_FILTER, include_managed=True)
    (page,) = sent  # an empty first page: nothing matched, no count
    stages = [next(iter(stage)) for stage in page]
    assert stages == ["$match", "$sort", "$skip", "$limit", "$lookup"]


def test_on_a_server_the_page_is_merged_from_each_owners_first_results(monkeypatch):
    on_the_embedded_store(monkeypatch, False)
    sent: list[list[dict]] = []
    monkeypatch.setattr(queries, "aggregate", lambda document, pipeline: sent.append(pipeline) or [])
    query = {**LABEL_FILTER, "page": {"start": 11, "limit": 10}}
    POLICY_MANAGER.list("d1", query, include_managed=True)
    domains, managed, *counts = sent  # two empty parts: past the first result, so the total is counted
    assert [count[0]["$match"]["domain_id"] for count in counts] == ["d1", "*"]
    for top, owner in ((domains, "d1"), (managed, "*")):
        assert top[0]["$match"]["domain_id"] == owner and top[0]["$match"]["deleted_at"] is None
        assert [next(iter(stage)) for stage in top] == ["$match", "$sort", "$limit", "$lookup"]
        assert top[2] == {"$limit": 20}


def test_a_page_too_deep_to_merge_is_one_query_on_a_server(monkeypatch):
    on_the_embedded_store(monkeypatch, False)
    sent: list[list[dict]] = []
    monkeypatch.setattr(queries, "aggregate", lambda document, pipeline: sent.append(pipeline) or [])
    POLICY_MANAGER.list("d1", {**LABEL_FILTER, "page": {"start": 1000, "limit": 10}}, include_managed=True)
    assert sent[0][0]["$match"]["domain_id"] == {"$in": ["d1", "*"]}
    assert [pipeline[0]["$match"]["domain_id"] for pipeline in sent[1:]] == ["d1", "*"]  # the counts


@pytest.mark.parametrize(
    "returned, counted",
    [(0, False), (9, False), (10, True)],  # a page of 10: only a full one leaves the total open
)
def test_the_count_runs_only_when_the_page_cannot_tell_the_total(monkeypatch, returned, counted):
    sent: list[list[dict]] = []

    def aggregate(document, pipeline):
        sent.append(pipeline)
        return [{"n": 42}] if pipeline[-1] == {"$count": "n"} else [{"policy_id": f"p{i}"} for i in range(returned)]

    monkeypatch.setattr(queries, "aggregate", aggregate)
    results, total = POLICY_MANAGER.list("d1", LABEL_FILTER, include_managed=False)
    assert len(results) == returned
    assert total == (42 if counted else returned)
    assert len(sent) == (2 if counted else 1)


def test_the_domains_and_the_managed_policies_are_counted_apart_by_equalities(monkeypatch):
    sent: list[list[dict]] = []

    def aggregate(document, pipeline):
        sent.append(pipeline)
        return [{"n": 21}] if pipeline[-1] == {"$count": "n"} else [{"policy_id": f"p{i}"} for i in range(10)]

    monkeypatch.setattr(queries, "aggregate", aggregate)
    on_the_embedded_store(monkeypatch, True)
    assert POLICY_MANAGER.list("d1", LABEL_FILTER, include_managed=True)[1] == 42
    page, *counts = sent
    assert page[0]["$match"]["domain_id"] == {"$in": ["d1", "*"]}
    assert [count[0]["$match"]["domain_id"] for count in counts] == ["d1", "*"]
    assert all(count[0]["$match"]["deleted_at"] is None and count[1] == {"$count": "n"} for count in counts)


def test_count_only_runs_the_count_alone(monkeypatch):
    sent: list[list[dict]] = []
    monkeypatch.setattr(queries, "aggregate", lambda document, pipeline: sent.append(pipeline) or [{"n": 7}])
    assert POLICY_MANAGER.list("d1", {"count_only": True}, include_managed=False) == ([], 7)
    assert [[next(iter(stage)) for stage in pipeline] for pipeline in sent] == [["$match", "$count"]]


class Recorder:
    """Stands in for the policy collection: records each filter, answers one live policy."""

    def __init__(self):
        self.filters: list[tuple[str, dict]] = []

    def _answer(self):
        return {
            "_id": "oid",
            "policy_id": "p",
            "domain_id": "d1",
            "repository_id": "repo-local",
            "etag": "e",
            "state": "ENABLED",
        }

    def find_one(self, selector, *args, **kwargs):
        self.filters.append(("find_one", selector))
        return self._answer()

    def aggregate(self, pipeline):
        self.filters.append(("aggregate", pipeline[0]["$match"]))
        return [self._answer()]

    def update_one(self, selector, update, **kwargs):
        self.filters.append(("update_one", selector))
        return SimpleNamespace(matched_count=1)


def test_policy_get_and_update_are_equalities_on_the_unique_index(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(policy_manager, "collection", lambda document: recorder)
    POLICY_MANAGER.get("d1", "p")
    POLICY_MANAGER.update("d1", "p", {"name": "n"}, None, None)
    policy_calls = [(call, selector) for call, selector in recorder.filters if "repository_id" not in selector]
    live = {"domain_id": "d1", "policy_id": "p", "deleted_at": None}
    assert policy_calls == [
        ("aggregate", live),  # get, joined to its repository
        ("find_one", live),  # update reads the version it changes,
        # then compares and sets it by _id, with the shard key (a rename changes it)
        ("update_one", {"_id": "oid", "domain_id": "d1", "policy_id": "p", "etag": "e"}),
    ]
    assert [next(iter(stage)) for stage in point_read("d1", "p")] == ["$match", "$limit", "$lookup"]
    assert ["domain_id", "policy_id", "deleted_at"] in index_keys(PolicyDocument)


@pytest.mark.parametrize(
    "manager, document, scope",
    [
        (POLICY_MANAGER, PolicyDocument, ["domain_id", "deleted_at"]),
        (AssignmentManager(1000), AssignmentDocument, ["domain_id"]),
        (SubjectSetManager(GroupDocument, "Group", "group_id", 1000), GroupDocument, ["domain_id"]),
        (SubjectSetManager(RoleDocument, "Role", "role_id", 1000), RoleDocument, ["domain_id"]),
        (AuditManager(1000), AuditDocument, ["domain_id"]),
        (ApiKeyManager(1000), ApiKeyDocument, ["domain_id"]),
    ],
)
def test_each_default_list_order_has_an_index_that_serves_it(manager, document, scope):
    """The scope's equalities, then the default sort and its _id tie-breaker: an index walk in
    that order is the page, no sort in memory."""
    sort = compile_list(None, manager.schema, {}).pipeline[1]["$sort"]
    assert [*scope, *sort] in index_keys(document)


# Not domain-first, each for its reason: the TTL indexes (the database purges by time alone) and
# the API-key lookup (it finds the domain).
NOT_DOMAIN_FIRST = (["purge_at"], ["api_key_id"])


def test_every_index_starts_with_domain_id():
    for document in ALL_DOCUMENTS:
        if document._meta["collection"] in ("repository", "migration"):
            continue  # installation-wide
        for keys in index_keys(document):
            assert keys[0] == "domain_id" or keys in NOT_DOMAIN_FIRST, (document, keys)


def test_existing_ids_reads_each_owner_by_an_equality_and_the_ids(monkeypatch):
    """Only the domain (or the managed policies, by their reserved prefix) and the ids: no `$in`
    on domain_id and no `deleted_at`, which some servers plan as a scan of the domain."""
    filters: list[dict] = []

    class Policies:
        def find(self, selector, projection):
            filters.append(selector)
            return [{"policy_id": "p1"}, {"policy_id": "p2", "deleted_at": "2026-12-01"}]

    monkeypatch.setattr(policy_manager, "collection", lambda document: Policies())
    assert POLICY_MANAGER.existing_ids("d1", ["p1", "p2", "managed-x"]) == {"p1"}
    assert filters == [
        {"domain_id": "*", "policy_id": {"$in": ["managed-x"]}},
        {"domain_id": "d1", "policy_id": {"$in": ["p1", "p2"]}},
    ]


def test_the_whole_domain_read_of_a_build_reads_each_owner_by_an_equality(monkeypatch):
    """A domain's evaluation index reads its live policies and the managed ones, each by an equality
    on domain_id: a `$in` of the two would make some servers scan every domain's policies."""
    filters: list[dict] = []

    class Policies:
        def find(self, selector, projection):
            filters.append(selector)
            return [{"policy_id": f"from {selector['domain_id']}"}]

    monkeypatch.setattr(policy_manager, "collection", lambda document: Policies())
    assert POLICY_MANAGER.rules("d1") == [{"policy_id": "from d1"}, {"policy_id": "from *"}]
    assert filters == [{"domain_id": "d1", "deleted_at": None}, {"domain_id": "*", "deleted_at": None}]
    filters.clear()
    assert POLICY_MANAGER.rules("*") == [{"policy_id": "from *"}]
    assert filters == [{"domain_id": "*", "deleted_at": None}]
