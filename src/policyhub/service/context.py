"""Who is calling and for which domain. Built by the api layer, trusted by the services."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RequestContext:
    domain_id: str


def utc_now() -> datetime:
    """Current UTC time at MongoDB's precision (milliseconds), so what we return equals what we stored."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
