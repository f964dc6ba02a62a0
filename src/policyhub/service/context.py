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
    role_type: str  # SYSTEM | DOMAIN_ADMIN | USER
    # Ties the audit entries and log lines of one call (and of a caller's trace) together.
    transaction_id: str


def utc_now() -> datetime:
    """Current UTC time at MongoDB's precision (milliseconds), so what we return equals what we stored."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
