"""The README's grpcurl walk-through, run line by line against a test server."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
GRPCURL = Path(sys.executable).parent / "grpcurl"


def walkthrough_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Walk-through with grpcurl", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.startswith(".venv/bin/grpcurl")]


def test_readme_walkthrough_works_as_written(client):
    if client.backend != "mongomock":
        pytest.skip("the walk-through is about the commands, not the backend: run once")
    commands = walkthrough_commands()
    assert len(commands) >= 10
    for command in commands:
        command = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in command]
        command = [client.address if part == "127.0.0.1:50051" else part for part in command]
        command = [part.replace("domain-demo", "domain-readme") for part in command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
