"""Rules shared by the policy services (PolicyService, PolicyLifecycleService) and the bulk
import: reserved ids, what a policy's content may be, the escalation rule applied to a policy's
statements, and the request's etag."""

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

# What a caller writes into a policy: the field named when the stored record would be too large.
WRITTEN_FIELDS = ("name", "description", "permissions", "statements", "labels", "tags", "project_id")
# Not part of the stored record (joined at read time).
_NOT_STORED = ("repository_info",)


def content(params: dict[str, Any], partial: bool) -> dict[str, Any]:
    """The optional content fields of a policy, checked; with partial, only those the request sets."""
    checked: dict[str, Any] = {}
    if not partial or params.get("description"):
        checked["description"] = validation.description(params.get("description", ""))
    if not partial or params.get("permissions"):
        checked["permissions"] = validation.permissions(params.get("permissions") or [])
    if not partial or params.get("statements"):
        checked["statements"] = validation.statements(params.get("statements") or [])
    if not partial or params.get("labels") is not None:
        checked["labels"] = validation.labels(params.get("labels") or [])
    if not partial or params.get("tags") is not None:
        checked["tags"] = validation.json_object(params.get("tags") or {}, "tags")
    return checked


def within_size(record: dict[str, Any]) -> None:
    """The stored policy within POLICY_MAX_BYTES (too large names its largest written field)."""
    stored = {key: value for key, value in record.items() if key not in _NOT_STORED}
    validation.record_size(stored, validation.POLICY_MAX_BYTES, WRITTEN_FIELDS, "policy")


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
