"""The managed (built-in) policies shipped with the package, one YAML file each.

They are loaded and validated at start-up; a bad file stops the server with a clear error.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from policyhub.domain import MANAGED_ID_PREFIX
from policyhub.errors import ConfigError, InvalidArgument
from policyhub.service import validation

_ALLOWED_KEYS = {"policy_id", "name", "description", "permissions", "statements", "labels", "tags"}


def load_managed_policies(directory: pathlib.Path | None = None) -> list[dict[str, Any]]:
    directory = directory or pathlib.Path(__file__).parent
    policies = [_load(path) for path in sorted(directory.glob("*.yaml"))]
    ids = [policy["policy_id"] for policy in policies]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"managed policies: duplicate policy_id in {directory}")
    return policies


def _load(path: pathlib.Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(f"managed policy {path.name}: unknown keys {sorted(unknown)}")
    try:
        policy_id = validation.policy_id(data.get("policy_id", ""))
        if not policy_id.startswith(MANAGED_ID_PREFIX):
            raise InvalidArgument("policy_id", f"managed policy ids start with {MANAGED_ID_PREFIX!r}")
        return {
            "policy_id": policy_id,
            "name": validation.text(data.get("name", ""), "name", validation.NAME_MAX, required=True),
            "description": validation.text(data.get("description", ""), "description", validation.DESCRIPTION_MAX),
            "permissions": validation.permissions(data.get("permissions") or []),
            "statements": validation.statements(data.get("statements") or []),
            "labels": validation.labels(data.get("labels") or []),
            "tags": validation.json_object(data.get("tags") or {}, "tags"),
        }
    except InvalidArgument as exc:
        raise ConfigError(f"managed policy {path.name}: {exc.message}") from exc
