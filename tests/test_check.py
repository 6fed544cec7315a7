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
    assert out.endswith(": ok\n")
    assert "arrays" in out
    assert vczrepo.Repository.open(repo_path).check("main").ok


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["call_genotype"].__setitem__((0, 1, 0), 1),
         "call_genotype: null sample(s) at index [1] hold data"),
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
    assert result.exit_code == 8
    assert "disagrees with the commit journal" in result.stderr


def test_missing_storage_objects_are_caught(cli, repo_path):
    # chunks this small are stored inline in manifests: losing manifests loses chunks
    manifests = sorted((repo_path / "manifests").iterdir())
    for victim in random.Random(1).sample(manifests, len(manifests) // 2):
        victim.unlink()
    result = cli("check", repo_path, ok=False)
    assert result.exit_code == 8
    assert "unreadable" in result.stderr


def test_check_at_an_older_ref(cli, repo_path):
    repo = vczrepo.Repository.open(repo_path)
    first = repo.log()[-2].id
    _tamper(repo_path, lambda g: g["sample_id"].__setitem__(4, "S0"))
    assert cli("check", repo_path, "--at", first).exit_code == 0


# --- integrity (issue 16): every ref, damaged objects named, mask invariant, JSON ----------------

import json  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402

from vczrepo import schema  # noqa: E402
from vczrepo.check import check_path, repair_masks  # noqa: E402
from vczrepo.chunks import Pipeline  # noqa: E402


def _damage(path, how):
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))


def test_every_ref_is_checked_by_default(tagged):
    report = vczrepo.Repository.open(tagged).check()
    assert report.ok
    assert [r.ref for r in report.refs] == ["main", "t1"]
    doc = report.to_json()
    assert list(doc) == ["ok", "deep", "refs", "repository_problems", "chunks_verified", "unverified",
                         "objects_verified", "objects_unverified", "in_progress", "problems"]
    assert list(doc["refs"][0]) == ["ref", "snapshot", "ok", "arrays_read", "chunks_read", "problems"]
    json.dumps(doc)
    one = vczrepo.Repository.open(tagged).check(at="t1")
    assert [r.ref for r in one.refs] == ["t1"]
    assert one.snapshot == vczrepo.Repository.open(tagged).resolve("t1")


@pytest.mark.parametrize("how", ["delete", "truncate", "flip"])
@pytest.mark.parametrize("what", ["head snapshot", "tag snapshot", "manifests", "repo document"])
def test_damaged_objects_are_named(tagged, tmp_path, what, how):
    repo = vczrepo.Repository.open(tagged)
    head, tag = repo.resolve("main"), repo.resolve("t1")
    victims = {"head snapshot": [tagged / "snapshots" / head], "tag snapshot": [tagged / "snapshots" / tag],
               "manifests": sorted((tagged / "manifests").iterdir()), "repo document": [tagged / "repo"]}[what]
    from helpers import vcf_body

    bodies = {ref: vcf_body(repo.group(ref)) for ref in ("main", "t1")}
    for victim in victims:
        _damage(victim, how)
    report = check_path(tagged, deep=True)
    if report.ok:
        # the repository document carries no checksum (snapshots and manifests have digest
        # records): a flip may land where nothing reads it. Then nothing may differ.
        assert how == "flip"
        assert what == "repo document"
        fresh = vczrepo.Repository.open(tagged)
        assert {ref: vcf_body(fresh.group(ref)) for ref in bodies} == bodies
        return
    lines = report.problems
    assert all("\n" not in line and "context:" not in line for line in lines)
    named = {"head snapshot": (f"snapshot {head}", f"snapshots/{head}"),
             "tag snapshot": (f"t1: snapshot {tag}", f"snapshots/{tag}"),
             "manifests": ("manifest ", "manifests/"), "repo document": ("repository document repo",)}[what]
    if what == "repo document" and how == "flip":
        named = ("",)  # a flip may land where icechunk notices only on use: any named problem will do
    assert any(n in line for line in lines for n in named), lines


def test_a_ref_to_a_missing_snapshot_is_reported(tagged):
    repo = vczrepo.Repository.open(tagged)
    repo.create_branch("side", "t1")
    (tagged / "snapshots" / repo.resolve("t1")).unlink()
    report = vczrepo.Repository.open(tagged).check()
    assert {r.ref for r in report.refs if not r.ok} == {"side", "t1"}
    assert all("object not found" in "; ".join(r.problems) for r in report.refs if r.ref != "main")


def _mask_ok(root) -> bool:
    return bool(np.array_equal(root["call_genotype_mask"][:], root["call_genotype"][:] < 0))


