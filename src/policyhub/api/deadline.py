"""Every RPC's database work ends by the call's gRPC deadline (and never later than the
connection's own limit): a caller that gave up costs the database nothing more.

Unary calls are bounded here as a whole. A server-streaming call may last hours, so it is left
alone here and bounds each of its database reads itself with the same `bounded` (see
policyhub.api.change_api)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import grpc

# The database's `bounded(seconds_left)`: a block whose operations end by then.
Bounded = Callable[[float | None], AbstractContextManager[object]]


class DeadlineInterceptor(grpc.ServerInterceptor):
    def __init__(self, bounded: Bounded):
        self.bounded = bounded

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return handler._replace(unary_unary=self._bounded(handler.unary_unary))

    def _bounded(self, behavior):
        def wrapper(request, context):
            with self.bounded(context.time_remaining()):
                return behavior(request, context)

        return wrapper
