"""Persistence and queries of assignments."""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any, Iterable

import pymongo.errors

from policyhub.errors import Aborted, AlreadyExists, NotFound
from policyhub.manager import bulk_writes
from policyhub.manager.bulk_writes import Progress, Revert, Update
from policyhub.manager.database import collection, embedded, to_stored, translate_errors
from policyhub.manager.queries import run_list, run_stat
from policyhub.model import AssignmentDocument
from policyhub.query import QueryKeys, QuerySchema, compile_list, compile_stat

# (subject_type, subject_id, grant_type, grant_id): what makes an assignment unique in a domain.
Key = tuple[str, str, str, str]
KEY_FIELDS = ("subject_type", "subject_id", "grant_type", "grant_id")
# An assignment as stored (what AssignmentDocument declares).
STORED_FIELDS = (
    "assignment_id",
    *KEY_FIELDS,
    "expires_at",
    "labels",
    "tags",
    "domain_id",
    "created_at",
)
# What an assignment query may name: the stored fields, and the fields of AssignmentInfo, which
# shows the pairs as `subject` and `grant` messages (`removal` is a remover's claim, not shown).
ASSIGNMENT_KEYS = QueryKeys(
    fields=frozenset(STORED_FIELDS) - {"tags"},
    maps=frozenset({"tags"}),
    aliases={f"{side}.{part}": f"{side}_{part}" for side in ("subject", "grant") for part in ("type", "id")},
    computed={"consistency_token": "given by a write's answer, not stored with the assignment"},
)
EDGE_FIELDS = {"_id": 0, **{field: 1 for field in KEY_FIELDS}, "expires_at": 1}
DUPLICATE_KEY = 11000
# Rounds of inserting: a pair taken when we inserted but free again when we read its holder
# is tried again; one that keeps flipping (a concurrent remover each time) ends in ABORTED.
INSERT_ROUNDS = 3
# How long a remover's claim on an assignment stands: far longer than the two database calls
# (each bounded by the connection timeout) between claim and delete, and short enough that the
# claim of a remover that died in between does not keep the assignment from being removed.
CLAIM_SECONDS = 60.0


def key_of(record: dict[str, Any]) -> Key:
    return tuple(record[field] for field in KEY_FIELDS)  # type: ignore[return-value]


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key not in ("_id", "removal")}


def _count_by(domain_id: str, type_field: str, id_field: str, id_type: str, ids: list[str]) -> dict[str, int]:
    """By id, how many assignments hold it in `id_field` (with `type_field` = id_type): IN_BATCH
    ids a call, each an equality prefix and an `$in` that an index serves."""
    counts: dict[str, int] = {}
    for batch in bulk_writes.in_batches(ids):
        found = collection(AssignmentDocument).aggregate(
            [
                {"$match": {"domain_id": domain_id, type_field: id_type, id_field: {"$in": batch}}},
                {"$group": {"_id": f"${id_field}", "n": {"$sum": 1}}},
            ]
        )
        counts.update((doc["_id"], doc["n"]) for doc in found)
    return counts


def _unclaimed(now: float) -> dict[str, Any]:
    """Matches assignments no remover holds a standing claim on."""
    return {"removal.until": {"$not": {"$gt": now}}}


def _claim(assignments, selector: dict[str, Any], claim: dict[str, Any], now: float) -> None:
    """Claims the selected assignments that no other remover holds a standing claim on. On a
    server, the filter is the index-served selector alone and the update keeps a standing claim
    (a condition on the claim in the filter would make some servers scan the collection); the
    embedded store runs no update pipelines and uses no indexes, so there it is in the filter."""
    if embedded(assignments):
        assignments.update_many({**selector, **_unclaimed(now)}, {"$set": {"removal": claim}})
        return
    standing = {"$gt": [{"$ifNull": ["$removal.until", 0]}, now]}
    assignments.update_many(selector, [{"$set": {"removal": {"$cond": [standing, "$removal", {"$literal": claim}]}}}])


