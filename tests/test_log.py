"""History as a git user reads it: `log` in git's default and --oneline formats, --graph
drawn as `git log --graph --oneline --all`, heads left by reset or deletion marked orphaned,
each commit's own time (a purge's rewrite keeps it) and its author."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import subprocess
import sys

import pytest
from vcfgen import make_vcz

import vczrepo
from vczrepo.graph import draw, topological
from vczrepo.journal import Commit


def _vczrepo(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vczrepo", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def forked(tmp_path):
    """init (tagged release-1), an append, then main and trial each remove a sample (trial first)."""
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"]))
    repo.create_tag("release-1")
    repo.append(make_vcz(tmp_path, "b", ["T0"], seed=1))
    repo.create_branch("trial")
    repo.remove("S1", branch="trial")
    repo.remove("S2")
    return path


def _ids(path, ref):
    return [c.id for c in vczrepo.Repository.open(path).log(ref)]


def test_graph_of_diverged_branches_is_gits(cli, forked):
    m, a, i, root = _ids(forked, "main")
    t = _ids(forked, "trial")[0]
    assert cli("log", forked, "--all", "--graph", "--oneline").output.splitlines() == [
        f"* {m} (main) remove -1: remove 1 sample",
        f"| * {t} (trial) remove -1: remove 1 sample",
        "|/",
        f"* {a} append +1: append b.vcz",
        f"* {i} (tag: release-1) init +3: init from a.vcz",
        f"* {root} root: Repository initialized",
    ]
    linear = cli("log", forked, "--graph", "--oneline").output.splitlines()
    assert linear[0] == f"* {m} (main) remove -1: remove 1 sample"


def test_graph_after_a_replay_then_orphaned_heads_after_reset_and_delete(cli, forked):
    cli("promote", forked, "trial", "--replay")
    replayed, m, a = _ids(forked, "main")[:3]
    t = _ids(forked, "trial")[0]
    graph = [
        f"* {replayed} (main) remove -1: remove 1 sample (replayed from {t})",
        f"* {m} remove -1: remove 1 sample",
        f"| * {t} (trial) remove -1: remove 1 sample",
        "|/",
        f"* {a} append +1: append b.vcz",
    ]
    assert cli("log", forked, "--all", "--graph", "--oneline").output.splitlines()[:5] == graph
    cli("reset", forked, "--at", "main~1")
    cli("branch", forked, "trial", "--delete")
    assert cli("log", forked, "--all", "--graph", "--oneline").output.splitlines()[:5] == [
        f"* {replayed} (orphaned: was main) remove -1: remove 1 sample (replayed from {t})",
        f"* {m} (main) remove -1: remove 1 sample",
        f"| * {t} (orphaned: was trial) remove -1: remove 1 sample",
        "|/",
        f"* {a} append +1: append b.vcz",
    ]
    flat = cli("log", forked, "--all", "--oneline").output.splitlines()  # the same order, no lanes
    assert flat == [line.split("* ", 1)[1] for line in
                    cli("log", forked, "--all", "--graph", "--oneline").output.splitlines() if "*" in line]
    rows = {c["id"]: c for c in json.loads(cli("log", forked, "--all", "--json").output)}
    assert (rows[replayed]["reachable"], rows[replayed]["was_head_of"]) == (False, ["main"])
    assert (rows[t]["reachable"], rows[t]["was_head_of"]) == (False, ["trial"])
    assert (rows[m]["reachable"], rows[m]["was_head_of"]) == (True, [])
    assert cli("log", forked, "--oneline").output.splitlines()[0] == f"{m} (main) remove -1: remove 1 sample"


def test_an_orphaned_chain_is_marked_below_its_head(cli, forked):
    m, a = _ids(forked, "main")[:2]
    cli("reset", forked, "--at", "release-1")
    lines = cli("log", forked, "--all", "--oneline").output.splitlines()
    assert f"{m} (orphaned: was main) remove -1: remove 1 sample" in lines
    assert f"{a} append +1: append b.vcz" in lines  # trial still reaches the append
    cli("branch", forked, "trial", "--delete")
    lines = cli("log", forked, "--all", "--oneline").output.splitlines()
    assert f"{a} (orphaned) append +1: append b.vcz" in lines


def test_default_format_is_gits_medium_with_operation_author_and_time(forked):
    result = _vczrepo("log", forked, "-n", "2")
    assert result.returncode == 0, result.stderr
    m, a = (vczrepo.Repository.open(forked).log()[k] for k in (0, 1))
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert result.stdout.splitlines() == [
        f"commit {m.id} (main)",
        f"Author: {me}",
        f"Date:   {m.time:%Y-%m-%d %H:%M:%S} +0000",
        "Op:     remove -1 (3 samples)",
        "",
        "    remove 1 sample",
        "",
        f"commit {a.id}",
        f"Author: {me}",
        f"Date:   {a.time:%Y-%m-%d %H:%M:%S} +0000",
        "Op:     append +1 (4 samples)",
        "",
        "    append b.vcz",
    ]  # a blank line between commits, none after the last (git's)
    graph = _vczrepo("log", forked, "--all", "--graph").stdout.splitlines()
    assert graph[0] == f"* commit {m.id} (main)"
    assert graph[1] == f"| Author: {me}"
    assert "|/" in graph
    last = graph.index(f"* commit {vczrepo.Repository.open(forked).log()[-1].id}")  # the root: its lane ends
    assert all(line[:1] in "*|" for line in graph[:last])  # every line sits beside its lanes
    assert all(line[:2] == "  " for line in graph[last + 1:] if line)


def test_author_from_the_option_or_the_environment(forked, tmp_path):
    assert _vczrepo("--author", "Ana <ana@example.org>", "remove", forked, "S0").returncode == 0
    assert _vczrepo("remove", forked, "T0", "-b", "trial", env={"VCZREPO_AUTHOR": "Bo"}).returncode == 0
    heads = {r["branches"][0]: r for r in json.loads(_vczrepo("log", forked, "--all", "--json").stdout)
             if r["branches"]}
    assert (heads["main"]["author"], heads["main"]["metadata"]["author"]) == ("Ana <ana@example.org>",) * 2
    assert (heads["trial"]["author"], heads["trial"]["metadata"]["author"]) == ("Bo", "Bo")
    assert _vczrepo("log", forked, "-n", "1").stdout.splitlines()[1] == "Author: Ana <ana@example.org>"
    repo = vczrepo.Repository.open(forked, author="Cy <cy@example.org>")
    repo.remove("S1")
    assert repo.log()[0].author == "Cy <cy@example.org>"


def test_a_replayed_commit_keeps_its_author_and_names_the_replayer_as_user(forked):
    """git's cherry-pick: the author stays, the one who replays is the committer (here user@host)."""
    assert _vczrepo("--author", "Ana", "remove", forked, "T0", "-b", "trial").returncode == 0
    result = _vczrepo("--author", "Bo", "promote", forked, "trial", "--replay")
    assert result.returncode == 0, result.stderr
    rows = json.loads(_vczrepo("log", forked, "-n", "2", "--json").stdout)
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert [(r["author"], r["metadata"]["replayed_from"] in _ids(forked, "trial")) for r in rows] == [
        ("Ana", True), (me, True)]
    assert (rows[0]["metadata"]["user"], rows[0]["metadata"]["host"]) == (getpass.getuser(), socket.gethostname())


