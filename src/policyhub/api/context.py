"""The one place that decides who is calling and for which domain (PRODUCT.md §7).

- Authenticated mode: the `token` metadata (a JWT or an API key) is required and verified;
  the caller's own domain replaces any `domain_id` in the request body (SpaceONE's mutation
  handler), so a body can never widen what a caller sees. Only SYSTEM callers may act for
  another domain, named in the `x_domain_id` metadata (or the request's `domain_id`).
- Development mode (no keys configured): nobody is authenticated, the domain comes from the
  request (or `x_domain_id`), and the caller is treated as SYSTEM. Announced loudly at start.
"""
from __future__ import annotations

import uuid

import grpc
from opentelemetry import trace

from policyhub.errors import PermissionDenied, Unauthenticated
from policyhub.observability import logs
from policyhub.service import validation
from policyhub.service.authentication_service import Authenticator
from policyhub.service.context import RequestContext

DEVELOPER = "developer"


class CallerResolver:
    def __init__(self, authenticator: Authenticator | None):
        self.authenticator = authenticator

    def __call__(self, request, context: grpc.ServicerContext, *, domain_required: bool = True) -> RequestContext:
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        transaction = transaction_id()
        requested = metadata.get("x_domain_id") or getattr(request, "domain_id", "")
        if self.authenticator is None:
            return _bound(RequestContext(domain_id=_domain(requested, domain_required), caller_type="USER",
                                         caller_id=DEVELOPER, role_type="SYSTEM", transaction_id=transaction))
        token = metadata.get("token", "")
        if not token:
            raise Unauthenticated("missing token metadata")
        caller = self.authenticator.authenticate(token)
        if caller.is_system:
            domain = requested or caller.domain_id
        elif metadata.get("x_domain_id"):
            raise PermissionDenied("only system callers may set x_domain_id")
        else:
            domain = caller.domain_id
        return _bound(RequestContext(domain_id=_domain(domain, domain_required), caller_type=caller.caller_type,
                                     caller_id=caller.caller_id, role_type=caller.role_type,
                                     transaction_id=transaction))


def _bound(ctx: RequestContext) -> RequestContext:
    """The call's log lines carry who and for which domain from here on."""
    logs.bind(domain_id=ctx.domain_id, caller=f"{ctx.caller_type}:{ctx.caller_id}")
    return ctx


def _domain(value: str, required: bool) -> str:
    return validation.domain_id(value) if required or value else ""


def transaction_id() -> str:
    """The trace id of the call's span (the observability interceptor continues the caller's
    `traceparent` in it), so audit entries, logs and traces join up; a fresh id outside a span."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x")
    return uuid.uuid4().hex