def _insert_unordered(assignments, documents: list[dict[str, Any]]) -> list[int]:
    """Inserts what it can, bulk_writes.BATCH documents a call; returns the positions of the
    documents whose pair was taken."""
    taken: list[int] = []
    for start in range(0, len(documents), bulk_writes.BATCH):
        try:
            assignments.insert_many(documents[start : start + bulk_writes.BATCH], ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            taken.extend(start + error["index"] for error in errors)
    return sorted(taken)


class AssignmentManager:
    def __init__(self, page_max_limit: int):
        self.schema = QuerySchema(
            keys=ASSIGNMENT_KEYS,
            keyword_fields=("assignment_id", "subject_id", "grant_id"),
            minimal_fields=("assignment_id", *KEY_FIELDS, "domain_id"),
            datetime_fields=frozenset({"created_at", "expires_at"}),
            default_sort=(("created_at", False),),
            max_limit=page_max_limit,
        )

    @translate_errors()
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            collection(AssignmentDocument).insert_one(to_stored(AssignmentDocument, record))
        except pymongo.errors.DuplicateKeyError:
            raise AlreadyExists("Assignment", "subject/grant", "/".join(key_of(record))) from None
        return self.get(record["domain_id"], record["assignment_id"])

    @translate_errors()
    def find_by_keys(self, domain_id: str, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
        """The assignments holding these (subject, grant) pairs. Read by subject, IN_BATCH
        subjects a call (served by the unique index's prefix), the pairs picked out here: a `$or`
        of thousands of exact clauses is far slower, on MongoDB and on the embedded store alike."""
        wanted = set(keys)
        subjects: dict[str, set[str]] = {}
        for subject_type, subject_id, _, _ in wanted:
            subjects.setdefault(subject_type, set()).add(subject_id)
        assignments = collection(AssignmentDocument)
        found: dict[Key, dict[str, Any]] = {}
        for subject_type, subject_ids in sorted(subjects.items()):
            for batch in bulk_writes.in_batches(sorted(subject_ids)):
                query = {"domain_id": domain_id, "subject_type": subject_type, "subject_id": {"$in": batch}}
                for raw in assignments.find(query, {"removal": 0}):
                    key = key_of(raw)
                    if key in wanted:
                        found[key] = _record(raw)
        return found

    @translate_errors()
    def insert_new(self, records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
        """Inserts each record whose (subject, grant) pair is free. Returns, by pair, the
        assignment that holds each of the other pairs (created meanwhile by someone else); every
        record whose pair is not in the result was inserted by this call. On any failure, what
        this call inserted is removed again."""
        assignments = collection(AssignmentDocument)
        domain_id = records[0]["domain_id"]
        pending = [(record, to_stored(AssignmentDocument, record)) for record in records]
        taken: dict[Key, dict[str, Any]] = {}
        try:
            for _ in range(INSERT_ROUNDS):
                lost = [pending[i] for i in _insert_unordered(assignments, [document for _, document in pending])]
                if not lost:
                    return taken
                holders = self.find_by_keys(domain_id, [key_of(record) for record, _ in lost])
                taken.update(holders)
                # A pair that is free again (its holder was removed since) is tried once more.
                pending = [(record, document) for record, document in lost if key_of(record) not in holders]
                if not pending:
                    return taken
            raise Aborted("the assignments are being added and removed concurrently; retry")
        except Exception:
            # Our ids are new: deleting them touches only what this call inserted.
            self.delete_ids(domain_id, [record["assignment_id"] for record in records])
            raise

    @translate_errors()
    def delete_ids(self, domain_id: str, assignment_ids: list[str]) -> int:
        assignments = collection(AssignmentDocument)
        return sum(
            assignments.delete_many({"domain_id": domain_id, "assignment_id": {"$in": batch}}).deleted_count
            for batch in bulk_writes.in_batches(assignment_ids)
        )

    @translate_errors()
    def remove_ids(self, domain_id: str, assignment_ids: list[str]) -> set[str]:
        """Deletes the assignments (distinct ids) and returns the ids this call removed. Two
        removers of one assignment would both see a delete succeed, so each first claims what it
        will delete (a per-document atomic update): the claim decides who removed it, and only
        what this call holds a claim on is deleted (no other remover deletes a claimed one)."""
        assignments = collection(AssignmentDocument)
        now = time.time()
        token = secrets.token_hex(8)
        removed: set[str] = set()
        try:
            for batch in bulk_writes.in_batches(assignment_ids):
                selector = {"domain_id": domain_id, "assignment_id": {"$in": batch}}
                _claim(assignments, selector, {"by": token, "until": now + CLAIM_SECONDS}, now)
                ours = [
                    raw["assignment_id"]
                    for raw in assignments.find(selector, {"_id": 0, "assignment_id": 1, "removal.by": 1})
                    if raw.get("removal", {}).get("by") == token
                ]
                if ours:
                    assignments.delete_many({"domain_id": domain_id, "assignment_id": {"$in": ours}})
                    removed.update(ours)
        except Exception:
            # Let others remove them now rather than when the claim runs out.
            with contextlib.suppress(pymongo.errors.PyMongoError):
                for batch in bulk_writes.in_batches(assignment_ids):
                    assignments.update_many(
                        {"domain_id": domain_id, "assignment_id": {"$in": batch}, "removal.by": token},
                        {"$unset": {"removal": ""}},
                    )
            raise
        return removed

    @translate_errors()
    def delete(self, domain_id: str, assignment_id: str) -> None:
        """As `remove_ids` for one id: claimed first, so a remover in the middle of a batch keeps
        it (and the claim's filter is the index-served selector alone: with the claim condition in
        a delete's filter, some servers scan the domain for it)."""
        if not self.remove_ids(domain_id, [assignment_id]):
            raise NotFound("Assignment", "assignment_id", assignment_id)

    @translate_errors()
    def get(self, domain_id: str, assignment_id: str) -> dict[str, Any]:
        raw = collection(AssignmentDocument).find_one({"domain_id": domain_id, "assignment_id": assignment_id})
        if raw is None:
            raise NotFound("Assignment", "assignment_id", assignment_id)
        return _record(raw)

    @translate_errors()
    def count_for_policy(self, domain_id: str, policy_ids: list[str]) -> dict[str, int]:
        """By policy id, how many assignments grant it (ids granted by none are left out)."""
        return _count_by(domain_id, "grant_type", "grant_id", "POLICY", policy_ids)

    def for_policy(self, domain_id: str, policy_id: str) -> list[dict[str, Any]]:
        """The raw assignments granting a policy (what a cascade delete parks on the policy)."""
        return self.for_policies(domain_id, [policy_id]).get(policy_id, [])

    @translate_errors()
    def for_policies(self, domain_id: str, policy_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """As `for_policy`, by policy id (ids granted by none are left out): IN_BATCH ids a read,
        each an equality prefix and an `$in` that the (domain_id, grant_type, grant_id) index serves."""
        assignments = collection(AssignmentDocument)
        granting: dict[str, list[dict[str, Any]]] = {}
        for batch in bulk_writes.in_batches(policy_ids):
            # One id: an equality (some MongoDB-compatible servers scan for `$in`).
            granted = batch[0] if len(batch) == 1 else {"$in": batch}
            for raw in assignments.find(
                {"domain_id": domain_id, "grant_type": "POLICY", "grant_id": granted}, {"_id": 0, "removal": 0}
            ):
                granting.setdefault(raw["grant_id"], []).append(raw)
        return granting

    @translate_errors()
    def put_back(self, documents: list[dict[str, Any]]) -> None:
        """Re-inserts parked assignments; ones that exist again meanwhile are kept as they are."""
        if not documents:
            return
        try:
            collection(AssignmentDocument).insert_many([dict(d) for d in documents], ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise

    @translate_errors()
    def regrant(self, domain_id: str, policy_id: str, new_policy_id: str) -> int:
        """Points a renamed policy's assignments at its new id."""
        return (
            collection(AssignmentDocument)
            .update_many(
                {"domain_id": domain_id, "grant_type": "POLICY", "grant_id": policy_id},
                {"$set": {"grant_id": new_policy_id}},
            )
            .modified_count
        )

    @translate_errors()
    def count_naming(self, domain_id: str, set_type: str, set_ids: list[str]) -> dict[str, tuple[int, int]]:
        """By role/group id: (members, grants) — assignments into it, and assignments it holds.
        Ids named by none are left out."""
        members = _count_by(domain_id, "grant_type", "grant_id", set_type, set_ids)
        grants = _count_by(domain_id, "subject_type", "subject_id", set_type, set_ids)
        return {set_id: (members.get(set_id, 0), grants.get(set_id, 0)) for set_id in members.keys() | grants.keys()}

    @translate_errors()
    def naming(self, domain_id: str, set_type: str, set_ids: list[str]) -> list[dict[str, Any]]:
        """The assignments that name the roles/groups, as member (grant) or as holder (subject):
        what a cascade delete removes. One read per side and IN_BATCH ids, each an equality prefix
        and an `$in` that the (domain_id, grant_type, grant_id) and (domain_id, subject...)
        indexes serve (a `$or` of the two sides scans on some stores)."""
        assignments = collection(AssignmentDocument)
        found: dict[str, dict[str, Any]] = {}
        for type_field, id_field in (("grant_type", "grant_id"), ("subject_type", "subject_id")):
            for batch in bulk_writes.in_batches(set_ids):
                for raw in assignments.find({"domain_id": domain_id, type_field: set_type, id_field: {"$in": batch}}):
                    found[raw["assignment_id"]] = _record(raw)
        return list(found.values())

    @translate_errors()
    def rename_set(self, domain_id: str, set_type: str, set_id: str, new_set_id: str) -> int:
        """Points every assignment that names a renamed role/group at its new id."""
        assignments = collection(AssignmentDocument)
        moved = 0
        for type_field, id_field in (("grant_type", "grant_id"), ("subject_type", "subject_id")):
            moved += assignments.update_many(
                {"domain_id": domain_id, type_field: set_type, id_field: set_id}, {"$set": {id_field: new_set_id}}
            ).modified_count
        return moved

    @translate_errors()
    def named_sets(self) -> list[tuple[str, str, str]]:
        """(domain_id, GROUP|ROLE, id) of every role and group any assignment names, in any domain."""
        found: set[tuple[str, str, str]] = set()
        for type_field, id_field in (("grant_type", "grant_id"), ("subject_type", "subject_id")):
            for doc in collection(AssignmentDocument).aggregate(
                [
                    {"$match": {type_field: {"$in": ["GROUP", "ROLE"]}}},
                    {"$group": {"_id": {"d": "$domain_id", "t": f"${type_field}", "i": f"${id_field}"}}},
                ]
            ):
                found.add((doc["_id"]["d"], doc["_id"]["t"], doc["_id"]["i"]))
        return sorted(found)

    @translate_errors()
    def edges(self, domain_id: str) -> list[dict[str, Any]]:
        """Every assignment of the domain, reduced to what the evaluation engine needs."""
        return list(collection(AssignmentDocument).find({"domain_id": domain_id}, EDGE_FIELDS))

    @translate_errors()
    def edges_naming(
        self, domain_id: str, keys: Iterable[Key], policy_ids: Iterable[str], sets: Iterable[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """As `edges`, for the assignments of the given pairs, those granting the given policies
        and those naming the given (GROUP|ROLE, id) sets, as member or holder. One query per
        side and type, each an equality prefix and an `$in` that the (domain_id, subject...) and
        (domain_id, grant_type, grant_id) indexes serve (a `$or` of them scans on some stores);
        a pair is looked up by its subject, the other pairs of that subject dropped here."""
        wanted = set(keys)
        by_subject: dict[str, set[str]] = {}
        for subject_type, subject_id, _, _ in wanted:
            by_subject.setdefault(subject_type, set()).add(subject_id)
        by_grant: dict[str, set[str]] = {"POLICY": set(policy_ids)} if policy_ids else {}
        named: dict[str, set[str]] = {}
        for set_type, set_id in sets:
            named.setdefault(set_type, set()).add(set_id)
            by_grant.setdefault(set_type, set()).add(set_id)
        assignments = collection(AssignmentDocument)
        found: dict[Key, dict[str, Any]] = {}
        for subject_type in sorted(by_subject.keys() | named.keys()):
            ids = by_subject.get(subject_type, set()) | named.get(subject_type, set())
            for raw in assignments.find(
                {"domain_id": domain_id, "subject_type": subject_type, "subject_id": {"$in": sorted(ids)}}, EDGE_FIELDS
            ):
                key = key_of(raw)
                if key in wanted or raw["subject_id"] in named.get(subject_type, ()):
                    found[key] = raw
        for grant_type, ids in sorted(by_grant.items()):
            if ids:
                for raw in assignments.find(
                    {"domain_id": domain_id, "grant_type": grant_type, "grant_id": {"$in": sorted(ids)}}, EDGE_FIELDS
                ):
                    found[key_of(raw)] = raw
        return list(found.values())

    # -- bulk (export and import of a domain) ----------------------------------------------------

    @translate_errors()
    def snapshot(self, domain_id: str) -> list[dict[str, Any]]:
        """Every assignment of the domain (expired ones too), as stored (with `_id`, for a bulk
        write's undo; without a remover's claim)."""
        return list(
            collection(AssignmentDocument).find({"domain_id": domain_id}, {"removal": 0}).batch_size(bulk_writes.BATCH)
        )

    @translate_errors()
    def insert_bulk(self, records: list[dict[str, Any]], progress: Progress) -> list[Any]:
        """Creates the assignments (checked records), all or nothing; returns what `remove_bulk`
        takes to undo it. A (subject, grant) pair or an id taken meanwhile is ConcurrentChange."""
        stored = [{field: record.get(field) for field in STORED_FIELDS} for record in records]
        return bulk_writes.insert(AssignmentDocument, stored, progress, "assignments")

    @translate_errors()
    def update_bulk(self, updates: list[tuple[dict[str, Any], dict[str, Any]]], progress: Progress) -> list[Revert]:
        """Writes each (assignment as read, changes); one removed (or being removed) meanwhile is
        ConcurrentChange, nothing written. Returns what `revert_bulk` takes to undo it."""
        unclaimed = _unclaimed(time.time())
        return bulk_writes.update(
            AssignmentDocument,
            [
                Update(
                    selector={"_id": raw["_id"], **unclaimed},
                    update={"$set": changes},
                    after={"_id": raw["_id"], **changes},
                    raw=raw,
                )
                for raw, changes in updates
            ],
            progress,
            "assignments",
        )

    @translate_errors()
    def delete_bulk(self, raws: list[dict[str, Any]], progress: Progress) -> list[dict[str, Any]]:
        """Deletes the assignments as read (none a remover has claimed); returns what
        `put_back_bulk` takes to undo it."""
        return bulk_writes.delete(AssignmentDocument, raws, progress, "assignments")

    @translate_errors()
    def remove_bulk(self, ids: list[Any], progress: Progress) -> None:
        """Undoes insert_bulk."""
        bulk_writes.remove(AssignmentDocument, ids, progress)

    @translate_errors()
    def revert_bulk(self, reverts: list[Revert], progress: Progress) -> None:
        """Undoes update_bulk."""
        bulk_writes.revert(AssignmentDocument, reverts, progress)

    @translate_errors()
    def put_back_bulk(self, raws: list[dict[str, Any]], progress: Progress) -> None:
        """Undoes delete_bulk."""
        bulk_writes.put_back(AssignmentDocument, raws, progress)

    def list(self, domain_id: str, query: dict | None) -> tuple[list[dict], int]:
        plan = compile_list(query, self.schema, {"domain_id": domain_id})
        results, total = run_list(AssignmentDocument, plan)
        return [_record(doc) for doc in results], total

    def stat(self, domain_id: str, query: dict | None) -> tuple[list, int | None]:
        plan = compile_stat(query, self.schema, {"domain_id": domain_id})
        return run_stat(AssignmentDocument, plan)
