"""Every snapshot and manifest verifiable: digest records written with each commit (vczrepo.digests)."""

from __future__ import annotations

import random
import shutil

import pytest
from vcfgen import make_vcz

import vczrepo
from vczrepo import digests
from vczrepo.check import check_path
from vczrepo.storage import RawObjects

FLIPS = 64


def _records(path) -> set[str]:
    root = path / "vczrepo-digests"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _objects(path) -> set[str]:
    return {f"{kind}/{p.name}" for kind in ("snapshots", "manifests") for p in (path / kind).iterdir()}


def test_each_commit_records_its_snapshot_and_new_manifests(tagged):
    assert _records(tagged) == _objects(tagged)
    report = vczrepo.Repository.open(tagged).check()
    assert report.ok
    assert report.objects_verified == len(_objects(tagged))
    assert report.objects_unverified == 0
    assert f"{report.objects_verified} snapshots and manifests verified by digest: ok" in report.summary()


def test_every_single_byte_flip_of_a_snapshot_or_manifest_is_named(tagged, cli):
    """Random single-byte flips across the head and tag snapshots and the manifests: each one
    makes check fail naming the object (0 silent), and the repository is restored after each."""
    repo = vczrepo.Repository.open(tagged)
    targets = [f"snapshots/{repo.resolve('main')}", f"snapshots/{repo.resolve('t1')}",
               *sorted(f"manifests/{p.name}" for p in (tagged / "manifests").iterdir())]
    rng = random.Random(16)
    silent = []
    for i in range(FLIPS):
        key = targets[i % 2] if i % 3 else rng.choice(targets[2:])  # two thirds snapshots, a third manifests
        path = tagged / key
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(damaged))
        try:
            if i < 4:  # a few through the CLI: exit 8, the object named on one line
                result = cli("check", tagged, ok=False)
                assert result.exit_code == 8
                assert f"problem: {key}: checksum mismatch\n" in result.stderr
                continue
            report = check_path(tagged)
            if f"{key}: checksum mismatch" not in report.problems:
                silent.append((key, report.problems))
        finally:
            path.write_bytes(original)
    assert silent == []
    assert check_path(tagged).ok


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_a_truncated_or_deleted_object_is_named(tagged, how):
    manifest = sorted((tagged / "manifests").iterdir())[0]
    if how == "truncate":
        manifest.write_bytes(manifest.read_bytes()[:-1])
    else:
        manifest.unlink()
    expected = {"truncate": f"manifests/{manifest.name}: size changed",
                "delete": f"manifests/{manifest.name}: missing (its digest is recorded)"}[how]
    report = check_path(tagged)
    assert any(p.startswith(expected) for p in report.problems), report.problems


def test_a_repository_made_before_records_checks_ok_and_add_checksums_records(tmp_path, monkeypatch):
    path = tmp_path / "old"
    with monkeypatch.context() as m:
        m.setattr(digests, "record_commit", lambda *a: 0)
        repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
        repo.create_tag("t1")
        repo.append(make_vcz(tmp_path, "b", ["S3"], samples_chunk_size=2))
    assert not (path / "vczrepo-digests").exists()
    report = vczrepo.Repository.open(path).check()
    assert report.ok
    assert report.objects_verified == 0
    assert report.objects_unverified == len(_objects(path))
    assert "unverified: no digest recorded" in report.summary()
    # a new commit records only its own objects; add-checksums records the rest, without a commit
    repo = vczrepo.Repository.open(path)
    repo.remove(["S1"])
    assert 0 < len(_records(path)) < len(_objects(path))
    head = repo.resolve("main")
    result = repo.add_checksums()
    assert result.snapshot_id == head
    assert result.metadata["digests_recorded"] > 0
    assert _records(path) == _objects(path)
    report = repo.check()
    assert report.ok
    assert report.objects_unverified == 0


def test_a_failed_record_leaves_the_commit_unverified_not_undone(tagged, monkeypatch, caplog):
    def refuse(self, key, data):
        raise OSError(28, "No space left on device", key)

    monkeypatch.setattr(RawObjects, "put", refuse)
    repo = vczrepo.Repository.open(tagged)
    result = repo.remove(["S1"])
    assert repo.resolve("main") == result.snapshot_id
    assert "its digests were not recorded" in caplog.text
    monkeypatch.undo()
    report = repo.check()
    assert report.ok
    assert report.objects_unverified > 0


def test_gc_deletes_the_records_of_what_it_collects(tagged):
    repo = vczrepo.Repository.open(tagged)
    repo.create_branch("side", "main")
    repo.remove(["S1"], branch="side")
    repo.delete_branch("side")
    extra = _records(tagged) - _objects(tagged)
    assert extra == set()
    before = _records(tagged)
    result = repo.gc(now=True)
    assert result.snapshots_deleted > 0
    assert result.records_deleted == len(before - _records(tagged)) > 0
    assert _records(tagged) == _objects(tagged)
    assert repo.check().ok


def test_gc_keeps_records_of_a_copy_being_written(tagged):
    """A record still being written (a temporary file) is not a record of a collected object."""
    tmp = tagged / "vczrepo-digests" / "snapshots" / ".X.1.1.tmp"
    tmp.write_text("{}")
    vczrepo.Repository.open(tagged).gc(now=True)
    assert tmp.exists()


def test_audit_skips_the_records(tagged):
    name = "S0"
    fake = tagged / "vczrepo-digests" / "snapshots" / "FAKE"
    fake.write_text(f'{{"note": "{name}"}}')
    keys = {f.key for f in vczrepo.Repository.open(tagged).audit([name])}
    assert keys
    assert not any(k.startswith("vczrepo-digests/") for k in keys)


def test_records_survive_a_copy_of_the_repository(tagged, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tagged, copy)
    assert check_path(copy).objects_verified == len(_objects(copy))


def test_add_checksums_on_a_current_repository_commits_nothing(tagged, cli):
    head = vczrepo.Repository.open(tagged).resolve("main")
    out = cli("add-checksums", tagged).output
    assert out == f"{head} main: add-checksums\n"
    assert vczrepo.Repository.open(tagged).resolve("main") == head
