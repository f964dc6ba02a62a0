"""The pure part of the Change service: continuation tokens, and which changes of a domain's
change log a reader may take now. No database, no gRPC, no clock: the caller gives the records,
the domain's head revision when it read it, and the time.

The log (see policyhub.model.change) holds one record per revision of the domain, `seq` = the
revision, numbered without holes unless a writer died between its revision bump and its record.
Records are written in the order of their bumps but may be stored out of order (two writers a
few milliseconds apart), and expire `retention` after they were written.

- Order: a reader takes only the contiguous prefix of the records after its position, so it
  never delivers a record before one that precedes it.
- Holes: a missing seq with a later record present is waited for while that later record is
  younger than `grace` (its writer may still be storing it); once the later record is older, the
  missing one's writer bumped more than `grace` ago, far longer than it needs between its bump
  and its record (two database calls), so it died: the hole is stepped over.
- Retention: a reader must never step over a record that expired, as if it were a hole. Every
  position carries `bound`, a time before which no record from its seq on can have expired (a
  lower bound of their `purge_at`, less `grace` for clock skew between processes): a record
  written after record s was bumped after record s, so its purge_at is at least s's less the
  time a writer takes between bump and record (< grace); a record after the head revision read
  at time T is bumped after T, so it expires after T + retention. A missing seq is a hole (or
  not written yet) while `now` is before the bound; after it, missing means possibly expired:
  the reader must resync. So the answer is exact where it matters: an expired record is never
  skipped silently, and a reader is asked to resync only when its position is about as old as
  the retention and a record it needs is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Collection, Mapping, Sequence

TOKEN_PREFIX = "cn1."
TOKEN_MAX = 128

# Why a read stopped short (besides "nothing more to read now").
EXPIRED = "expired"  # a record the reader needs may have expired: resync
MISMATCH = "mismatch"  # the position is not one this domain's log can have given: resync
NEEDS_HEAD = "needs_head"  # the answer depends on the head revision: read it, then read again


@dataclass(frozen=True)
class Position:
    """Where a reader is: record `seq` is read next, of which `index` changes are taken
    already. `bound`: epoch seconds before which no record from `seq` on can have expired.
    seq 0 is a reader without a token: from the oldest record kept."""

    seq: int
    index: int = 0
    bound: int = 0


ORIGIN = Position(0, 0, 0)


def encode(position: Position) -> str:
    return f"{TOKEN_PREFIX}{position.seq}.{position.index}.{position.bound}"


def decode(token: str) -> Position:
    """The position of a continuation token; empty: ORIGIN. ValueError (with the reason) for
    anything else."""
    if not token:
        return ORIGIN
    if len(token) > TOKEN_MAX or not token.startswith(TOKEN_PREFIX):
        raise ValueError("is not a continuation token of the change log")
    parts = token[len(TOKEN_PREFIX) :].split(".")
    if len(parts) != 3 or not all(part.isdigit() and part.isascii() and len(part) <= 18 for part in parts):
        raise ValueError("is not a continuation token of the change log")
    seq, index, bound = (int(part) for part in parts)
    if seq < 1:
        raise ValueError("is not a continuation token of the change log")
    return Position(seq, index, bound)


@dataclass(frozen=True)
class Record:
    seq: int
    changes: Sequence[Mapping[str, str]]
    transaction_id: str
    created_at: datetime
    purge_at: datetime


@dataclass(frozen=True)
class Head:
    """The domain's revision, and when it was read (epoch seconds)."""

    revision: int
    read_at: float


@dataclass(frozen=True)
class Entry:
    """One change to deliver: the `index`-th of its record; `after` resumes right after it."""

    record: Record
    index: int
    change: Mapping[str, str]
    after: Position


@dataclass(frozen=True)
class Step:
    entries: list[Entry]
    # after everything examined (delivered, filtered out, or empty records)
    position: Position
    # more may be readable at once (a limit was reached)
    more: bool = False
    # "" or why the reader cannot go on from `position` (EXPIRED, MISMATCH, NEEDS_HEAD)
    stop: str = ""


