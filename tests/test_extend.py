"""extend: a whole-genome-style VCF converted part by part (by contig, by position range) and
extended into one repository equals the one-go conversion, array for array and through vcztools."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr
from bio2zarr import vcf as b2z_vcf
from click.testing import CliRunner
from helpers import state, vcf_body

import vczrepo
from vczrepo import schema, storage
from vczrepo.errors import IncompatibleBatchError, SampleError

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")

CONTIGS = {"chr1": 5000, "chr2": 4000, "chr3": 3000}
SAMPLES = ["S1", "S2", "S3", "S4"]
COUNTS = {"chr1": 13, "chr2": 9, "chr3": 11}
VC, SC = 4, 3  # variant and sample chunk sizes of every conversion


def header(contigs) -> str:
    lines = ["##fileformat=VCFv4.3", *(f"##contig=<ID={c},length={CONTIGS[c]}>" for c in contigs),
             '##FILTER=<ID=q10,Description="Quality below 10">',
             '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">']
    return "\n".join(lines) + "\n"


def records(samples=SAMPLES, counts=COUNTS, ploidy=2) -> list[str]:
    out = []
    for chrom, n in counts.items():
        for i in range(n):
            pos = 100 + 37 * i
            alt = "G,T" if i % 3 == 0 else "C"
            rng = np.random.default_rng(zlib.crc32(f"{chrom}:{pos}".encode()))
            calls = []
            for s in samples:
                gt = rng.integers(0, 2, size=ploidy)
                calls.append("|".join(map(str, gt)) + f":{(pos + zlib.crc32(s.encode())) % 40}")
            flt = "q10" if i % 5 == 4 else "PASS"
            out.append("\t".join([chrom, str(pos), f"rs{chrom}_{i}", "A", alt, str(20 + i), flt, f"DP={i * 3}",
                                  "GT:DP", *calls]))
    return out


def vcf(path: Path, rows: list[str], contigs=tuple(CONTIGS), samples=SAMPLES, drop: str = "") -> Path:
    raw = path.with_suffix(".txt")
    head = "".join(line + "\n" for line in header(contigs).splitlines() if not (drop and drop in line))
    raw.write_text(head + "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                                                "FORMAT", *samples]) + "\n" + "\n".join(rows) + "\n")
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(path), str(raw)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(path)], check=True)
    return path


def convert(path: Path) -> Path:
    out = path.parent / path.name.replace(".vcf.gz", ".vcz")
    b2z_vcf.convert([str(path)], str(out), variants_chunk_size=VC, samples_chunk_size=SC, zarr_format=3)
    return out


def split(whole: Path, regions: list[str], tmp: Path) -> list[Path]:
    parts = []
    for k, region in enumerate(regions):
        out = tmp / f"part{k}.vcf.gz"
        subprocess.run(["bcftools", "view", "-r", region, "-Oz", "-o", str(out), str(whole)], check=True)
        subprocess.run(["bcftools", "index", "-f", str(out)], check=True)
        parts.append(convert(out))
    return parts


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("genome")
    whole = vcf(tmp / "whole.vcf.gz", records())
    return whole, convert(whole)


def assert_same_arrays(repo_root: zarr.Group, one_go: zarr.Group) -> None:
    names = set(one_go.array_keys())
    assert set(repo_root.array_keys()) == names
    for name in sorted(names):
        a, b = repo_root[name][...], one_go[name][...]
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype or a.dtype.kind in "OTU", name
        if a.dtype.kind == "f":
            assert np.array_equal(a.view(np.int32) if a.dtype == np.float32 else a,
                                  b.view(np.int32) if b.dtype == np.float32 else b), name
        elif a.dtype.kind in "OTU":
            assert np.array_equal(schema.as_str(a), schema.as_str(b)), name
        else:
            assert np.array_equal(a, b), name


def view_cli(*args) -> str:
    import vcztools.cli

    from vczrepo.cli import main

    runner = CliRunner()
    if args[0] == "vcztools":
        result = runner.invoke(vcztools.cli.vcztools_main, ["view", *map(str, args[1:])], catch_exceptions=False)
    else:
        result = runner.invoke(main, ["view", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return "".join(line + "\n" for line in result.output.splitlines() if not line.startswith("##"))


@pytest.mark.parametrize(("layout", "regions"), [
    # by contig: 13 variants on chr1 leave the repository off a variant-chunk boundary (recompose)
    ("by-contig", ["chr1", "chr2", "chr3"]),
    # by position range, each part a multiple of the variant chunk (encoded bytes): 8, 12, 13
    ("aligned", ["chr1:1-390", "chr1:391-5000,chr2:1-330", "chr2:331-4000,chr3"]),
    # by position range, off the boundary and splitting a chunk mid-contig
    ("ranges", ["chr1:1-250", "chr1:251-5000,chr2:1-300", "chr2:301-4000,chr3:1-150", "chr3:151-3000"]),
])
def test_parts_extend_to_the_one_go_conversion(tmp_path, genome, layout, regions):
    whole_vcf, whole = genome
    parts = split(whole_vcf, regions, tmp_path)
    repo, _ = vczrepo.Repository.init(tmp_path / "r.vczrepo", parts[0])
    copied = []
    for part in parts[1:]:
        result = repo.extend(part)
        assert result.metadata["op"] == "extend"
        copied.append(result.metadata["copied"])
    if layout == "aligned":
        assert copied == ["bytes", "bytes"]
    if layout == "by-contig":
        assert "bytes" not in copied
    one_go = zarr.open_group(str(whole), mode="r")
    assert_same_arrays(repo.group(), one_go)
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    for region in ("chr2", "chr3:150-400", "chr1:300-600,chr3:100-200"):
        assert view_cli(tmp_path / "r.vczrepo", "-r", region) == view_cli("vcztools", whole, "-r", region)
    assert repo.check(deep=True).problems == []


def test_new_contigs_are_added_and_remapped(tmp_path, genome):
    """The repository knows chr1 and chr2 only; the batch's header lists chr3 alone (index 0)."""
    whole_vcf, whole = genome
    rows = records()
    first = convert(vcf(tmp_path / "a.vcf.gz", [r for r in rows if r.startswith("chr1\t")], contigs=("chr1", "chr2")))
    second = convert(vcf(tmp_path / "b.vcf.gz", [r for r in rows if r.startswith("chr2\t")], contigs=("chr2",)))
    third = convert(vcf(tmp_path / "c.vcf.gz", [r for r in rows if r.startswith("chr3\t")], contigs=("chr3",)))
    repo, _ = vczrepo.Repository.init(tmp_path / "r.vczrepo", first)
    assert repo.extend(second).metadata["contigs_added"] == []
    result = repo.extend(third)
    assert result.metadata["contigs_added"] == ["chr3"]
    root, one_go = repo.group(), zarr.open_group(str(whole), mode="r")
    assert schema.as_str(root["contig_id"][:]).tolist() == ["chr1", "chr2", "chr3"]
    assert root["contig_length"][:].tolist() == [5000, 4000, 3000]
    for name in ("variant_contig", "variant_position", "call_genotype", "call_DP", "region_index"):
        assert np.array_equal(root[name][:], one_go[name][:]), name
    assert vcf_body(root) == vcf_body(str(whole))
    assert view_cli(tmp_path / "r.vczrepo", "-r", "chr3") == view_cli("vcztools", whole, "-r", "chr3")


