"""No value ever wraps: counts that grow with the cohort (AC, AN, NS, …) are held in a type
that fits the repository (int32 at least), whatever type the batch that brought them used,
and no write stores a value its array cannot hold. `bcftools merge | +fill-tags` of the
same VCFs is the reference; the `no_narrowing` guard fails a test if any zarr write narrows."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import narrowing_guard, state

import vczrepo
from vczrepo import schema, summaries

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")

COUNTS = "%POS\\t%REF\\t%ALT\\t%INFO/AC\\t%INFO/AN\\t%INFO/NS\\n"
SAMPLES = [f"HG{i:05d}" for i in range(100)]
HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr22,length=50818468>
##FILTER=<ID=PASS,Description="All filters passed">
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes">
##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">
##INFO=<ID=NS,Number=1,Type=Integer,Description="Number of samples with data">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">
"""


def bcftools(*args: str | Path) -> str:
    return subprocess.run(["bcftools", *map(str, args)], check=True, capture_output=True, text=True).stdout


def indexed(path: Path) -> Path:
    bcftools("index", "-f", path)
    return path


def cohort_vcf(path: Path, samples: list[str], positions: range, seed: int) -> Path:
    """A chr22-like VCF: bi- and tri-allelic sites at frequencies from rare to common, missing
    calls, phased and unphased genotypes, DP/GQ/AD per call, and AC/AN/NS from +fill-tags."""
    rng = np.random.default_rng(seed)
    lines = []
    for k, pos in enumerate(positions):
        n_alt = 2 if k % 5 == 3 else 1
        freqs = rng.dirichlet(np.r_[8.0, np.full(n_alt, rng.choice([0.05, 0.5, 3.0]))])
        calls = []
        for s in samples:
            if zlib.crc32(f"{s}:{pos}".encode()) % 31 == 0:
                calls.append("./.:.:.:.")
                continue
            gt = rng.choice(n_alt + 1, size=2, p=freqs)
            depth = rng.integers(0, 3, size=n_alt + 1) + 8 * np.bincount(gt, minlength=n_alt + 1)
            sep = "|" if rng.random() < 0.7 else "/"
            calls.append(f"{gt[0]}{sep}{gt[1]}:{depth.sum()}:{rng.integers(5, 99)}:{','.join(map(str, depth))}")
        alts = ",".join("CGT"[:n_alt])
        lines.append("\t".join(["chr22", str(pos), f"rs{pos}", "A", alts, "50", "PASS", ".", "GT:DP:GQ:AD", *calls]))
    raw = path.with_name(path.name.replace(".vcf.gz", ".txt"))
    raw.write_text(HEADER + "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                                       *samples]) + "\n" + "\n".join(lines) + "\n")
    bcftools("+fill-tags", raw, "-Oz", "-o", path, "--", "-t", "AC,AN,NS")
    return indexed(path)


def subset(src: Path, out: Path, samples: list[str]) -> Path:
    """`bcftools view -s` of some samples with AC/AN/NS recounted on them."""
    tmp = out.with_name("sub-" + out.name)
    bcftools("view", "-s", ",".join(samples), "-Oz", "-o", tmp, src)
    bcftools("+fill-tags", indexed(tmp), "-Oz", "-o", out, "--", "-t", "AC,AN,NS")
    return indexed(out)


def merged(out: Path, *parts: Path) -> Path:
    """`bcftools merge` of the parts (their samples side by side) with AC/AN/NS recounted."""
    tmp = out.with_name("m-" + out.name)
    bcftools("merge", "-m", "none", "-Oz", "-o", tmp, *parts)
    bcftools("+fill-tags", indexed(tmp), "-Oz", "-o", out, "--", "-t", "AC,AN,NS")
    return indexed(out)


def want(vcf: Path) -> str:
    return bcftools("query", "-f", COUNTS, vcf)


def got(cli, repo: Path, at: str = "main") -> str:
    return cli("query", repo, "--at", at, "-f", COUNTS).stdout


@pytest.fixture(scope="module")
def chr22(tmp_path_factory):
    """100 samples on chr22 as a biobank receives them: part 1 (55 samples, AN up to 110, so
    bio2zarr stores AC/AN/NS as int8) and part 2 (45), then later sites of all 100 (extend)."""
    d = tmp_path_factory.mktemp("chr22")
    whole = cohort_vcf(d / "whole.vcf.gz", SAMPLES, range(10_510_000, 10_530_000, 1000), seed=22)
    later = cohort_vcf(d / "later.vcf.gz", SAMPLES, range(10_600_000, 10_608_000, 1000), seed=23)
    return {"whole": whole, "later": later, "part1": subset(whole, d / "part1.vcf.gz", SAMPLES[:55]),
            "part2": subset(whole, d / "part2.vcf.gz", SAMPLES[55:]), "dir": d}


def test_counts_past_int8_equal_bcftools_through_history(tmp_path, cli, chr22, no_narrowing):
    """init with part 1, append part 2 (AN reaches 200 where part 1 stored int8), remove,
    revert, extend with a part of all 100 samples, revert the append: after every step
    `vczrepo query` prints the AC/AN/NS that bcftools computes for the same samples."""
    d = chr22["dir"]
    repo_path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(repo_path, chr22["part1"])
    assert np.dtype(repo.group()["variant_AN"].dtype) == np.int8  # as bio2zarr stored part 1
    before = state(repo_path)
    planned = repo.plan_append(chr22["part2"]).summaries_widened  # append --dry-run names them too
    assert state(repo_path) == before
    appended = repo.append(chr22["part2"])
    widened = {w["name"]: (w["old_dtype"], w["new_dtype"]) for w in appended.metadata["summaries_widened"]}
    assert widened == {f"variant_{f}": ("int8", "int32") for f in ("AC", "AN", "NS")}
    assert {w.name: (w.old_dtype, w.new_dtype) for w in planned} == widened
    whole = want(chr22["whole"])
    assert max(int(line.split("\t")[4]) for line in whole.splitlines()) > 127
    assert got(cli, repo_path) == whole

    gone = SAMPLES[3:70:4]
    removed = repo.remove(gone)
    assert "summaries_widened" not in removed.metadata  # widened once, at the first change
    assert got(cli, repo_path) == want(subset(chr22["whole"], d / "rest.vcf.gz",
                                              [s for s in SAMPLES if s not in gone]))
    repo.revert(removed.snapshot_id)
    assert got(cli, repo_path) == whole

    repo.extend(chr22["later"])  # its AN (up to 200) is int16: it fits the repository's int32
    assert got(cli, repo_path) == whole + want(chr22["later"])
    repo.revert(appended.snapshot_id)
    assert got(cli, repo_path) == want(chr22["part1"]) + want(subset(chr22["later"], d / "later1.vcf.gz",
                                                                     SAMPLES[:55]))
    assert repo.check(deep=True).problems == []


def test_grow_and_purge_past_int8_equal_bcftools(tmp_path, cli, chr22, no_narrowing):
    """A third wave with sites of its own grows the variants; a purge rewrites the history:
    the counts stay those of bcftools merge | +fill-tags of the samples there."""
    d = chr22["dir"]
    repo_path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(repo_path, chr22["part1"])
    repo.append(chr22["part2"])
    wave = cohort_vcf(d / "wave3.vcf.gz", [f"W{i:03d}" for i in range(30)], range(10_510_500, 10_530_500, 2000),
                      seed=3)
    repo.append(wave, grow_variants=True)
    assert got(cli, repo_path) == want(merged(d / "three.vcf.gz", chr22["whole"], wave))
    repo.purge([SAMPLES[7]])
    rest = subset(chr22["whole"], d / "purged.vcf.gz", [s for s in SAMPLES if s != SAMPLES[7]])
    assert got(cli, repo_path) == want(merged(d / "three-purged.vcf.gz", rest, wave))
    assert got(cli, repo_path, "main~1") == want(rest)  # the append of part 2, rewritten
    assert repo.check(deep=True).problems == []


def biobank_batch(store, names: list[str], alt_share: int, first: int) -> zarr.Group:
    """A GT-only batch of diploid samples at four sites, with AC/AN as a caller stores them for
    its own samples (int16: it holds them): site 0 all 1/1, site 1 every `alt_share`-th sample
    0/1, site 2 all 0/0, site 3 missing for one sample in ten."""
    from vcfgen import write_vcz_direct

    n = len(names)
    gts = np.zeros((4, n, 2), dtype=np.int8)
    gts[0] = 1
    gts[1, ::alt_share, 1] = 1
    gts[3, (np.arange(n) + first) % 10 == 0] = -1
    root = write_vcz_direct(store, names, gts, n_variants=4, samples_chunk_size=1000, variants_chunk_size=4,
                            variants=[("chr20", 100 * (k + 1), "A", "C") for k in range(4)], with_dp=False)
    root.create_array("filter_id", shape=(1,), dtype=str, dimension_names=["filters"])[...] = np.array(["PASS"])
    root.create_array("variant_filter", shape=(4, 1), dtype=bool, dimension_names=["variants", "filters"])[...] = True
    called = gts >= 0
    for name, values in (("variant_AC", (gts == 1).sum((1, 2))[:, None]), ("variant_AN", called.sum((1, 2)))):
        dims = ["variants", "alt_alleles"] if values.ndim == 2 else ["variants"]
        array = root.create_array(name, shape=values.shape, dtype=np.int16, chunks=values.shape, dimension_names=dims)
        array[...] = values.astype(np.int16)
    return root


def test_counts_past_int16_at_biobank_scale(tmp_path, cli):
    """17,000 samples in two batches: AN reaches 34,000, past int16 (whose AN would read -31,536)."""
    first, second = ([f"S{i:05d}" for i in range(a, b)] for a, b in ((0, 9000), (9000, 17000)))
    repo_path = tmp_path / "biobank"
    repo, _ = vczrepo.Repository.init(repo_path, biobank_batch(zarr.storage.MemoryStore(), first, 3, 0))
    result = repo.append(biobank_batch(zarr.storage.MemoryStore(), second, 7, 9000))
    assert {w["name"]: w["new_dtype"] for w in result.metadata["summaries_widened"]} == {
        "variant_AC": "int32", "variant_AN": "int32"}
    vcf = tmp_path / "all.vcf"
    cli("view", repo_path, "-o", vcf)
    (tmp_path / "counted.vcf").write_text(bcftools("+fill-tags", vcf, "--", "-t", "AC,AN"))
    expected = bcftools("query", "-f", "%POS\\t%INFO/AC\\t%INFO/AN\\n", tmp_path / "counted.vcf")
    assert expected.splitlines()[0] == "100\t34000\t34000"
    assert cli("query", repo_path, "-f", "%POS\\t%INFO/AC\\t%INFO/AN\\n").stdout == expected


def test_guard_catches_a_narrowing_write():
    """The guard is not vacuous: a wrapped integer and a float32 NaN without VCZ's payload are caught."""
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    counts = root.create_array("variant_AN", shape=(2,), dtype=np.int8)
    freqs = root.create_array("variant_AF", shape=(2,), dtype=np.float32)
    with narrowing_guard() as problems:
        counts[:] = np.array([100, 120])
        freqs[:] = np.array([0.25, np.nan], dtype=np.float32)[[0, 0]]
        assert problems == []
        counts[:] = np.array([100, 128])
        freqs[:] = np.where([True, False], np.array([0.5, 0.5]), schema.FLOAT32_MISSING)  # float64: payload lost
    assert len(problems) == 2
    assert "128 (int64) stored in int8 as -128" in problems[0]
    assert "0x7fc00001" in problems[1]


def test_guard_catches_a_narrowing_injected_into_vczrepo(tmp_path, chr22, monkeypatch):
    """Counts kept in the batch's int8 and the exact cast taken out, so that zarr casts the
    values itself: the guard flags the append of part 2 (AN 200 stored as -56)."""
    monkeypatch.setattr(summaries, "count_dtype", lambda root: np.dtype(np.int8))
    monkeypatch.setattr(schema, "exact_cast", lambda values, dtype, field: np.asarray(values))
    repo, _ = vczrepo.Repository.init(tmp_path / "r", chr22["part1"])
    with narrowing_guard() as problems:
        repo.append(chr22["part2"])
    assert any(p.startswith("variant_AN: ") and "stored in int8" in p for p in problems), problems


def test_a_count_that_cannot_be_held_is_refused(tmp_path, chr22, monkeypatch):
    """Were a count past its type anyway, the append is refused naming the field, nothing written."""
    monkeypatch.setattr(summaries, "count_dtype", lambda root: np.dtype(np.int8))
    repo, _ = vczrepo.Repository.init(tmp_path / "r", chr22["part1"])
    before = state(tmp_path / "r")
    refused = r"field variant_A[CN]: value \d+ does not fit int8"
    with pytest.raises(vczrepo.errors.IncompatibleBatchError, match=refused):
        repo.append(chr22["part2"])
    assert state(tmp_path / "r") == before


def test_union_sums_site_depths_past_the_panels_type(tmp_path, cli, no_narrowing):
    """init --variants-from sums INFO DP as bcftools merge does: two panels of DP 20,000 (int16
    each) give 40,000, held in a wider type instead of wrapping."""
    from helpers import converted, indexed_vcf

    header = ('##fileformat=VCFv4.3\n##contig=<ID=chr22,length=50818468>\n'
              '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">\n'
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
    panels = [indexed_vcf(tmp_path, name, header, [name + "1"],
                          [f"chr22\t{pos}\t.\tA\tC\t.\tPASS\tDP={depth}\tGT\t0/1" for pos, depth in sites])
              for name, sites in (("P", [(100, 20000), (200, 7)]), ("Q", [(100, 20000), (300, 9)]))]
    vczs = [converted(p, 10, 10) for p in panels]
    assert np.dtype(zarr.open_group(str(vczs[0]), mode="r")["variant_DP"].dtype) == np.int16
    vczrepo.Repository.init(tmp_path / "u", variants_from=vczs)
    merged_vcf = tmp_path / "pq.vcf.gz"
    bcftools("merge", "-m", "none", "-Oz", "-o", merged_vcf, *panels)
    fmt = "%POS\\t%INFO/DP\\n"
    assert cli("query", tmp_path / "u", "-f", fmt).stdout == bcftools("query", "-f", fmt, merged_vcf)
    assert bcftools("query", "-f", fmt, merged_vcf).startswith("100\t40000\n")


def test_region_index_follows_positions_past_its_type(tmp_path, cli, no_narrowing):
    """bio2zarr types region_index as its positions (int8 for sites at 10..100): a grow inserting
    a site at 700 widens the index with them, so `-r` still finds every site."""
    from helpers import converted, indexed_vcf

    header = ("##fileformat=VCFv4.3\n##contig=<ID=chr22,length=50818468>\n"
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
    early = [f"chr22\t{10 + 9 * i}\t.\tA\tC\t.\tPASS\t.\tGT\t0/1\t1/1" for i in range(11)]
    first = converted(indexed_vcf(tmp_path, "a", header, ["A1", "A2"], early), 4, 2)
    wave = converted(indexed_vcf(tmp_path, "b", header, ["B1"], ["chr22\t700\t.\tG\tT\t.\tPASS\t.\tGT\t0/1"]), 4, 2)
    assert np.dtype(zarr.open_group(str(first), mode="r")["region_index"].dtype) == np.int8
    repo, _ = vczrepo.Repository.init(tmp_path / "r", first)
    repo.append(wave, grow_variants=True)
    assert np.dtype(repo.group()["region_index"].dtype).itemsize >= 2
    fmt = "%POS[\\t%GT]\\n"
    assert cli("query", tmp_path / "r", "-r", "chr22:600-800", "-f", fmt).stdout == "700\t./.\t./.\t0/1\n"
    assert cli("query", tmp_path / "r", "-r", "chr22:50-60", "-f", fmt).stdout == "55\t0/1\t1/1\t./.\n"
    assert repo.check(deep=True).problems == []
