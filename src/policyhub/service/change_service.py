"""The Change service: a domain's change log, listed page by page or watched as it grows.

Validation, authorization and the reads; which changes a reader may take (order, holes,
retention) is decided by the pure policyhub.service.change_feed. A watch polls the database
(so it sees the writes of every process sharing it) and holds a slot of the process for as long
as it runs (see WatchSlots): the gRPC server gives each one a worker thread.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from policyhub.domain import as_utc
from policyhub.errors import InvalidArgument, ResyncRequired, TooManyWatches, Unavailable
from policyhub.manager.change_manager import ChangeManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service import change_feed as feed
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.invalidation import consistency_token
from policyhub.service.permissions import CHANGE_LIST, CHANGE_WATCH

# A watch reads the log this often while it has nothing to send (a poll is one indexed read of
# the records after its position).
POLL_SECONDS = 0.2
# At most this many records per poll, and this many changes taken from them: what one watch
# holds in memory.
WATCH_BATCH_RECORDS = 32
WATCH_BATCH_CHANGES = 1000
# A hole (a seq without its record) is waited for until the next record is this old, at least:
# far more than a writer needs between its revision bump and its record (two database calls,
# each bounded by db_timeout_ms).
MIN_HOLE_GRACE_SECONDS = 10.0


def _why(stop: str) -> str:
    if stop == feed.MISMATCH:
        return "this position is not in this domain's change log"
    return "changes after this position may have expired (the change log keeps them change_retention_seconds)"


def hole_grace(db_timeout_ms: int) -> float:
    return max(MIN_HOLE_GRACE_SECONDS, 2 * db_timeout_ms / 1000)


class WatchSlots:
    """How many watches run at once in this process, in all and per domain: each holds a worker
    thread of the gRPC server, so they must leave room for the other calls, and one domain must
    not take every slot."""

    def __init__(self, per_process: int, per_domain: int):
        self.per_process = per_process
        self.per_domain = per_domain
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    @classmethod
    def for_workers(cls, max_workers: int) -> WatchSlots:
        """Half of the worker threads, a quarter per domain (at least one each)."""
        per_process = max(1, max_workers // 2)
        return cls(per_process, max(1, per_process // 2))

    def running(self, domain_id: str | None = None) -> int:
        with self._lock:
            return sum(self._running.values()) if domain_id is None else self._running.get(domain_id, 0)

    def acquire(self, domain_id: str) -> Callable[[], None]:
        """Takes a slot (TooManyWatches when none is free); returns its release (idempotent)."""
        with self._lock:
            if sum(self._running.values()) >= self.per_process:
                raise TooManyWatches(
                    f"this server already runs {self.per_process} watches (half of max_workers); "
                    "retry later or on another server"
                )
            if self._running.get(domain_id, 0) >= self.per_domain:
                raise TooManyWatches(f"this domain already has {self.per_domain} watches on this server; retry later")
            self._running[domain_id] = self._running.get(domain_id, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._running.get(domain_id, 1) - 1
                if left:
                    self._running[domain_id] = left
                else:
                    self._running.pop(domain_id, None)

        return release


@dataclass(frozen=True)
class Heartbeat:
    continuation_token: str
    time: float  # epoch seconds


# What a watch sends: a change (its fields, see change_feed.change_fields) or a heartbeat.
WatchEvent = dict[str, Any] | Heartbeat


class ChangeService:
    def __init__(
        self,
        changes: ChangeManager,
        revisions: RevisionManager,
        guard: Guard,
        clock: Clock,
        page_max_limit: int,
        limits: feed.Limits,
        slots: WatchSlots,
    ):
        self.changes = changes
        self.revisions = revisions
        self.guard = guard
        self.clock = clock
        self.page_max_limit = page_max_limit
        self.limits = limits
        self.slots = slots
        self.poll_seconds = POLL_SECONDS

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """{"results": [change fields], "continuation_token": ...}: the changes after `after`."""
        start, kinds = self._request(params)
        limit = validation.continuation_page(params.get("page"), self.page_max_limit)
        self.guard.require(ctx, CHANGE_LIST, "change")
        head = self._head(ctx.domain_id)
        self._refuse_ahead(ctx.domain_id, start, head)
        step = self._read(ctx.domain_id, start, head, limit, kinds, records=limit)
        if step.stop and not step.entries:
            raise self.resync_error(ctx.domain_id, step.stop)
        # A reader stopped short (expired, ...) gets what it may take first; its next call is refused.
        moved = (step.position.seq, step.position.index) != (start.seq, start.index)
        return {
            "results": [change_info(entry) for entry in step.entries],
            # Nothing new: `after` itself, so a client knows it is caught up by comparing tokens.
            "continuation_token": feed.encode(step.position) if moved else params.get("after") or "",
        }

    def open_watch(self, ctx: RequestContext, params: dict[str, Any]) -> Watch:
        """Checks the request and takes a watch slot; the Watch sends the changes."""
        start, kinds = self._request(params)
        heartbeat = validation.heartbeat_seconds(params.get("heartbeat_seconds"))
        self.guard.require(ctx, CHANGE_WATCH, "change")
        self._refuse_ahead(ctx.domain_id, start, self._head(ctx.domain_id))
        release = self.slots.acquire(ctx.domain_id)
        return Watch(self, ctx.domain_id, start, kinds, heartbeat, release)

    def poll(self, domain_id: str, position: feed.Position, kinds: frozenset[str] | None) -> feed.Step:
        """One read of a watch: the records after its position; the head revision only when the
        answer depends on it (rarely: a position about as old as the retention)."""
        step = self._read(domain_id, position, None, WATCH_BATCH_CHANGES, kinds, records=WATCH_BATCH_RECORDS)
        if step.stop == feed.NEEDS_HEAD:
            head = self._head(domain_id)
            step = self._read(domain_id, position, head, WATCH_BATCH_CHANGES, kinds, records=WATCH_BATCH_RECORDS)
        return step

    def purge_expired(self) -> int:
        """The purge sweep's part: change records past their retention."""
        return self.changes.purge_expired(self.clock())

    def now(self) -> float:
        return self.clock().timestamp()

    def _request(self, params: dict[str, Any]) -> tuple[feed.Position, frozenset[str] | None]:
        try:
            start = feed.decode(params.get("after") or "")
        except ValueError as exc:
            raise InvalidArgument("after", str(exc)) from None
        return start, validation.change_kinds(params.get("kinds"))

    def _head(self, domain_id: str) -> feed.Head:
        read_at = self.now()  # before the read: the bound it gives is then on the safe side
        return feed.Head(self.revisions.current([domain_id])[0], read_at)

    def _refuse_ahead(self, domain_id: str, start: feed.Position, head: feed.Head) -> None:
        if feed.ahead(start, head):
            raise self.resync_error(domain_id, feed.MISMATCH)

    def _read(
        self,
        domain_id: str,
        start: feed.Position,
        head: feed.Head | None,
        limit: int,
        kinds: frozenset[str] | None,
        records: int,
    ) -> feed.Step:
        found = self.changes.after(domain_id, start.seq, records)
        return feed.read(
            [_record(raw) for raw in found],
            start,
            complete=len(found) < records,
            now=self.now(),
            head=head,
            limits=self.limits,
            limit=limit,
            kinds=kinds,
        )

    def resync_error(self, domain_id: str, stop: str) -> ResyncRequired:
        """The refusal of a position the reader cannot go on from, with a fresh one: the head
        now, so the state the reader re-reads next holds every change before it."""
        fresh = feed.head_position(self._head(domain_id), self.limits)
        return ResyncRequired(_why(stop), feed.encode(fresh))