def test_null_columns_stay_null(tmp_path, genome):
    """A sample removed from the repository is absent from the batch: the batch's columns go to
    the live columns and the null column gets missing calls."""
    whole_vcf, _ = genome
    rows = records()
    first = convert(vcf(tmp_path / "a.vcf.gz", [r for r in rows if r.startswith("chr1\t")]))
    keep = [0, 1, 3]  # S3 withdrawn
    later = [r.split("\t") for r in rows if not r.startswith("chr1\t")]
    later = ["\t".join(r[:9] + [r[9 + k] for k in keep]) for r in later]
    second = convert(vcf(tmp_path / "b.vcf.gz", later, samples=[SAMPLES[k] for k in keep]))
    # the reference: everything for the three remaining samples
    ref_rows = ["\t".join(r.split("\t")[:9] + [r.split("\t")[9 + k] for k in keep]) for r in rows]
    ref = convert(vcf(tmp_path / "ref.vcf.gz", ref_rows, samples=[SAMPLES[k] for k in keep]))
    repo, _ = vczrepo.Repository.init(tmp_path / "r.vczrepo", first)
    repo.remove(["S3"])
    repo.extend(second)
    root = repo.group()
    assert schema.as_str(root["sample_id"][:]).tolist() == ["S1", "S2", "", "S4"]
    gt = root["call_genotype"][:]
    assert (gt[COUNTS["chr1"]:, 2] == -1).all()
    assert root["call_genotype_mask"][COUNTS["chr1"]:, 2].all()
    assert vcf_body(root) == vcf_body(str(ref))


