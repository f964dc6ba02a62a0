"""Every RPC's database work ends by the call's gRPC deadline (and never later than the
connection's own limit): a caller that gave up costs the database nothing more."""

from __future__ import annotations

import grpc

from policyhub.manager.database import Database


class DeadlineInterceptor(grpc.ServerInterceptor):
    def __init__(self, database: Database):
        self.database = database

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return handler._replace(unary_unary=self._bounded(handler.unary_unary))

    def _bounded(self, behavior):
        def wrapper(request, context):
            with self.database.bounded(context.time_remaining()):
                return behavior(request, context)

        return wrapper
