"""The one place that decides who is calling and for which domain.

Until caller identity lands, the domain comes from the request's `domain_id`;
token-based identity replaces this function's body and nothing else.
"""
from __future__ import annotations

import grpc

from policyhub.service import validation
from policyhub.service.context import RequestContext


def request_context(request, context: grpc.ServicerContext) -> RequestContext:
    return RequestContext(domain_id=validation.domain_id(getattr(request, "domain_id", "")))
