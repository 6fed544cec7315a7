"""The one write path: data commits, ref moves and recorded plans.

- a commit whose response is lost is recognised by its operation id;
- a storage failure is reported as a storage failure (exit 1), never as a concurrent update;
- purge and promote --replay, cut at every step of their plans (an exception in-process,
  or SIGKILL of a subprocess), are finished by re-running them or by the next write (tag,
  remove, append, each a command in a new process), and then equal an uninterrupted run:
  refs, branch list, tags, log, vcztools output; Ctrl-C at each step says what is recorded;
- settings travel explicitly: a distributed remove encodes at the level the user chose.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import icechunk
import numpy as np
import pytest
from cut import run_cut, vczrepo_cli
from helpers import state, vcf_body
from vcfgen import make_vcz

import vczrepo
from vczrepo.settings import Settings
from vczrepo.transaction import PLAN_KEY


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
    (alternately, so that both ways meet every site). The error is the storage's, which keeps
    the plan; one that means the plan cannot be done drops it (tests/test_plan_failures.py)."""
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
                    raise vczrepo.StorageError(f"{site} #{n}")
                met["n"] += 1

        faulty = vczrepo.Repository.open(path, settings=Settings(checkpoint=cut))
        with pytest.raises(vczrepo.StorageError):
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


# ----- plans cut in a subprocess, finished by another command in a new process -----

COMMANDS = {"purge": ["purge", "{repo}", "W1"], "replay": ["promote", "{repo}", "trial", "--replay"]}
STEPS = {"purge": 9, "replay": 4}  # purge: plan, 4 rewrites, 2 branches, 2 tags; replay: plan, 2 ops, the move
# (operation, write site, visit (-1: the last), steps done when it is cut there)
CUTS = [("purge", "plan", 0, 1), ("purge", "purge-rewrite", 1, 2),
        ("purge", "after-commit", 2, 3),  # the third rewritten commit landed, not yet recorded
        ("purge", "purge-rewrite", 3, 4), ("purge", "purge-branch", 0, 5), ("purge", "purge-branch", 1, 6),
        ("purge", "purge-tag", 0, 7),  # before the new tag names are recorded
        ("purge", "purge-tag", 2, 8),  # one tag replaced, the other not yet
        ("purge", "ref-move", -1, 9),  # the last: deleting the temporary branch
        ("purge", "plan", -1, 9),  # the temporary branch deleted, the plan not yet removed
        ("replay", "replay", 1, 2), ("replay", "plan", 0, 1), ("replay", "ref-move", 1, 3),  # the move itself
        ("replay", "ref-move", -1, 4),  # after the move: deleting the temporary branch
        ("replay", "plan", -1, 4)]  # … deleted: a replay cut there used to be replayed again on its own result
# Writes that are not the cut operation: the command, and the same write through the API
FOLLOW_UPS = {
    "tag": (lambda path, batch: ["tag", path, "next", "--at", "t0"], lambda repo, batch: repo.create_tag("next", "t0")),
    "remove": (lambda path, batch: ["remove", path, "A0"], lambda repo, batch: repo.remove(["A0"])),
    "append": (lambda path, batch: ["append", path, batch], lambda repo, batch: repo.append(batch)),
}
ORDERS = [("tag", "remove", "append"), ("remove", "append", "tag"), ("append", "tag", "remove"),
          ("again", "tag", "remove", "append")]  # "again": the cut command itself, first


def _command(name: str, path: Path) -> list[str]:
    return [a.format(repo=path) for a in COMMANDS[name]]


def _visit(template: Path, tmp: Path, name: str, site: str, n: int) -> int:
    if n >= 0:
        return n
    return _cut_points(template, tmp / "count", OPERATIONS[name][0])[site] + n


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_vcz(tmp_path_factory.mktemp("follow-up"), "n", ["N0"], seed=9)


