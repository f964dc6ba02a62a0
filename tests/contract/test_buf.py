"""`buf lint` passes on proto/ (rules and exceptions: proto/buf.yaml) and `buf build` works offline."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

PROTO = pathlib.Path(__file__).resolve().parents[2] / "proto"
BUF = pathlib.Path(sys.executable).parent / "buf"


def run_buf(*args: str, cache: pathlib.Path) -> subprocess.CompletedProcess:
    if not BUF.is_file():
        pytest.fail(f"buf not found at {BUF} (install the dev extras: buf-bin)")
    # A fresh cache proves nothing is fetched from (or needed from) the BSR.
    env = {**os.environ, "BUF_CACHE_DIR": str(cache)}
    return subprocess.run([str(BUF), *args], cwd=PROTO, env=env, capture_output=True, text=True, timeout=120)


def test_buf_lint(tmp_path):
    result = run_buf("lint", cache=tmp_path / "cache")
    assert result.returncode == 0, f"buf lint failed ({result.returncode}):\n{result.stdout}{result.stderr}"


def test_buf_build(tmp_path):
    image = tmp_path / "current.binpb"
    result = run_buf("build", "-o", str(image), cache=tmp_path / "cache")
    assert result.returncode == 0, f"buf build failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    assert image.stat().st_size > 0
