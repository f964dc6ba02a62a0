"""Every RPC's database work ends by the call's gRPC deadline (and never later than the
connection's own limit): a caller that gave up costs the database nothing more.

Unary calls are bounded here as a whole. Streaming calls move many documents or last long, so no
single limit fits their whole work: a server-streaming handler that does its reads before its
first message (the bulk export) is bounded here by the call's deadline alone; a long-lived one
(the Change watch) bounds each of its reads itself with the same `bounded`; the bulk import reads
its stream within the deadline and, once it starts writing, finishes (or undoes) its write
whatever the deadline, each database call bounded by the connection's limit, since a write cut
off half-way could not be undone."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import grpc

# The database's `bounded(seconds_left)`: a block whose operations end by then.
Bounded = Callable[[float | None], AbstractContextManager[object]]
# The methods whose work grows with their request or with what a filter matches: a user's query
# (a page and its count, or an aggregation) and the batch writes (up to 10,000 pairs or 1,000 ids
# a call, in several database round trips). Bounded by the database's larger query limit.
LONG_METHODS = frozenset(
    {"list", "stat", "add", "remove", "delete_many", "add_users", "remove_users", "bind_users", "unbind_users"}
)


class DeadlineInterceptor(grpc.ServerInterceptor):
    """`bounded`: the database's bound of a unary call (the deadline, at most the connection's
    limit); `bounded_query`: the same for LONG_METHODS (at most the query limit);
    `by_deadline`: its bound of a streaming call's reads (the deadline alone)."""

    def __init__(self, bounded: Bounded, bounded_query: Bounded, by_deadline: Bounded):
        self.bounded = bounded
        self.bounded_query = bounded_query
        self.by_deadline = by_deadline

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            long = handler_call_details.method.rpartition("/")[2] in LONG_METHODS
            bound = self.bounded_query if long else self.bounded
            return handler._replace(unary_unary=self._bounded(handler.unary_unary, bound))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._bounded(handler.unary_stream, self.by_deadline))
        return handler

    @staticmethod
    def _bounded(behavior, bound: Bounded):
        def wrapper(request, context):
            with bound(context.time_remaining()):
                return behavior(request, context)

        return wrapper
