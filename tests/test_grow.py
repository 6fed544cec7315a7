"""append --grow-variants: a wave with new sites grows the repository's variants to the union;
the samples already there are missing at the new sites, as in `bcftools merge -m none` of the waves."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import converted, indexed_vcf, state, vcf_body

import vczrepo
from vczrepo import schema
from vczrepo.cli import main

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")

CONTIGS = ("##contig=<ID=1,length=5000>", "##contig=<ID=2,length=7000>", "##contig=<ID=3,length=900>")
HEADER = """##fileformat=VCFv4.3
{contigs}
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="Quality below 10">
{extra_filter}##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">
##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
"""
WAVE_A = (["A1", "A2", "A3"], [
    "1\t100\trs1\tA\tC\t30\tPASS\tDP=10;AC=1;AN=6\tGT:DP\t0/1:3\t0/0:4\t0/0:5",
    "1\t200\t.\tG\tT,C\t20\tq10\tDP=5;AC=1,1;AN=6\tGT:DP\t1/2:1\t0/0:2\t0/0:3",
    "1\t300\trsA\tC\tT\t.\tPASS\tDP=7;AC=2;AN=6\tGT:DP\t0/1:2\t0/1:2\t0/0:3",
    "1\t400\t.\tT\tA\t40\tPASS\tDP=2;AC=0;AN=4\tGT:DP\t0/0:1\t0/0:1\t./.:.",
    "2\t50\trs9\tT\tA\t50\tPASS\tDP=3;AC=2;AN=6\tGT:DP\t1/1:1\t0/0:1\t0/0:1",
    "2\t80\t.\tG\tA\t10\tPASS\tDP=1;AC=1;AN=6\tGT:DP\t0/0:.\t0/1:1\t0/0:.",
])
WAVE_B = (["B1", "B2"], [
    "1\t100\trs1b\tA\tC\t45\tPASS\tDP=20;AC=1;AN=4\tGT:DP\t0/1:9\t0/0:11",
    "1\t150\trs2\tA\tG\t12\tPASS\tDP=8;AC=2;AN=4\tGT:DP\t1/1:4\t0/0:4",
    "1\t200\t.\tG\tC,T\t35\tPASS\tDP=6;AC=1,0;AN=4\tGT:DP\t0/1:3\t0/0:3",
    "1\t300\t.\tC\tG\t22\tPASS\tDP=3;AC=1;AN=4\tGT:DP\t0/0:1\t0/1:2",
    "1\t500\trs5\tA\tC,G\t9\tq10\tDP=4;AC=1,1;AN=4\tGT:DP\t1/2:2\t0/0:2",
    "1\t600\t.\tA\tC,G,T\t5\tPASS\tDP=1;AC=1,0,0;AN=4\tGT:DP\t0/1:1\t0/0:.",
    "2\t60\t.\tC\tT\t15\tlowDP\tDP=2;AC=1;AN=4\tGT:DP\t0/1:1\t0/0:1",
    "3\t10\trs3\tA\tT\t60\tPASS\tDP=9;AC=2;AN=2\tGT:DP\t1/1:9\t./.:.",
])
VC, SC = 2, 2


def wave(tmp: Path, name: str, samples: list[str], records: list[str], contigs: int, low_dp: bool,
         ad: bool = False) -> Path:
    header = HEADER.format(contigs="\n".join(CONTIGS[:contigs]),
                           extra_filter='##FILTER=<ID=lowDP,Description="Low depth">\n' if low_dp else "")
    if ad:
        header += '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n'
    return indexed_vcf(tmp, name, header, samples, records)


def to_vcz(vcf: Path) -> Path:
    return converted(vcf, VC, SC)


@pytest.fixture
def waves(tmp_path):
    return (wave(tmp_path, "A", *WAVE_A, contigs=2, low_dp=False),
            wave(tmp_path, "B", *WAVE_B, contigs=3, low_dp=True))


def rows(vcf: str) -> dict[tuple, list[str]]:
    """Data lines by (CHROM, POS, REF, sorted ALTs)."""
    out = {}
    for line in vcf.splitlines():
        if line.startswith("#"):
            continue
        r = line.split("\t")
        out[(r[0], int(r[1]), r[3], tuple(sorted(r[4].split(","))))] = r
    return out


def info(row: list[str]) -> dict[str, str]:
    return dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in row[7].split(";"))


def test_grown_repository_equals_bcftools_merge(tmp_path, waves):
    a, b = waves
    vcz_a, vcz_b = to_vcz(a), to_vcz(b)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", vcz_a)
    result = repo.append(vcz_b, grow_variants=True)
    grown = result.metadata["variants_grown"]
    assert grown["n_variants_inserted"] == 6
    assert grown["n_variants"] == 12
    assert grown["contigs_added"] == ["3"]
    assert grown["inserted_at"] == 1
    merged = tmp_path / "merged.vcf.gz"
    subprocess.run(["bcftools", "merge", "-m", "none", "-Oz", "-o", str(merged), str(a), str(b)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(merged)], check=True)
    want, got = rows(vcf_body(str(to_vcz(merged)))), rows(vcf_body(repo.group("main")))
    assert sorted(got) == sorted(want)
    shared = rows(vcf_body(str(vcz_a))).keys() & rows(vcf_body(str(vcz_b))).keys()
    for key, w in want.items():
        g = got[key]
        assert g[8:] == w[8:], key  # FORMAT and every sample's calls (missing where a wave lacks the site)
        assert {k: info(g)[k] for k in ("AC", "AN")} == {k: info(w)[k] for k in ("AC", "AN")}, key
        if key not in shared:  # a site one wave has: its record as that wave wrote it
            assert [g[2], g[5], g[6], info(g)["DP"]] == [w[2], w[5], w[6], info(w)["DP"]], key
    root = repo.group("main")
    assert schema.as_str(root["contig_id"][:]).tolist() == ["1", "2", "3"]
    assert root["contig_length"][:].tolist() == [5000, 7000, 900]
    assert "lowDP" in schema.as_str(root["filter_id"][:]).tolist()
    assert root["variant_allele"].shape[1] == 4  # 1:600 brought a fourth allele
    assert not repo.check().problems


def with_allele_balance(records: list[str]) -> list[str]:
    """The records with a Float FORMAT field AB after DP: a value per call, missing for some."""
    out = []
    for i, record in enumerate(records):
        row = record.split("\t")
        row[8] += ":AB"
        row[9:] = [f"{call}:{'.' if (i + j) % 3 == 0 else f'0.{i + 2 * j + 1}5'}" for j, call in enumerate(row[9:])]
        out.append("\t".join(row))
    return out


def test_grow_keeps_float_format_fields(tmp_path):
    """A Float FORMAT field (AB) at the inserted sites is missing for the samples already there,
    as bcftools merge writes it; the values the waves brought are kept."""
    ab = '##FORMAT=<ID=AB,Number=1,Type=Float,Description="Allele balance">\n'
    parts = []
    for name, (samples, records), contigs, low_dp in (("A", WAVE_A, 2, False), ("B", WAVE_B, 3, True)):
        header = HEADER.format(contigs="\n".join(CONTIGS[:contigs]),
                               extra_filter='##FILTER=<ID=lowDP,Description="Low depth">\n' if low_dp else "")
        parts.append(indexed_vcf(tmp_path, name, header + ab, samples, with_allele_balance(records)))
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(parts[0]))
    assert repo.group()["call_AB"].dtype == np.float32
    repo.append(to_vcz(parts[1]), grow_variants=True)
    merged = tmp_path / "merged.vcf.gz"
    subprocess.run(["bcftools", "merge", "-m", "none", "-Oz", "-o", str(merged), *map(str, parts)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(merged)], check=True)
    want, got = rows(vcf_body(str(to_vcz(merged)))), rows(vcf_body(repo.group("main")))
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        assert got[key][8:] == w[8:], key  # GT:DP:AB of every sample, "." where a wave lacks the site
    ab_values = {c.split(":")[r[8].split(":").index("AB")] for r in want.values() for c in r[9:]}
    assert {".", "0.35", "0.55"} <= ab_values
    root = repo.group("main")
    missing = np.asarray(root["call_AB"][:]).view(np.int32)
    inserted = root["variant_position"][:] == 150  # 1:150 is new: A1-A3 have no AB there
    assert set(missing[inserted][:, :3].ravel().tolist()) == {0x7F800001}
    assert not repo.check(deep=True).problems


def test_region_queries_after_grow(tmp_path, waves):
    a, b = waves
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    repo.append(to_vcz(b), grow_variants=True)
    out = tmp_path / "region.vcf"
    for region, positions in (("1:150-350", ["150", "200", "300", "300"]), ("2", ["50", "60", "80"]),
                              ("3", ["10"])):
        with open(out, "w") as f:
            repo.view("main", regions=region, output=f)
        lines = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
        assert [r[1] for r in lines] == positions, region


def test_dry_run_says_what_it_rewrites_and_changes_nothing(tmp_path, waves):
    a, b = waves
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    before = state(tmp_path / "r")
    batch = to_vcz(b)
    cost = repo.growth(batch)
    assert cost.n_variants == 6
    assert cost.n_variants_inserted == 6
    assert cost.first_inserted.startswith("1:150 A>G")
    assert cost.chunks > 0
    assert cost.stored_bytes > 0
    out = CliRunner().invoke(main, ["append", str(tmp_path / "r"), str(batch), "--grow-variants", "--dry-run",
                                    "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["variants_grown"]["chunks"] == cost.chunks
    assert state(tmp_path / "r") == before
    result = repo.append(batch, grow_variants=True)
    assert result.metadata["variants_grown"]["chunks"] == cost.chunks


def test_late_insertion_leaves_earlier_chunks_alone(tmp_path, waves):
    """Only the chunk rows from the first inserted site on are rewritten."""
    a, _ = waves
    late = wave(tmp_path, "late", ["B1", "B2"], ["2\t90\t.\tA\tG\t5\tPASS\tDP=1;AC=1;AN=4\tGT:DP\t0/1:1\t0/0:1"],
                contigs=2, low_dp=False)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    before = repo.resolve("main")
    repo.append(to_vcz(late), grow_variants=True)
    d = repo.icechunk.diff(from_snapshot_id=before, to_snapshot_id=repo.resolve("main"))
    # the first sample chunk (A1, A2) changes only where variants moved: from the chunk row of
    # the new site (2:90, the seventh variant; chunks of 2 variants) on
    rewritten = {tuple(c)[0] for c in d.updated_chunks["/call_genotype"] if tuple(c)[1] == 0}
    assert rewritten == {3}
    assert repo.group("main")["variant_position"][:].tolist() == [100, 200, 300, 400, 50, 80, 90]


def test_nothing_new_appends_as_normalise_would(tmp_path, waves):
    a, _ = waves
    subset = wave(tmp_path, "sub", ["C1"], ["1\t300\t.\tC\tT\t.\tPASS\tDP=1;AC=1;AN=2\tGT:DP\t0/1:1"],
                  contigs=2, low_dp=False)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    result = repo.append(to_vcz(subset), grow_variants=True)
    assert result.metadata["variants_grown"] == {"n_variants_inserted": 0}
    gt = repo.group("main")["call_genotype"][:, 3]
    assert gt[2].tolist() == [0, 1]
    assert (gt[[0, 1, 3, 4, 5]] == -1).all()


def test_refusals_leave_the_repository_unchanged(tmp_path, waves):
    a, b = waves
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    before = state(tmp_path / "r")
    runner = CliRunner()
    for args, needle in (
        (["--grow-variants", "--normalise", "--allow-new-alleles"], "does not go with --grow-variants"),
    ):
        out = runner.invoke(main, ["append", str(tmp_path / "r"), str(to_vcz(b)), *args])
        assert (out.exit_code, needle in out.output) == (2, True), out.output
    dup = to_vcz(wave(tmp_path, "dup", ["A1"], ["1\t150\t.\tA\tG\t1\tPASS\tDP=1;AC=1;AN=2\tGT:DP\t0/1:1"],
                      contigs=2, low_dp=False))
    # more alleles at a new site than a per-allele call field holds: refused only with --no-widen
    with_ad = wave(tmp_path, "ad", ["A1"], ["1\t100\t.\tA\tC\t1\tPASS\tDP=1;AC=1;AN=2\tGT:DP:AD\t0/1:1:1,1"],
                   contigs=2, low_dp=False, ad=True)
    wide = wave(tmp_path, "wide", ["W1"], ["1\t110\t.\tA\tC,G,T\t1\tPASS\tDP=1;AC=1,0,0;AN=2\tGT:DP:AD\t0/1:1:1,1,0,0"],
                contigs=2, low_dp=False, ad=True)
    vczrepo.Repository.init(tmp_path / "ad", to_vcz(with_ad))
    ad_before = state(tmp_path / "ad")
    out = runner.invoke(main, ["append", str(tmp_path / "ad"), str(to_vcz(wide)), "--grow-variants", "--no-widen"])
    assert out.exit_code == 5, out.output
    assert "field call_AD: the batch has (4,) on (alleles), the repository (2,); widening is off" in out.output
    assert state(tmp_path / "ad") == ad_before
    out = runner.invoke(main, ["append", str(tmp_path / "ad"), str(to_vcz(wide)), "--grow-variants"])
    assert out.exit_code == 0, out.output
    ad = vczrepo.Repository.open(tmp_path / "ad").group()["call_AD"]
    assert ad.shape[2] == 4
    assert ad[1, 1].tolist() == [1, 1, 0, 0]  # W1 at the inserted site
    assert ad[0, 0].tolist() == [1, 1, -2, -2]  # A1's row, padded
    assert vczrepo.Repository.open(tmp_path / "ad").check(deep=True).ok
    out = runner.invoke(main, ["append", str(tmp_path / "r"), str(dup), "--grow-variants"])
    assert out.exit_code != 0
    assert "A1" in out.output
    assert len(out.output.strip().splitlines()) == 1, out.output
    assert state(tmp_path / "r") == before


def test_summaries_stay_true_after_grow_then_remove(tmp_path, waves):
    a, b = waves
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    repo.append(to_vcz(b), grow_variants=True)
    repo.remove(["A2", "B1"])
    root = repo.group("main")
    gt = np.asarray(root["call_genotype"][:])
    live = schema.as_str(root["sample_id"][:]) != ""
    an = (gt[:, live] >= 0).sum((1, 2))
    assert root["variant_AN"][:].tolist() == an.tolist()
    assert not repo.check().problems


def test_history_understands_a_grow(tmp_path, waves):
    """diff counts the inserted sites; revert removes the wave's samples and leaves its sites
    (missing for everyone); purge of a sample appended before the grow rewrites the grow too."""
    a, b = waves
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz(a))
    repo.create_tag("before")
    grown = repo.append(to_vcz(b), grow_variants=True)
    assert repo.diff("before", "main").variants_added == 6
    assert repo.diff("before", "main").samples_added == ["B1", "B2"]
    repo.revert(grown.snapshot_id)
    root = repo.group("main")
    assert vczrepo.Repository.open(tmp_path / "r").samples() == ["A1", "A2", "A3"]
    assert root["variant_position"].shape[0] == 12
    now, was = rows(vcf_body(root)), rows(vcf_body(repo.group("before")))
    assert len(now) == 12
    for key, row in now.items():
        if key in was:
            assert row[8:] == was[key][8:], key
        else:  # an inserted site: no call for any remaining sample
            assert {c.split(":")[0] for c in row[9:]} <= {".", "./."}, key
    purged = repo.purge(["A2"])
    assert purged.rewrite
    repo.gc(now=True)
    for ref in ("before", "main~1", "main"):  # main~1: the grow, rewritten
        assert "A2" not in vczrepo.Repository.open(tmp_path / "r").samples(ref)
    assert not repo.check(deep=True).problems


def test_revert_of_a_remove_after_the_variants_changed(tmp_path):
    """The restored columns follow their sites: rows moved by a grow, sites added since (by a grow
    or an extend) are missing for the restored sample."""
    import zarr
    from vcfgen import write_vcz_direct

    def batch(names, positions):
        gts = np.array([[[(p // 10) % 2, j % 2] for j, _ in enumerate(names)] for p in positions], dtype=np.int8)
        return write_vcz_direct(zarr.storage.MemoryStore(), names, gts, n_variants=len(positions),
                                variants=[("chr20", p, "A", "C") for p in positions], samples_chunk_size=2,
                                variants_chunk_size=3)

    repo, _ = vczrepo.Repository.init(tmp_path / "r", batch(["A", "B"], [100, 110, 120]))
    extended = repo.extend(batch(["A", "B"], [130]))
    removed = repo.remove(["B"])
    repo.revert(extended.snapshot_id)
    repo.append(batch(["C"], [105]), grow_variants=True, align=False)
    repo.extend(batch(["A", "C"], [140]))  # the null column (B) is absent from the part
    repo.revert(removed.snapshot_id)
    root = repo.group()
    assert root["variant_position"][:].tolist() == [100, 105, 110, 120, 140]
    assert root["call_genotype"][:, 1, 0].tolist() == [0, -1, 1, 0, -1]  # B: 100, (105), 110, 120, (140)
    assert (root["call_DP"][:, 1] == -1).tolist() == [False, True, False, False, True]
    assert repo.samples() == ["A", "B", "C"]
    assert not repo.check().problems


def test_unsorted_repository_is_refused_unchanged(tmp_path):
    """Sites can only be inserted into variants sorted by contig and position."""
    import zarr
    from vcfgen import write_vcz_direct

    def batch(names, positions):
        gts = np.zeros((len(positions), len(names), 2), dtype=np.int8)
        return write_vcz_direct(zarr.storage.MemoryStore(), names, gts, n_variants=len(positions),
                                variants=[("chr20", p, "A", "C") for p in positions], samples_chunk_size=2,
                                variants_chunk_size=3)

    repo, _ = vczrepo.Repository.init(tmp_path / "r", batch(["A"], [100, 120, 110]))
    before = state(tmp_path / "r")
    with pytest.raises(vczrepo.errors.IncompatibleBatchError, match="not sorted by contig and position"):
        repo.append(batch(["B"], [105]), grow_variants=True)
    assert state(tmp_path / "r") == before
