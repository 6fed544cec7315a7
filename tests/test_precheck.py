"""A VCF/BCF batch the repository cannot take is refused from its header, before bio2zarr
converts it (hours at biobank scale), with the error the converted batch would get; and the
conversion gets the handle's progress bars."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zarr
from helpers import state
from vcfgen import HEADER, write_vcf

import vczrepo
from vczrepo import sources
from vczrepo.errors import IncompatibleBatchError, SampleError
from vczrepo.vcfheader import read_header

DATA = Path(vczrepo.__file__).parent / "data"


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if any batch is converted (the refusals below must come first)."""

    def convert(path, *args, **kwargs):
        raise AssertionError(f"{path} was converted before being refused")

    monkeypatch.setattr(sources, "convert_vcf", convert)


@pytest.fixture
def conversions(monkeypatch) -> list[dict]:
    """The arguments of every conversion, which still runs (in this process: the number of
    worker processes asked for is what is recorded)."""
    calls: list[dict] = []
    original = sources.convert_vcf

    def convert(path, out, variants_chunk_size, samples_chunk_size, show_progress=False, workers=0, like=None):
        calls.append({"name": Path(path).name, "show_progress": show_progress, "workers": workers})
        original(path, out, variants_chunk_size, samples_chunk_size, show_progress, like=like)

    monkeypatch.setattr(sources, "convert_vcf", convert)
    return calls


@pytest.mark.parametrize("form", ["v", "z", "b", "u"])
def test_header_gives_the_samples_and_contigs_bio2zarr_converts(tmp_path, form):
    """Plain, BGZF-compressed VCF, BCF and uncompressed BCF (bcftools -O v|z|b|u)."""
    from bio2zarr import vcf as b2z_vcf

    batch = tmp_path / f"batch.{'bcf' if form in 'bu' else 'vcf.gz' if form == 'z' else 'vcf'}"
    subprocess.run(["bcftools", "view", f"-O{form}", "-o", str(batch),
                    str(write_vcf(tmp_path / "text.vcf", ["N1", "N2"]))], check=True)
    b2z_vcf.convert([str(batch)], str(tmp_path / "batch.vcz"), zarr_format=3)
    vcz = zarr.open_group(str(tmp_path / "batch.vcz"), mode="r")
    header = read_header(batch)
    assert header.samples == list(vcz["sample_id"][:]) == ["N1", "N2"]
    assert header.contigs == list(vcz["contig_id"][:]) == ["chr20", "chr21"]


def test_header_without_contig_lines_proves_no_contigs(data):
    assert read_header(data / "sample.vcf.gz").contigs is None  # bio2zarr takes them from the index


