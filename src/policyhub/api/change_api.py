"""spaceone.api.repository.v1.Change servicer: `list` (unary) and `watch` (server streaming).

A watch runs on a worker thread of the gRPC server for as long as it lasts. Its database reads
are bounded one by one (the DeadlineInterceptor bounds unary calls as a whole; a stream that
lasts hours cannot be), it ends when its server stops (see `serving`), when the caller leaves or
its deadline passes, and a caller that stops reading is disconnected (see StallWatchdog) rather
than holding the thread for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from copy import copy
from typing import Iterator

import grpc

from policyhub._gen.spaceone.api.repository.v1 import change_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import change_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.deadline import Bounded
from policyhub.api.info.change import to_change_info, to_heartbeat
from policyhub.api.info.common import enum_name, optional_message
from policyhub.api.paging import fitted
from policyhub.errors import SlowConsumer
from policyhub.service.change_service import ChangeService, Heartbeat

log = logging.getLogger(__name__)

# A watcher whose next message cannot be sent for this long (it stopped reading, and gRPC's
# flow-control window is full) is disconnected.
STALL_SECONDS = 30.0


class StallWatchdog:
    """Disconnects watchers that stopped reading: a send that stays blocked longer than
    `stall_seconds` cancels the call with RESOURCE_EXHAUSTED. One thread, running while a
    send is under way."""

    def __init__(self, stall_seconds: float = STALL_SECONDS, interval: float = 0.25):
        self.stall_seconds = stall_seconds
        self.interval = interval
        self._lock = threading.Lock()
        self._sending: dict[int, tuple[grpc.ServicerContext, float]] = {}
        self._running = False

    @contextmanager
    def sending(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Around one message's send (a `yield` of the stream)."""
        key = id(context)
        with self._lock:
            self._sending[key] = (context, time.monotonic())
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="watch-stalls", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._sending.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                if not self._sending:
                    self._running = False
                    return
                stalled = [key for key, (_, since) in self._sending.items() if now - since > self.stall_seconds]
                contexts = [self._sending.pop(key)[0] for key in stalled]
            for context in contexts:
                _disconnect(context, self.stall_seconds)


def _disconnect(context: grpc.ServicerContext, stall_seconds: float) -> None:
    error = SlowConsumer(
        f"the watcher read nothing for {stall_seconds:g} s while changes were waiting; "
        "reconnect from the last continuation token it received"
    )
    log.warning("watch disconnected: %s (peer %s)", error.message, context.peer())
    # The status travels in the trailers (not flow-controlled), after what the caller has yet to
    # read: grpcio's public cancel() would only say CANCELLED.
    try:
        from grpc._cython import cygrpc

        context._rpc_event.call.cancel(cygrpc.StatusCode.resource_exhausted, str(error))  # type: ignore[attr-defined]
    except (AttributeError, ImportError, TypeError):
        context.cancel()


class ChangeAPI(change_pb2_grpc.ChangeServicer):
    def __init__(
        self,
        service: ChangeService,
        caller: CallerResolver,
        bounded: Bounded,
        max_message_bytes: int,
        stalls: StallWatchdog | None = None,
    ):
        self.service = service
        self.caller = caller
        self.bounded = bounded
        self.max_message_bytes = max_message_bytes
        self.stalls = stalls or StallWatchdog()
        # Set when the server serving this servicer stops (see `serving`).
        self.stopping = threading.Event()

    def serving(self, stopping: threading.Event) -> ChangeAPI:
        """This servicer as one server serves it: its watches end when `stopping` is set (the
        server's shutdown begins), so they never hold a graceful shutdown up."""
        bound = copy(self)
        bound.stopping = stopping
        return bound

    def list(self, request, context):
        params = {
            "after": request.after,
            "kinds": _kinds(request),
            "page": optional_message(request, "page"),
        }
        page = self.service.list(self.caller(request, context), params)
        results = fitted([to_change_info(change) for change in page["results"]], self.max_message_bytes)
        # A page cut to fit the reply goes on right after its last result.
        token = results[-1].continuation_token if len(results) < len(page["results"]) else page["continuation_token"]
        return pb.ChangesInfo(results=results, continuation_token=token)

    def watch(self, request, context):
        params = {"after": request.after, "kinds": _kinds(request), "heartbeat_seconds": request.heartbeat_seconds}
        with self.bounded(context.time_remaining()):
            watch = self.service.open_watch(self.caller(request, context), params)
        try:
            events = watch.events(context.is_active, self.stopping, lambda: self.bounded(context.time_remaining()))
            for event in events:
                if isinstance(event, Heartbeat):
                    message = to_heartbeat(event.continuation_token, event.time)
                else:
                    message = pb.WatchChangesResponse(change=to_change_info(event))
                with self.stalls.sending(context):
                    yield message
        finally:
            watch.close()


def _kinds(request) -> list[str]:
    return [enum_name(pb.ChangeInfo.Kind, kind) for kind in request.kinds]
