"""Consistency tokens, and how fresh the answer to an authorization question must be.

A token names a revision of one domain: `ct1.<revision>`. Every write answers with the token of
the revision it landed at (policyhub.service.invalidation); every authorization question answers
with the token of the domain revision its evaluation index was built at, and says how fresh that
index must be (policyhub.service.index_cache.IndexCache.at):

- FULLY_CONSISTENT (the default, REQUIREMENT_NONE): the domain's revision is read and the answer is
  at it, so it sees every write that has answered, through any process sharing the database.
- AT_LEAST_AS_FRESH with a token: the process's cached index answers when its revision is at least
  the token's, else as FULLY_CONSISTENT. It sees the write that answered with the token, through
  any process: a revision is bumped only after the documents of its write are stored, so an index
  built at (or after) a revision holds every write up to it. A token beyond the domain's current
  revision (another domain's, or made up) is not waited for: the answer is at the current
  revision, and its token says so.
- MINIMIZE_LATENCY: the cached index answers without reading the revision as long as a read found
  it current at most `max_staleness` seconds ago; it may miss the writes of that window.

Only the domain's revision is in the token. The evaluation index also depends on the managed
policies (their revision is the second part of the key the cache compares), but those change only
when a process starts with different built-in policies, never through a write that answers with a
token; the next FULLY_CONSISTENT read of a process picks them up.

A token is accepted only with AT_LEAST_AS_FRESH: with another requirement it would be ignored, and
a client that sends one expects it to count, so it is refused (INVALID_ARGUMENT naming
`consistency.token`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from policyhub.errors import InvalidArgument, RequiredParameter, clip

TOKEN_PREFIX = "ct1."
# A revision fits in MongoDB's signed 64-bit integers: 18 digits always do.
TOKEN_DIGITS_MAX = 18
_TOKEN_RE = re.compile(rf"{re.escape(TOKEN_PREFIX)}([0-9]{{1,{TOKEN_DIGITS_MAX}}})")


class Requirement(StrEnum):
    MINIMIZE_LATENCY = "MINIMIZE_LATENCY"
    AT_LEAST_AS_FRESH = "AT_LEAST_AS_FRESH"
    FULLY_CONSISTENT = "FULLY_CONSISTENT"


# What a request may name (REQUIREMENT_NONE, or left out: FULLY_CONSISTENT).
_REQUIREMENTS = {"": Requirement.FULLY_CONSISTENT, "REQUIREMENT_NONE": Requirement.FULLY_CONSISTENT} | {
    member.value: member for member in Requirement
}


@dataclass(frozen=True)
class Consistency:
    requirement: Requirement = Requirement.FULLY_CONSISTENT
    # AT_LEAST_AS_FRESH: the domain revision the answer must be at or after
    revision: int = 0


FULLY_CONSISTENT = Consistency()


def consistency_token(revision: int) -> str:
    """The opaque token of a domain revision: written at, or computed at."""
    return f"{TOKEN_PREFIX}{revision}"


def token_revision(token: str, field: str) -> int:
    """The revision a token names; InvalidArgument naming `field` when it is not a token."""
    matched = _TOKEN_RE.fullmatch(token)
    if matched is None:
        raise InvalidArgument(
            field,
            f"{clip(token)!r} is not a consistency token ({TOKEN_PREFIX} and at most {TOKEN_DIGITS_MAX} digits, "
            "as a write or a check answers)",
        )
    return int(matched.group(1))


def requested(value: dict[str, Any] | None, field: str = "consistency") -> Consistency:
    """A request's `consistency` ({"requirement": name, "token": str}, or None when unset), checked."""
    if not value:
        return FULLY_CONSISTENT
    name = value.get("requirement") or ""
    token = value.get("token") or ""
    requirement = _REQUIREMENTS.get(name)
    if requirement is None:
        raise InvalidArgument(f"{field}.requirement", f"{clip(name)!r} is not one of {list(_REQUIREMENTS)[1:]}")
    if requirement != Requirement.AT_LEAST_AS_FRESH:
        if token:
            raise InvalidArgument(
                f"{field}.token", f"is taken with AT_LEAST_AS_FRESH only (the requirement is {requirement})"
            )
        return Consistency(requirement)
    if not token:
        raise RequiredParameter(f"{field}.token", "AT_LEAST_AS_FRESH answers at or after the revision it names")
    return Consistency(requirement, token_revision(token, f"{field}.token"))
