"""Who is calling and for which domain. Built by the api layer, trusted by the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RequestContext:
    """Every field is explicit: a forgotten caller must never default to a privileged one."""

    domain_id: str
    caller_type: str  # USER | SERVICE_ACCOUNT
    caller_id: str
    role_type: str  # SYSTEM | DOMAIN_ADMIN | USER | ANONYMOUS
    # Ties the audit entries and log lines of one call (and of a caller's trace) together.
    transaction_id: str
    # The caller was verified (a JWT or an API key), so caller_type and caller_id name a real
    # subject of the domain. False in development mode (a stand-in caller) and for anonymous readers.
    authenticated: bool


# The role of an anonymous reader of the public catalogue (SpaceONE listener only). Not a
# RoleType: no token can claim it.
ANONYMOUS = "ANONYMOUS"


def is_anonymous(ctx: RequestContext) -> bool:
    return ctx.role_type == ANONYMOUS


def utc_now() -> datetime:
    """Current UTC time at MongoDB's precision (milliseconds), so what we return equals what we stored."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
