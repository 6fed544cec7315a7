"""A purge or replay that cannot be done never blocks the writes after it. What can be known
beforehand is refused before the plan is recorded (a replay's samples that the target has
already, or lacks); any other failure that is not the storage's or a concurrent writer's
drops the plan while it has changed no user's ref, in the process that ran it or in the next
writer, a new process, that meets it. A commit that deleted arrays (`--drop-stale-info`) is
purged through like any other."""

from __future__ import annotations

import getpass
import logging
import signal
import socket

import pytest
from cut import run_cut
from helpers import state
from vcfgen import make_vcz

import vczrepo
from vczrepo import Settings


@pytest.fixture
def forked(tmp_path):
    """main and trial from one init of S0..S2; main and trial have each moved on since."""
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"]))
    repo.create_tag("t0")
    repo.create_branch("trial")
    return path


def _untouched(path, before) -> None:
    """Nothing of a failed plan stays: refs and history as before, no plan, no temporary branch."""
    repo = vczrepo.Repository.open(path)
    assert state(path) == before
    assert repo.pending() is None
    assert set(repo.icechunk.list_branches()) == set(before[0])
    assert repo.check().ok


def test_a_replay_of_a_remove_the_target_made_already_is_refused_unrecorded(cli, forked):
    cli("remove", forked, "S1", "-b", "trial")
    cli("remove", forked, "S1")
    before = state(forked)
    result = cli("promote", forked, "trial", "--replay", ok=False)
    assert result.exit_code == 6
    trial_head = vczrepo.Repository.open(forked).resolve("trial")
    assert result.stderr == (f"vczrepo: error: cannot replay {trial_head} onto main: it removes S1, which main "
                             "does not hold; nothing was replayed\n")
    _untouched(forked, before)
    cli("tag", forked, "next")  # the next write is not blocked


def test_a_replay_appending_samples_the_target_has_is_refused_unrecorded(cli, forked, tmp_path):
    cli("append", forked, make_vcz(tmp_path, "t", ["T0", "T1"], seed=1), "-b", "trial")
    cli("remove", forked, "T1", "-b", "trial")
    cli("append", forked, make_vcz(tmp_path, "m", ["T1"], seed=2))  # T1 arrives on main too
    before = state(forked)
    result = cli("promote", forked, "trial", "--replay", ok=False)
    assert result.exit_code == 6
    append = vczrepo.Repository.open(forked).log("trial")[1].id
    assert f"cannot replay {append} onto main: it appends T1, which main has already" in result.stderr
    _untouched(forked, before)
    # followed in turn: once main lacks T1 again, the append and then trial's remove of T1 both replay
    cli("remove", forked, "T1")
    cli("promote", forked, "trial", "--replay")
    assert vczrepo.Repository.open(forked).samples() == ["S0", "S1", "S2", "T0"]


def test_a_replay_of_a_restoring_revert_is_refused_unrecorded(cli, forked):
    cli("remove", forked, "S2", "-b", "trial")
    remove = vczrepo.Repository.open(forked).resolve("trial")
    cli("revert", forked, remove, "-b", "trial")
    cli("remove", forked, "S0")
    before = state(forked)
    result = cli("promote", forked, "trial", "--replay", ok=False)
    assert result.exit_code == 3
    assert "cannot replay revert commit" in result.stderr
    assert "nothing was replayed" in result.stderr
    _untouched(forked, before)


class CannotError(vczrepo.VczRepoError):
    """A failure that is not the storage's: the plan cannot be done."""


def _failing_at(site: str, error: Exception):
    def checkpoint(at: str) -> None:
        if at == site:
            raise error
    return Settings(checkpoint=checkpoint)