class Watch:
    """One running watch: holds its slot until closed (or until its events end)."""

    def __init__(
        self,
        service: ChangeService,
        domain_id: str,
        start: feed.Position,
        kinds: frozenset[str] | None,
        heartbeat: int,
        release: Callable[[], None],
    ):
        self.service = service
        self.domain_id = domain_id
        self.position = start
        self.kinds = kinds
        self.heartbeat = heartbeat
        self.close = release

    def events(
        self,
        alive: Callable[[], bool],
        stopping: threading.Event,
        bounded: Callable[[], AbstractContextManager[object]],
    ) -> Iterator[WatchEvent]:
        """The changes from the start position on, as they land, and heartbeats while idle (the
        first one as soon as the watch has caught up). Ends when `alive()` turns false (the
        caller left, or its deadline passed); Unavailable when `stopping` is set (the server
        shuts down); ResyncRequired when the log cannot be followed on. Each database read
        runs in `bounded()`."""
        service = self.service
        last_sent = time.monotonic()
        caught_up = False
        try:
            while True:
                if stopping.is_set():
                    raise Unavailable("the server is shutting down; reconnect from your last continuation token")
                if not alive():
                    return
                with bounded():
                    step = service.poll(self.domain_id, self.position, self.kinds)
                for entry in step.entries:
                    yield change_info(entry)
                    last_sent = time.monotonic()
                self.position = step.position
                if step.stop:
                    with bounded():
                        raise service.resync_error(self.domain_id, step.stop)
                if step.more:
                    continue
                if not caught_up or time.monotonic() - last_sent >= self.heartbeat:
                    caught_up = True
                    yield Heartbeat(feed.encode(self.position), service.now())
                    last_sent = time.monotonic()
                stopping.wait(min(service.poll_seconds, max(0.0, last_sent + self.heartbeat - time.monotonic())))
        finally:
            self.close()


def change_info(entry: feed.Entry) -> dict[str, Any]:
    """A change as the api shows it, with the consistency token of the write that made it."""
    return {**feed.change_fields(entry), "consistency_token": consistency_token(entry.record.seq)}


def _record(raw: dict[str, Any]) -> feed.Record:
    return feed.Record(
        seq=int(raw["seq"]),
        changes=raw.get("changes") or [],
        transaction_id=raw.get("transaction_id") or "",
        created_at=as_utc(raw["created_at"]),
        purge_at=as_utc(raw["purge_at"]),
    )
