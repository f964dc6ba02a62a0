"""Which listener a call arrived on. The SpaceONE listener (policyhub.server) marks its calls,
so the CallerResolver serves anonymous public reads there and nowhere else."""

from __future__ import annotations

import contextvars

import grpc

_on_spaceone_listener = contextvars.ContextVar("on_spaceone_listener", default=False)


def on_spaceone_listener() -> bool:
    return _on_spaceone_listener.get()


class SpaceOneListenerInterceptor(grpc.ServerInterceptor):
    """Innermost on the SpaceONE listener: marks each unary call while it runs."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return handler._replace(unary_unary=_marked(handler.unary_unary))


def _marked(behavior):
    def wrapper(request, context):
        token = _on_spaceone_listener.set(True)
        try:
            return behavior(request, context)
        finally:
            _on_spaceone_listener.reset(token)

    return wrapper
