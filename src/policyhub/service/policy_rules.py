"""Rules shared by the policy services (PolicyService, PolicyLifecycleService): reserved ids,
the escalation rule applied to a policy's statements, and the request's etag."""

from __future__ import annotations

from typing import Any

from policyhub.domain import MANAGED_ID_PREFIX, Effect
from policyhub.engine import Statement
from policyhub.errors import ManagedReadOnly
from policyhub.manager.policy_manager import PolicyManager
from policyhub.service import validation
from policyhub.service.context import RequestContext
from policyhub.service.guard import Guard, Labelled
from policyhub.service.permissions import POLICY_ESCALATE


def require_held(guard: Guard, ctx: RequestContext, policy_id: str, gives: Labelled = (), lifts: Labelled = ()) -> bool:
    return guard.require_held(ctx, gives, lifts, POLICY_ESCALATE, f"policy/{policy_id}")


def live(policies: PolicyManager, ctx: RequestContext, policy_id: str) -> dict[str, Any]:
    """The live policy a change starts from: the version the escalation rule checks and the
    audit's `before`. Not live: NOT_FOUND before anything is written (acting on whatever holds
    the id by the time of the write would skip the check: a concurrent rename can bring an id
    back)."""
    found = policies.live(ctx.domain_id, [policy_id]).get(policy_id)
    if found is None:
        policies.explain_no_match(ctx.domain_id, policy_id)
    return found


def refuse_managed_id(policy_id: str, verb: str) -> None:
    if policy_id.startswith(MANAGED_ID_PREFIX):
        raise ManagedReadOnly(
            f"policy ids starting with {MANAGED_ID_PREFIX!r} belong to managed (built-in) "
            f"policies, which cannot be {verb} by tenants ({policy_id})",
            metadata={"policy_id": policy_id},
        )


def labelled(record: dict[str, Any]) -> list[tuple[str, Statement]]:
    """A policy's effective statements (statements, then one allow on `*` per permission), named."""
    named = [
        (f"statements[{index}]", Statement(s["effect"], tuple(s["actions"]), tuple(s["resources"])))
        for index, s in enumerate(record.get("statements") or [])
    ]
    named += [
        (f"permissions[{index}]", Statement(Effect.ALLOW, (permission,), ("*",)))
        for index, permission in enumerate(record.get("permissions") or [])
    ]
    return named


def allows(record: dict[str, Any]) -> Labelled:
    return [(label, s) for label, s in labelled(record) if s.effect == Effect.ALLOW]


def denies(record: dict[str, Any]) -> Labelled:
    return [(label, s) for label, s in labelled(record) if s.effect == Effect.DENY]


def removed_denies(before: dict[str, Any], after: dict[str, Any]) -> Labelled:
    kept = {s for _, s in denies(after)}
    return [(label, s) for label, s in denies(before) if s not in kept]


def etag(params: dict[str, Any]) -> str | None:
    return validation.optional_identifier(params.get("etag"), "etag") or None