@dataclass(frozen=True)
class Limits:
    grace: float
    retention: float


def head_position(head: Head, limits: Limits) -> Position:
    """The position right after the head: every later record is bumped after it was read."""
    return Position(head.revision + 1, 0, _floor(head.read_at + limits.retention - limits.grace))


def read(
    records: Sequence[Record],
    start: Position,
    *,
    complete: bool,
    now: float,
    head: Head | None,
    limits: Limits,
    limit: int,
    kinds: Collection[str] | None = None,
) -> Step:
    """What a reader at `start` takes now: at most `limit` changes (of `kinds`, when given).

    `records`: the domain's records with seq >= start.seq, ascending (the oldest ones when
    start is ORIGIN); `complete`: they are all there are (the query was not cut by its limit).
    `head`: the domain's revision read *before* the records (None: not read; the step then says
    NEEDS_HEAD when its answer depends on it). `now`: epoch seconds."""
    entries: list[Entry] = []
    bound = start.bound
    expected, skip = start.seq, start.index
    position = start

    def safe(seq: int) -> bool:
        """No record from `seq` on can have expired by now."""
        if now < bound:
            return True
        return head is not None and seq > head.revision and now < head.read_at + limits.retention - limits.grace

    if expected == 0:
        if records:
            expected = records[0].seq
        elif head is None:
            return Step(entries, start, stop=NEEDS_HEAD)
        else:
            return Step(entries, head_position(head, limits))
    for record in records:
        if record.seq < expected:
            continue
        if record.seq > expected:
            if skip:
                return Step(entries, position, stop=EXPIRED)  # the record being read is gone
            if not safe(expected):
                return Step(entries, position, stop=EXPIRED if head is not None else NEEDS_HEAD)
            if now - record.created_at.timestamp() <= limits.grace:
                return Step(entries, position)  # a hole that may still fill: wait for it
            # a hole whose writer died between its bump and its record: stepped over
        if skip > len(record.changes):
            return Step(entries, position, stop=MISMATCH)
        after_record = Position(record.seq + 1, 0, max(bound, _floor(record.purge_at.timestamp() - limits.grace)))
        for index in range(skip, len(record.changes)):
            if len(entries) >= limit:
                return Step(entries, Position(record.seq, index, bound), more=True)
            change = record.changes[index]
            last = index + 1 == len(record.changes)
            after = after_record if last else Position(record.seq, index + 1, bound)
            if kinds is None or change.get("kind") in kinds:
                entries.append(Entry(record, index, change, after))
        bound = after_record.bound
        expected, skip = record.seq + 1, 0
        position = after_record
    if not complete:
        return Step(entries, position, more=True)
    if skip:
        return Step(entries, position, stop=EXPIRED)  # the record being read is gone
    if head is None:
        # Nothing after the position: caught up, or a record in flight (or of a dead writer).
        return Step(entries, position) if now < bound else Step(entries, position, stop=NEEDS_HEAD)
    if expected > head.revision:
        return Step(entries, Position(expected, 0, max(bound, head_position(head, limits).bound)))
    # Records up to the head are missing: in flight, of a dead writer, or expired.
    return Step(entries, position) if safe(expected) else Step(entries, position, stop=EXPIRED)


def ahead(start: Position, head: Head) -> bool:
    """The position is past the head: no token of this domain's log points there."""
    return start.seq > head.revision + 1


def change_fields(entry: Entry) -> dict[str, Any]:
    """The plain fields of a change, as the api layer shows them."""
    return {
        "kind": entry.change.get("kind", ""),
        "id": entry.change.get("id", ""),
        "operation": entry.change.get("operation", ""),
        "seq": entry.record.seq,
        "created_at": entry.record.created_at,
        "transaction_id": entry.record.transaction_id,
        "continuation_token": encode(entry.after),
    }


def _floor(seconds: float) -> int:
    return max(0, math.floor(seconds))