def test_mask_invariant_after_remove_and_padding(tmp_path):
    path = tmp_path / "m"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
    repo.append(make_vcz(tmp_path, "b", ["S3", "S4", "S5", "S6"], samples_chunk_size=2))  # pads column 3
    root = repo.group("main")
    assert schema.sample_ids(root).tolist()[3] == ""
    assert _mask_ok(root)
    repo.remove(["S1", "S5"])
    root = repo.group("main")
    assert _mask_ok(root)
    assert root["call_genotype_mask"][:, 1].all()
    assert repo.check().ok


def test_old_masks_are_reported_and_repaired(tmp_path, monkeypatch):
    path = tmp_path / "old"
    with monkeypatch.context() as m:  # what vczrepo wrote before: masks left False in null columns
        m.setattr(schema, "null_value", lambda name, a: "" if name == "sample_id" else schema.missing_value(a.dtype))
        m.setattr(schema, "fill_reads_as_null", lambda name, a: name == "sample_id" or bool(
            schema.is_missing_or_fill(np.asarray(a.fill_value).reshape(1))[0]))
        repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
        repo.append(make_vcz(tmp_path, "b", ["S3", "S4", "S5", "S6"], samples_chunk_size=2))
        repo.remove(["S1"])
    repo = vczrepo.Repository.open(path)
    assert not _mask_ok(repo.group("main"))
    report = repo.check()
    assert any("call_genotype_mask:" in p and "disagree with call_genotype" in p for p in report.problems)
    session = repo.icechunk.writable_session("main")
    summary = repair_masks(Pipeline(), zarr.open_group(session.store, mode="r+"))
    assert summary["chunks_rewritten"]["call_genotype_mask"] >= 1
    session.commit("repair masks", metadata={"vczrepo": 2, "op": "repair", **summary})
    repo = vczrepo.Repository.open(path)
    assert _mask_ok(repo.group("main"))
    assert repo.check().ok


def test_missing_repo_document_is_named_not_not_a_repository(tagged, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tagged, copy)
    (copy / "repo").unlink()
    report = check_path(copy)
    assert report.problems == [report.repository_problems[0]]
    assert report.problems[0].startswith("repository document repo missing")


def test_mask_invariant_after_purge(tmp_path):
    path = tmp_path / "p"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2", "S3"], samples_chunk_size=2))
    repo.create_tag("t1")
    repo.append(make_vcz(tmp_path, "b", ["S4", "S5"], samples_chunk_size=2))
    repo.purge(["S1"])
    repo = vczrepo.Repository.open(path)
    for ref in ("main", "t1"):
        root = repo.group(ref)
        assert _mask_ok(root)
        assert root["call_genotype_mask"][:, 1].all()
        assert (root["call_genotype"][:, 1] == -1).all()
    assert repo.check(deep=True).ok


# --- a damaged array metadata document: one line per read command, no asyncio noise ----------

import subprocess  # noqa: E402
import sys  # noqa: E402

from helpers import damage_array_metadata  # noqa: E402


@pytest.mark.parametrize("command", ["check", "view", "samples", "info", "query"])
def test_damaged_array_metadata_is_one_line(repo_path, command):
    damage_array_metadata(repo_path, "call_DP")
    extra = ["-f", "%POS\\n"] if command == "query" else []
    result = subprocess.run([sys.executable, "-m", "vczrepo", command, str(repo_path), *extra],
                            capture_output=True, text=True)
    lines = result.stderr.splitlines()
    assert result.returncode == 8, result.stderr
    assert "Task" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert "call_DP" in lines[0]
    assert "no_such_type" in lines[0]


def test_log_reads_no_array_metadata(repo_path):
    damage_array_metadata(repo_path, "call_DP")
    result = subprocess.run([sys.executable, "-m", "vczrepo", "log", str(repo_path)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "damaged metadata" in result.stdout


def test_damaged_array_metadata_in_open_dataset(repo_path):
    pytest.importorskip("xarray")
    from vczrepo.errors import IntegrityError

    damage_array_metadata(repo_path, "call_DP")
    with pytest.raises(IntegrityError, match="array call_DP: metadata unreadable"):
        vczrepo.Repository.open(repo_path).open_dataset()


def test_expired_history_checks_ok(repo_path):
    """After `gc --expire` the oldest kept commit is not the init: the journal is replayed from it."""
    import datetime as dt

    repo = vczrepo.Repository.open(repo_path)
    repo.remove(["S3"])
    repo.gc(dt.timedelta(0), expire=True, now=True)
    assert "init" not in [c.op for c in repo.log()]
    report = vczrepo.Repository.open(repo_path).check()
    assert report.problems == [], report.problems
