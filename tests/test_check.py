"""`vczrepo check` passes on healthy repositories and catches deliberate corruption."""

from __future__ import annotations

import random

import pytest
import zarr
from vcfgen import make_vcz

import vczrepo


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
    repo.append(make_vcz(tmp_path, "b", ["S3", "S4"], samples_chunk_size=2))
    repo.remove(["S1"])
    return path


def _tamper(path, edit, metadata=None):
    """Commit a change made behind vczrepo's back (as another tool might)."""
    repo = vczrepo.Repository.open(path)
    session = repo.icechunk.writable_session("main")
    edit(zarr.open_group(session.store, mode="r+"))
    session.commit("tampered", metadata=metadata or {})


def test_healthy_repository_passes(cli, repo_path):
    out = cli("check", repo_path).output
    assert out.endswith(": ok\n") and "arrays" in out
    assert vczrepo.check(vczrepo.Repository.open(repo_path), "main").ok


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["call_genotype"].__setitem__((0, 1, 0), 1), "call_genotype: null sample(s) at index [1] hold data"),
        (lambda g: g["call_DP"].__setitem__((slice(None), 1), 5), "call_DP: null sample(s) at index [1] hold data"),
        (lambda g: g["sample_id"].__setitem__(4, "S0"), "duplicate sample ids: S0"),
        (lambda g: g["call_DP"].resize((12, 4)), "call_DP: 4 samples, expected 6"),  # 5 + 1 padding
        (lambda g: g["variant_allele"].resize((11, 3)), "variant_allele: 11 variants, expected 12"),
    ],
)
def test_tampering_is_caught(cli, repo_path, edit, message):
    _tamper(repo_path, edit)
    result = cli("check", repo_path, ok=False)
    assert result.exit_code == 8
    assert message in result.stderr


def test_journal_disagreement_is_caught(cli, repo_path):
    fake = {"vczrepo": 2, "op": "relabel"}  # journalled as vczrepo's, but renaming a sample
    _tamper(repo_path, lambda g: g["sample_id"].__setitem__(0, "S8"), metadata=fake)
    result = cli("check", repo_path, ok=False)
    assert result.exit_code == 8 and "disagrees with the commit journal" in result.stderr


def test_missing_storage_objects_are_caught(cli, repo_path):
    # chunks this small are stored inline in manifests: losing manifests loses chunks
    manifests = sorted((repo_path / "manifests").iterdir())
    for victim in random.Random(1).sample(manifests, len(manifests) // 2):
        victim.unlink()
    result = cli("check", repo_path, ok=False)
    assert result.exit_code == 8 and "unreadable" in result.stderr


def test_check_at_an_older_ref(cli, repo_path):
    repo = vczrepo.Repository.open(repo_path)
    first = repo.log()[-2].id
    _tamper(repo_path, lambda g: g["sample_id"].__setitem__(4, "S0"))
    assert cli("check", repo_path, "--at", first).exit_code == 0
