"""A process that used a repository lets icechunk's runtime threads finish at its exit
(vczrepo.shutdown): without it, a script's exit crashed now and then with SIGSEGV."""

from __future__ import annotations

import subprocess
import sys

from vcfgen import make_vcz

from vczrepo import shutdown

# at exit, each release of the GIL prints a line instead of sleeping
_SEEN = ("import sys, types, vczrepo.shutdown as s\n"
         "s.time = types.SimpleNamespace(sleep=lambda seconds: print('released', seconds))\n")


def _exit_lines(code: str, *args) -> list[str]:
    run = subprocess.run([sys.executable, "-c", _SEEN + code, *map(str, args)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_a_script_that_read_a_repository_releases_the_gil_at_exit(tmp_path):
    path = tmp_path / "r"
    lines = _exit_lines("import vczrepo\n"
                        "repo, _ = vczrepo.Repository.init(sys.argv[1], sys.argv[2])\n"
                        "print(repo.samples())\n", path, make_vcz(tmp_path, "a", ["A0", "A1"]))
    assert lines == ["['A0', 'A1']", *[f"released {shutdown._PAUSE}"] * shutdown._ROUNDS]


def test_the_vczrepo_program_releases_it_before_its_own_exit(tmp_path):
    path = tmp_path / "r"
    lines = _exit_lines("from vczrepo import cli\n"
                        "cli.run(['init', sys.argv[1], sys.argv[2]])\n", path, make_vcz(tmp_path, "a", ["A0"]))
    assert lines.count(f"released {shutdown._PAUSE}") == shutdown._ROUNDS


def test_importing_vczrepo_alone_leaves_the_exit_as_it_was():
    assert _exit_lines("import vczrepo, vczrepo.repository\n") == []
