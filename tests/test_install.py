"""Installing from a source tree: the routes that cannot leave out vcztools' Rust-only
dependency (ruranges-py) stop at once with one line naming the fix (build_backend.py),
and the others are let through. .ci/run installs the wheel and the checkout for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build_backend  # noqa: E402

PIP = {"PIP_BUILD_TRACKER": "/tmp/pip-build-tracker-x"}


@pytest.mark.parametrize(("environ", "argv", "refused"), [
    (PIP, ["/venv/bin/python", "/venv/bin/pip", "install", "."], build_backend.PIP_FIX),
    (PIP, ["python", "-m", "pip", "wheel", "."], build_backend.PIP_FIX),
    (PIP, ["pip", "install", "--no-deps", "."], None),
    ({**PIP, "PIP_NO_DEPS": "true"}, ["pip", "install", "."], None),
    ({**PIP, "VCZREPO_BUILD_RURANGES": "1"}, ["pip", "install", "."], None),
    ({}, ["/usr/bin/uv", "tool", "install", "."], build_backend.UV_TOOL_FIX),
    ({}, ["uvx", "--from", ".", "vczrepo"], build_backend.UV_TOOL_FIX),
    ({}, ["python3", "-m", "uv", "tool", "install", "."], build_backend.UV_TOOL_FIX),
    ({}, ["uv", "tool", "install", "--overrides", "overrides.txt", "."], None),
    ({}, ["uv", "tool", "install", "--overrides=overrides.txt", "."], None),
    ({"UV_OVERRIDE": "overrides.txt"}, ["uv", "tool", "install", "."], None),
    ({}, ["uv", "tool", "install", "--config-file", "my.toml", "."], None),
    ({}, ["uv", "sync", "--locked"], None),
    ({}, ["uv", "pip", "install", "."], None),
    ({}, ["uv", "build", "--wheel"], None),
    ({}, ["python", "-m", "build"], None),
    ({}, [], None),
])
def test_refused_only_where_nothing_leaves_ruranges_out(environ, argv, refused):
    assert build_backend.refusal(environ, argv) == refused


def test_a_uv_configuration_file_may_hold_the_override(tmp_path):
    (tmp_path / "uv").mkdir()
    (tmp_path / "uv" / "uv.toml").write_text('override-dependencies = ["ruranges-py; sys_platform == \'never\'"]\n')
    configs = build_backend.uv_config_files({"XDG_CONFIG_HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "x")})
    assert tmp_path / "uv" / "uv.toml" in configs
    assert build_backend.refusal({}, ["uv", "tool", "install", "."], configs) is None


def test_fixes_are_one_line_naming_the_command():
    for fix, command in [(build_backend.PIP_FIX, "python -m uv pip install --overrides overrides.txt ."),
                         (build_backend.UV_TOOL_FIX, "uv tool install --overrides overrides.txt .")]:
        assert "\n" not in fix
        assert command in fix
        assert (ROOT / "overrides.txt").is_file()


def _source_copy(tmp_path: Path) -> Path:
    """The files a source install builds from (no .venv, no .git)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "site", "dist", "__pycache__",
                                                             ".pytest_cache", ".mypy_cache", ".ruff_cache"))
    return src


def _unfolded(output: str) -> str:
    """Output with the frontend's line folding and indentation undone (uv folds long lines)."""
    return " ".join(output.split())


def _uv() -> list[str]:
    uv = shutil.which("uv")
    return [uv] if uv else [sys.executable, "-m", "uv"]


def test_pip_install_of_the_source_tree_stops_with_the_fix(tmp_path):
    """A real pip, in an empty environment: it stops before resolving anything (no ruranges-py
    build), printing the fix. --no-build-isolation with hatchling in the environment keeps
    the test off the network."""
    venv = tmp_path / "venv"
    subprocess.run([*_uv(), "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    hatchling = subprocess.run([*_uv(), "pip", "install", "--quiet", "--python", python, "hatchling"])
    if hatchling.returncode:
        pytest.skip("hatchling could not be installed into the test environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VCZREPO_"))}
    result = subprocess.run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "."],
                            cwd=_source_copy(tmp_path), capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert _unfolded(build_backend.PIP_FIX) in _unfolded(result.stdout + result.stderr), result.stdout + result.stderr
    assert "ruranges_py" not in result.stdout + result.stderr  # nothing of it was resolved or built


def test_uv_tool_install_of_the_source_tree_stops_with_the_fix(tmp_path):
    """A real `uv tool install .` (tools into a temporary directory) without the overrides file."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VCZREPO_"))},
           "UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # no user-level uv.toml
    result = subprocess.run([*_uv(), "tool", "install", "--python", sys.executable, "."],
                            cwd=_source_copy(tmp_path), capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert _unfolded(build_backend.UV_TOOL_FIX) in _unfolded(result.stderr), result.stderr
    assert not (tmp_path / "bin" / "vczrepo").exists()