def test_cli_extend_and_diff(tmp_path, genome, cli):
    whole_vcf, whole = genome
    parts = split(whole_vcf, ["chr1", "chr2,chr3"], tmp_path)
    path = tmp_path / "r.vczrepo"
    vczrepo.Repository.init(path, parts[0])
    out = cli("extend", path, parts[1], "-m", "add chr2 and chr3", "--json")
    meta = json.loads(out.stdout)
    assert meta["op"] == "extend"
    assert meta["metadata"]["n_variants_added"] == 20
    assert meta["metadata"]["variant_range"] == [COUNTS["chr1"], COUNTS["chr1"] + 20]
    plain = cli("revert", path, "main", "-m", "undo").stdout
    assert "20 variants removed, 13 in total" in plain
    assert vczrepo.Repository.open(path).diff("main~1", "main").variants_added == -20
    assert "variants added, 33 in total" in cli("extend", path, parts[1]).stdout
    repo = vczrepo.Repository.open(path)
    d = repo.diff("main~1", "main")
    assert d.variants_added == COUNTS["chr2"] + COUNTS["chr3"]
    assert d.samples_added == []
    assert d.samples_removed == []
    assert "variants added: 20" in cli("diff", path, "main~1", "main").stdout
    assert json.loads(cli("diff", path, "main~1", "main", "--json").stdout)["variants_added"] == 20
    assert vcf_body(repo.group()) == vcf_body(str(whole))


def refused(repo_path, source, error, match):
    repo = vczrepo.Repository.open(repo_path)
    before, body = state(repo_path), vcf_body(repo.group())
    with pytest.raises(error, match=match):
        repo.extend(source)
    assert state(repo_path) == before
    assert vcf_body(vczrepo.Repository.open(repo_path).group()) == body