@pytest.fixture(scope="module")
def followed(template, batch, tmp_path_factory):
    """The state after an uninterrupted operation then the follow-up writes, per (operation, order)."""
    cache: dict = {}

    def get(name: str, order: tuple[str, ...]) -> dict:
        key = (name, tuple(o for o in order if o != "again"))
        if key not in cache:
            repo = _copy(template, tmp_path_factory.mktemp("followed") / "r")
            OPERATIONS[name][0](repo)
            for write in key[1]:
                FOLLOW_UPS[write][1](repo, batch)
            cache[key] = _summary(repo)
        return cache[key]

    return get


def _expected_message(name: str, step: int) -> str:
    label = "purge" if name == "purge" else "promote --replay"
    return (f"{label} interrupted after step {step} of {STEPS[name]}: recorded; the next write or "
            f"`vczrepo {label}` finishes it")


@pytest.mark.parametrize(("name", "site", "n", "step"), CUTS)
def test_a_plan_killed_at_each_step_is_finished_by_any_next_write_in_a_new_process(
        tmp_path, template, batch, followed, name, site, n, step):
    """SIGKILL at a recorded step; then tag, remove and append, each a `vczrepo` command in a new
    process (the first of them, or the cut command itself, finishes the plan), end as after an
    uninterrupted run followed by the same writes."""
    order = ORDERS[CUTS.index((name, site, n, step)) % len(ORDERS)]
    path = tmp_path / "r"
    shutil.copytree(template, path)
    run = run_cut(_command(name, path), site, _visit(template, tmp_path, name, site, n), "kill", tmp_path)
    assert run.returncode == -signal.SIGKILL, run.stderr
    repo = vczrepo.Repository.open(path)
    pending = repo.pending()
    assert pending is not None
    assert (pending["step"], pending["steps"]) == (step, STEPS[name]), pending
    report = repo.check()
    assert report.ok, report.problems  # the temporary branch is work in progress, not damage
    assert report.in_progress == pending
    for write in order:
        args = _command(name, path) if write == "again" else FOLLOW_UPS[write][0](path, batch)
        done = vczrepo_cli(*args)
        assert done.returncode == 0, (write, done.stderr)
        assert vczrepo.Repository.open(path).pending() is None, write
    assert _summary(vczrepo.Repository.open(path)) == followed(name, order), f"killed at {site} #{n}, then {order}"


@pytest.mark.parametrize(("name", "site", "n", "step"), CUTS)
def test_ctrl_c_at_each_step_of_a_plan_says_what_is_recorded(tmp_path, template, name, site, n, step):
    """A real SIGINT from outside, landing while the command stands at the step: exit 130 and
    one line saying how far the plan got, that it is recorded and what finishes it."""
    path = tmp_path / "r"
    shutil.copytree(template, path)
    run = run_cut(_command(name, path), site, _visit(template, tmp_path, name, site, n), "interrupt", tmp_path)
    assert run.returncode == 130, run.stderr
    assert run.stderr.strip() == f"vczrepo: error: {_expected_message(name, step)}"
    pending = vczrepo.Repository.open(path).pending()
    assert pending is not None
    assert pending["step"] == step


# The sites between which a plan writes to the repository (the data writes inside one commit
# excepted: a kill there leaves the commit unmade, as one at before-commit does)
BETWEEN_WRITES = {"plan", "ref-move", "purge-rewrite", "purge-branch", "purge-tag", "replay", "before-commit",
                  "after-commit"}


