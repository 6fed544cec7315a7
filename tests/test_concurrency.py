"""Several processes writing one local repository at once: no update is lost or doubled."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

from vcfgen import make_vcz

import vczrepo

WRITERS = 6


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vczrepo", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_appends_each_land_exactly_once(tmp_path):
    base = make_vcz(tmp_path, "base", ["B0", "B1"], samples_chunk_size=2)
    repo_path = tmp_path / "r"
    vczrepo.Repository.init(repo_path, base)
    batches = {
        f"W{k}": make_vcz(tmp_path, f"w{k}", [f"W{k}a", f"W{k}b", f"W{k}c"][: 1 + k % 3], samples_chunk_size=2)
        for k in range(WRITERS)
    }
    procs = [_spawn("append", repo_path, path, "-m", name) for name, path in batches.items()]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results

    repo = vczrepo.Repository.open(repo_path)
    expected = {"B0", "B1"} | {s for k in range(WRITERS) for s in [f"W{k}a", f"W{k}b", f"W{k}c"][: 1 + k % 3]}
    samples = repo.samples()
    assert Counter(samples) == Counter(expected)  # every batch exactly once
    appends = [c for c in repo.log() if c.op == "append"]
    assert sorted(c.message for c in appends) == sorted(batches)
    assert len({c.metadata["op_id"] for c in appends}) == WRITERS
    # each batch's samples are contiguous, in batch order, and its data is intact
    for c in appends:
        added = repo.samples_added(c.id)
        start = samples.index(added[0])
        assert samples[start:start + len(added)] == added


def test_concurrent_removes_and_appends(tmp_path):
    names = [f"S{i}" for i in range(8)]
    repo_path = tmp_path / "r"
    vczrepo.Repository.init(repo_path, make_vcz(tmp_path, "base", names, samples_chunk_size=3))
    extra = make_vcz(tmp_path, "extra", ["E1", "E2"], samples_chunk_size=3)
    procs = [_spawn("remove", repo_path, n) for n in names[:4]] + [_spawn("append", repo_path, extra)]
    assert all(p.wait(timeout=300) == 0 for p in procs), [p.stderr.read() for p in procs]
    repo = vczrepo.Repository.open(repo_path)
    assert repo.samples() == names[4:] + ["E1", "E2"]
    assert Counter(c.op for c in repo.log()) == Counter({"remove": 4, "append": 1, "init": 1, "root": 1})


def _one_init_wins(results: list[tuple[int, str]]) -> int:
    """The index of the only init that succeeded; the others refused in one line, exit 3."""
    winners = [k for k, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    for k, (code, err) in enumerate(results):
        if k != winners[0]:
            assert code == 3, (code, err)
            assert "refusing to" in err, (code, err)
            assert len(err.strip().splitlines()) == 1, (code, err)
    return winners[0]


def test_concurrent_inits_at_one_path_leave_one_intact_repository(tmp_path):
    # one init holds the repository's lock from its emptiness check to its first commit: the
    # others then find its repository and refuse, instead of both writing, or a loser's
    # clean-up deleting the winner's files
    batches = [make_vcz(tmp_path, f"i{k}", [f"I{k}a", f"I{k}b"]) for k in range(WRITERS)]
    target = tmp_path / "shared.vczrepo"
    procs = [_spawn("init", target, batch) for batch in batches]
    winner = _one_init_wins([(p.wait(timeout=300), p.stderr.read()) for p in procs])
    repo = vczrepo.Repository.open(target)
    assert repo.samples() == [f"I{winner}a", f"I{winner}b"]
    assert [c.op for c in repo.log()] == ["init", "root"]
    assert repo.check().ok


def test_concurrent_inits_in_threads_leave_one_intact_repository(tmp_path):
    # threads start together (a barrier), so their emptiness checks really do overlap
    batches = [make_vcz(tmp_path, f"t{k}", [f"T{k}a"]) for k in range(WRITERS)]
    target = tmp_path / "threads.vczrepo"
    start = threading.Barrier(WRITERS)
    results: list[tuple[int, str]] = [(0, "")] * WRITERS

    def init(k: int) -> None:
        start.wait()
        try:
            vczrepo.Repository.init(target, batches[k])
        except vczrepo.VczRepoError as e:
            results[k] = (e.exit_code, str(e))

    threads = [threading.Thread(target=init, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = _one_init_wins(results)
    repo = vczrepo.Repository.open(target)
    assert repo.samples() == [f"T{winner}a"]
    assert repo.check().ok