def test_refusals_leave_the_repository_unchanged(tmp_path, genome):
    whole_vcf, _ = genome
    rows = records()
    path = tmp_path / "r.vczrepo"
    parts = split(whole_vcf, ["chr1:1-400", "chr1:300-600", "chr2"], tmp_path)
    vczrepo.Repository.init(path, parts[0])
    refused(path, parts[1], IncompatibleBatchError, "overlaps")
    chr2 = [r for r in rows if r.startswith("chr2\t")]
    unsorted = convert(vcf(tmp_path / "u.vcf.gz", chr2))
    # bcftools sorts on writing an indexed file: make an unsorted batch by swapping positions in the VCZ
    g = zarr.open_group(str(unsorted), mode="r+")
    pos = g["variant_position"][:]
    pos[[2, 3]] = pos[[3, 2]]
    g["variant_position"][:] = pos
    refused(path, unsorted, IncompatibleBatchError, "not sorted")
    # other samples
    other = ["\t".join(r.split("\t")[:9] + r.split("\t")[9:][::-1]) for r in chr2]
    refused(path, convert(vcf(tmp_path / "o.vcf.gz", other, samples=SAMPLES[::-1])), SampleError, "order")
    fewer = ["\t".join(r.split("\t")[:12]) for r in chr2]
    refused(path, convert(vcf(tmp_path / "f.vcf.gz", fewer, samples=SAMPLES[:3])), SampleError, "missing from batch")
    # other fields: no FORMAT DP
    no_dp = ["\t".join(r.split("\t")[:8] + ["GT"] + [c.split(":")[0] for c in r.split("\t")[9:]]) for r in chr2]
    refused(path, convert(vcf(tmp_path / "n.vcf.gz", no_dp, drop="FORMAT=<ID=DP")), IncompatibleBatchError,
            "fields differ")
    # other filters
    no_filter = [r.replace("\tq10\t", "\tPASS\t") for r in chr2]
    refused(path, convert(vcf(tmp_path / "nf.vcf.gz", no_filter, drop="FILTER=<ID=q10")), IncompatibleBatchError,
            "filters differ")
    # and the valid batch still extends afterwards
    vczrepo.Repository.open(path).extend(parts[2])


def test_revert_removes_the_last_extend(tmp_path, genome):
    whole_vcf, _ = genome
    rows = records()
    parts = split(whole_vcf, ["chr1:1-250", "chr1:251-5000,chr2:1-300", "chr2:301-4000,chr3"], tmp_path)
    only_first = [r for r in rows if r.startswith("chr1\t")]
    path = tmp_path / "r.vczrepo"
    repo, _ = vczrepo.Repository.init(path, convert(vcf(tmp_path / "a.vcf.gz", only_first[:5], contigs=("chr1",))))
    bodies = [vcf_body(repo.group())]
    arrays = [{k: repo.group()[k][...] for k in repo.group().array_keys()}]
    first = repo.extend(parts[1])  # adds chr2 and chr3 (to the contig table) off a chunk boundary
    assert first.metadata["contigs_added"] == ["chr2", "chr3"]
    bodies.append(vcf_body(repo.group()))
    second = repo.extend(parts[2])
    with pytest.raises(vczrepo.errors.VczRepoError, match="revert the later extends first"):
        repo.revert(first.snapshot_id)
    result = repo.revert(second.snapshot_id)
    assert result.metadata["n_variants_removed"] == second.metadata["n_variants_added"]
    assert vcf_body(repo.group()) == bodies[1]
    assert repo.diff("main~1", "main").variants_added == -second.metadata["n_variants_added"]
    repo.revert(first.snapshot_id)
    root = repo.group()
    assert vcf_body(root) == bodies[0]
    for name, values in arrays[0].items():
        got = root[name][...]
        assert got.shape == values.shape, name
        if values.dtype.kind not in "fOTU":
            assert np.array_equal(got, values), name
    assert repo.check(deep=True).problems == []
    with pytest.raises(vczrepo.errors.VczRepoError, match="reverted already"):
        repo.revert(first.snapshot_id)
    # the shrunk repository extends again, to the same result as before
    again = repo.extend(parts[1])
    assert again.metadata["variant_range"] == first.metadata["variant_range"]
    assert vcf_body(repo.group()) == bodies[1]


def test_extend_from_vcf(tmp_path, genome):
    """A VCF part is converted with the repository's chunking, then extended."""
    whole_vcf, whole = genome
    subprocess.run(["bcftools", "view", "-r", "chr1", "-Oz", "-o", str(tmp_path / "a.vcf.gz"), str(whole_vcf)],
                   check=True)
    subprocess.run(["bcftools", "view", "-r", "chr2,chr3", "-Oz", "-o", str(tmp_path / "b.vcf.gz"), str(whole_vcf)],
                   check=True)
    subprocess.run(["bcftools", "index", "-f", str(tmp_path / "b.vcf.gz")], check=True)
    repo, _ = vczrepo.Repository.init(tmp_path / "r.vczrepo", tmp_path / "a.vcf.gz", variants_chunk_size=VC,
                                      samples_chunk_size=SC)
    repo.extend(tmp_path / "b.vcf.gz")
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    assert_same_arrays(repo.group(), zarr.open_group(str(whole), mode="r"))


