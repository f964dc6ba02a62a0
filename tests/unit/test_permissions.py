"""The permission table (policyhub.service.permissions) against what the managed policies name."""

import fnmatch
import pathlib

import yaml

import policyhub.managed_policies
from policyhub.service.permissions import ALL, SYSTEM_ONLY

NAMES = {permission.name for permission in ALL}


def _named(policy: dict) -> list[str]:
    """Every `repository.` pattern the policy allows or denies (`*`, `*.get` name no resource)."""
    patterns = list(policy.get("permissions") or [])
    for statement in policy.get("statements") or []:
        patterns += statement.get("actions") or []
    return [pattern for pattern in patterns if pattern.startswith("repository.")]


def test_every_permission_a_managed_policy_names_is_in_the_table():
    directory = pathlib.Path(policyhub.managed_policies.__file__).parent
    named = [
        (path.name, pattern)
        for path in sorted(directory.glob("*.yaml"))
        for pattern in _named(yaml.safe_load(path.read_text(encoding="utf-8")))
    ]
    assert named
    unmatched = [(file, pattern) for file, pattern in named if not fnmatch.filter(NAMES, pattern)]
    assert unmatched == []


def test_table_names_are_unique_and_system_only_is_derived():
    assert len(NAMES) == len(ALL)
    assert SYSTEM_ONLY == {
        "repository.Repository.register",
        "repository.Repository.update",
        "repository.Repository.deregister",
        "repository.ApiKey.create",
        "repository.ApiKey.revoke",
        "repository.ApiKey.list",
    }
