"""init --variants-from keeps what bcftools merge keeps; the union then takes its first call fields."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import zarr
from helpers import converted, indexed_vcf, vcf_body

import vczrepo

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None,
                                reason="bcftools not installed (apt-get install bcftools tabix)")

HEADER = """##fileformat=VCFv4.3
##contig=<ID=1,length=5000>
##contig=<ID=2,length=7000>
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="Quality below 10">
##FILTER=<ID=lowDP,Description="Low depth">
##ALT=<ID=DEL,Description="Deletion">
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=END,Number=1,Type=Integer,Description="End position">
##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">
##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
"""
PANEL_A = (["A1", "A2", "A3"], [
    "1\t100\trs1\tA\tC\t30\tPASS\tDP=10;DB;AC=1;AN=6\tGT\t0/1\t0/0\t0/0",
    "1\t200\t.\tG\tT,C\t20\tq10\tDP=5;AC=1,1;AN=6\tGT\t1/2\t0/0\t./.",
    "1\t300\trsA\tC\t<DEL>\t.\tPASS\tEND=500;SVTYPE=DEL;DP=7;AC=1;AN=6\tGT\t0/1\t0/0\t0/0",
    "2\t50\trs9\tT\tA\t50\tPASS\tDP=3;AC=2;AN=6\tGT\t1/1\t0/0\t0/.",
])
PANEL_B = (["B1", "B2"], [
    "1\t100\trs1b\tA\tC\t45\tlowDP\tDP=20;AC=1;AN=4\tGT\t0/1\t0/0",
    "1\t150\trs2\tA\tG\t12\tPASS\tDP=8;DB;AC=2;AN=4\tGT\t1/1\t0/0",
    "1\t200\t.\tG\tC,T\t35\tPASS\tDP=6;AC=1,0;AN=4\tGT\t0/1\t0/0",
    "2\t50\trs9\tT\tA\t.\t.\tDP=4;AC=1;AN=4\tGT\t0/1\t0/0",
])


def panel(tmp: Path, name: str, samples: list[str], records: list[str]) -> Path:
    return indexed_vcf(tmp, name, HEADER, samples, records)


def to_vcz(vcf: Path) -> Path:
    return converted(vcf, 2, 2)


@pytest.fixture
def panels(tmp_path):
    return panel(tmp_path, "A", *PANEL_A), panel(tmp_path, "B", *PANEL_B)


def test_union_keeps_per_variant_data(tmp_path, panels):
    a, b = (to_vcz(p) for p in panels)
    repo, _ = vczrepo.Repository.init(tmp_path / "u", variants_from=[a, b])
    root = repo.group("main")
    assert root["variant_length"][:].tolist() == [1, 1, 1, 201, 1]  # <DEL> with END=500 at 300
    assert root["contig_length"][:].tolist() == [5000, 7000]
    ids = [str(x) for x in root["variant_id"][:]]
    assert ids == ["rs1;rs1b", "rs2", ".", "rsA", "rs9"]
    out = tmp_path / "region.vcf"
    with open(out, "w") as f:
        repo.view("main", regions="1:350-400", output=f)
    assert [line.split("\t")[1] for line in out.read_text().splitlines() if not line.startswith("#")] == ["300"]


def test_union_then_normalised_appends_equal_bcftools_merge(tmp_path, panels):
    """`bcftools merge -m none A B` is the reference, read back through vcztools like the repository."""
    a, b = (to_vcz(p) for p in panels)
    repo, _ = vczrepo.Repository.init(tmp_path / "u", variants_from=[a, b])
    # the first append brings the call fields (the IndexError of issue 17), in the repository's chunking
    repo.append(a, normalise=True, fill_missing_fields=True)
    repo.append(b, normalise=True)
    merged = tmp_path / "merged.vcf.gz"
    subprocess.run(["bcftools", "merge", "-m", "none", "-Oz", "-o", str(merged), *map(str, panels)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(merged)], check=True)
    want = vcf_body(str(to_vcz(merged)))
    got = vcf_body(repo.group("main"))
    assert got == want
    root = repo.group("main")
    assert root["call_genotype"].chunks[:2] == (root["variant_position"].chunks[0], root["sample_id"].chunks[0])
    zarr.open_group(str(a))  # the panels are untouched