@pytest.mark.parametrize(("regions", "site"), [
    (["chr1", "chr2,chr3"], "recompose"),
    (["chr1:1-390", "chr1:391-5000,chr2,chr3"], "copy-encoded"),
    (["chr1", "chr2,chr3"], "before-commit"),
])
def test_a_fault_mid_extend_leaves_the_repository_unchanged(tmp_path, genome, regions, site):
    whole_vcf, whole = genome
    parts = split(whole_vcf, regions, tmp_path)
    path = tmp_path / "r.vczrepo"
    vczrepo.Repository.init(path, parts[0])
    before, body = state(path), vcf_body(vczrepo.Repository.open(path).group())
    seen = []

    class FaultError(Exception):
        pass

    def cut(at: str) -> None:
        seen.append(at)
        if at == site and seen.count(site) == (1 if site == "before-commit" else 2):
            raise FaultError(site)

    with pytest.raises(FaultError):
        vczrepo.Repository.open(path, settings=vczrepo.Settings(checkpoint=cut)).extend(parts[1])
    assert state(path) == before
    repo = vczrepo.Repository.open(path)
    assert vcf_body(repo.group()) == body
    repo.extend(parts[1])  # and it goes through afterwards
    assert vcf_body(repo.group()) == vcf_body(str(whole))


def test_append_and_remove_after_extend(tmp_path, genome):
    """Samples come and go across the extended variant set as across any other."""
    whole_vcf, whole = genome
    parts = split(whole_vcf, ["chr1", "chr2,chr3"], tmp_path)
    five = SAMPLES + ["S5"]
    both = convert(vcf(tmp_path / "five.vcf.gz", records(samples=five), samples=five))
    s5_rows = ["\t".join(r.split("\t")[:9] + r.split("\t")[13:]) for r in records(samples=five)]
    s5 = convert(vcf(tmp_path / "s5.vcf.gz", s5_rows, samples=["S5"]))
    repo, _ = vczrepo.Repository.init(tmp_path / "r.vczrepo", parts[0])
    repo.extend(parts[1])
    repo.append(s5)
    assert vcf_body(repo.group()) == vcf_body(str(both))
    repo.remove(["S5"])
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    repo.purge(["S5"])
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    assert repo.check(deep=True).problems == []


ALLELE_HEADER = """##fileformat=VCFv4.3
##contig=<ID=chr1,length=5000>
##contig=<ID=chr2,length=4000>
##contig=<ID=chr3,length=3000>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
{ad}"""
ALLELE_ROWS = {  # chr2's sites are all biallelic (narrower than chr1's), chr3 has four alleles (wider)
    "chr1": [("100", "A", "G,T", "0.25,0.25", "0/1:5,3,0", "1/2:0,2,2"),
             ("200", "C", "T", "0.5", "0/1:4,4", "0/1:3,3")],
    "chr2": [("100", "A", "G", "0.25", "0/0:6", "0/1:3,3"), ("150", "T", "C", "0.75", "1/1:0,5", "0/1:2,2")],
    "chr3": [("50", "A", "C,G,T", "0.25,0.25,0", "1/2:0,3,3,0", "0/0:6,0,0,0"),
             ("90", "G", "A", "0", "0/0:8", "0/0:7")],
}


