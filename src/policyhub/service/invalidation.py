"""When a domain's evaluation caches must be invalidated, and what goes into its change log."""

from __future__ import annotations

import contextlib
import functools
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

from policyhub.domain import ChangeKind, Operation, as_utc
from policyhub.errors import PolicyHubError
from policyhub.manager.assignment_manager import AssignmentManager, Key
from policyhub.manager.database import beyond_the_deadline
from policyhub.manager.policy_manager import RULE_FIELDS
from policyhub.manager.revision_manager import Change, RevisionManager, Settle
from policyhub.service.consistency import consistency_token

# How often a long write under way renews its mark (see RevisionManager.keep_write): well within
# the mark's lifetime.
KEEP_WRITE_SECONDS = 5.0
# The most assignment pairs a write reads back between its revision bump and its change record
# (one query per subject type; see `settled`): readers of the log wait for the record only briefly.
SETTLE_PAIRS_MAX = 200


class ChangeSet:
    """What a write changed, told by the service as it goes; its token once the write landed."""

    def __init__(self, keep: Callable[[], None] | None = None) -> None:
        self.items: list[dict[str, str]] = []
        self.revision = 0
        self._keep = keep
        self._kept_at = time.monotonic()

    def keep_alive(self) -> None:
        """Called as a long write goes on (between its batches): renews the write-under-way mark
        of an `invalidating_at_once` write every few seconds, so readers keep waiting for it."""
        if self._keep is not None and time.monotonic() - self._kept_at >= KEEP_WRITE_SECONDS:
            self._keep()
            self._kept_at = time.monotonic()

    def add(self, kind: str, item_id: str, operation: str) -> None:
        self.items.append({"kind": kind, "id": item_id, "operation": operation})

    def add_policy_update(self, policy: Mapping[str, Any]) -> None:
        """A policy's update, with what it now holds that evaluation reads (see policy_update_change)."""
        self.items.append(policy_update_change(policy))

    def add_assignment(self, assignment: Mapping[str, Any], operation: str) -> None:
        """An assignment's change, with its pair: once it is deleted, that is the only place an
        evaluation index can learn which edge to drop."""
        self.items.append(assignment_change(assignment, operation))

    @property
    def token(self) -> str:
        return consistency_token(self.revision)


def policy_update_change(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The update of one policy (not a rename), with its rule fields as written, so an evaluation
    index applies it from the log without reading the policy back. One policy is at most 64 KB, so
    a record of one write holds it whole; writes of many policies log their ids only."""
    return {
        "kind": ChangeKind.POLICY,
        "id": policy["policy_id"],
        "operation": Operation.UPDATE,
        "rules": {field: policy.get(field) for field in RULE_FIELDS},
    }


def assignment_change(assignment: Mapping[str, Any], operation: str) -> dict[str, Any]:
    change = {
        "kind": ChangeKind.ASSIGNMENT,
        "id": assignment.get("assignment_id") or "",
        "operation": operation,
        "subject": {"type": assignment["subject_type"], "id": assignment["subject_id"]},
        "grant": {"type": assignment["grant_type"], "id": assignment["grant_id"]},
    }
    if operation == Operation.CREATE:
        # The whole edge, so an evaluation index applies the creation without reading it back.
        # Every creation passes what it inserted (a stored assignment has no expires_at when it
        # never expires); a record without the key comes from an earlier version and is not trusted.
        change["expires_at"] = assignment.get("expires_at")
    return change


def settled(changes: list[Change], holders: Callable[[list[Key]], dict[Key, dict[str, Any]]] | None) -> list[Change]:
    """The changes to log, read against the store once the write's revision has moved.

    A write bumps the revision after it wrote, so two concurrent writes of one (subject, grant)
    pair can be logged in the other order than they reached the store: a remover finds and
    deletes what a creator has just inserted, and bumps first. `holders` (the assignment holding
    each pair, read now: after every write logged before this one) tells which assignment
    changes the store still agrees with; each other one is marked `recheck`, and an evaluation
    index loads its pair rather than apply it. A creation agrees when the pair is held by that
    assignment with that expiry, a deletion when the pair is free. Every assignment change is
    marked without `holders`, when the read fails (the record must be written all the same), and
    beyond SETTLE_PAIRS_MAX pairs (readers wait for the record only briefly after the bump)."""
    pairs = {_pair(change) for change in changes if _told(change)}
    if not pairs:
        return changes
    held: dict[Key, dict[str, Any]] | None = None
    if holders is not None and len(pairs) <= SETTLE_PAIRS_MAX:
        with contextlib.suppress(PolicyHubError):
            held = holders(sorted(pairs))
    return [
        {**change, "recheck": True} if _told(change) and not _agrees(change, held) else change for change in changes
    ]


def _told(change: Change) -> bool:
    return change["kind"] == ChangeKind.ASSIGNMENT and "subject" in change


def _pair(change: Change) -> Key:
    subject, grant = change["subject"], change["grant"]
    return subject["type"], subject["id"], grant["type"], grant["id"]


def _agrees(change: Change, held: dict[Key, dict[str, Any]] | None) -> bool:
    if held is None:
        return False
    holder = held.get(_pair(change))
    if change["operation"] == Operation.DELETE:
        return holder is None
    if change["operation"] == Operation.CREATE and "expires_at" in change:
        return (
            holder is not None
            and holder["assignment_id"] == change["id"]
            and _instant(holder.get("expires_at")) == _instant(change["expires_at"])
        )
    return True  # an update: never applied from the log


def _instant(moment: datetime | None) -> datetime | None:
    """A time as the store keeps it (UTC, to the millisecond)."""
    if moment is None:
        return None
    moment = as_utc(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _settle(domain_id: str, assignments: AssignmentManager | None) -> Settle:
    holders = None if assignments is None else functools.partial(assignments.find_by_keys, domain_id)
    return functools.partial(settled, holders=holders)


@contextmanager
def invalidating(
    revisions: RevisionManager,
    domain_id: str,
    transaction_id: str = "",
    assignments: AssignmentManager | None = None,
) -> Iterator[ChangeSet]:
    """Bumps the domain's revision when the block ends, however it ends (a write that failed
    half-way, or was rolled back, may still have been seen by an index built meanwhile), and
    logs the changes the block told its ChangeSet (when it failed: none, and the record marked
    incomplete, as it may have written part of what it did not tell). The assignment changes
    are `settled` with `assignments` (without it, each is marked for an index to load)."""
    changes = ChangeSet()
    failed = True
    try:
        yield changes
        failed = False
    finally:
        # Beyond the caller's deadline: a write cut off by it must still be seen to have happened.
        changes.revision = beyond_the_deadline(
            revisions.bump,
            domain_id,
            [] if failed else changes.items,
            transaction_id,
            not failed,
            _settle(domain_id, assignments),
        )


@contextmanager
def invalidating_at_once(
    revisions: RevisionManager,
    domain_id: str,
    transaction_id: str = "",
    assignments: AssignmentManager | None = None,
) -> Iterator[ChangeSet]:
    """As `invalidating`, for a write of several documents that must be seen all at once (a
    rename moving every assignment that names the old id): no evaluation index is built while
    it is under way, so no check ever answers from half of it (see IndexCache.get)."""
    mark = revisions.begin_write(domain_id)
    changes = ChangeSet(keep=lambda: revisions.keep_write(domain_id, mark))
    failed = True
    try:
        yield changes
        failed = False
    finally:
        changes.revision = beyond_the_deadline(
            revisions.end_write,
            domain_id,
            mark,
            [] if failed else changes.items,
            transaction_id,
            not failed,
            _settle(domain_id, assignments),
        )
