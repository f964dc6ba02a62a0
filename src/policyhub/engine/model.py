"""Plain, immutable data of the evaluation engine: what goes in (policies, statements,
subjects, assignment edges) and what comes out (decisions and listings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from policyhub.domain import Effect, GrantType, values
from policyhub.engine.conditions import Condition, stored_conditions

GRANT_TYPES = values(GrantType)
EFFECTS = values(Effect)

ALLOWED = "ALLOWED"
EXPLICIT_DENY = "EXPLICIT_DENY"
NO_MATCHING_ALLOW = "NO_MATCHING_ALLOW"
MISSING_CONTEXT = "MISSING_CONTEXT"


@dataclass(frozen=True, slots=True)
class Statement:
    effect: str  # "ALLOW" | "DENY"
    actions: tuple[str, ...]  # patterns
    resources: tuple[str, ...]  # patterns
    # None: applies whatever the context (see policyhub.engine.conditions)
    condition: Condition | None = None

    def __post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ValueError(f"statement effect must be ALLOW or DENY, got {self.effect!r}")
        if not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))
        if not isinstance(self.resources, tuple):
            object.__setattr__(self, "resources", tuple(self.resources))


@dataclass(frozen=True, slots=True)
class PolicyRules:
    policy_id: str
    # The policy's EFFECTIVE statements: its `statements` in order, then one
    # Statement("ALLOW", (p,), ("*",)) per `permissions` entry p.
    statements: tuple[Statement, ...]
    enabled: bool = True
    # Which write of the policy these rules are: (the stored document's id, its version), None when
    # not known. Orders two writes of one document whatever order they were told in; not part of
    # what the rules say, so not compared.
    written: tuple[str, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.statements, tuple):
            object.__setattr__(self, "statements", tuple(self.statements))

    @classmethod
    def from_policy(
        cls,
        policy_id: str,
        statements: Iterable[Mapping[str, Any]] | None,
        permissions: Iterable[str] | None,
        enabled: bool = True,
        written: tuple[str, int] | None = None,
    ) -> "PolicyRules":
        """Effective statements of a stored policy: ``statements`` (dicts with keys
        effect/actions/resources/conditions) in order, followed by one allow-on-``*``
        statement per ``permissions`` entry."""
        built = [
            Statement(
                str(s["effect"]).upper(),
                tuple(s.get("actions") or ()),
                tuple(s.get("resources") or ()),
                stored_conditions(s.get("conditions")),
            )
            for s in (statements or ())
        ]
        built.extend(Statement("ALLOW", (p,), ("*",)) for p in (permissions or ()))
        return cls(policy_id, tuple(built), enabled, written)


@dataclass(frozen=True, order=True, slots=True)
class Subject:
    """Ordered by (type, id)."""

    type: str  # a SubjectType
    id: str

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


@dataclass(frozen=True, slots=True)
class Edge:
    """One assignment. (S, POLICY, p): S holds policy p. (S, ROLE, r) / (S, GROUP, g):
    S is a member of Subject("ROLE", r) / Subject("GROUP", g)."""

    subject: Subject
    grant_type: str  # POLICY | ROLE | GROUP
    grant_id: str
    expires_at: datetime | None = None  # timezone-aware (naive is taken as UTC); applies while now < expires_at


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # ALLOWED | EXPLICIT_DENY | NO_MATCHING_ALLOW | MISSING_CONTEXT
    policy_id: str = ""  # deciding policy (the deny's or the allow's; CONDITIONAL: the first undecided)
    statement_index: int = -1  # index into that policy's effective statements
    via: tuple[Subject, ...] = ()  # asked subject first, policy holder last; () when nothing matched
    # CONDITIONAL (neither allowed nor denied): the context keys whose absence left it open
    missing_context: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.reason == MISSING_CONTEXT


@dataclass(frozen=True, slots=True)
class EffectiveStatement:
    policy_id: str
    statement_index: int
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    via: tuple[Subject, ...]
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class AuthorizedException:
    resource: str  # a resource pattern of an applicable DENY statement
    actions: tuple[str, ...]  # its action patterns denied there, sorted, de-duplicated


@dataclass(frozen=True, slots=True)
class AuthorizedResource:
    resource: str  # a resource pattern of an applicable ALLOW statement
    actions: tuple[str, ...]  # allowed action patterns on it, sorted, de-duplicated
    # Denies carved out of it: (action, resource) is allowed when it is covered here and
    # matched by no exception. Sorted by resource.
    exceptions: tuple[AuthorizedException, ...] = ()


@dataclass(frozen=True, slots=True)
class SubjectGrant:
    subject: Subject
    via: tuple[Subject, ...]  # subject first, the direct holder of the policy last


@dataclass(frozen=True, slots=True)
class SubjectDecision:
    subject: Subject
    decision: Decision = field(compare=True)
