"""Batches from panels with different variant sets share one repository (init --variants-from,
append --normalise), compared with the same data converted whole by bio2zarr."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import zarr
from bio2zarr import vcf as b2z_vcf
from helpers import state, vcf_body, without_info

import vczrepo

HEADER = """##fileformat=VCFv4.3
##contig=<ID=chr20,length=100000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
"""
# (position, REF, ALTs): a multi-allelic site and its split representation included
SITES = [(100, "A", ["C"]), (110, "G", ["A", "T"]), (120, "T", ["C"]), (130, "C", ["G"]),
         (140, "A", ["G", "T"]), (150, "G", ["C"])]


def _gt(a: int, b: int) -> str:
    return f"{'.' if a < 0 else a}|{'.' if b < 0 else b}"


def _write(tmp, name, samples, rows, seed):
    """rows: (pos, ref, alts, allele order) — genotypes drawn in the *canonical* order of SITES,
    then written with the row's ALT order, so the same sample has the same calls everywhere."""
    lines = [HEADER.rstrip("\n"), "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                                             "FORMAT", *samples])]
    for pos, ref, alts in rows:
        calls = []
        for s in samples:
            g = _calls(s, pos, seed)
            canonical = dict(SITES_BY_POS[pos])
            names = [ref, *canonical["alts"]]
            calls.append(_gt(*[-1 if x < 0 else [ref, *alts].index(names[x]) if names[x] in [ref, *alts] else 0
                               for x in g]))
        lines.append("\t".join(["chr20", str(pos), ".", ref, ",".join(alts), ".", "PASS", ".", "GT", *calls]))
    path = tmp / f"{name}.vcf"
    path.write_text("\n".join(lines) + "\n")
    out = tmp / f"{name}.vcz"
    b2z_vcf.convert([str(path)], str(out), zarr_format=3, samples_chunk_size=2, variants_chunk_size=4)
    return out


SITES_BY_POS = {p: {"ref": r, "alts": a} for p, r, a in SITES}


def _calls(sample: str, pos: int, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(zlib.crc32(f"{sample}:{pos}:{seed}".encode()))
    n = 1 + len(SITES_BY_POS[pos]["alts"])
    return int(rng.integers(0, n)), int(rng.integers(0, n))


def _without_filter(vcf: str) -> str:
    return "\n".join("\t".join(r.split("\t")[:6] + r.split("\t")[7:]) for r in vcf.splitlines())


@pytest.fixture
def panels(tmp_path):
    a = _write(tmp_path, "a", ["A1", "A2", "A3"], [(p, r, al) for p, r, al in SITES if p != 150], 0)
    b_rows = [(100, "A", ["C"]), (110, "G", ["T", "A"]), (130, "C", ["G"]), (150, "G", ["C"])]
    b = _write(tmp_path, "b", ["B1", "B2"], b_rows, 0)
    return a, b


def test_init_variants_from_then_normalised_appends_equal_whole_conversion(cli, tmp_path, panels):
    a, b = panels
    repo = tmp_path / "r"
    out = cli("init", repo, "--variants-from", a, b).output
    assert "6 variants from 2 VCZs" in out
    assert vczrepo.Repository.open(repo).samples() == []
    result = cli("append", repo, a, ok=False)
    assert result.exit_code == 5  # different variant set: needs --normalise
    cli("append", repo, a, "--normalise")
    cli("append", repo, b, "--normalise", "-m", "panel b")
    # the same calls written once for the union of sites; B's calls missing where panel B has no site
    names = ["A1", "A2", "A3", "B1", "B2"]
    lines = [HEADER.rstrip("\n"), "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                                             "FORMAT", *names])]
    b_sites = {100, 110, 130, 150}
    for pos, ref, alts in SITES:
        calls = [_gt(*_calls(s, pos, 0)) if (s[0] == "A" and pos != 150) or (s[0] == "B" and pos in b_sites)
                 else "./." for s in names]
        lines.append("\t".join(["chr20", str(pos), ".", ref, ",".join(alts), ".", ".", ".", "GT", *calls]))
    (tmp_path / "whole.vcf").write_text("\n".join(lines) + "\n")
    b2z_vcf.convert([str(tmp_path / "whole.vcf")], str(tmp_path / "whole.vcz"), zarr_format=3)
    got = without_info(vcf_body(vczrepo.open_group(repo)))
    want = without_info(vcf_body(tmp_path / "whole.vcz"))
    assert _without_filter(got) == _without_filter(want)  # the union store has no FILTER values
    meta = vczrepo.Repository.open(repo).log()[0].metadata
    assert meta["normalised"]["n_variants_missing_from_batch"] == 2
    assert meta["normalised"]["n_alleles_remapped"] == 1
    assert vczrepo.Repository.open(repo).check().ok


def test_batch_variants_missing_from_repository_are_listed(cli, tmp_path, panels):
    a, _ = panels
    repo = tmp_path / "r"
    cli("init", repo, a)
    extra = _write(tmp_path, "c", ["C1"], [(100, "A", ["C"]), (150, "G", ["C"])], 0)
    before = state(repo)
    result = cli("append", repo, extra, "--normalise", ok=False)
    assert result.exit_code == 5
    assert "batch variants not in the repository: chr20:150 G>C" in result.stderr
    assert state(repo) == before


def test_new_alleles_are_added_when_allowed(cli, tmp_path, panels):
    a, _ = panels
    repo = tmp_path / "r"
    cli("init", repo, a)
    newer = _write(tmp_path, "n", ["N1"], [(120, "T", ["C", "G"])], 0)
    before = state(repo)
    result = cli("append", repo, newer, "--normalise", ok=False)
    assert result.exit_code == 5
    assert "--allow-new-alleles" in result.stderr
    assert state(repo) == before
    cli("append", repo, newer, "--normalise", "--allow-new-alleles")
    root = vczrepo.open_group(repo)
    alleles = [[x for x in row if x] for row in root["variant_allele"][:].tolist()]
    assert alleles[2] == ["T", "C", "G"]
    assert alleles[0] == ["A", "C"]
    old = vczrepo.open_group(repo, vczrepo.Repository.open(repo).log()[1].id)
    np.testing.assert_array_equal(root["call_genotype"][:, :3], old["call_genotype"][:])  # still valid
    assert vczrepo.Repository.open(repo).log()[0].metadata["normalised"]["new_alleles"] == {"2": ["G"]}


def test_normalise_command_writes_a_plain_vcz(cli, tmp_path, panels):
    a, b = panels
    repo = tmp_path / "r"
    cli("init", repo, "--variants-from", a, b)
    out = tmp_path / "b-normalised.vcz"
    text = cli("normalise", b, "--like", repo, out).output
    assert "2 variants missing from the batch, 1 remapped" in text
    cli("append", repo, out)  # already on the repository's variants: a plain append
    assert vczrepo.Repository.open(repo).samples() == ["B1", "B2"]


def test_split_multiallelic_records_are_their_own_variants(cli, tmp_path, panels):
    a, _ = panels
    split = _write(tmp_path, "split", ["C1", "C2"], [(140, "A", ["G"]), (140, "A", ["T"])], 1)
    repo = tmp_path / "r"
    cli("init", repo, "--variants-from", a, split)
    cli("append", repo, a, "--normalise")
    cli("append", repo, split, "--normalise")
    root = vczrepo.open_group(repo)
    alleles = [tuple(x for x in row if x) for row in root["variant_allele"][:].tolist()]
    at_140 = [i for i, p in enumerate(root["variant_position"][:]) if p == 140]
    assert [alleles[i] for i in at_140] == [("A", "G"), ("A", "G", "T"), ("A", "T")]
    gt = root["call_genotype"][:][:, root["sample_id"][:] != ""]  # without padding columns
    merged, only_g, only_t = at_140[1], at_140[0], at_140[2]
    assert (gt[[only_g, only_t], :3] == -1).all()  # panel A samples: no split records
    assert (gt[merged, 3:] == -1).all()  # panel C samples: no merged record
    np.testing.assert_array_equal(gt[[only_g, only_t], 3:], zarr.open_group(str(split))["call_genotype"][:])


def test_contigs_a_batch_header_only_declares_do_not_block_normalise():
    from vczrepo.errors import IncompatibleBatchError
    from vczrepo.ops.normalise import Variants, map_variants

    store = Variants(["chr20", "chr21"], [("chr20", 10, "A"), ("chr21", 5, "G")], [["C"], ["T"]])
    batch = Variants(["chr20", "chr21", "chrX", "chrY"], [("chr21", 5, "G")], [["T"]])  # X, Y: header only
    assert map_variants(store, batch, allow_new_alleles=False).target.tolist() == [1]
    with pytest.raises(IncompatibleBatchError, match="contigs not in the repository: chrX"):
        map_variants(store, Variants(["chrX"], [("chrX", 1, "A")], [["C"]]), allow_new_alleles=False)
