"""The one place that decides who is calling and for which domain.

Until caller identity lands, the domain comes from the request's `domain_id`;
token-based identity replaces this function's body and nothing else.
"""
from __future__ import annotations

import re
import uuid

import grpc

from policyhub.service import validation
from policyhub.service.context import RequestContext

# W3C trace context: version-traceid-parentid-flags
TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def request_context(request, context: grpc.ServicerContext) -> RequestContext:
    metadata = dict(context.invocation_metadata() or ())
    return RequestContext(domain_id=validation.domain_id(getattr(request, "domain_id", "")),
                          transaction_id=transaction_id(metadata.get("traceparent", "")))


def transaction_id(traceparent: str) -> str:
    """The caller's trace id when it sent a valid `traceparent`, so our audit entries join its trace."""
    match = TRACEPARENT_RE.match(traceparent.strip().lower())
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    return uuid.uuid4().hex
