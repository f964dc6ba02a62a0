"""The service's vocabulary: states, effects, subject/grant/role/repository types, reserved ids,
id rules and the time rule (every time is UTC). The bottom floor: imports nothing from
policyhub, so every layer may use it.

StrEnum members equal their strings, so stored records and engine inputs stay plain strings.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import StrEnum

# Metadata key sent on every call to a remote installation; a policyhub answering a call that
# carries it answers from its own policies only, so installations that are each other's remote
# never loop.
HOP_METADATA = "policyhub-remote-hop"


def as_utc(moment: datetime) -> datetime:
    """Every time is UTC: a moment without an offset is taken as UTC, others are converted.
    OverflowError when an offset pushes it out of range."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class PolicyState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    DELETED = "DELETED"


class Effect(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class SubjectType(StrEnum):
    USER = "USER"
    GROUP = "GROUP"
    ROLE = "ROLE"
    SERVICE_ACCOUNT = "SERVICE_ACCOUNT"


class GrantType(StrEnum):
    POLICY = "POLICY"
    ROLE = "ROLE"
    GROUP = "GROUP"


class ChangeKind(StrEnum):
    """What a change log entry is about."""

    POLICY = "POLICY"
    ASSIGNMENT = "ASSIGNMENT"
    GROUP = "GROUP"
    ROLE = "ROLE"


class Operation(StrEnum):
    """What happened to it (a rename is the old id's DELETE and the new id's CREATE)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class RoleType(StrEnum):
    SYSTEM = "SYSTEM"
    DOMAIN_ADMIN = "DOMAIN_ADMIN"
    USER = "USER"


class RepositoryType(StrEnum):
    LOCAL = "local"
    MANAGED = "managed"
    REMOTE = "remote"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The members as plain strings (for choices, and messages that list them)."""
    return tuple(member.value for member in enum)


# Not a valid tenant domain id (see DOMAIN_ID_RE), so it cannot collide with one.
MANAGED_DOMAIN_ID = "*"
# Reserved for managed policy ids, so they can never collide with a tenant's.
MANAGED_ID_PREFIX = "managed-"

MANAGED_REPOSITORY_ID = "repo-managed"
LOCAL_REPOSITORY_ID = "repo-local"
BUILT_IN = {
    MANAGED_REPOSITORY_ID: {"name": "Managed Repository", "repository_type": RepositoryType.MANAGED},
    LOCAL_REPOSITORY_ID: {"name": "Local Repository", "repository_type": RepositoryType.LOCAL},
}

# Matched with fullmatch, within the length limits.
POLICY_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
POLICY_ID_MAX = 48
DOMAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DOMAIN_ID_MAX = 64
