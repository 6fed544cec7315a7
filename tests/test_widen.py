"""retype: a repository array rewritten wider (dtype, trailing axes), chunk by chunk, in one commit,
values kept, new entries padded, checksums and codecs kept; never narrower."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from helpers import indexed_vcf, state, vcf_body

import vczrepo
from vczrepo import checksums, chunks, schema, widen
from vczrepo.errors import IncompatibleBatchError

HEADER = """##fileformat=VCFv4.3
##contig=<ID=chr20,length=100000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=AD,Number=.,Type=Integer,Description="Allelic depths">
##FORMAT=<ID=AB,Number=1,Type=Float,Description="Allele balance">
##FORMAT=<ID=XF,Number=2,Type=Float,Description="Two floats">
"""
SAMPLES = [f"S{i}" for i in range(5)]


def _records() -> list[str]:
    rows = []
    for i in range(9):
        calls = []
        for j in range(len(SAMPLES)):
            gt = "0/0" if i < 3 else f"{(i + j) % 2}|{j % 2}"  # the first variant chunk all 0/0: not stored
            ab = "." if (i + j) % 4 == 0 else f"{0.25 * ((i + j) % 4):.2f}"
            calls.append(f"{gt}:{10 * i + j}:{i},{j}:{ab}:1.5,.")
        rows.append(f"chr20\t{100 + 10 * i}\t.\tA\tC\t.\tPASS\t.\tGT:DP:AD:AB:XF\t" + "\t".join(calls))
    return rows


@pytest.fixture
def repo(tmp_path) -> vczrepo.Repository:
    from bio2zarr import vcf as b2z_vcf

    vcf = indexed_vcf(tmp_path, "b", HEADER, SAMPLES, _records())
    b2z_vcf.convert([str(vcf)], str(tmp_path / "b.vcz"), variants_chunk_size=3, samples_chunk_size=2,
                    zarr_format=3)
    return vczrepo.Repository.init(tmp_path / "r", tmp_path / "b.vcz")[0]


def _retype(repo: vczrepo.Repository, name: str, **target) -> widen.Widening:
    done = []

    def apply(root: zarr.Group) -> dict:
        done.append(widen.retype(repo.pipe, root, name, **target))
        return {"widened": [done[0].to_json()]}

    repo._commit("main", "test-widen", f"widen {name}", apply)
    return done[0]


def _values(repo, name):
    return np.asarray(schema.array(repo.group(), name)[:])


def test_a_wider_dtype_keeps_values_dimensions_chunking_codecs_and_checksums(repo):
    before = repo.group()
    dp_before, vcf_before = np.asarray(before["call_DP"][:]), vcf_body(before)
    old = schema.array(before, "call_DP")
    planned = widen.plan(before, "call_DP", dtype="int16")
    done = _retype(repo, "call_DP", dtype="int16")
    dp = schema.array(repo.group(), "call_DP")
    assert dp.dtype == np.int16
    assert dp.shape == old.shape
    assert dp.chunks == old.chunks
    np.testing.assert_array_equal(dp[:], dp_before)
    assert schema.dims(dp) == schema.dims(old)
    assert dict(dp.attrs) == dict(old.attrs)
    assert checksums.has_checksum(dp)
    blosc = [c for c in dp.metadata.codecs if type(c).__name__ == "BloscCodec"]
    assert blosc
    assert blosc[0].typesize == 2
    assert vcf_body(repo.group()) == vcf_before
    assert repo.check(deep=True).ok
    assert (done.old_dtype, done.new_dtype, done.chunks) == ("int8", "int16", planned.chunks)
    assert done.chunks == old.nchunks_initialized
    assert done.bytes_written > 0
    assert planned.bytes_read == done.bytes_read > 0
    assert planned.bytes_written is None
    assert repo.log()[0].metadata["widened"][0]["new_dtype"] == "int16"


def test_a_wider_trailing_axis_pads_new_entries_with_the_fill_value(repo):
    before = repo.group()
    ad, xf, gt = (np.asarray(before[n][:]) for n in ("call_AD", "call_XF", "call_genotype"))
    vcf_before = vcf_body(before)
    _retype(repo, "call_AD", trailing=(4,))
    _retype(repo, "call_XF", trailing=(3,))
    done = _retype(repo, "call_genotype", trailing=(3,))
    _retype(repo, "call_genotype_mask", trailing=(3,))
    root = repo.group()
    new_ad = np.asarray(root["call_AD"][:])
    assert new_ad.shape == (*ad.shape[:2], 4)
    assert root["call_AD"].chunks[2] == 4
    np.testing.assert_array_equal(new_ad[..., :2], ad)
    assert (new_ad[..., 2:] == schema.INT_FILL).all()
    new_xf = np.asarray(root["call_XF"][:])
    np.testing.assert_array_equal(new_xf[..., :2].view(np.int32), xf.view(np.int32))  # NaN payloads kept
    assert (new_xf[..., 2].view(np.int32) == schema.FLOAT32_FILL.view(np.int32)).all()
    new_gt = np.asarray(root["call_genotype"][:])
    np.testing.assert_array_equal(new_gt[..., :2], gt)
    assert (new_gt[..., 2] == schema.INT_FILL).all()
    assert not np.asarray(before["call_genotype"][:3]).any()  # all 0/0: bio2zarr stored none of these chunks
    assert done.chunks == root["call_genotype"].nchunks  # ... which now hold padding
    np.testing.assert_array_equal(root["call_genotype_mask"][:], new_gt < 0)  # the mask marks the padding
    assert vcf_body(root) == vcf_before  # vcztools prints the same calls
    report = repo.check(deep=True)
    assert report.ok, report.to_json()


def test_only_stored_chunks_are_rewritten_for_a_dtype_and_each_task_reads_one_chunk(repo, monkeypatch):
    reads = []
    original = chunks.read_region
    monkeypatch.setattr(chunks, "read_region",
                        lambda src, region, *a: reads.append(region) or original(src, region, *a))
    gt = schema.array(repo.group(), "call_genotype")
    stored = gt.nchunks_initialized
    done = _retype(repo, "call_genotype", dtype="int16")
    assert done.chunks == stored < gt.nchunks
    assert len(reads) == stored
    assert all(r.stop - r.start <= c for region in reads for r, c in zip(region, gt.chunks, strict=True))
    np.testing.assert_array_equal(_values(repo, "call_genotype")[:3], 0)


@pytest.mark.parametrize(("name", "target", "why"), [
    ("call_DP", {"dtype": "int16", "then": "int8"}, "refusing to narrow call_DP from int16 to int8"),
    ("call_AD", {"trailing": (1,)}, "refusing to narrow call_AD"),
    ("call_AD", {"trailing": (2, 2)}, "trailing axes"),
    ("call_AB", {"dtype": "float64"}, "only integers are widened"),
    ("call_DP", {"dtype": "float32"}, "only integers are widened"),
    ("sample_id", {"dtype": "int8"}, "only integers"),
])
def test_narrowing_or_changing_kind_is_refused_and_nothing_is_committed(repo, name, target, why):
    if "then" in target:  # widened first, then asked to narrow back
        _retype(repo, name, dtype=target["dtype"])
        target = {"dtype": target["then"]}
    before = state(repo.location.path)
    with pytest.raises(IncompatibleBatchError, match=why):
        _retype(repo, name, **target)
    assert state(repo.location.path) == before


def test_retype_to_the_same_type_writes_nothing(repo):
    root = repo.group()
    assert widen.plan(root, "call_DP", dtype="int8").chunks == 0
    assert widen.plan(root, "call_AD", trailing=(2,)).chunks == 0


def test_narrowest_int_holds_the_values_and_never_narrows():
    assert widen.narrowest_int(-2, 127, np.dtype(np.int8)) == np.int8
    assert widen.narrowest_int(-2, 300, np.dtype(np.int8)) == np.int16
    assert widen.narrowest_int(-2, 5, np.dtype(np.int32)) == np.int32
    assert widen.narrowest_int(-40_000, 5, np.dtype(np.int8)) == np.int32