def test_unreadable_header_is_a_source_error(tmp_path):
    (tmp_path / "text.vcf").write_text("chr1\t1\t.\tA\tC\n")
    with pytest.raises(vczrepo.errors.SourceError, match="no #CHROM header line"):
        read_header(tmp_path / "text.vcf")
    (tmp_path / "broken.vcf.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(vczrepo.errors.SourceError, match="cannot read the VCF header"):
        read_header(tmp_path / "broken.vcf.gz")


@pytest.mark.parametrize(("samples", "message"), [
    (["N1", "N2", "N1"], "duplicate sample id(s) in batch: N1"),
    (["N1", "N2 "], "batch sample 1 ('N2 ') has leading or trailing whitespace: VCF cannot carry this id"),
])
def test_init_refuses_bad_sample_ids_before_converting(tmp_path, no_conversion, samples, message):
    batch = write_vcf(tmp_path / "bad.vcf", samples)
    with pytest.raises(SampleError) as info:
        vczrepo.Repository.init(tmp_path / "r", batch)
    assert str(info.value) == message
    assert not (tmp_path / "r").exists()


def _other_contigs(tmp_path: Path) -> Path:
    """A batch like the repository's but whose header declares one contig more."""
    vcf = write_vcf(tmp_path / "contigs.vcf", ["N9"])
    vcf.write_text(vcf.read_text().replace(HEADER, HEADER + "##contig=<ID=chr22,length=100000>\n"))
    return vcf


APPEND_REFUSALS = {
    "samples already there": (lambda t: write_vcf(t / "again.vcf", ["N3", "S2", "S1"]), SampleError,
                              "sample(s) already in the repository: S1, S2"),
    "duplicate": (lambda t: write_vcf(t / "dup.vcf", ["N3", "N3"]), SampleError,
                  "duplicate sample id(s) in batch: N3"),
    "no samples": (lambda t: DATA / "sample-variants.vcf.gz", SampleError, "batch has no samples"),
    "contigs": (_other_contigs, IncompatibleBatchError,
                "contigs differ: repository has 2 (chr20, chr21), batch has 3 (chr20, chr21, chr22)"),
}


@pytest.fixture
def repo_path(tmp_path) -> Path:
    path = tmp_path / "r"
    vczrepo.Repository.init(path, write_vcf(tmp_path / "base.vcf", ["S1", "S2"]))
    vczrepo.Repository.open(path).create_tag("t1")
    return path


@pytest.mark.parametrize("dry_run", [False, True], ids=["append", "dry-run"])
@pytest.mark.parametrize("case", list(APPEND_REFUSALS))
def test_append_refuses_from_the_header_before_converting(tmp_path, repo_path, no_conversion, case, dry_run):
    make, error, message = APPEND_REFUSALS[case]
    batch = make(tmp_path)
    before = state(repo_path)
    repo = vczrepo.Repository.open(repo_path)
    with pytest.raises(error) as info:
        repo.plan_append(batch) if dry_run else repo.append(batch)
    assert str(info.value) == message
    assert state(repo_path) == before


def test_converted_batch_gets_the_same_refusal(tmp_path, repo_path):
    """The header checks are the post-conversion checks: same error either way (but for a
    sample id given twice: htslib cannot read such a VCF, so only the header check names it)."""
    for case, (make, error, message) in APPEND_REFUSALS.items():
        if case == "duplicate":
            continue
        vcz = tmp_path / "converted.vcz"
        shutil.rmtree(vcz, ignore_errors=True)
        sources.convert_vcf(make(tmp_path), vcz, None, None)
        with pytest.raises(error) as info:
            vczrepo.Repository.open(repo_path).append(vcz)
        assert str(info.value) == message


def test_contigs_are_not_prechecked_where_the_batch_may_differ(tmp_path, repo_path, conversions):
    """--normalise and --grow-variants accept other contigs (only variants on them matter):
    the header proves nothing, so the batch is converted and appended."""
    repo = vczrepo.Repository.open(repo_path)
    repo.append(_other_contigs(tmp_path), normalise=True)
    assert [c["name"] for c in conversions] == ["contigs.vcf"]
    assert repo.samples() == ["S1", "S2", "N9"]


def test_extend_refuses_other_samples_before_converting(tmp_path, repo_path, no_conversion):
    batch = write_vcf(tmp_path / "more.vcf", ["S1", "S3"], variants=[("chr21", 50, "A", "C")])
    before = state(repo_path)
    with pytest.raises(SampleError, match="extend needs the repository's samples: not in repository: S3; "
                                          "missing from batch: S2"):
        vczrepo.Repository.open(repo_path).extend(batch)
    assert state(repo_path) == before


def test_cli_refuses_a_batch_appended_twice_before_converting(tmp_path, data):
    """As a user meets it: the same VCF appended twice. The copy has no index, so converting it
    would fail ("cannot convert VCF … index it"): the error seen is the header check's."""
    repo = tmp_path / "cohort.vczrepo"
    vczrepo.Repository.init(repo, data / "sample-part1.vcf.gz")
    unindexed = tmp_path / "sample-part1.vcf.gz"
    shutil.copy(data / "sample-part1.vcf.gz", unindexed)
    before = state(repo)
    result = subprocess.run([sys.executable, "-m", "vczrepo", "append", str(repo), str(unindexed)],
                            capture_output=True, text=True)
    assert result.returncode == SampleError.exit_code, result.stderr
    assert result.stderr.strip().endswith("error: sample(s) already in the repository: NA00001, NA00002")
    assert len(result.stderr.strip().splitlines()) == 1
    assert state(repo) == before


def test_init_converts_with_progress_bars(tmp_path, data, capfd):
    """`init` from a VCF shows bio2zarr's bars when progress is on, as `append` does."""
    vczrepo.Repository.init(tmp_path / "r", data / "sample-part1.vcf.gz",
                            settings=vczrepo.Settings(progress=True))
    err = capfd.readouterr().err
    assert "Explode" in err, err
    assert "Encode" in err, err


@pytest.mark.parametrize(("progress", "workers", "processes"), [(False, 1, 0), (True, 3, 3)])
def test_every_conversion_gets_the_handles_progress_and_workers(tmp_path, conversions, progress, workers,
                                                                 processes):
    """init, append and extend convert with the handle's progress setting and, with several
    workers, as many conversion processes."""
    settings = vczrepo.Settings(progress=progress, workers=workers)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", write_vcf(tmp_path / "a.vcf", ["S1"]), settings=settings)
    repo.extend(write_vcf(tmp_path / "b.vcf", ["S1"], variants=[("chr21", 50, "A", "C")]))
    assert conversions == [{"name": name, "show_progress": progress, "workers": processes}
                           for name in ("a.vcf", "b.vcf")]
