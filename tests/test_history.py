"""Branch-based prototyping and history management: list/delete, promote, reset, revert, purge, gc."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import state, vcztools_samples
from vcfgen import make_vcz, write_vcz_direct
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import vczrepo
from vczrepo import schema
from vczrepo.internals import chunk_key
from vczrepo.ops import promote as promote_module
from vczrepo.ops.gc import gc


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
    repo.create_tag("release-1")
    return path


def test_branch_list_and_delete(cli, repo_path, tmp_path):
    cli("branch", repo_path, "trial")
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0"]), "-b", "trial")
    cli("remove", repo_path, "S0")
    rows = {r["name"]: r for r in json.loads(cli("branch", repo_path, "--list", "--json").output)}
    assert (rows["trial"]["ahead"], rows["trial"]["behind"]) == (1, 1)
    assert (rows["main"]["ahead"], rows["main"]["behind"]) == (0, 0)
    assert "trial" in cli("branch", repo_path, "--list").output
    head = rows["trial"]["head"]
    cli("branch", repo_path, "--delete", "trial")
    assert "trial" not in vczrepo.Repository.open(repo_path).branches()
    assert head in [c["id"] for c in json.loads(cli("log", repo_path, "--all", "--json").output)]
    result = cli("branch", repo_path, "--delete", "main", ok=False)
    assert result.exit_code == 3
    assert "refusing to delete the default branch" in result.stderr


def test_promote_fast_forwards_main(cli, repo_path, tmp_path):
    cli("branch", repo_path, "trial")
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0", "T1"]), "-b", "trial")
    cli("remove", repo_path, "S1", "-b", "trial")
    out = cli("promote", repo_path, "trial").output
    assert "fast-forward" in out
    repo = vczrepo.Repository.open(repo_path)
    assert repo.resolve("main") == repo.resolve("trial")
    assert repo.samples() == ["S0", "S2", "T0", "T1"]
    assert "up-to-date" in cli("promote", repo_path, "trial").output


def test_promote_refuses_diverged_branches_then_replays(cli, repo_path, tmp_path):
    cli("branch", repo_path, "trial")
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0", "T1"]), "-b", "trial")
    cli("remove", repo_path, "T0", "-b", "trial")
    cli("append", repo_path, make_vcz(tmp_path, "c", ["M0"]))  # main moves on
    before = state(repo_path)
    result = cli("promote", repo_path, "trial", ok=False)
    assert result.exit_code == 3
    assert "main has 1 commit(s) not in trial and trial has 2 not in main; use --replay" in result.stderr
    assert state(repo_path) == before
    cli("promote", repo_path, "trial", "--replay")
    repo = vczrepo.Repository.open(repo_path)
    assert repo.samples() == ["S0", "S1", "S2", "M0", "T1"]
    assert [c.op for c in repo.log()[:3]] == ["remove", "append", "append"]
    assert "replayed from" in repo.log()[0].message
    trial = repo.group("trial")
    t1 = list(schema.sample_ids(trial)).index("T1")
    np.testing.assert_array_equal(repo.group()["call_genotype"][:, -1], trial["call_genotype"][:, t1])
    assert repo.check().ok


def test_promote_loses_no_commit_that_lands_between_check_and_swap(monkeypatch, tmp_path):
    repo, _ = vczrepo.Repository.init("memory://promote-race", make_vcz(tmp_path, "a", ["S0"]))
    repo.create_branch("trial")
    repo.append(make_vcz(tmp_path, "b", ["T0"]), branch="trial")
    checked = promote_module._is_ancestor

    def racing_is_ancestor(r, ancestor, snapshot):
        answer = checked(r, ancestor, snapshot)
        monkeypatch.setattr(promote_module, "_is_ancestor", checked)
        r.append(make_vcz(tmp_path, "c", ["M0"]))  # another writer commits to main
        return answer

    monkeypatch.setattr(promote_module, "_is_ancestor", racing_is_ancestor)
    with pytest.raises(vczrepo.ConcurrentUpdateError, match="main moved"):
        repo.promote("trial")
    assert repo.samples() == ["S0", "M0"]


def test_reset_moves_a_branch_and_keeps_the_old_head_findable(cli, repo_path, tmp_path):
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0"]))
    repo = vczrepo.Repository.open(repo_path)
    head = repo.resolve("main")
    result = cli("reset", repo_path, "-b", "main", "--at", "release-1", "--expect", "0" * 20, ok=False)
    assert result.exit_code == 7
    assert "moved since you looked" in result.stderr
    assert repo.resolve("main") == head
    cli("reset", repo_path, "-b", "main", "--at", "release-1", "--expect", head)
    assert repo.samples() == ["S0", "S1", "S2"]
    assert head in [c.id for c in repo.log_all()]
    assert head not in [c.id for c in repo.log()]
    cli("reset", repo_path, "-b", "main", "--at", head, "--expect", "0" * 20, "--force")
    assert repo.resolve("main") == head


def test_revert_append_and_remove(cli, repo_path, tmp_path):
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0", "T1"]))
    cli("remove", repo_path, "S1")
    repo = vczrepo.Repository.open(repo_path)
    removal, appended = repo.log()[0].id, repo.log()[1].id
    before = repo.group(appended)
    cli("revert", repo_path, removal)
    assert repo.samples() == ["S0", "S1", "S2", "T0", "T1"]
    for name in ("call_genotype", "call_DP", "sample_id"):
        np.testing.assert_array_equal(repo.group()[name][...], before[name][...])
    cli("revert", repo_path, appended)
    assert repo.samples() == ["S0", "S1", "S2"]
    assert [c.op for c in repo.log()[:2]] == ["revert", "revert"]
    assert repo.check().ok
    result = cli("revert", repo_path, repo.log()[-1].id, ok=False)  # the root commit: a ref problem, exit 3
    assert result.exit_code == 3
    assert "a root commit; only append, remove and extend commits can be reverted" in result.stderr


def _sample_chunk_bytes(repo: vczrepo.Repository, ref: str, sample: str) -> list[bytes]:
    """The encoded bytes of every stored chunk holding the sample's call data at a ref."""
    root = repo.group(ref)
    column = list(schema.sample_ids(root)).index(sample)
    out = []
    for name, array in schema.sample_arrays(root).items():
        if name == "sample_id":
            continue
        axis = schema.sample_axis(array)
        c = column // array.chunks[axis]
        grid = [range(-(-n // k)) if i != axis else [c]
                for i, (n, k) in enumerate(zip(array.shape, array.chunks, strict=True))]
        for coords in __import__("itertools").product(*grid):
            data = sync(root.store.get(chunk_key(array, coords), prototype=default_buffer_prototype()))
            if data is not None:
                out.append(data.to_bytes())
    return out


def _storage_holds(path: Path, needles: list[bytes]) -> int:
    blobs = [p.read_bytes() for p in path.rglob("*") if p.is_file()]
    return sum(any(n in b for b in blobs) for n in needles)


def _big_batch(path, names, seed):
    rng = np.random.default_rng(seed)
    gts = rng.integers(0, 2, size=(3000, len(names), 2)).astype(np.int8)
    return write_vcz_direct(path, names, gts, n_variants=3000, samples_chunk_size=2, variants_chunk_size=1500)


def test_purge_then_gc_erases_the_sample_from_storage(cli, tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, _big_batch(tmp_path / "a.vcz", ["A0", "A1"], 1))
    repo.create_tag("before")
    repo.append(_big_batch(tmp_path / "b.vcz", ["W0", "W1", "W2"], 2))
    repo.create_tag("release-1")
    repo.create_branch("trial")
    repo.append(_big_batch(tmp_path / "c.vcz", ["X0"], 3), branch="trial")
    repo.remove(["W1"])
    repo.create_tag("release-2")
    # chunks big enough to be stored as objects of their own (small ones are inlined in manifests)
    needles = [b for b in _sample_chunk_bytes(repo, "release-1", "W1") if len(b) > 1024]
    assert len(needles) >= 2
    assert _storage_holds(path, needles) == len(needles)

    dry = json.loads(cli("purge", path, "W1", "--dry-run", "--json").output)
    assert dry["dry_run"]
    assert set(dry["branches"]) == {"main", "trial"}
    assert set(dry["tags"]) == {"release-1", "release-2"}
    assert len(dry["rewrite"]) == 3  # append, trial append, remove
    assert vczrepo.Repository.open(path).tags().keys() == {"before", "release-1", "release-2"}

    cli("purge", path, "W1")
    repo = vczrepo.Repository.open(path)
    assert set(repo.tags()) == {"before", "release-1.purged1", "release-2.purged1"}
    assert repo.samples("release-1") == ["A0", "A1", "W0", "W2"]  # old name resolves to the new tag
    assert repo.samples("trial") == ["A0", "A1", "W0", "W2", "X0"]
    assert repo.samples("before") == ["A0", "A1"]
    for ref in ("main", "trial", "release-1", "release-2", "before"):
        assert repo.check(ref).ok
        for c in repo.log(ref):
            assert '"W1"' not in json.dumps(c.metadata)  # as a name: random ids may hold the letters
    assert [c.op for c in repo.log()] == ["remove", "append", "init", "root"]

    gc(repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
    assert _storage_holds(path, needles) == 0
    assert vcztools_samples(repo.group("release-2")) == ["A0", "A1", "W0", "W2"]


def test_purge_nulls_a_sample_in_chunks_a_later_commit_rewrote(tmp_path):
    # --align rewrites S0's chunk column (genotype padding) but not sample_id (already null
    # there): the purge must still null S0 in the chunks it copies from that commit
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["S0"], samples_chunk_size=2))
    repo.append(make_vcz(tmp_path, "b", ["S2"], samples_chunk_size=2), align=True)
    repo.purge(["S0"])
    root = repo.group()
    assert list(root["sample_id"][:]) == ["", "", "S2"]
    assert (root["call_genotype"][:, :2] == -1).all()
    assert repo.check().ok


def test_purge_unknown_sample_changes_nothing(cli, repo_path):
    before = state(repo_path)
    result = cli("purge", repo_path, "NOPE", ok=False)
    assert result.exit_code == 6
    assert "nothing to purge" in result.stderr
    assert state(repo_path) == before


def test_gc_refuses_thresholds_inside_the_safety_margin(cli, repo_path):
    result = cli("gc", repo_path, "--older-than", "1m", ok=False)
    assert result.exit_code == 2
    assert "--older-than 1m is inside the safety margin of 10m" in result.stderr
    assert "deleted" in cli("gc", repo_path, "--older-than", "1h").output
    assert "would delete" in cli("gc", repo_path, "--dry-run").output


def test_gc_keeps_reachable_history(cli, repo_path, tmp_path):
    cli("append", repo_path, make_vcz(tmp_path, "b", ["T0"]))
    cli("remove", repo_path, "S0")
    repo = vczrepo.Repository.open(repo_path)
    gc(repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
    for c in repo.log():
        if c.op != "root":
            assert repo.check(c.id).ok
    assert zarr.open_group(repo.group("release-1").store, mode="r")["sample_id"].shape == (3,)
