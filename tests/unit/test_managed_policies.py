"""The shipped managed policies load and validate; bad files stop start-up clearly."""

from __future__ import annotations

import pytest

from policyhub.domain import MANAGED_ID_PREFIX
from policyhub.errors import ConfigError
from policyhub.managed_policies import load_managed_policies


def test_shipped_policies_load():
    policies = load_managed_policies()
    ids = {p["policy_id"] for p in policies}
    assert {"managed-full-access", "managed-read-only"} <= ids
    assert all(policy_id.startswith(MANAGED_ID_PREFIX) for policy_id in ids)


@pytest.mark.parametrize(
    "text, message",
    [
        ("policy_id: managed-x\nname: X\ncolor: red\n", "unknown keys ['color']"),
        ("policy_id: x\nname: X\n", "start with 'managed-'"),
        ("policy_id: managed-x\n", "name"),
        (
            "policy_id: managed-x\nname: X\nstatements: [{effect: MAYBE, actions: [a], resources: ['*']}]\n",
            "statements[0].effect",
        ),
    ],
)
def test_bad_files_are_config_errors(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_managed_policies(tmp_path)
    assert message in str(info.value)


def test_duplicate_ids_are_config_errors(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("policy_id: managed-x\nname: X\n")
    with pytest.raises(ConfigError, match="duplicate"):
        load_managed_policies(tmp_path)
