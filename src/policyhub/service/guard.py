"""The service authorizes its own API with its own evaluation engine.

Every RPC names a permission (`repository.Policy.create`, ...) and a resource
(`policy/<policy_id>` for one policy; `policy/<id>`, `role/<id>` or `group/<id>` for each grant
of an assignment write; otherwise the resource kind: `policy`, `assignment`, `audit`,
`repository`, `api_key`, `domain` for a whole domain's export). SYSTEM callers may do everything, DOMAIN_ADMIN callers
everything within their own domain, and other callers what their assignments allow
(e.g. the managed policy `managed-policy-admin`). Some permissions are for SYSTEM callers only,
some (the bulk import of a domain, which gives whatever its stream holds) for SYSTEM and
DOMAIN_ADMIN callers only.

The escalation rule (Kubernetes RBAC's escalate/bind, adapted to allow and deny statements):
a caller other than SYSTEM or DOMAIN_ADMIN may only give what it already holds. Whatever a
write would newly allow to anyone (the ALLOW statements of a policy it creates, changes,
renames, restores or enables; the statements a grant brings) and whatever it would stop
denying (DENY statements removed from a policy, a disabled or deleted policy's denies, a
removed grant's denies) must be covered by the caller's own applying statements: one of its
ALLOW statements contains the pair (action pattern, resource pattern) and none of its DENY
statements overlaps it (see policyhub.engine.coverage). `repository.Policy.escalate` on the
policy, or `repository.Assignment.bind` on the grant, lifts the rule; both must be granted by
name (a wildcard such as `*` or `repository.Policy.*` does not include them).
"""

from __future__ import annotations

from typing import Sequence

from policyhub.domain import Effect, GrantType, RoleType
from policyhub.engine import DomainIndex, Statement, Subject
from policyhub.engine.coverage import BudgetExceeded, first_uncovered
from policyhub.errors import PermissionDenied
from policyhub.service.context import Clock, RequestContext, is_anonymous
from policyhub.service.index_cache import IndexCache
from policyhub.service.permissions import ASSIGNMENT_BIND, POLICY_ESCALATE, SYSTEM_ONLY, Permission

# Callers the escalation rule does not apply to.
UNRESTRICTED = (RoleType.SYSTEM, RoleType.DOMAIN_ADMIN)
# Each (label, statement): the label names the statement in a refusal (e.g. `statements[2]`).
Labelled = Sequence[tuple[str, Statement]]


# Handed out only by a caller that holds them by name: a wildcard such as `repository.Assignment.*`
# covers every other action, but not these (else it would mint the bypass for itself).
BY_NAME = frozenset({POLICY_ESCALATE.name.lower(), ASSIGNMENT_BIND.name.lower()})