def _every_cut(template: Path, tmp: Path, name: str) -> list[tuple[str, int]]:
    """(site, visit) for every visit of a site between writes, in the order an uninterrupted run meets them."""
    met: list[str] = []
    OPERATIONS[name][0](_copy(template, tmp / "count", Settings(checkpoint=met.append)))
    return [(site, met[:i].count(site)) for i, site in enumerate(met) if site in BETWEEN_WRITES]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_plan_killed_between_any_two_of_its_writes_is_finished_in_a_new_process(
        tmp_path, template, batch, followed, name):
    """SIGKILL at every visit of every site between two writes (each write of icechunk's
    repository document lands whole, so these are all the states a kill can leave), then the
    same command again or a tag, in a new process, in turn: each ends as the uninterrupted run
    (followed by the tag). Issue 27's report (a purge killed at 0.55 of its run, re-run, read
    differently at tag v2) is looked for here."""
    cuts = _every_cut(template, tmp_path, name)
    assert {site for site, _ in cuts} >= {"plan", "ref-move", "before-commit", "after-commit"}, cuts
    for i, (site, n) in enumerate(cuts):
        path = tmp_path / f"cut{i}"
        shutil.copytree(template, path)
        run = run_cut(_command(name, path), site, n, "kill", tmp_path)
        assert run.returncode == -signal.SIGKILL, (site, n, run.stderr)
        pending = vczrepo.Repository.open(path).pending()
        assert pending is not None, (site, n)
        assert 1 <= pending["step"] <= pending["steps"] == STEPS[name], (site, n, pending)
        write = ("again", "tag")[i % 2]
        args = _command(name, path) if write == "again" else FOLLOW_UPS[write][0](path, batch)
        done = vczrepo_cli(*args)
        assert done.returncode == 0, (site, n, write, done.stderr)
        assert _summary(vczrepo.Repository.open(path)) == followed(name, (write,)), f"{site} #{n}, then {write}"
        shutil.rmtree(path)


def test_check_reports_a_plan_in_progress_as_such(tmp_path, template):
    path = tmp_path / "r"
    shutil.copytree(template, path)
    assert run_cut(_command("purge", path), "purge-rewrite", 1, "kill", tmp_path).returncode == -signal.SIGKILL
    temp = vczrepo.Repository.open(path).pending()["temporary_branch"]
    result = vczrepo_cli("check", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem" not in result.stderr
    assert result.stdout.strip().endswith(": the next write or `vczrepo purge` finishes it"), result.stdout
    assert "ok; purge in progress (step 2 of 9, by " in result.stdout
    assert temp not in result.stdout  # its head is work in progress
    report = json.loads(vczrepo_cli("check", path, "--json").stdout)
    assert report["ok"]
    assert (report["in_progress"]["step"], report["in_progress"]["temporary_branch"]) == (2, temp)


def test_an_error_inside_a_plan_keeps_its_code_and_says_the_plan_is_recorded(tmp_path, template, batch, followed):
    path = tmp_path / "r"
    shutil.copytree(template, path)
    run = run_cut(_command("purge", path), "purge-tag", 0, "error", tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip() == ("vczrepo: error: storage: injected failure at purge-tag #0; purge stopped after "
                                  "step 7 of 9: recorded; the next write or `vczrepo purge` finishes it")
    assert vczrepo_cli("tag", path, "next", "--at", "t0").returncode == 0
    assert _summary(vczrepo.Repository.open(path)) == followed("purge", ("tag",))


def test_a_plan_of_a_kind_this_version_does_not_know_is_a_newer_versions(tmp_path, template):
    """Any write refuses (exit 3, one line, nothing changed); check and log report it."""
    path = tmp_path / "r"
    repo = _copy(template, path)
    plan = {"id": "f" * 32, "op": "frobnicate", "owner": "ann@elsewhere:1", "started": "2031-01-01T00:00:00+00:00",
            "heartbeat": 0.0, "state": {}}
    repo.icechunk.update_metadata({PLAN_KEY: plan})
    before = state(path)
    result = vczrepo_cli("tag", path, "next")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == (
        "vczrepo: error: the repository holds an unfinished 'frobnicate' (started 2031-01-01T00:00:00+00:00 by "
        f"ann@elsewhere:1) recorded by a newer vczrepo than this one ({vczrepo.__version__}): upgrade vczrepo "
        "to finish it")
    assert state(path) == before
    checked = vczrepo_cli("check", path)
    assert checked.returncode == 0, checked.stderr
    assert "frobnicate in progress (by ann@elsewhere:1, started 2031-01-01T00:00:00+00:00): the next write" \
        in checked.stdout


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
