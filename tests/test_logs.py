"""The library prints nothing on stderr for a local repository, in a clean environment (no
ICECHUNK_LOG, which the tests otherwise set): icechunk's warnings about local concurrency,
which vczrepo's write lock makes moot, are kept for vczrepo's own storage objects only, and
icechunk's log lines carry no ANSI colour when stderr is not a terminal (vczrepo.logs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from vcfgen import make_vcz

LOCAL_WARNING = "The LocalFileSystem storage is not safe for concurrent commits"
METADATA_WARNING = "conditional PUT is enabled but `unsafe_use_metadata` is disabled"


def _python(code: str, *args, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ICECHUNK") and k != "NO_COLOR"}
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                         env={**clean, **env}, timeout=600)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batches")
    return make_vcz(tmp, "a", ["A0", "A1"]), make_vcz(tmp, "b", ["B0"], seed=2)


def test_init_open_append_tag_print_nothing_on_stderr(tmp_path, batches):
    path = tmp_path / "r"
    made = _python("import sys, vczrepo\n"
                   "repo, _ = vczrepo.Repository.init(sys.argv[1], sys.argv[2])\n"
                   "repo.append(sys.argv[3])\n"
                   "repo.create_tag('v1')\n"
                   "print(vczrepo.Repository.open(sys.argv[1]).samples('v1'))\n", path, *batches)
    assert made.stdout.strip() == "['A0', 'A1', 'B0']"
    assert made.stderr == ""
    opened = _python("import sys, vczrepo; vczrepo.Repository.open(sys.argv[1])", path)
    assert opened.stderr == ""


def test_the_host_application_keeps_icechunk_warnings_about_its_own_storage(tmp_path, batches):
    """The filter is back as icechunk set it, and the once-per-process warning is not used up."""
    run = _python("import sys, vczrepo, icechunk\n"
                  "vczrepo.Repository.init(sys.argv[1], sys.argv[2])\n"
                  "vczrepo.Repository.open(sys.argv[1])\n"
                  "print('host', file=sys.stderr, flush=True)\n"
                  "icechunk.Repository.create(icechunk.local_filesystem_storage(sys.argv[3]))\n",
                  tmp_path / "r", batches[0], tmp_path / "own")
    before, _, after = run.stderr.partition("host\n")
    assert before == ""
    assert LOCAL_WARNING in after
    assert METADATA_WARNING in after


def test_icechunk_logs_asked_for_come_without_colour_when_stderr_is_not_a_terminal(tmp_path, batches):
    run = _python("import os, sys, vczrepo\n"
                  "vczrepo.Repository.init(sys.argv[1], sys.argv[2])\n"
                  "print('NO_COLOR' in os.environ)\n", tmp_path / "r", batches[0], ICECHUNK_LOG="icechunk=info")
    assert "Commit done" in run.stderr
    assert "\x1b[" not in run.stderr
    assert LOCAL_WARNING not in run.stderr
    assert run.stdout.strip() == "False"  # the host's environment is left as it was