@pytest.mark.parametrize(("operation", "site"), [("purge", "purge-rewrite"), ("replay", "replay")])
def test_a_plan_failing_before_it_changed_a_ref_is_dropped(forked, tmp_path, operation, site):
    repo = vczrepo.Repository.open(forked)
    repo.append(make_vcz(tmp_path, "t", ["T0"], seed=1), branch="trial")
    repo.remove("S0")
    before = state(forked)
    failing = vczrepo.Repository.open(forked, settings=_failing_at(site, CannotError("cannot go on")))
    run = {"purge": lambda r: r.purge(["S1"]), "replay": lambda r: r.promote("trial", replay=True)}[operation]
    with pytest.raises(CannotError) as raised:
        run(failing)
    label = {"purge": "purge", "replay": "promote --replay"}[operation]
    assert raised.value.__notes__ == [f"{label} not done: nothing was changed"]
    _untouched(forked, before)
    run(vczrepo.Repository.open(forked))  # and it can be run again
    assert vczrepo.Repository.open(forked).pending() is None


def test_a_storage_failure_keeps_the_plan_for_the_next_write(forked):
    """A failure that may pass leaves the plan recorded (the work done is kept) and says so."""
    failing = vczrepo.Repository.open(forked, settings=_failing_at("purge-rewrite", vczrepo.StorageError("down")))
    with pytest.raises(vczrepo.StorageError) as raised:
        failing.purge(["S1"])
    assert raised.value.__notes__[0].startswith("purge stopped after step 1 of")
    repo = vczrepo.Repository.open(forked)
    assert repo.pending() is not None
    repo.create_tag("next")  # finishes it
    assert repo.pending() is None
    assert "S1" not in repo.samples("t0")


def test_the_next_writer_drops_a_dead_writers_plan_that_cannot_be_done_and_goes_on(forked, tmp_path, caplog):
    """A replay killed after its plan was recorded; the next write, in this process, meets a
    failure finishing it: the plan is dropped with a warning and the write is made."""
    repo = vczrepo.Repository.open(forked)
    repo.remove("S2", branch="trial")
    repo.remove("S0")
    before = state(forked)
    proc = run_cut(["promote", forked, "trial", "--replay"], "replay", 0, "kill", tmp_path)
    assert proc.returncode == -signal.SIGKILL
    plan = vczrepo.Repository.open(forked).pending()
    assert plan is not None
    writer = vczrepo.Repository.open(forked, settings=_failing_at("replay", CannotError("cannot go on")))
    with caplog.at_level(logging.WARNING, logger="vczrepo"):
        writer.create_tag("next")
    assert plan["owner"].startswith(f"{getpass.getuser()}@{socket.gethostname()}:")  # the killed process
    assert [r.getMessage() for r in caplog.records if r.name == "vczrepo"] == [
        f"dropped the unfinished promote --replay started {plan['started']} by {plan['owner']}: cannot go on"]
    branches, tags, history = state(forked)
    assert (branches, history) == (before[0], before[2])
    assert set(tags) == {*before[1], "next"}
    assert vczrepo.Repository.open(forked).pending() is None


def test_purge_through_a_commit_that_dropped_stale_info_fields(cli, tmp_path, data):
    """The VCF spec's example carries site DP (and, split into parts, AC/AN/AF of all three
    samples): an append with --drop-stale-info deletes those arrays, and purge rewrites it."""
    path = tmp_path / "r"
    cli("init", path, data / "sample-part1.vcf.gz")
    cli("append", path, data / "sample-part2.vcf.gz", "--drop-stale-info")
    cli("tag", path, "v1")
    query = ["-f", "%CHROM %POS %REF %ALT [%GT:%GQ:%DP ]\n"]
    kept = cli("query", path, "-s", "NA00002,NA00003", *query).output
    arrays = set(vczrepo.Repository.open(path).group().array_keys())
    assert "variant_DP" not in arrays
    cli("purge", path, "NA00001")
    repo = vczrepo.Repository.open(path)
    assert repo.samples("v1") == ["NA00002", "NA00003"]
    assert cli("query", path, *query).output == kept
    assert set(repo.group().array_keys()) == arrays
    assert repo.check().ok
    assert repo.pending() is None
