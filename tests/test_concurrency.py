"""Several processes writing one local repository at once: no update is lost or doubled."""

from __future__ import annotations

import subprocess
import sys
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