def allele_vcf(tmp: Path, name: str, contigs: list[str], ad: bool) -> Path:
    rows = []
    for chrom in contigs:
        for pos, ref, alt, af, *calls in ALLELE_ROWS[chrom]:
            calls = [c if ad else c.split(":")[0] for c in calls]
            rows.append("\t".join([chrom, pos, ".", ref, alt, "30", "PASS", f"DP=9;AF={af}", "GT:AD" if ad else "GT",
                                   *calls]))
    raw = tmp / f"{name}.txt"
    head = ALLELE_HEADER.format(ad='##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Depths">\n' if ad else "")
    raw.write_text(head + "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                                     "S1", "S2"]) + "\n" + "\n".join(rows) + "\n")
    out = tmp / f"{name}.vcf.gz"
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(out), str(raw)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(out)], check=True)
    return convert(out)


def test_parts_with_other_allele_widths_extend_to_the_one_go_conversion(tmp_path):
    """A part with fewer alleles per site is padded; one with more widens the repository's
    per-variant fields (variant_allele, Number=A INFO)."""
    repo, _ = vczrepo.Repository.init(tmp_path / "r", allele_vcf(tmp_path, "p1", ["chr1"], ad=False))
    repo.extend(allele_vcf(tmp_path, "p2", ["chr2"], ad=False))
    repo.extend(allele_vcf(tmp_path, "p3", ["chr3"], ad=False))
    whole = allele_vcf(tmp_path, "whole", ["chr1", "chr2", "chr3"], ad=False)
    assert_same_arrays(repo.group(), zarr.open_group(str(whole), mode="r"))
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    assert repo.check(deep=True).problems == []


def test_call_fields_are_padded_and_widened(tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", allele_vcf(tmp_path, "p1", ["chr1"], ad=True))
    repo.extend(allele_vcf(tmp_path, "p2", ["chr2"], ad=True))  # call_AD narrower: padded
    assert vcf_body(repo.group()) == vcf_body(str(allele_vcf(tmp_path, "w", ["chr1", "chr2"], ad=True)))
    wider = allele_vcf(tmp_path, "p3", ["chr3"], ad=True)
    strict = vczrepo.Repository.open(tmp_path / "r", settings=vczrepo.Settings(widen=False))
    before = state(tmp_path / "r")
    with pytest.raises(IncompatibleBatchError, match=r"field call_AD: the batch has \(4,\) on \(alleles\), "
                                                      r"the repository \(3,\); widening is off"):
        strict.extend(wider)
    assert state(tmp_path / "r") == before
    result = repo.extend(wider)  # call_AD wider: the repository's is widened (every chunk rewritten)
    assert {w["name"] for w in result.metadata["widened"]} >= {"call_AD", "variant_allele"}
    whole = allele_vcf(tmp_path, "w3", ["chr1", "chr2", "chr3"], ad=True)
    assert vcf_body(repo.group()) == vcf_body(str(whole))
    assert repo.check(deep=True).problems == []




def test_an_extend_rewrites_only_the_manifest_splits_it_writes(tmp_path, genome, monkeypatch):
    """Manifests are split along variants: an extend leaves the splits of earlier variant chunks
    the same objects (and a region read loads only the splits it touches)."""
    first, second = split(genome[0], ["chr1:1-390", "chr1:391-5000,chr2:1-330"], tmp_path)

    def kept(per_split: int) -> tuple[int, int]:
        monkeypatch.setattr(storage, "VARIANTS_PER_MANIFEST_SPLIT", per_split)
        repo, _ = vczrepo.Repository.init(tmp_path / f"r{per_split}", first)  # 8 variants: chunks 0-1
        before = {m.id for m in repo.icechunk.list_manifest_files(repo.resolve("main"))}
        repo.extend(second)  # 12 more: chunks 2-4
        after = {m.id for m in repo.icechunk.list_manifest_files(repo.resolve("main"))}
        return len(before & after), len(before)

    (split_kept, split_before), (whole_kept, _) = kept(2), kept(1_000)
    # with splits of 2 variant chunks, chunks 0-1 of every array are a split of their own, left as
    # they were; with one split per sample chunk only arrays without a variants axis are
    assert split_kept >= split_before // 2 > whole_kept, (split_kept, split_before, whole_kept)