def test_log_shows_each_commits_own_time_after_a_purge(cli, tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1"]))
    repo.append(make_vcz(tmp_path, "b", ["T0"], seed=1))
    repo.remove("S0")
    before = json.loads(cli("log", path, "--json").output)
    cli("purge", path, "S1")  # rewrites every commit from the init on
    after = json.loads(cli("log", path, "--json").output)
    assert [c["id"] for c in after] != [c["id"] for c in before]
    assert [c["time"] for c in after] == [c["time"] for c in before]
    assert all(c["written_at"] > b["written_at"] for c, b in zip(after[:3], before[:3], strict=True))
    assert [c["metadata"]["purge"]["rewritten_from"] for c in after[:3]] == [c["id"] for c in before[:3]]
    dates = [line[8:] for line in cli("log", path).output.splitlines() if line.startswith("Date:")]
    assert dates == [f"{dt.datetime.fromisoformat(c['time']):%Y-%m-%d %H:%M:%S %z}" for c in before]
    purged = [line for line in cli("log", path).output.splitlines() if line.startswith("Purged:")]
    assert purged == [f"Purged: rewritten from {c['id']}" for c in before[:3]]


def _commit(cid: str, parent: str | None, minute: int) -> Commit:
    return Commit(cid, parent, dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.UTC), cid, {})


def test_graph_lanes_of_nested_forks():
    """root-a-b-c; d off b; e and f off a (f newest of all, then c): each line one block,
    the block with the newest commit first, a `|/` where a line joins the one it forked from."""
    commits = [_commit("root", None, 0), _commit("a", "root", 1), _commit("b", "a", 2), _commit("c", "b", 5),
               _commit("d", "b", 3), _commit("e", "a", 4), _commit("f", "a", 6)]
    order = topological(commits[::-1])
    assert [c.id for c in order] == ["f", "c", "d", "b", "e", "a", "root"]
    assert draw(order, lambda c: [c.id]) == [
        "* f", "| * c", "| | * d", "| |/", "| * b", "|/", "| * e", "|/", "* a", "* root"]
    assert draw(order, lambda c: [c.id, "x"])[:4] == ["* f", "| x", "| * c", "| | x"]


def test_topological_order_of_a_long_chain_is_not_recursive():
    chain = [_commit("c0", None, 0)] + [_commit(f"c{i}", f"c{i - 1}", 0) for i in range(1, 5000)]
    assert [c.id for c in topological(chain)][:2] == ["c4999", "c4998"]
