"""Batch validation: batches that would poison a repository are refused with one typed line,
and the repository is left unchanged (refs, log, vcztools output)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from bio2zarr import vcf as b2z_vcf
from helpers import state, vcf_body
from vcfgen import genotypes, make_vcz, sites, vcf_text, write_vcf, write_vcz_direct

import vczrepo
from vczrepo import validate
from vczrepo.errors import IncompatibleBatchError, SampleError, SourceError, VczRepoError

NAMES = ["S1", "S2", "S3"]


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, make_vcz(tmp_path, "base", NAMES, samples_chunk_size=2, variants_chunk_size=5))
    vczrepo.Repository.open(path).create_tag("t1")
    return path


def _renamed(tmp_path, name: str, ids: list[str]):
    """A bio2zarr batch whose sample ids are then overwritten (VCF text could not carry them)."""
    batch = make_vcz(tmp_path, name, [f"N{i}" for i in range(len(ids))], samples_chunk_size=2,
                     variants_chunk_size=5)
    zarr.open_group(str(batch), mode="r+")["sample_id"][:] = np.array(ids, dtype=object)
    return batch


def _unfinished_conversion(tmp_path):
    """bio2zarr cut short while finalising: every array but call_genotype moved out of its work
    directory (finalise moves each array whole, then deletes wip/)."""
    from bio2zarr import vcz

    vcf = write_vcf(tmp_path / "cut.vcf", ["N1", "N2"])
    icf, out = tmp_path / "cut.icf", tmp_path / "cut.vcz"
    b2z_vcf.explode(str(icf), [str(vcf)], worker_processes=0)
    b2z_vcf.encode_init(str(icf), str(out), 1, variants_chunk_size=5, samples_chunk_size=2, zarr_format=3,
                        worker_processes=0)
    b2z_vcf.encode_partition(str(out), 0)
    writer = vcz.VcfZarrWriter(b2z_vcf.IntermediateColumnarFormat, out, zarr_format=3)
    writer.load_metadata()
    for field in writer.schema.fields:
        if field.name != "call_genotype":
            writer.finalise_array(field.name)
    assert (out / "wip").exists()
    assert not (out / "call_genotype").exists()
    return out


def _vcf_vcz(tmp_path, name, samples, gts, missing=()):
    """bio2zarr output of generated VCF text, with some calls written as ./."""
    text = vcf_text(samples, sites(len(gts)), gts)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#CHROM"))
    for v, s in missing:
        row = lines[header + 1 + v].split("\t")
        row[9 + s] = "./." + row[9 + s][3:]
        lines[header + 1 + v] = "\t".join(row)
    (tmp_path / f"{name}.vcf").write_text("\n".join(lines) + "\n")
    out = tmp_path / f"{name}.vcz"
    b2z_vcf.convert([str(tmp_path / f"{name}.vcf")], str(out), samples_chunk_size=2, variants_chunk_size=5,
                    zarr_format=3)
    return out


def _masked_chunk_gone(tmp_path):
    gts = genotypes(["N1", "N2"], 12, 3)
    batch = _vcf_vcz(tmp_path, "masked", ["N1", "N2"], gts, missing=[(6, 0)])
    assert (batch / "call_genotype_mask" / "c" / "1" / "0" / "0").exists()
    (batch / "call_genotype" / "c" / "1" / "0" / "0").unlink()
    return batch


def _call_dims(tmp_path):
    root = write_vcz_direct(tmp_path / "dims.vcz", ["N1", "N2"], genotypes(["N1", "N2"], 12, 0), n_variants=12,
                            samples_chunk_size=2, variants_chunk_size=5)
    g = zarr.open_group(str(root), mode="r+")
    a = g.create_array("call_per_sample", shape=(2,), dtype="i4", chunks=(2,), dimension_names=["samples"])
    a[:] = 1
    return root


REFUSED = {
    "tab in id": (lambda t: _renamed(t, "tab", ["N\t1", "N2"]), SampleError, "contains control character '\\t'"),
    "newline in id": (lambda t: _renamed(t, "nl", ["N1", "N\n2"]), SampleError, "contains control character '\\n'"),
    "control char": (lambda t: _renamed(t, "bel", ["N\x071", "N2"]), SampleError, "control character '\\x07'"),
    "leading space": (lambda t: _renamed(t, "lead", [" N1", "N2"]), SampleError, "leading or trailing whitespace"),
    "trailing space": (lambda t: _renamed(t, "trail", ["N1", "N2 "]), SampleError, "leading or trailing whitespace"),
    "empty id": (lambda t: _renamed(t, "empty", ["N1", ""]), SampleError, "is empty"),
    "unfinished conversion": (_unfinished_conversion, SourceError,
                              "its bio2zarr conversion did not finish (wip/ is still there)"),
    "genotype chunk under mask": (_masked_chunk_gone, SourceError,
                                  "call_genotype is missing chunk(s) 1/0/0 where call_genotype_mask marks"),
    "call dims": (_call_dims, IncompatibleBatchError,
                  "field call_per_sample: dimensions ('samples',) are not (variants, samples, …)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_batch_is_refused_and_changes_nothing(repo_path, tmp_path, case):
    make, error, message = REFUSED[case]
    batch = make(tmp_path)
    before, body = state(repo_path), vcf_body(vczrepo.Repository.open(repo_path).group("main"))
    with pytest.raises(error) as caught:
        vczrepo.Repository.open(repo_path).append(batch, fill_missing_fields=True)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert state(repo_path) == before
    assert vcf_body(vczrepo.Repository.open(repo_path).group("main")) == body


@pytest.mark.parametrize("case", ["tab in id", "call dims", "unfinished conversion"])
def test_bad_batch_is_refused_at_init(tmp_path, case):
    make, error, message = REFUSED[case]
    with pytest.raises(error, match=None) as caught:
        vczrepo.Repository.init(tmp_path / "new", make(tmp_path))
    assert message in str(caught.value)
    assert isinstance(caught.value, VczRepoError)


def test_bio2zarr_omits_all_fill_chunks_and_such_batches_append(repo_path, tmp_path):
    """bio2zarr leaves out chunks holding only the fill value: call_genotype chunks of 0/0
    calls, mask chunks with nothing missing. Such batches are valid and read back exactly."""
    gts = genotypes(["N1", "N2"], 12, 5)
    gts[5:10] = 0  # variant chunk 1: all 0/0
    batch = _vcf_vcz(tmp_path, "homref", ["N1", "N2"], gts, missing=[(0, 1)])
    assert not (batch / "call_genotype" / "c" / "1").exists()
    assert not (batch / "call_genotype_mask" / "c" / "1").exists()
    assert (batch / "call_genotype_mask" / "c" / "0").exists()
    repo = vczrepo.Repository.open(repo_path)
    repo.append(batch)
    assert vcf_body(repo.group("main"), ["N1", "N2"]) == vcf_body(zarr.open_group(str(batch), mode="r"))


CHRM = """##fileformat=VCFv4.3
##contig=<ID=chrM,length=16569>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
"""
CHRM_SITES = [(73, "A", "G"), (150, "C", "T"), (263, "A", "G"), (750, "A", "G"), (1438, "A", "G"),
              (2706, "A", "G"), (4769, "A", "G")]


def chrm_vcf(tmp_path, name: str, samples: list[str], calls) -> object:
    from helpers import indexed_vcf

    records = ["\t".join(["chrM", str(pos), ".", ref, alt, ".", "PASS", ".", "GT:DP",
                          *(f"{calls(k, j)}:{20 + j}" for j in range(len(samples)))])
               for k, (pos, ref, alt) in enumerate(CHRM_SITES)]
    return indexed_vcf(tmp_path, name, CHRM, samples, records)


def test_an_all_hom_ref_batch_inits_and_appends(tmp_path, cli):
    """chrM of 3 samples, every call 0/0: bio2zarr stores no call_genotype chunk (all are the fill
    value 0). The batch is valid: it inits a repository and appends to one, as VCF and as VCZ,
    and reads back as bcftools reads the files."""
    import subprocess

    from helpers import converted

    fmt = r"%CHROM\t%POS\t%REF\t%ALT[\t%GT:%DP]\n"
    homref = chrm_vcf(tmp_path, "homref", ["M1", "M2", "M3"], lambda k, j: "0/0")
    other = chrm_vcf(tmp_path, "other", ["O1", "O2"], lambda k, j: ["0/1", "1/1", "./.", "0/0"][(k + j) % 4])
    vcz = converted(homref, 3, 2)
    assert not any((vcz / "call_genotype").rglob("c/*"))  # no chunk stored at all

    def bcftools_query(*vcfs) -> str:
        if len(vcfs) > 1:
            merged = tmp_path / "merged.vcf.gz"
            subprocess.run(["bcftools", "merge", "-m", "none", "-Oz", "-o", str(merged), *map(str, vcfs)], check=True)
            vcfs = (merged,)
        return subprocess.run(["bcftools", "query", "-f", fmt, str(vcfs[0])], check=True, capture_output=True,
                              text=True).stdout

    for source in (homref, vcz):
        path = tmp_path / f"init-{source.name}"
        vczrepo.Repository.init(path, source)
        assert cli("query", path, "-f", fmt).stdout == bcftools_query(homref)
        appended = tmp_path / f"append-{source.name}"
        repo, _ = vczrepo.Repository.init(appended, other)
        repo.append(source)
        assert cli("query", appended, "-f", fmt).stdout == bcftools_query(other, homref)
        assert repo.check(deep=True).problems == []


def test_dot_and_empty_alleles_are_both_missing(repo_path, tmp_path):
    """vcztools reads "." as no allele; bio2zarr pads with "": a batch using "." for padding
    has the same variants."""
    batch = make_vcz(tmp_path, "dots", ["N1"], samples_chunk_size=2, variants_chunk_size=5)
    g = zarr.open_group(str(batch), mode="r+")
    alleles = np.array(g["variant_allele"][:].tolist(), dtype=object)
    assert (alleles == "").any()
    alleles[alleles == ""] = "."
    g["variant_allele"][:] = alleles
    repo = vczrepo.Repository.open(repo_path)
    repo.append(batch)
    assert "N1" in repo.samples("main")
    from vczrepo.ops.normalise import Variants

    assert Variants.read(g).alts == Variants.read(repo.group("main")).alts


@pytest.mark.parametrize("name", ["S1", "sample 1", "NA12878", "ü-ñ", "a.b_c-d"])
def test_ordinary_ids_pass(name):
    assert validate.sample_id_problem(name) is None
