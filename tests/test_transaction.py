"""The one write path: data commits, ref moves and recorded plans.

- a commit whose response is lost is recognised by its operation id;
- a storage failure is reported as a storage failure (exit 1), never as a concurrent update;
- purge and promote --replay, cut at every step of their plans (an exception in-process,
  or SIGKILL of a subprocess), are finished by re-running them or by the next write, and
  then equal an uninterrupted run: refs, branch list, tags, log, vcztools output;
- settings travel explicitly: a distributed remove encodes at the level the user chose.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import icechunk
import numpy as np
import pytest
from helpers import vcf_body
from vcfgen import make_vcz

import vczrepo
from vczrepo.settings import Settings


class FaultError(Exception):
    pass


def test_commit_that_landed_although_its_response_was_lost(monkeypatch, tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["A1"]))
    real_commit = icechunk.Session.commit

    def commit_then_lose_response(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)
        raise icechunk.IcechunkError("connection reset while reading the response")

    monkeypatch.setattr(icechunk.Session, "commit", commit_then_lose_response)
    result = repo.append(make_vcz(tmp_path, "b", ["B1"]))
    monkeypatch.undo()
    assert repo.resolve("main") == result.snapshot_id
    assert [c.op for c in repo.log()] == ["append", "init", "root"]  # once, not twice


def test_commit_that_failed_is_a_storage_error_and_changes_nothing(monkeypatch, tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["A1"]))
    head = repo.resolve("main")

    def failing_commit(self, *args, **kwargs):
        raise icechunk.StorageError("storage unavailable")

    monkeypatch.setattr(icechunk.Session, "commit", failing_commit)
    with pytest.raises(vczrepo.StorageError, match="storage unavailable") as raised:
        repo.append(make_vcz(tmp_path, "b", ["B1"]))
    assert raised.value.exit_code == 1
    monkeypatch.undo()
    assert repo.resolve("main") == head


@pytest.mark.parametrize("command", [["reset", "-b", "main", "--at", "main~1"], ["promote", "trial"],
                                     ["tag", "t2"], ["branch", "--delete", "trial"]])
def test_a_storage_error_moving_a_ref_is_reported_as_a_storage_error(cli, monkeypatch, tmp_path, command):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["A1"]))
    repo.create_branch("trial")
    repo.append(make_vcz(tmp_path, "b", ["B1"]), branch="trial")
    before = (repo.branches(), repo.tags())

    def failing(self, *args, **kwargs):
        raise icechunk.StorageError("permission denied writing repo")

    for method in ("reset_branch", "create_tag", "delete_branch", "create_branch", "delete_tag"):
        monkeypatch.setattr(icechunk.Repository, method, failing)
    result = cli(command[0], path, *command[1:], ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("vczrepo: error: storage:")
    assert "permission denied" in result.stderr
    assert "moved" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.undo()
    assert (repo.branches(), repo.tags()) == before


# ----- plans: purge and promote --replay, cut at every step -----

@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """main and trial diverged, tags on both sides of a sample's arrival: work for every step."""
    tmp = tmp_path_factory.mktemp("history")
    path = tmp / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp, "a", ["A0", "A1"], seed=1))
    repo.create_tag("t0")
    repo.append(make_vcz(tmp, "b", ["W0", "W1"], seed=2), message="append W1's batch")
    repo.create_tag("t1")
    repo.create_branch("trial")
    repo.append(make_vcz(tmp, "c", ["X0"], seed=3), branch="trial")
    repo.remove(["X0"], branch="trial", message="withdraw X0")
    repo.append(make_vcz(tmp, "d", ["M0"], seed=4))
    repo.create_tag("t2")
    return path


def _copy(template: Path, path: Path, settings: Settings | None = None) -> vczrepo.Repository:
    shutil.copytree(template, path)
    return vczrepo.Repository.open(path, settings=settings)


def _summary(repo: vczrepo.Repository) -> dict:
    """Everything an interrupted-then-finished run must share with an uninterrupted one."""
    refs = {**repo.branches(), **repo.tags()}
    return {
        "branches": sorted(repo.branches()),
        "tags": sorted(repo.tags()),
        "branch_list": sorted((b["name"], b["ahead"], b["behind"]) for b in repo.branch_list()),
        "samples": {r: repo.samples(r) for r in sorted(refs)},
        "log": {r: [(c.op, c.message) for c in repo.log(r)] for r in sorted(refs)},
        "vcf": {r: vcf_body(repo.group(r)) for r in sorted(refs)},
        "pending": repo.pending(),
        "ok": all(repo.check(r).ok for r in refs),
    }


def _purge(repo: vczrepo.Repository) -> None:
    repo.purge(["W1"])


