"""Persistence and queries of policies (tenant policies and the managed built-ins)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, Mapping, NoReturn

import pymongo.errors
from pymongo.errors import DuplicateKeyError

from policyhub.domain import MANAGED_DOMAIN_ID, MANAGED_ID_PREFIX, PolicyState
from policyhub.errors import Aborted, AlreadyExists, ConcurrentChange, NotFound
from policyhub.manager import bulk_writes
from policyhub.manager.bulk_writes import Progress, Revert, Update
from policyhub.manager.database import collection, to_stored, translate_errors
from policyhub.manager.queries import run_list, run_stat
from policyhub.manager.records import REPOSITORY_INFO_JOIN, policy_record, repository_info_lookup, repository_record
from policyhub.model import PolicyDocument, RepositoryDocument, StatementDocument
from policyhub.query import QueryKeys, QuerySchema, compile_list, compile_stat

# Before every deleted_at: `deleted_at > _EPOCH` is "deleted", as a range an index serves.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# How many times an update without the caller's etag is tried when the policy changes between its
# read and its write, before the call answers ABORTED.
UPDATE_ATTEMPTS = 10
# What the evaluation engine reads of a policy: its rules, and which write of which document they are
# (its creation time and version: two updates of one policy may be logged in the other order than
# they were written, as each bumps the revision after its write).
RULE_FIELDS = ("state", "permissions", "statements", "created_at", "version")
_RULES_READ = {"_id": 0, "policy_id": 1, **dict.fromkeys(RULE_FIELDS, 1)}
POLICY_KEYWORD_FIELDS = ("policy_id", "name", "description", "permissions")
POLICY_MINIMAL_FIELDS = ("policy_id", "name", "state", "repository_id", "domain_id", "is_managed")
# What a policy query may name: the fields of PolicyInfo, and repository_id, stored in place of
# repository_info (state_before_delete and parked_assignments are kept for restore, not shown).
POLICY_KEYS = QueryKeys(
    fields=frozenset(
        {
            "policy_id",
            "name",
            "description",
            "state",
            "permissions",
            "statements",
            "statements.effect",
            "statements.actions",
            "statements.resources",
            "labels",
            "repository_id",
            "project_id",
            "domain_id",
            "is_managed",
            "version",
            "etag",
            "created_at",
            "updated_at",
            "deleted_at",
            "purge_at",
        }
    ),
    maps=frozenset({"tags", "statements.conditions"}),
    aliases={"repository_info.repository_id": "repository_id"},
    computed={"consistency_token": "given by a write's answer, not stored with the policy"},
    joins=(REPOSITORY_INFO_JOIN,),
)


def new_etag() -> str:
    return secrets.token_hex(8)


class PolicyManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keys=POLICY_KEYS,
            keyword_fields=POLICY_KEYWORD_FIELDS,
            minimal_fields=POLICY_MINIMAL_FIELDS,
            datetime_fields=frozenset(
                {"created_at", "updated_at", "deleted_at", "purge_at", "repository_info.created_at"}
            ),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @staticmethod
    def scope(domain_id: str, include_managed: bool, include_deleted: bool = False) -> dict:
        """The policies a domain's query may see. Live ones have no `deleted_at`: an equality the
        `domain_live_*` indexes serve right after domain_id (`state` $ne DELETED would scan)."""
        # The managed domain's own query (an anonymous caller's without a public domain) is one equality.
        owners = [domain_id, MANAGED_DOMAIN_ID] if include_managed and domain_id != MANAGED_DOMAIN_ID else [domain_id]
        scope: dict[str, Any] = {"domain_id": {"$in": owners} if len(owners) > 1 else domain_id}
        if not include_deleted:
            scope["deleted_at"] = None
        return scope

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        stored = to_stored(PolicyDocument, {**record, "etag": new_etag(), "version": 1})
        try:
            collection(PolicyDocument).insert_one(stored)
        except DuplicateKeyError:
            raise AlreadyExists("Policy", "policy_id", record["policy_id"]) from None
        return self._with_repository(policy_record(stored))

    @translate_errors()
    def get(
        self, domain_id: str, policy_id: str, repository_id: str | None = None, include_deleted: bool = False
    ) -> dict[str, Any]:
        # Managed ids have a reserved prefix, so one equality point read on the unique index finds
        # the policy (equality only: some MongoDB-compatible servers scan for $in/$ne).
        owner = MANAGED_DOMAIN_ID if policy_id.startswith(MANAGED_ID_PREFIX) else domain_id
        # The live policy and its repository in one round trip.
        live = next(iter(collection(PolicyDocument).aggregate(point_read(owner, policy_id))), None)
        if live is not None:
            record = policy_record(live)
        elif include_deleted and (deleted := _last_deleted(owner, policy_id)):
            record = self._with_repository(policy_record(deleted))
        else:
            raise NotFound("Policy", "policy_id", policy_id)
        if repository_id and record["repository_id"] != repository_id:
            raise NotFound("Policy", "policy_id", policy_id)
        return record

    @translate_errors()
    def update(
        self, domain_id: str, policy_id: str, changes: dict[str, Any], etag: str | None, now: datetime
    ) -> dict[str, Any]:
        """Atomic compare-and-set on a live policy: nothing is written when the etag no longer
        matches. A `policy_id` change renames it (refused when the new id is taken)."""
        sets = {key: _stored_value(key, value) for key, value in changes.items()}
        for _ in range(UPDATE_ATTEMPTS):
            current = _live(domain_id, policy_id)
            if current is None or (etag and current["etag"] != etag):
                self.explain_no_match(domain_id, policy_id)
            try:
                updated = _compare_and_set(current, now, sets)
            except DuplicateKeyError:
                raise AlreadyExists("Policy", "policy_id", changes["policy_id"]) from None
            if updated is not None:
                return self._with_repository(policy_record(updated))
            # Changed between the read and the write: with the caller's etag, that is the answer
            # (explained on the next read); without one, the change applies to the new version.
        raise ConcurrentChange(
            "the policy kept changing while it was being updated; retry", metadata={"policy_id": policy_id}
        )

    @translate_errors()
    def soft_delete(
        self,
        domain_id: str,
        policy_id: str,
        etag: str | None,
        now: datetime,
        purge_at: datetime,
        parked: list[dict[str, Any]],
    ) -> None:
        """Marks the policy DELETED until purge_at, keeping its state and the given assignments
        for restore. Compare-and-set on the etag read here (or the caller's)."""
        current = _live(domain_id, policy_id)
        if current is None or (etag and current["etag"] != etag):
            self.explain_no_match(domain_id, policy_id)
        try:
            updated = _compare_and_set(
                current,
                now,
                {
                    "state": PolicyState.DELETED,
                    "state_before_delete": current["state"],
                    "deleted_at": now,
                    "purge_at": purge_at,
                    "parked_assignments": parked,
                },
            )
        except DuplicateKeyError:
            # An earlier record of this id was deleted in this very millisecond (deleted, created
            # again and deleted): its deleted_at is taken.
            updated = None
        if updated is None:
            raise Aborted("the policy changed while it was being deleted; retry", metadata={"policy_id": policy_id})

    @translate_errors()
    def restorable(self, domain_id: str, policy_id: str, now: datetime) -> dict[str, Any]:
        """The record restore would bring back: the latest soft delete of the id, within the
        retention period. ALREADY_EXISTS while a live policy holds the id (it was created again)."""
        if _live(domain_id, policy_id):
            raise _held_by_live(policy_id)
        current = _last_deleted(domain_id, policy_id)
        if current is None or current["purge_at"] <= now:
            raise NotFound("Policy", "policy_id", policy_id)
        return current

    @translate_errors()
    def restore(
        self, domain_id: str, policy_id: str, now: datetime, deleted: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[dict]]:
        """Undoes the latest soft delete of the id (or `deleted`, that record as `restorable` read
        it: then exactly the record checked comes back, or ABORTED); returns the policy and the
        parked assignments. The index allows one live policy per id, so a create racing with this
        cannot slip in."""
        current = deleted or self.restorable(domain_id, policy_id, now)
        try:
            updated = _compare_and_set(
                current,
                now,
                {"state": current.get("state_before_delete") or PolicyState.ENABLED, "parked_assignments": []},
                unset=("state_before_delete", "deleted_at", "purge_at"),
            )
        except DuplicateKeyError:
            raise _held_by_live(policy_id) from None
        if updated is None:
            raise Aborted("the policy changed while it was being restored; retry", metadata={"policy_id": policy_id})
        return self._with_repository(policy_record(updated)), current.get("parked_assignments", [])

    @translate_errors()
    def purge_expired(self, now: datetime) -> list[tuple[str, str]]:
        """The sweep that backs the TTL index (which the embedded store does not run).
        Returns the (domain_id, policy_id) purged."""
        policies = collection(PolicyDocument)
        expired = list(
            policies.find(
                {"state": PolicyState.DELETED, "purge_at": {"$lte": now}}, {"_id": 1, "domain_id": 1, "policy_id": 1}
            )
        )
        if expired:
            policies.delete_many({"_id": {"$in": [doc["_id"] for doc in expired]}})
        return [(doc["domain_id"], doc["policy_id"]) for doc in expired]

    @translate_errors()
    def park(self, domain_id: str, policy_id: str, deleted_at: datetime, assignments: list[dict[str, Any]]) -> None:
        """Adds assignments to those the policy deleted at deleted_at gives back on restore."""
        collection(PolicyDocument).update_one(
            {"domain_id": domain_id, "policy_id": policy_id, "deleted_at": deleted_at},
            {"$push": {"parked_assignments": {"$each": assignments}}},
        )

    def explain_no_match(self, domain_id: str, policy_id: str) -> NoReturn:
        """A deleted policy is not found, as in SpaceONE (deleting twice is NOT_FOUND)."""
        if _live(domain_id, policy_id):
            raise Aborted(
                "the policy changed since the etag was read; get it again and retry",
                metadata={"policy_id": policy_id},
            )
        if _last_deleted(domain_id, policy_id) is not None:
            raise NotFound("Policy", "policy_id", policy_id, "it is deleted (restorable until purged)")
        raise NotFound("Policy", "policy_id", policy_id)

    def list(
        self, domain_id: str, query: dict | None, include_managed: bool, include_deleted: bool = False
    ) -> tuple[list[dict], int]:
        now = datetime.now(timezone.utc)
        plan = compile_list(query, self.schema, self.scope(domain_id, include_managed, include_deleted), now=now)
        # The domain's and the managed policies are counted apart, each by an equality on domain_id.
        parts = (
            tuple(
                compile_list(query, self.schema, self.scope(owner, False, include_deleted), now=now)
                for owner in (domain_id, MANAGED_DOMAIN_ID)
            )
            if include_managed and domain_id != MANAGED_DOMAIN_ID
            else ()
        )
        # The repository is joined to the page only.
        results, total = run_list(PolicyDocument, plan, joins=(repository_info_lookup(),), counted_apart=parts)
        return [policy_record(doc) for doc in results], total

    def stat(self, domain_id: str, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, self.scope(domain_id, include_managed=True))
        return run_stat(PolicyDocument, plan)

    def remote_query(self, query: dict | None, stat: bool = False) -> dict:
        """A query another installation will run: validated here without running it
        (INVALID_ARGUMENT naming the bad part, exactly as for a local list/stat), and a list's
        page capped at page_max_limit like a local one (SpaceONE returns everything without one)."""
        query = dict(query or {})
        (compile_stat if stat else compile_list)(query, self.schema, self.scope(MANAGED_DOMAIN_ID, True))
        if not stat and not query.get("count_only"):
            page = dict(query.get("page") or {})
            if not page.get("limit") or page["limit"] > self.schema.max_limit:
                page["limit"] = self.schema.max_limit
            query["page"] = page
        return query

    def live(self, domain_id: str, policy_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The domain's live policies among these ids, as stored (no repository join: the start
        of a change, read by the escalation rule and the audit trail)."""
        return {policy_id: policy_record(raw) for policy_id, raw in self.live_stored(domain_id, policy_ids).items()}

    @translate_errors()
    def live_stored(self, domain_id: str, policy_ids: list[str]) -> dict[str, dict[str, Any]]:
        """As `live`, with `_id` (what a bulk write compares and sets). One equality read for one
        id (some MongoDB-compatible servers scan for `$in`); more in `$in` lists of IN_BATCH ids
        on the (domain_id, policy_id, deleted_at) index, the deleted records of those ids dropped
        here (a condition after the `$in` makes some servers scan the collection)."""
        policies = collection(PolicyDocument)
        if len(policy_ids) == 1:
            found = policies.find({"domain_id": domain_id, "policy_id": policy_ids[0], "deleted_at": None})
            return {raw["policy_id"]: raw for raw in found}
        live: dict[str, dict[str, Any]] = {}
        for batch in bulk_writes.in_batches(policy_ids):
            found = policies.find({"domain_id": domain_id, "policy_id": {"$in": batch}})
            live.update((raw["policy_id"], raw) for raw in found if raw.get("deleted_at") is None)
        return live

    @translate_errors()
    def existing_ids(self, domain_id: str, policy_ids: list[str]) -> set[str]:
        """Which of these ids exist (live) in the domain or among the managed policies. Managed
        ids have their reserved prefix, so each owner is an equality (a `$in` on the leading
        `domain_id` makes some servers scan the collection)."""
        by_owner: dict[str, list[str]] = {}
        for policy_id in policy_ids:
            owner = MANAGED_DOMAIN_ID if policy_id.startswith(MANAGED_ID_PREFIX) else domain_id
            by_owner.setdefault(owner, []).append(policy_id)
        existing: set[str] = set()
        for owner, ids in sorted(by_owner.items()):
            for batch in bulk_writes.in_batches(ids):
                # Live ones picked here: with `deleted_at` in the filter too, some servers prefer the
                # (domain_id, deleted_at) prefix of a list index and walk the domain's live policies.
                found = collection(PolicyDocument).find(
                    {"domain_id": owner, "policy_id": {"$in": batch}}, {"_id": 0, "policy_id": 1, "deleted_at": 1}
                )
                existing.update(doc["policy_id"] for doc in found if doc.get("deleted_at") is None)
        return existing

    @translate_errors()
    def rules(self, domain_id: str) -> list[dict[str, Any]]:
        """What the evaluation engine needs of every policy visible in the domain (deleted ones
        never apply). One read per owner, the domain then the managed policies, each an equality
        on domain_id: a `$in` of the two makes some MongoDB-compatible servers scan every domain's
        policies, so a small domain's build would cost as much as the whole collection."""
        owners = [domain_id] if domain_id == MANAGED_DOMAIN_ID else [domain_id, MANAGED_DOMAIN_ID]
        policies = collection(PolicyDocument)
        return [
            raw
            for owner in owners
            for raw in policies.find(
                self.scope(owner, include_managed=False),
                _RULES_READ,
            )
        ]

    @translate_errors()
    def rules_of(self, domain_id: str, policy_ids: list[str]) -> list[dict[str, Any]]:
        """As `rules`, for the given ids of the domain's own policies (those not live are left
        out). Equality on the domain and `$in` on the ids only, which the (domain_id, policy_id)
        index serves on every store; the deleted records of an id are dropped here."""
        found = collection(PolicyDocument).find(
            {"domain_id": domain_id, "policy_id": {"$in": policy_ids}},
            _RULES_READ,
        )
        return [raw for raw in found if raw.get("state") != PolicyState.DELETED]

    @translate_errors()
    def sync_managed(self, policies: list[dict[str, Any]], now: datetime) -> bool:
        """Makes the stored managed policies equal to the shipped ones (idempotent, safe to
        run from several processes at once). True when anything changed."""
        policies_stored = collection(PolicyDocument)
        changed = False
        for policy in policies:
            selector = {"domain_id": MANAGED_DOMAIN_ID, "policy_id": policy["policy_id"]}
            values = {key: _stored_value(key, value) for key, value in policy.items()}
            current = policies_stored.find_one(selector)
            if current is not None and all(current.get(key) == value for key, value in values.items()):
                continue
            changed = True
            del values["policy_id"]
            policies_stored.update_one(
                selector,
                {
                    "$set": {**values, "etag": new_etag(), "updated_at": now},
                    "$setOnInsert": {"created_at": now},
                    "$inc": {"version": 1},
                },
                upsert=True,
            )
        shipped = [policy["policy_id"] for policy in policies]
        removed = policies_stored.delete_many({"domain_id": MANAGED_DOMAIN_ID, "policy_id": {"$nin": shipped}})
        return changed or removed.deleted_count > 0

    # -- bulk (export and import of a domain) ----------------------------------------------------

    @translate_errors()
    def local_snapshot(self, domain_id: str) -> list[dict[str, Any]]:
        """Every live policy of the domain, as stored (with `_id`, for a bulk write's undo)."""
        return list(
            collection(PolicyDocument).find({"domain_id": domain_id, "deleted_at": None}).batch_size(bulk_writes.BATCH)
        )

    @translate_errors()
    def live_ids(self, domain_id: str) -> set[str]:
        found = collection(PolicyDocument).find(
            {"domain_id": domain_id, "deleted_at": None}, {"_id": 0, "policy_id": 1}
        )
        return {raw["policy_id"] for raw in found}

    @translate_errors()
    def managed_ids(self) -> set[str]:
        return self.live_ids(MANAGED_DOMAIN_ID)

    @translate_errors()
    def insert_bulk(self, records: list[dict[str, Any]], progress: Progress) -> list[Any]:
        """Creates the policies (version 1, a new etag each), all or nothing; returns what
        `remove_bulk` takes to undo it."""
        stored = [to_stored(PolicyDocument, {**record, "etag": new_etag(), "version": 1}) for record in records]
        return bulk_writes.insert(PolicyDocument, stored, progress, "policies")

    @translate_errors()
    def update_bulk(
        self, updates: list[tuple[dict[str, Any], dict[str, Any]]], now: datetime, progress: Progress
    ) -> list[Revert]:
        """Writes each (policy as read, changes) with a new etag and version, compare-and-set on
        the etag read (a policy changed meanwhile is ConcurrentChange, nothing written); returns
        what `revert_bulk` takes to undo it."""
        return bulk_writes.update(
            PolicyDocument,
            [
                _etag_update(raw, now, {key: _stored_value(key, value) for key, value in changes.items()})
                for raw, changes in updates
            ],
            progress,
            "policies",
        )

    @translate_errors()
    def soft_delete_bulk(
        self,
        raws: list[dict[str, Any]],
        now: datetime,
        purge_at: datetime,
        progress: Progress,
        parked: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> list[Revert]:
        """Soft-deletes the policies as read (restorable until purge_at, as Policy/delete does),
        each keeping its `parked` assignments (by policy id) for restore; compare-and-set on the
        etag read (a policy changed meanwhile is ConcurrentChange, nothing written). Returns what
        `revert_bulk` takes to undo it."""
        parked = parked or {}
        updates = [
            _etag_update(
                raw,
                now,
                {
                    "state": PolicyState.DELETED,
                    "state_before_delete": raw["state"],
                    "deleted_at": now,
                    "purge_at": purge_at,
                    "parked_assignments": parked.get(raw["policy_id"], []),
                },
            )
            for raw in raws
        ]
        try:
            return bulk_writes.update(PolicyDocument, updates, progress, "policies")
        except pymongo.errors.BulkWriteError as exc:
            # An earlier record of an id was deleted in this very millisecond (deleted, created
            # again and deleted): its deleted_at is taken. bulk_writes.update undid the rest.
            if any(error.get("code") != bulk_writes.DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
            raise ConcurrentChange(
                "a policy was deleted, created again and deleted meanwhile by another call; nothing was written, retry",
                metadata={"resource": "policies"},
            ) from None

    @translate_errors()
    def remove_bulk(self, ids: list[Any], progress: Progress) -> None:
        """Undoes insert_bulk."""
        bulk_writes.remove(PolicyDocument, ids, progress)

    @translate_errors()
    def revert_bulk(self, reverts: list[Revert], progress: Progress) -> None:
        """Undoes update_bulk and soft_delete_bulk."""
        bulk_writes.revert(PolicyDocument, reverts, progress)

    @staticmethod
    def _with_repository(record: dict[str, Any]) -> dict[str, Any]:
        """Joins a single policy to its repository (a second read; list joins with $lookup instead)."""
        raw = collection(RepositoryDocument).find_one({"repository_id": record.get("repository_id", "")}, {"_id": 0})
        return {**record, "repository_info": repository_record(raw)} if raw else record


def _compare_and_set(
    current: dict[str, Any], now: datetime, sets: dict[str, Any], unset: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """Applies the change, a new etag and version, to the stored policy `current` if it still is
    that version (its etag; None when it changed meanwhile); returns it as changed. An update by
    `_id` rather than a findAndModify: some MongoDB-compatible servers check a findAndModify's
    query again by scanning the collection, while the `_id` is a point read on every store; what
    the update leaves is `current` with the change applied."""
    changed = {**sets, "etag": new_etag(), "updated_at": now}
    update: dict[str, Any] = {"$set": changed, "$inc": {"version": 1}}
    if unset:
        update["$unset"] = {field: "" for field in unset}
    # The _id first (some servers serve the first clause an index covers), the shard key with it
    # (a rename changes it, which a sharded cluster allows only with its equality in the filter).
    selector = {key: current[key] for key in ("_id", "domain_id", "policy_id", "etag")}
    written = collection(PolicyDocument).update_one(selector, update)
    if written.matched_count == 0:
        return None
    kept = {key: value for key, value in current.items() if key not in unset}
    return {**kept, **changed, "version": current.get("version", 0) + 1}


def _stored_value(key: str, value: Any) -> Any:
    if key == "statements":
        return [to_stored(StatementDocument, statement) for statement in value]
    return value


def _live(domain_id: str, policy_id: str) -> dict[str, Any] | None:
    return collection(PolicyDocument).find_one({"domain_id": domain_id, "policy_id": policy_id, "deleted_at": None})


def _held_by_live(policy_id: str) -> AlreadyExists:
    return AlreadyExists(
        "Policy", "policy_id", policy_id, "a live policy holds this id; delete or rename it before restoring"
    )


def point_read(domain_id: str, policy_id: str) -> list[dict[str, Any]]:
    """The live policy (an equality on the unique index) joined to its repository."""
    selector = {"domain_id": domain_id, "policy_id": policy_id, "deleted_at": None}
    return [{"$match": selector}, {"$limit": 1}, repository_info_lookup()]


def _last_deleted(domain_id: str, policy_id: str) -> dict[str, Any] | None:
    """The most recently deleted record of the id (an id deleted, created again and deleted
    again has several); restore brings back this one."""
    found = (
        collection(PolicyDocument)
        # Deleted: deleted_at is set, a range of the unique index (`$ne: None` would scan).
        .find({"domain_id": domain_id, "policy_id": policy_id, "deleted_at": {"$gt": _EPOCH}})
        .sort([("deleted_at", -1), ("_id", -1)])
        .limit(1)
    )
    return next(iter(found), None)


def _etag_update(raw: dict[str, Any], now: datetime, sets: dict[str, Any]) -> Update:
    """A compare-and-set on the etag read, giving the policy a new etag and version."""
    etag = new_etag()
    return Update(
        selector={"_id": raw["_id"], "etag": raw["etag"]},
        update={"$set": {**sets, "etag": etag, "updated_at": now}, "$inc": {"version": 1}},
        after={"_id": raw["_id"], "etag": etag},
        raw=raw,
    )
