"""Bad input: a one-line error naming the problem, a distinct exit code, the repository unchanged."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from helpers import state
from vcfgen import genotypes, make_vcz, sites, write_vcz_direct

import vczrepo
from vczrepo import chunks

NAMES = ["S1", "S2", "S3"]


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, make_vcz(tmp_path, "base", NAMES, samples_chunk_size=2))
    vczrepo.Repository.open(path).create_tag("t1")
    return path


def _direct(tmp_path, name, samples, ploidy=2, **kw):
    gts = genotypes(samples, 12, 0)[:, :, :ploidy]
    return write_vcz_direct(tmp_path / f"{name}.vcz", samples, gts, n_variants=12, samples_chunk_size=2,
                            variants_chunk_size=5, **kw)


def _moved(i, pos=None, alt=None):
    vs = sites(12)
    chrom, p, ref, a = vs[i]
    vs[i] = (chrom, pos or p, ref, alt or a)
    return vs


BATCHES = {
    "contigs differ": (lambda t, d: d / "sample-part2.vcf.gz", 5, "contigs differ"),
    "variant count": (lambda t, d: make_vcz(t, "b", ["N1"], n_variants=11), 5, "variant count differs"),
    "position": (lambda t, d: make_vcz(t, "b", ["N1"], variants=_moved(7, pos=175)), 5,
                 "variant 7: position differs (repository chr20:170, batch chr20:175)"),
    "alleles": (lambda t, d: make_vcz(t, "b", ["N1"], variants=_moved(4, alt="T")), 5,
                "variant 4 at chr20:140: alleles differ"),
    "allele order": (lambda t, d: make_vcz(t, "b", ["N1"], variants=_moved(3, alt="T,G")), 5,
                     "alleles differ (repository A,G,T, batch A,T,G)"),
    "sample present": (lambda t, d: make_vcz(t, "b", ["N1", "S2"]), 6, "already in the repository: S2"),
    "duplicate": (lambda t, d: _direct(t, "b", ["N1", "N1"]), 6, "duplicate sample id(s) in batch: N1"),
    "empty": (lambda t, d: _direct(t, "b", []), 6, "batch has no samples"),
    "missing": (lambda t, d: t / "nope.vcz", 4, "source not found"),
    "not vcz": (lambda t, d: (t / "x.txt").write_text("hi") and t / "x.txt", 4, "not a VCZ directory"),
    "not a store": (lambda t, d: (t / "empty").mkdir() or t / "empty", 4, "not a VCZ store"),
}


@pytest.mark.parametrize("case", list(BATCHES))
def test_bad_batch_is_refused_and_changes_nothing(cli, repo_path, tmp_path, data, case):
    make, code, message = BATCHES[case]
    batch = make(tmp_path, data)
    before = state(repo_path)
    result = cli("append", repo_path, batch, ok=False)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert state(repo_path) == before


def test_fields_and_dtypes_are_checked(cli, tmp_path):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, _direct(tmp_path, "base", ["A1", "A2"]))
    before = state(path)
    deep = _direct(tmp_path, "deep", ["B4"], dp_dtype=np.int32)
    dp = zarr.open_group(str(deep), mode="r+")["call_DP"]
    dp[0, 0] = 40_000  # beyond the repository's int16
    for batch, args, message in [
        (_direct(tmp_path, "nodp", ["B1"], with_dp=False), (), "call fields differ (missing from batch: call_DP)"),
        (_direct(tmp_path, "float", ["B2"], dp_dtype=np.float32), (),
         "field call_DP: batch dtype float32 does not fit the repository's int16"),
        (deep, ("--no-widen",), "field call_DP: batch dtype int32 (values 3..40000) does not fit the repository's "
                                "int16; widening is off (--no-widen)"),
    ]:
        result = cli("append", path, batch, *args, ok=False)
        assert result.exit_code == 5, result.stderr
        assert message in result.stderr, result.stderr
    assert state(path) == before
    cli("append", path, _direct(tmp_path, "narrow", ["B3"], dp_dtype=np.int8))  # safe widening
    cli("append", path, _direct(tmp_path, "fits", ["B5"], dp_dtype=np.int32), "--no-widen")  # its values fit
    assert vczrepo.Repository.open(path).group()["call_DP"].dtype == np.int16
    cli("append", path, deep)
    assert vczrepo.Repository.open(path).group()["call_DP"].dtype == np.int32


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("remove", "{repo}", "NOPE"), 6, "cannot remove NOPE: unknown sample"),
        (("remove", "{repo}", "S1", "S1"), 6, "listed more than once: S1"),
        (("tag", "{repo}", "t1"), 3, "a tag named 't1' already exists"),
        (("tag", "{repo}", "main"), 3, "a branch named 'main' already exists"),
        (("tag", "{repo}", "bad..name"), 3, "invalid tag name"),
        (("branch", "{repo}", "-x"), 2, ""),
        (("--compression-level", "10", "remove", "{repo}", "S1"), 2, "10 is not in the range 0<=x<=9"),
        (("branch", "{repo}", "new", "--at", "nowhere"), 3, "unknown ref 'nowhere'"),
        (("log", "{repo}", "--at", "mian"), 3, "unknown ref 'mian'; nearest: main"),
        (("samples", "{repo}", "--at", "t2"), 3, "nearest: t1"),
        (("append", "{repo}", "{batch}", "-b", "nobranch"), 3, "no such branch: nobranch"),
        (("checkout", "{repo}", "{existing}", "--at", "main"), 3, "output already exists"),
        (("init", "{repo}", "{batch}"), 3, "refusing to overwrite"),
        (("log", "{tmp}/absent"), 3, "not a vczrepo repository"),
        (("log", "{tmp}"), 3, "not a vczrepo repository"),
    ],
)
def test_bad_command_is_refused_and_changes_nothing(cli, repo_path, tmp_path, args, code, message):
    batch = make_vcz(tmp_path, "ok", ["N1"])
    (tmp_path / "exists.vcz").mkdir()
    subs = {"repo": repo_path, "batch": batch, "existing": tmp_path / "exists.vcz", "tmp": tmp_path}
    before = state(repo_path)
    result = cli(*(a.format(**subs) for a in args), ok=False)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert state(repo_path) == before


def test_removing_an_already_removed_sample(cli, repo_path):
    cli("remove", repo_path, "S2")
    before = state(repo_path)
    result = cli("remove", repo_path, "S2", ok=False)
    assert result.exit_code == 6
    assert "cannot remove S2: already removed" in result.stderr
    assert state(repo_path) == before


def test_failed_init_leaves_no_repository(cli, tmp_path, data):
    target = tmp_path / "new"
    result = cli("init", target, tmp_path / "missing.vcz", ok=False)
    assert result.exit_code == 4
    assert not target.exists()


def test_removed_sample_can_be_added_again_as_a_new_column(cli, repo_path, tmp_path):
    cli("remove", repo_path, "S2")
    again = make_vcz(tmp_path, "again", ["S2"])
    cli("append", repo_path, again, "-m", "re-consent")
    repo = vczrepo.Repository.open(repo_path)
    assert repo.samples() == ["S1", "S3", "S2"]
    assert list(repo.group()["sample_id"][:]) == ["S1", "", "S3", "S2"]


def test_fill_missing_fields_fills_gaps_with_missing_values(cli, tmp_path, data, whole_vcz):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, _direct(tmp_path, "base", ["A1", "A2"], with_dp=False))
    with_dp = _direct(tmp_path, "dp", ["B1"])
    result = cli("append", path, with_dp, ok=False)
    assert result.exit_code == 5
    assert "call fields differ (not in repository: call_DP)" in result.stderr
    cli("append", path, with_dp, "--fill-missing-fields")
    cli("append", path, _direct(tmp_path, "nodp", ["C1"], with_dp=False), "--fill-missing-fields")
    root = vczrepo.open_group(path)
    dp = root["call_DP"][:]
    assert (dp[:, [0, 1, 3]] == -1).all()
    assert (dp[:, 2] >= 3).all()
    assert root["call_DP"].chunks == root["call_genotype"].chunks[:2]
    assert vczrepo.Repository.open(path).log()[1].metadata["fields_added"] == ["call_DP"]
    assert vczrepo.Repository.open(path).check().ok


def test_variant_fields_on_one_side_only(cli, repo_path, tmp_path):
    batch = make_vcz(tmp_path, "b", ["N1"])
    del zarr.open_group(str(batch), mode="r+")["variant_quality"]
    before = state(repo_path)
    result = cli("append", repo_path, batch, ok=False)
    assert result.exit_code == 5
    assert "variant fields differ (missing from batch: variant_quality)" in result.stderr
    assert state(repo_path) == before
    cli("append", repo_path, batch, "--fill-missing-fields")
    assert vczrepo.Repository.open(repo_path).samples() == NAMES + ["N1"]


@pytest.mark.parametrize("aligned", [True, False], ids=["bytes copied", "re-encoded"])
def test_truncated_chunk_in_batch_is_refused(cli, tmp_path, aligned, monkeypatch):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, make_vcz(tmp_path, "base", ["S1", "S2"] if aligned else ["S1"],
                                           samples_chunk_size=2))
    batch = make_vcz(tmp_path, "t", ["N1", "N2"], samples_chunk_size=2)
    victim = next(p for p in sorted((batch / "call_genotype" / "c").rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes()[:7])
    used = []
    monkeypatch.setattr(chunks.Pipeline, "copy_encoded", _spy(chunks.Pipeline.copy_encoded, used))
    before = state(path)
    result = cli("append", path, batch, *([] if aligned else ["--no-align"]), ok=False)
    assert result.exit_code == 4, result.stderr
    assert "cannot read call_genotype" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert state(path) == before
    assert bool(used) == aligned


def _spy(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(args)
        return fn(*args, **kwargs)

    return wrapper


def test_batch_with_a_missing_chunk_is_refused(cli, repo_path, tmp_path):
    batch = make_vcz(tmp_path, "m", ["N1"], variants_chunk_size=5)
    next(p for p in sorted((batch / "variant_position" / "c").rglob("*")) if p.is_file()).unlink()
    before = state(repo_path)
    result = cli("append", repo_path, batch, ok=False)
    assert result.exit_code == 4
    assert "incomplete VCZ" in result.stderr
    assert "variant_position is missing 1 of 3 chunks" in result.stderr
    assert state(repo_path) == before


def test_a_reader_that_stops_early_gets_no_error_message(repo_path):
    # `vczrepo samples R | head -1`: the pipe closes before vczrepo has written
    proc = subprocess.Popen([sys.executable, "-m", "vczrepo", "samples", str(repo_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert (proc.wait(), stderr) == (141, b"")


def test_distributed_append_that_must_pad_is_refused(cli, tmp_path):
    # --align on an unaligned repository with --workers: forks cannot pad, so refuse up front
    path = tmp_path / "r"
    vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["A0", "A1", "A2"], samples_chunk_size=2))
    before = state(path)
    result = cli("append", path, make_vcz(tmp_path, "b", ["B0", "B1"], samples_chunk_size=2),
                 "--align", "--workers", "2", ok=False)
    assert result.exit_code == 4, result.stderr
    assert "cannot pad" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert state(path) == before