def _replay(repo: vczrepo.Repository) -> None:
    repo.promote("trial", replay=True)


OPERATIONS = {"purge": (_purge, ["plan", "purge-rewrite", "purge-branch", "purge-tag", "ref-move",
                                 "before-commit"]),
              "replay": (_replay, ["plan", "replay", "ref-move", "before-commit", "fill"])}


def _cut_points(template: Path, path: Path, operation) -> dict[str, int]:
    """How often each write site is met in an uninterrupted run."""
    seen: dict[str, int] = {}
    operation(_copy(template, path, Settings(checkpoint=lambda site: seen.__setitem__(site, seen.get(site, 0) + 1))))
    return seen


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory):
    out = {}
    for name, (operation, _) in OPERATIONS.items():
        repo = _copy(template, tmp_path_factory.mktemp(f"reference-{name}") / "r")
        operation(repo)
        out[name] = _summary(repo)
    return out


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_plan_cut_by_an_error_at_any_step_is_finished_later(tmp_path, template, reference, name):
    """Each cut is finished either by running the operation again or by the next write
    (alternately, so that both ways meet every site)."""
    operation, sites = OPERATIONS[name]
    counts = _cut_points(template, tmp_path / "count", operation)
    cuts = [(site, n) for site in sites for n in range(counts.get(site, 0))]
    assert {s for s, _ in cuts} >= {"plan", "ref-move", "before-commit"}, counts
    # every site at its first visit, plus later visits spread over the run
    first = [cuts.index((site, 0)) for site in dict.fromkeys(s for s, _ in cuts)]
    spread = list(range(0, len(cuts), max(1, len(cuts) // 4)))
    chosen = [cuts[i] for i in sorted(set(first) | set(spread))]
    assert set(sites) <= set(counts), f"sites the operation never met: {set(sites) - set(counts)}"
    assert {s for s, _ in chosen} >= set(sites), "every site of the operation is cut at least once"
    for i, (site, n) in enumerate(chosen):
        path = tmp_path / f"cut{i}"
        shutil.copytree(template, path)
        met = {"n": 0}

        def cut(at: str, site=site, n=n, met=met) -> None:
            if at == site:
                if met["n"] == n:
                    raise FaultError(f"{site} #{n}")
                met["n"] += 1

        faulty = vczrepo.Repository.open(path, settings=Settings(checkpoint=cut))
        with pytest.raises(FaultError):
            operation(faulty)
        repo = vczrepo.Repository.open(path)
        if i % 2 == 0:
            operation(repo)  # finishes the recorded plan (or runs it all, if cut before it was recorded)
        else:
            pending = repo.pending()
            repo.create_tag(f"next{i}", "t0")  # any write finishes the plan first
            repo.delete_tag(f"next{i}")
            if pending is None:
                operation(repo)
        assert _summary(repo) == reference[name], f"cut at {site} #{n}"


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import vczrepo
    site, n = sys.argv[2], int(sys.argv[3])
    met = {"n": 0}
    def cut(at):
        if at == site:
            if met["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            met["n"] += 1
    repo = vczrepo.Repository.open(sys.argv[1], settings=vczrepo.Settings(checkpoint=cut))
    if sys.argv[4] == "purge":
        repo.purge(["W1"])
    else:
        repo.promote("trial", replay=True)
""")


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_plan_killed_at_each_step_is_finished_by_running_the_command_again(cli, tmp_path, template, reference,
                                                                            name):
    operation, _ = OPERATIONS[name]
    counts = _cut_points(template, tmp_path / "count", operation)
    # every recorded step of the plan (a save) and the ref moves between them, spread over the run
    steps = [(site, n) for site in ("plan", "ref-move") for n in range(counts.get(site, 0))]
    steps = steps[:: max(1, len(steps) // 5)]
    command = ["purge", "W1"] if name == "purge" else ["promote", "trial", "--replay"]
    for i, (site, n) in enumerate(steps):
        path = tmp_path / f"kill{i}"
        shutil.copytree(template, path)
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(path), site, str(n), name],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == -signal.SIGKILL, run.stderr
        assert vczrepo.Repository.open(path).pending() is not None or site == "plan"
        if vczrepo.Repository.open(path).pending() is not None:
            log = cli("log", path, "-n", "1").output
            assert log.startswith("in progress:")
        cli(command[0], path, *command[1:])  # finishes what the killed run started
        assert _summary(vczrepo.Repository.open(path)) == reference[name], f"killed at {site} #{n}"


def test_compression_level_reaches_the_dask_workers(cli, tmp_path):
    distributed = pytest.importorskip("distributed")
    del distributed
    batch = make_vcz(tmp_path, "b", [f"S{i}" for i in range(6)], samples_chunk_size=2, variants_chunk_size=4)
    local, dist = tmp_path / "local", tmp_path / "dist"
    for path in (local, dist):
        cli("init", path, batch)
    cli("--compression-level", "9", "remove", local, "S1", "S4")
    cli("--compression-level", "9", "remove", dist, "S1", "S4", "--workers", "2")
    a, b = vczrepo.open_group(local), vczrepo.open_group(dist)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from vczrepo.internals import chunk_key

    compared = 0
    for _name, array in a.arrays():
        for coords in np.ndindex(*array.cdata_shape):
            key = chunk_key(array, coords)
            x = sync(a.store.get(key, prototype=default_buffer_prototype()))
            y = sync(b.store.get(key, prototype=default_buffer_prototype()))
            assert (x is None) == (y is None), key
            if x is not None:
                assert x.to_bytes() == y.to_bytes(), key
                compared += 1
    assert compared > 10


def test_a_revert_cut_while_restoring_changes_nothing(tmp_path, template):
    """The restore site (revert of a remove rewrites the columns back) is cut like any data write."""
    repo = _copy(template, tmp_path / "r")
    remove = next(c.id for c in repo.log("trial") if c.op == "remove")
    before = _summary(repo)

    def cut(site: str) -> None:
        if site == "restore":
            raise FaultError("restore")

    with pytest.raises(FaultError):
        vczrepo.Repository.open(tmp_path / "r", settings=Settings(checkpoint=cut)).revert(remove, branch="trial")
    assert _summary(vczrepo.Repository.open(tmp_path / "r")) == before
    vczrepo.Repository.open(tmp_path / "r").revert(remove, branch="trial")
    assert vczrepo.Repository.open(tmp_path / "r").samples("trial")[-1] == "X0"


DATA_CUTS = [  # (operation, write site): every site a data commit or a ref move meets
    ("append", "copy-encoded"), ("append", "before-commit"), ("append-no-align", "recompose"),
    ("append-padded", "fill"), ("remove", "fill"), ("remove", "before-commit"), ("tag", "ref-move"),
    ("branch", "ref-move"), ("reset", "ref-move"), ("gc", "gc"), ("append", "after-commit"),
]


@pytest.mark.parametrize(("operation", "site"), DATA_CUTS)
def test_every_write_site_cut_leaves_the_repository_as_it_was(tmp_path, template, operation, site):
    """A fault at the first visit of each write site: nothing changes (after-commit: the commit
    landed, and it is recognised by its op id, so the operation completes exactly once)."""
    batch = make_vcz(tmp_path, "n", ["N0", "N1"], seed=9)  # the repository's chunking: copies as bytes once padded
    odd = make_vcz(tmp_path, "o", ["O0", "O1", "O2"], seed=10, samples_chunk_size=3)
    actions = {
        "append": lambda r: r.append(batch, align=True),
        "append-no-align": lambda r: r.append(odd, align=False),
        "append-padded": lambda r: r.append(batch, align=True, branch="trial"),
        "remove": lambda r: r.remove(["W0"]),
        "tag": lambda r: r.create_tag("cut"),
        "branch": lambda r: r.create_branch("cut"),
        "reset": lambda r: r.reset("trial", "main"),
        "gc": lambda r: r.gc(now=True),
    }
    path = tmp_path / "r"
    shutil.copytree(template, path)
    before = _summary(vczrepo.Repository.open(path))
    met = []

    def cut(at: str) -> None:
        if at == site:
            met.append(at)
            raise FaultError(at)

    faulty = vczrepo.Repository.open(path, settings=Settings(checkpoint=cut))
    if site == "after-commit":
        actions[operation](faulty)  # the fault came after the commit: recognised, not repeated
        assert met
        assert [c.op for c in vczrepo.Repository.open(path).log()[:2]] == ["append", "append"]
        assert _summary(vczrepo.Repository.open(path))["ok"]
        return
    with pytest.raises(FaultError):
        actions[operation](faulty)
    assert met, f"{operation} never met {site}"
    assert _summary(vczrepo.Repository.open(path)) == before


def test_gc_now_is_refused_where_no_lock_keeps_writers_out(tmp_path):
    """On object stores (here memory://) a writer may be mid-session: `gc --now` is a usage
    error naming the safe alternative, and nothing is collected."""
    repo, _ = vczrepo.Repository.init(f"memory://gc-now-{tmp_path.name}", make_vcz(tmp_path, "a", ["A1"]))
    before = (repo.branches(), [c.id for c in repo.log()])
    with pytest.raises(vczrepo.UsageError, match="only safe on local repositories"):
        repo.gc(now=True)
    assert (repo.branches(), [c.id for c in repo.log()]) == before
