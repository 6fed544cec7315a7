"""Every ordinary batch lands and every value stays exact (issue 26), on chr22-shaped cohorts:
100 samples in parts of 55 and 45, each converted on its own (bio2zarr picks the narrowest
type per batch). What vczrepo then prints equals bcftools merge/concat + fill-tags of the
same VCFs; refused only with --no-widen, and then the repository is unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cohorts
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from cohorts import Batch
from helpers import state

import vczrepo
from vczrepo.cli import main
from vczrepo.sources import convert_vcf

SAMPLES = [f"HG{i:05d}" for i in range(100)]
VC, SC = 10, 20


def convert(vcf: Path) -> Path:
    from bio2zarr import vcf as b2z_vcf

    out = vcf.parent / vcf.name.replace(".vcf.gz", ".vcz")
    if out.exists():
        return out
    b2z_vcf.convert([str(vcf)], str(out), variants_chunk_size=VC, samples_chunk_size=SC, zarr_format=3)
    return out


def vczrepo_cli(*args, ok: bool = True, process: bool = False):
    """`vczrepo ARGS…` in-process (click's runner), or as a subprocess; has returncode, stdout, stderr."""
    if process:
        out = subprocess.run([sys.executable, "-m", "vczrepo", *map(str, args)], capture_output=True, text=True)
    else:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        out = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def query(repo: Path) -> str:
    return vczrepo_cli("query", repo, "-f", cohorts.QUERY).stdout


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """chr22 part 1 (55 samples, every value within int8) and part 2 (45 samples, one DP of 300)."""
    tmp = tmp_path_factory.mktemp("chr22")
    at = cohorts.sites(30)
    p1 = cohorts.write(tmp, "p1", Batch(SAMPLES[:55], seed=1), at)
    p2 = cohorts.write(tmp, "p2", Batch(SAMPLES[55:], seed=2, big={3: 300}), at)
    return {"p1": p1, "p2": p2, "p1.vcz": convert(p1), "p2.vcz": convert(p2),
            "merged": cohorts.merge(tmp, "m", [p1, p2])}


def test_the_dp300_batch_lands_as_vcz_refused_only_with_no_widen(tmp_path, parts):
    assert zarr.open_group(str(parts["p1.vcz"]), mode="r")["call_DP"].dtype == np.int8
    assert zarr.open_group(str(parts["p2.vcz"]), mode="r")["call_DP"].dtype == np.int16
    repo = tmp_path / "r"
    vczrepo_cli("init", repo, parts["p1.vcz"])
    before = state(repo)
    refused = vczrepo_cli("append", repo, parts["p2.vcz"], "--no-widen", ok=False, process=True)
    assert refused.returncode == 5
    assert refused.stderr == ("vczrepo: error: field call_DP: batch dtype int16 (values -1..300) does not fit the "
                              "repository's int8; widening is off (--no-widen)\n")
    assert state(repo) == before
    dry = vczrepo_cli("append", repo, parts["p2.vcz"], "--dry-run")
    # after 5 null columns: the widened call_DP then has the batch's encoding, so it copies as bytes
    assert "would add 45 sample(s) at columns 60..104 after 5 null column(s)" in dry.stdout, dry.stdout
    assert "would widen call_DP int8 -> int16: rewrite 9 chunk(s)" in dry.stdout, dry.stdout
    plan = json.loads(vczrepo_cli("append", repo, parts["p2.vcz"], "--dry-run", "--json").stdout)
    assert [w["name"] for w in plan["widened"]] == ["call_DP"]
    assert state(repo) == before  # a dry run writes nothing
    done = vczrepo_cli("append", repo, parts["p2.vcz"])
    assert "widened call_DP int8 -> int16" in done.stdout
    widened = vczrepo.Repository.open(repo).log()[0].metadata["widened"]
    assert [(w["name"], w["chunks"]) for w in widened] == [("call_DP", plan["widened"][0]["chunks"])]
    assert widened[0]["bytes_written"] > 0
    assert query(repo) == cohorts.query(parts["merged"])  # DP=300 and AN up to 200 exact
    assert vczrepo_cli("check", repo, "--deep").returncode == 0
    after = state(repo)
    again = vczrepo_cli("append", repo, parts["p2.vcz"], "--dry-run", ok=False)  # a dry run checks as append does
    assert (again.returncode, "already in the repository" in again.stderr) == (6, True), again.stderr
    assert state(repo) == after


def test_the_dp300_batch_lands_as_vcf_and_a_fitting_one_converts_to_the_repository_types(tmp_path, parts):
    repo = tmp_path / "r"
    vczrepo_cli("init", repo, parts["p1"], "--variants-chunk-size", VC, "--samples-chunk-size", SC)
    before = state(repo)
    assert vczrepo_cli("append", repo, parts["p2"], "--no-widen", ok=False).returncode == 5
    assert state(repo) == before
    vczrepo_cli("append", repo, parts["p2"])
    assert query(repo) == cohorts.query(parts["merged"])
    assert vczrepo_cli("check", repo, "--deep").returncode == 0
    # a later VCF whose depths fit int8 is converted into the widened repository's int16 (and AD's width)
    at = cohorts.sites(30)
    narrow = cohorts.write(tmp_path, "p3", Batch(["NEW1", "NEW2"], seed=3, ad_values=2), at)
    assert zarr.open_group(str(convert(narrow)), mode="r")["call_DP"].dtype == np.int8
    root = vczrepo.Repository.open(repo).group()
    convert_vcf(narrow, tmp_path / "p3-like.vcz", VC, SC, like=root)
    like = zarr.open_group(str(tmp_path / "p3-like.vcz"), mode="r")
    assert like["call_DP"].dtype == np.int16
    assert like["call_AD"].shape[2] == 3  # padded to the repository's width
    result = vczrepo.Repository.open(repo).append(narrow)
    assert "widened" not in result.metadata
    expected = cohorts.merge(tmp_path, "m3", [parts["merged"], narrow])
    assert query(repo) == cohorts.query(expected)


@pytest.mark.parametrize("wider_first", [True, False], ids=["narrower-part-padded", "wider-part-widens"])
def test_extend_of_parts_split_by_position(tmp_path, wider_first):
    """chr22 split by position: the part whose sites are all biallelic has call_AD (…, 2) and
    call_PL (…, 3) where the other has (…, 3) and (…, 6)."""
    every = (3, 0) if wider_first else (0, 3)  # a multiallelic site every 3rd, or none
    first_sites = cohorts.sites(12, multiallelic_every=every[0])
    second_sites = cohorts.sites(12, start=first_sites[-1][0] + 1_000, multiallelic_every=every[1])
    first = cohorts.write(tmp_path, "a", Batch(SAMPLES, seed=4), first_sites)
    second = cohorts.write(tmp_path, "b", Batch(SAMPLES, seed=5), second_sites)
    a, b = convert(first), convert(second)
    shapes = [zarr.open_group(str(p), mode="r")["call_AD"].shape[2] for p in (a, b)]
    assert shapes == ([3, 2] if wider_first else [2, 3])
    repo = tmp_path / "r"
    vczrepo_cli("init", repo, a)
    before = state(repo)
    strict = vczrepo_cli("extend", repo, b, "--no-widen", ok=False)
    if wider_first:  # padding is no widening
        assert strict.returncode == 0, strict.stderr
    else:
        assert strict.returncode == 5
        assert "field call_AD: the batch has (3,) on (FORMAT_AD_dim), the repository (2,)" in strict.stderr
        assert state(repo) == before
        widened = vczrepo_cli("extend", repo, b)
        assert "widened call_AD" in widened.stdout
    assert query(repo) == cohorts.query(cohorts.concat(tmp_path, "whole", [first, second]))
    assert vczrepo_cli("check", repo, "--deep").returncode == 0


@pytest.mark.parametrize("haploid_first", [False, True], ids=["haploid-padded", "diploid-widens"])
def test_mixed_ploidy(tmp_path, haploid_first):
    at = cohorts.sites(15)
    diploid = cohorts.write(tmp_path, "dip", Batch(SAMPLES[:30], seed=6), at)
    haploid = cohorts.write(tmp_path, "hap", Batch(SAMPLES[30:40], seed=7, ploidy=1), at)
    first, second = (haploid, diploid) if haploid_first else (diploid, haploid)
    repo = tmp_path / "r"
    vczrepo_cli("init", repo, convert(first))
    before = state(repo)
    strict = vczrepo_cli("append", repo, convert(second), "--no-widen", ok=False)
    if haploid_first:  # the ploidy axis grows: a widening
        assert strict.returncode == 5
        assert "field call_PL: the batch has (6,) on (genotypes), the repository (3,)" in strict.stderr
        assert state(repo) == before
        vczrepo_cli("append", repo, convert(second))
    else:
        assert strict.returncode == 0, strict.stderr
    gt = np.asarray(vczrepo.Repository.open(repo).group()["call_genotype"][:])
    haploid_columns = slice(0, 10) if haploid_first else slice(30, 40)
    assert (gt[:, haploid_columns, 1] == -2).all()  # padded as bio2zarr pads mixed ploidy
    assert query(repo) == cohorts.query(cohorts.merge(tmp_path, "m", [first, second]))  # AN counts a haploid once
    assert vczrepo_cli("check", repo, "--deep").returncode == 0


def test_growing_past_the_position_type_widens_it(tmp_path):
    """A first batch on positions 10..100 stores variant_position as int8: inserting a site at 700
    widens it (it would have wrapped)."""
    early = [(10 + 3 * i, "A", "C") for i in range(20)]
    first = cohorts.write(tmp_path, "a", Batch(SAMPLES[:6], seed=8), early)
    wave = cohorts.write(tmp_path, "b", Batch(SAMPLES[6:9], seed=9), [*early[:5], (700, "G", "T")])
    a = convert(first)
    assert zarr.open_group(str(a), mode="r")["variant_position"].dtype == np.int8
    repo = tmp_path / "r"
    vczrepo_cli("init", repo, a)
    before = state(repo)
    strict = vczrepo_cli("append", repo, convert(wave), "--grow-variants", "--no-widen", ok=False)
    assert (strict.returncode, "field variant_position" in strict.stderr) == (5, True), strict.stderr
    assert state(repo) == before
    dry = vczrepo_cli("append", repo, convert(wave), "--grow-variants", "--dry-run")
    assert "would insert 1 site(s)" in dry.stdout
    assert "would widen variant_position int8 -> int16" in dry.stdout, dry.stdout
    vczrepo_cli("append", repo, convert(wave), "--grow-variants")
    grown = vczrepo.Repository.open(repo).log()[0].metadata["variants_grown"]
    assert [w["name"] for w in grown["widened"]] == ["variant_position", "region_index"]  # its rows hold positions
    root = vczrepo.Repository.open(repo).group()
    assert root["variant_position"][:].tolist()[-1] == 700
    assert query(repo) == cohorts.query(cohorts.merge(tmp_path, "m", [first, wave]))
    assert vczrepo_cli("check", repo, "--deep").returncode == 0
