"""Who is calling and for which domain. Built by the api layer, trusted by the services."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RequestContext:
    domain_id: str
    caller_type: str = "USER"          # USER | SERVICE_ACCOUNT
    caller_id: str = "anonymous"
    role_type: str = "SYSTEM"          # SYSTEM | DOMAIN_ADMIN | USER
    # Ties the audit entries and log lines of one call (and of a caller's trace) together.
    transaction_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def utc_now() -> datetime:
    """Current UTC time at MongoDB's precision (milliseconds), so what we return equals what we stored."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