class Guard:
    """Reads the caller's own statements fully consistently (`IndexCache.get`), whatever
    consistency the request asks for its answer: that requirement is the caller's trade between
    latency and freshness of what it is told, not of what it is allowed. A permission (or a DENY)
    revoked through any process must stop (or start) applying to the very next call, and a caller
    must not get an answer or a write past a revocation by asking for MINIMIZE_LATENCY or by
    presenting an old token. The same goes for the escalation rule: what a caller holds is judged
    at the current revision."""

    def __init__(self, indexes: IndexCache, clock: Clock):
        self.indexes = indexes
        self.clock = clock

    def require(self, ctx: RequestContext, permission: Permission, resource: str) -> None:
        if ctx.role_type == RoleType.SYSTEM:
            return
        if is_anonymous(ctx):
            if permission.public_read:
                return
            raise PermissionDenied(f"{permission.name} is not a public read; anonymous callers may only read")
        if permission.name in SYSTEM_ONLY:
            raise PermissionDenied(f"{permission.name} is for system callers only")
        if ctx.role_type == RoleType.DOMAIN_ADMIN:
            return
        if permission.unrestricted_only:
            raise PermissionDenied(
                f"{permission.name} is for SYSTEM and DOMAIN_ADMIN callers only, whatever assignments say",
                metadata={"permission": permission.name, "resource": resource},
            )
        # Conditions on the caller's own statements see the time of the call (time windows).
        context = {"request.time": self.clock().isoformat()}
        decision = self.indexes.get(ctx.domain_id).check(_caller(ctx), permission.name, resource, context)
        if not decision.allowed:
            raise PermissionDenied(
                f"{ctx.caller_type} {ctx.caller_id} may not {permission.name} on {resource}",
                metadata={"permission": permission.name, "resource": resource},
            )

    def require_held(
        self, ctx: RequestContext, gives: Labelled, lifts: Labelled, bypass: Permission, resource: str
    ) -> bool:
        """The escalation rule (module doc): `gives` are ALLOW statements the write would apply,
        `lifts` DENY statements it would stop applying; `bypass` on `resource` lifts the rule.
        True when the statements were checked (the write must then apply to the version checked)."""
        if ctx.role_type in UNRESTRICTED or not (gives or lifts):
            return False
        return self._require_held(ctx, self.indexes.get(ctx.domain_id), gives, lifts, bypass, resource)

    def _require_held(
        self,
        ctx: RequestContext,
        index: DomainIndex,
        gives: Labelled,
        lifts: Labelled,
        bypass: Permission,
        resource: str,
    ) -> bool:
        caller = _caller(ctx)
        if index.grants_explicitly(caller, bypass.name, resource):
            return False
        labelled = [(f"{label} (allow)", s) for label, s in gives] + [
            (f"{label} (deny removed)", s) for label, s in lifts
        ]
        try:
            missing = first_uncovered(index.held_statements(caller), [s for _, s in labelled], by_name=BY_NAME)
        except BudgetExceeded:
            raise PermissionDenied(
                f"{resource}: cannot show within bounds that {ctx.caller_type} {ctx.caller_id} "
                f"already holds what this change gives; {bypass.name} is needed",
                metadata={"permission": bypass.name, "resource": resource},
            ) from None
        if missing is not None:
            label = labelled[missing.statement_index][0]
            raise PermissionDenied(
                f"{resource}: {label} gives {missing.action} on {missing.resource}, which "
                f"{ctx.caller_type} {ctx.caller_id} does not hold itself; only what the caller holds can be "
                f"given (or {bypass.name})",
                metadata={
                    "permission": bypass.name,
                    "resource": resource,
                    "statement": label,
                    "action": missing.action,
                    "statement_resource": missing.resource,
                },
            )
        return True

    def require_bindable(self, ctx: RequestContext, grants: Sequence[dict[str, str]], removing: bool) -> None:
        """The escalation rule for assignment writes, grant by grant: adding a grant gives its ALLOW
        statements (a policy's; those a role or group carries, transitively), removing one lifts
        its DENY statements."""
        if ctx.role_type in UNRESTRICTED:
            return
        index = self.indexes.get(ctx.domain_id)
        for grant_type, grant_id in sorted({(g["type"], g["id"]) for g in grants}):
            if grant_type == GrantType.POLICY:
                labelled = [
                    (f"policy {grant_id} statement {i}", s)
                    for i, s in enumerate(index.policy_statements(grant_id) or ())
                ]
            else:
                # Disabled policies count too: enabling one later must not widen a grant made now.
                labelled = [
                    (f"policy {pid} statement {i} (via {grant_type.lower()}/{grant_id})", s)
                    for pid, i, s in index.carried_statements(Subject(grant_type, grant_id))
                ]
            effect = Effect.DENY if removing else Effect.ALLOW
            chosen = [(label, s) for label, s in labelled if s.effect == effect]
            if not chosen:
                continue
            self._require_held(
                ctx,
                index,
                () if removing else chosen,
                chosen if removing else (),
                ASSIGNMENT_BIND,
                f"{grant_type.lower()}/{grant_id}",
            )


def _caller(ctx: RequestContext) -> Subject:
    return Subject(ctx.caller_type, ctx.caller_id)
