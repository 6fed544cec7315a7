"""Kills and interrupts in the middle of an append: the head is the old commit or the complete
new one. Signals are sent on progress, not after a sleep: the SIGKILL test watches the
repository's `chunks/` directory and kills once the child has written its k-th chunk object;
a Ctrl-C test stops the child at a write site (tests/cut.py) and sends SIGINT then, so a
loaded machine changes how long a test takes, not where the signal lands.

The campaign over every write operation (kills at uniform random times) is scripts/crash_campaign.py;
test_crash_campaign_short runs a few of its trials.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cut import WAIT_LIMIT, run_cut
from vcfgen import write_vcz_direct

import vczrepo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import crash_campaign  # noqa: E402

N_VARIANTS = 4000
TRIALS = 60 if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else 12


def _batch(path, names, samples_chunk, seed):
    # chunks large enough (> icechunk's 512-byte inline limit) to be written as chunk objects
    rng = np.random.default_rng(seed)
    gts = rng.integers(0, 2, size=(N_VARIANTS, len(names), 2)).astype(np.int8)
    return write_vcz_direct(path, names, gts, n_variants=N_VARIANTS, samples_chunk_size=samples_chunk,
                            variants_chunk_size=500)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    base = _batch(tmp / "base.vcz", [f"A{i}" for i in range(5)], 16, 1)
    big = _batch(tmp / "big.vcz", [f"B{i}" for i in range(60)], 16, 2)  # unaligned, re-encoded
    vczrepo.Repository.init(tmp / "pristine", base)
    return tmp, big


def _check(r):
    """The check report: repo.check() in the API of issue 14, vczrepo.check(repo) before it."""
    return r.check() if hasattr(r, "check") else vczrepo.check(r)


def _chunk_objects(repo: Path) -> int:
    try:
        return len(os.listdir(repo / "chunks"))
    except FileNotFoundError:
        return 0


def _append(repo, batch, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vczrepo", "append", str(repo), str(batch)], **kwargs)


def _signal_after_chunks(proc: subprocess.Popen, repo: Path, k: int, sig: int) -> bool:
    """Send `sig` once the repository holds k chunk objects more than at the start; False if
    the child exited first."""
    target = _chunk_objects(repo) + k
    deadline = time.monotonic() + WAIT_LIMIT
    while _chunk_objects(repo) < target:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no progress: {k} chunk objects not written in {WAIT_LIMIT:.0f}s")
        time.sleep(0.002)
    proc.send_signal(sig)
    return True


def test_sigkill_during_append_never_leaves_a_partial_commit(setup):
    tmp, big = setup
    repo = tmp / "timed"
    shutil.copytree(tmp / "pristine", repo)
    before = _chunk_objects(repo)
    assert _append(repo, big, stdout=subprocess.DEVNULL).wait(timeout=WAIT_LIMIT) == 0
    written = _chunk_objects(repo) - before  # chunk objects an uninterrupted append writes
    assert written >= 20

    old_head = vczrepo.Repository.open(tmp / "pristine").resolve("main")
    old_samples = [f"A{i}" for i in range(5)]
    new_samples = old_samples + [f"B{i}" for i in range(60)]
    rng = random.Random(12345)
    outcomes = {"old": 0, "new": 0, "finished": 0}
    for trial in range(TRIALS):
        repo = tmp / f"trial{trial}"
        shutil.copytree(tmp / "pristine", repo)
        proc = _append(repo, big, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill after the k-th chunk object: early, mid-copy, and with every chunk written (the
        # kill then lands in the manifest writes or the commit)
        k = [1, written][trial] if trial < 2 else rng.randint(1, written)
        if not _signal_after_chunks(proc, repo, k, signal.SIGKILL):
            outcomes["finished"] += 1
        proc.wait(timeout=WAIT_LIMIT)
        r = vczrepo.Repository.open(repo)
        head = r.resolve("main")
        if head == old_head:
            assert r.samples() == old_samples
            outcomes["old"] += 1
        else:
            assert r.log()[0].op == "append"
            assert r.log()[1].id == old_head
            assert r.samples() == new_samples
            outcomes["new"] += 1
        report = _check(r)
        assert report.ok, report.problems
        # the repository stays writable: the lock died with the process
        r.remove(["A0"])
        shutil.rmtree(repo)
    print(f"SIGKILL outcomes over {TRIALS} trials: {outcomes}")
    assert outcomes["old"] > 0


def test_crash_campaign_short_plans(tmp_path):
    """A few trials of purge and promote --replay killed at random times, each followed by
    another write in a new process (tag, remove, append): 0 differences from uninterrupted runs."""
    results = crash_campaign.campaign(tmp_path, ops=["purge", "promote-replay"], trials=3, seed=27, size="ci",
                                      skip_startup=True)
    table = crash_campaign.format_table(results)
    print(table)
    assert {f for r in results.values() for f in r.follow_ups} == {"tag", "remove", "append"}
    failures = [f for r in results.values() for f in r.failures]
    assert not failures, table + "\n" + "\n".join(failures)


def _busiest_site(tmp, big) -> tuple[str, int]:
    """The chunk-writing site an append of `big` meets most, and how often."""
    seen: dict[str, int] = {}
    repo = tmp / "counted"
    shutil.copytree(tmp / "pristine", repo)
    counting = vczrepo.Settings(checkpoint=lambda site: seen.__setitem__(site, seen.get(site, 0) + 1))
    vczrepo.Repository.open(repo, settings=counting).append(big)
    shutil.rmtree(repo)
    return max(((site, seen.get(site, 0)) for site in ("copy-encoded", "recompose", "fill")), key=lambda x: x[1])


def test_ctrl_c_during_append_commits_nothing(setup):
    """A real SIGINT from outside while the append stands half-way through its chunk writes."""
    tmp, big = setup
    site, visits = _busiest_site(tmp, big)
    assert visits >= 4, (site, visits)
    repo = tmp / "interrupted"
    shutil.copytree(tmp / "pristine", repo)
    head = vczrepo.Repository.open(repo).resolve("main")
    proc = run_cut(["append", repo, big], site, visits // 2, "interrupt", tmp)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "vczrepo: error: interrupted; nothing was committed"
    assert vczrepo.Repository.open(repo).resolve("main") == head


def test_crash_campaign_short(tmp_path):
    """>= 10 SIGKILL trials of scripts/crash_campaign.py over a few operations, on small data."""
    results = crash_campaign.campaign(tmp_path, ops=["append-aligned", "remove", "revert"],
                                      trials=4, seed=15, size="ci")
    table = crash_campaign.format_table(results)
    print(table)
    assert sum(r.trials for r in results.values()) >= 12
    failures = [f for r in results.values() for f in r.failures]
    assert not failures, table + "\n" + "\n".join(failures)


def test_ctrl_c_just_before_the_commit_commits_nothing(setup):
    """Every chunk object of the batch written, the commit not made: nothing is committed."""
    tmp, big = setup
    repo = tmp / "interrupted-before"
    shutil.copytree(tmp / "pristine", repo)
    head = vczrepo.Repository.open(repo).resolve("main")
    proc = run_cut(["append", repo, big], "before-commit", 0, "interrupt", tmp)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "vczrepo: error: interrupted; nothing was committed"
    r = vczrepo.Repository.open(repo)
    assert r.resolve("main") == head
    assert _check(r).ok
    r.append(big)  # the lock was released: the same append now goes through


def test_ctrl_c_during_the_commit_says_the_commit_landed(setup):
    """The interrupt handled only once icechunk's commit has returned: the append is done, once."""
    tmp, big = setup
    repo = tmp / "interrupted-after"
    shutil.copytree(tmp / "pristine", repo)
    head = vczrepo.Repository.open(repo).resolve("main")
    proc = run_cut(["append", repo, big], "after-commit", 0, "interrupt", tmp)
    r = vczrepo.Repository.open(repo)
    landed = r.resolve("main")
    assert landed != head
    assert r.log("main")[1].id == head
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == f"vczrepo: error: interrupted after the commit landed: {landed}"
    assert _check(r).ok
