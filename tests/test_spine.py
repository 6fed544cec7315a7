"""The repository spine: init, append, remove, tag, branch, log, samples, info, checkout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from helpers import state, vcf_body, vcztools_samples, without_info
from numcodecs import Blosc
from vcfgen import make_vcz
from zarr.codecs import BloscCodec

import vczrepo
from vczrepo import chunks, journal, schema
from vczrepo.internals import chunk_key


def test_init_then_append_equals_whole_file_through_vcztools(cli, tmp_path, data, whole_vcz):
    repo = tmp_path / "cohort.vczrepo"
    cli("init", repo, data / "sample-part1.vcf.gz")
    cli("append", repo, data / "sample-part2.vcf.gz", "-m", "wave 2")
    out = tmp_path / "main.vcz"
    cli("checkout", repo, out, "--at", "main")
    assert vcf_body(out) == vcf_body(whole_vcz)
    assert vcf_body(vczrepo.open_group(repo)) == vcf_body(whole_vcz)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_init_from_vcz_of_either_zarr_format_stores_format_3(tmp_path, zarr_format):
    batch = make_vcz(tmp_path, "b", ["S1", "S2", "S3"], zarr_format=zarr_format, samples_chunk_size=2)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", batch)
    root = repo.group()
    assert root.metadata.zarr_format == 3
    assert all(a.metadata.zarr_format == 3 for _, a in root.arrays())
    assert vcf_body(root) == vcf_body(batch)


@pytest.mark.parametrize(
    ("chunk", "sizes", "batch_chunk"),
    [(2, [2, 2, 2], 2), (2, [3, 1, 4], 2), (3, [1, 1, 5, 2], 3), (4, [5, 3], 4), (3, [4, 5, 7], 2),
     (2, [3, 5, 4], 3)],
)
@pytest.mark.parametrize("align", [False, None], ids=["contiguous", "default"])
def test_appends_at_any_alignment_equal_one_conversion(tmp_path, chunk, sizes, batch_chunk, align):
    # contiguous: the arrays are those of one conversion; by default, where padding made the
    # batch copy as bytes, the same with null columns between batches
    names = [f"S{i:02d}" for i in range(sum(sizes))]
    batches, start = [], 0
    for k, n in enumerate(sizes):
        batches.append(make_vcz(tmp_path, f"b{k}", names[start:start + n],
                                samples_chunk_size=chunk if k == 0 else batch_chunk, variants_chunk_size=5))
        start += n
    repo, _ = vczrepo.Repository.init(tmp_path / "r", batches[0])
    for b in batches[1:]:
        repo.append(b, align=align)
    whole = make_vcz(tmp_path, "whole", names, samples_chunk_size=chunk, variants_chunk_size=5)
    assert repo.samples() == names
    assert vcf_body(repo.group()) == vcf_body(whole)
    root, ref = repo.group(), zarr.open_group(str(whole), mode="r")
    live = root["sample_id"][:] != ""
    assert live.all() or align is None
    for name in ("call_genotype", "call_DP", "call_genotype_phased", "call_genotype_mask"):
        np.testing.assert_array_equal(root[name][:][:, live], ref[name][:])
        assert root[name].chunks == ref[name].chunks
    assert repo.check().ok


def test_append_with_different_chunking_is_reencoded(tmp_path):
    a = make_vcz(tmp_path, "a", ["A1", "A2", "A3"], samples_chunk_size=2, variants_chunk_size=4)
    b = make_vcz(tmp_path, "b", ["B1", "B2", "B3", "B4"], samples_chunk_size=3, variants_chunk_size=7,
                 zarr_format=2)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", a)
    repo.append(b)
    whole = make_vcz(tmp_path, "w", ["A1", "A2", "A3", "B1", "B2", "B3", "B4"])
    assert vcf_body(repo.group()) == vcf_body(whole)
    assert repo.group()["call_genotype"].chunks == (4, 2, 2)


def test_remove_nulls_sample_and_its_data(part_repo, whole_vcz):
    repo = vczrepo.Repository.open(part_repo)
    repo.remove(["NA00002"], message="consent withdrawn")
    root = repo.group()
    assert list(root["sample_id"][:]) == ["NA00001", "", "NA00003"]
    assert (root["call_genotype"][:, 1] == -1).all()
    assert (root["call_DP"][:, 1] == -1).all()
    assert vcztools_samples(root) == ["NA00001", "NA00003"]
    assert "NA00002" not in vcf_body(root)
    kept = ["NA00001", "NA00003"]
    assert without_info(vcf_body(root)) == without_info(vcf_body(whole_vcz, samples=kept))


def test_tag_keeps_its_samples_after_later_appends_and_removes(cli, part_repo, tmp_path):
    cli("tag", part_repo, "release-1")
    cli("remove", part_repo, "NA00001", "NA00003")
    extra = make_vcz(tmp_path, "x", ["X1"], variants=None, n_variants=9)  # different variants: rejected
    cli("append", part_repo, extra, ok=False)
    assert vcztools_samples(vczrepo.open_group(part_repo, "release-1")) == ["NA00001", "NA00002", "NA00003"]
    assert vcztools_samples(vczrepo.open_group(part_repo)) == ["NA00002"]
    assert cli("samples", part_repo, "--at", "release-1").output.split() == ["NA00001", "NA00002", "NA00003"]


def test_branch_commits_do_not_move_main(cli, part_repo):
    main_head = vczrepo.Repository.open(part_repo).resolve("main")
    cli("branch", part_repo, "trial", "--at", "main")
    cli("remove", part_repo, "NA00001", "-b", "trial")
    repo = vczrepo.Repository.open(part_repo)
    assert repo.resolve("main") == main_head
    assert repo.samples("trial") == ["NA00002", "NA00003"]
    assert repo.samples("main") == ["NA00001", "NA00002", "NA00003"]
    assert [c.op for c in repo.log("trial")][:2] == ["remove", "append"]


def test_every_mutation_is_one_commit_with_structured_metadata(cli, part_repo, data):
    cli("remove", part_repo, "NA00002", "-m", "consent withdrawn")
    commits = json.loads(cli("log", part_repo, "--json").output)
    assert [c["op"] for c in commits] == ["remove", "append", "init", "root"]
    remove, append, init = (c["metadata"] for c in commits[:3])
    assert remove["samples_removed"] == ["NA00002"]
    assert remove["n_samples_removed"] == 1
    assert append["sample_range"] == [2, 3]
    assert append["n_samples_added"] == 1
    assert append["samples_sha256"] == journal.names_digest(["NA00003"])
    assert vczrepo.Repository.open(part_repo).samples_added(commits[1]["id"]) == ["NA00003"]
    assert append["source"]["path"].endswith("sample-part2.vcf.gz")
    assert len(append["source"]["sha256"]) == 64
    assert append["source"]["size"] > 0
    for m in (remove, append, init):
        assert m["vczrepo"] == 2
        assert len(m["op_id"]) == 32
        assert {"user", "host", "time", "parent", "branch"} <= set(m)
        assert {"vczrepo", "icechunk", "zarr"} <= set(m["versions"])
    assert commits[0]["message"] == "consent withdrawn"
    assert commits[0]["branches"] == ["main"]
    assert len(json.loads(cli("log", part_repo, "--json", "-n", "2").output)) == 2


def test_log_shows_tags_and_branches(cli, part_repo):
    cli("tag", part_repo, "release-1")
    cli("branch", part_repo, "trial")
    text = cli("log", part_repo, "--oneline").output.splitlines()
    head = vczrepo.Repository.open(part_repo).resolve("main")
    assert text[0] == f"{head} (main, trial, tag: release-1) append +1: append sample-part2.vcf.gz"
    assert " init +2: init from sample-part1.vcf.gz" in text[1]


def test_info_describes_the_ref(cli, part_repo):
    info = json.loads(cli("info", part_repo, "--json").output)
    assert info["n_samples"] == 3
    assert info["n_removed"] == 0
    assert info["n_variants"] == 9
    assert info["n_contigs"] == 3
    assert info["contigs_with_variants"] == ["19", "20", "X"]
    assert info["fields"]["call_genotype"]["dims"] == ["variants", "samples", "ploidy"]
    assert info["branches"] == ["main"]
    text = cli("info", part_repo).output
    assert "samples:   3 (0 removed)" in text
    assert "call_genotype" in text


def test_tag_and_snapshot_refs_resolve(cli, part_repo):
    repo = vczrepo.Repository.open(part_repo)
    first = repo.log()[1].id
    cli("tag", part_repo, "first", "--at", first)
    assert repo.samples("first") == ["NA00001", "NA00002"]
    assert repo.samples(first) == ["NA00001", "NA00002"]


def test_checkout_equals_repository_array_for_array(cli, part_repo, tmp_path):
    cli("remove", part_repo, "NA00002")
    out = tmp_path / "export.vcz"
    cli("checkout", part_repo, out, "--at", "main")
    src, dst = vczrepo.open_group(part_repo), zarr.open_group(str(out), mode="r")
    assert dst.metadata.zarr_format == 3
    assert sorted(src.array_keys()) == sorted(dst.array_keys())
    for name, a in src.arrays():
        b = dst[name]
        assert (a.shape, a.chunks, a.dtype, a.metadata.dimension_names) == (
            b.shape, b.chunks, b.dtype, b.metadata.dimension_names)
        np.testing.assert_array_equal(a[...], b[...])
    assert dict(src.attrs) == dict(dst.attrs)
    assert vcztools_samples(out) == ["NA00001", "NA00003"]


def test_checkout_drop_removed(cli, part_repo, tmp_path, whole_vcz):
    cli("remove", part_repo, "NA00002")
    out = tmp_path / "dropped.vcz"
    cli("checkout", part_repo, out, "--at", "main", "--drop-removed")
    root = zarr.open_group(str(out), mode="r")
    assert list(root["sample_id"][:]) == ["NA00001", "NA00003"]
    assert root["call_genotype"].shape[1] == 2
    kept = ["NA00001", "NA00003"]
    assert without_info(vcf_body(out)) == without_info(vcf_body(whole_vcz, samples=kept))


def test_readme_demo_command_succeeds(cli, tmp_path):
    result = cli("demo", tmp_path / "demo")
    assert "demo: all steps gave the expected result" in result.output
    assert "vcztools samples at release-2: NA00001 NA00003" in result.output


def test_failed_append_leaves_head_and_log_unchanged(cli, part_repo, tmp_path):
    before = state(part_repo)
    batch = make_vcz(tmp_path, "bad", ["Z1"], n_variants=9)
    result = cli("append", part_repo, batch, ok=False)
    assert result.exit_code == 5
    assert "differ" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert state(part_repo) == before


def test_align_pads_with_null_samples_and_copies_bytes(cli, tmp_path, monkeypatch):
    from vczrepo import chunks

    copied = []
    original = chunks.Pipeline.copy_encoded
    monkeypatch.setattr(chunks.Pipeline, "copy_encoded", lambda *a: copied.append(a[2].path) or original(*a))
    a = make_vcz(tmp_path, "a", ["A1", "A2", "A3"], samples_chunk_size=2)
    b = make_vcz(tmp_path, "b", ["B1", "B2", "B3"], samples_chunk_size=2)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", a)
    copied.clear()
    cli("append", tmp_path / "r", b, "--align")
    assert "call_genotype" in copied  # the batch went in as encoded bytes
    root = repo.group()
    assert list(root["sample_id"][:]) == ["A1", "A2", "A3", "", "B1", "B2", "B3"]
    assert (root["call_genotype"][:, 3] == -1).all()
    whole = make_vcz(tmp_path, "w", ["A1", "A2", "A3", "B1", "B2", "B3"])
    assert vcf_body(root) == vcf_body(whole)
    assert repo.log()[0].metadata["n_padding"] == 1
    assert (repo.info()["n_removed"], repo.info()["n_padding"]) == (0, 1)
    assert repo.check().ok


@pytest.mark.parametrize(
    ("n_base", "n_batch", "batch_chunk", "padding"),
    [
        (3, 2, 2, 1),  # one null column, then the batch copies as bytes
        (5, 5, 2, 1),
        (3, 1, 2, 0),  # the padding would be as large as the batch
        (3, 2, 3, 0),  # chunked otherwise: recomposed anyway, so no padding
        (4, 3, 2, 0),  # already on a chunk boundary
    ],
)
def test_default_append_pads_only_when_that_makes_a_byte_copy(tmp_path, monkeypatch, n_base, n_batch, batch_chunk,
                                                               padding):
    base, new = [f"A{i}" for i in range(n_base)], [f"B{i}" for i in range(n_batch)]
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", base, samples_chunk_size=2))
    rewritten = []
    original = chunks.Pipeline.fill_samples
    monkeypatch.setattr(chunks.Pipeline, "fill_samples",
                        lambda self, array, *a: rewritten.append(array.path) or original(self, array, *a))
    result = repo.append(make_vcz(tmp_path, "b", new, samples_chunk_size=batch_chunk))
    root = repo.group()
    assert list(root["sample_id"][:]) == base + [""] * padding + new
    assert result.metadata.get("n_padding", 0) == padding
    assert repo.samples() == base + new
    assert vcf_body(root) == vcf_body(make_vcz(tmp_path, "w", base + new))
    if padding:
        # arrays whose fill value (beyond the old last sample) is not missing are rewritten
        # (here call_genotype and call_DP: fill 0, and call_genotype_mask: fill False, but a null
        # column's genotypes are missing so its mask is True); the others are only resized
        assert sorted(rewritten) == ["call_DP", "call_genotype", "call_genotype_mask"]
        for name in ("call_genotype", "call_DP", "call_genotype_mask", "call_genotype_phased"):
            assert schema.is_null_column_value(name, root[name], root[name][:, n_base]).all(), name
    assert repo.check().ok


def test_no_align_keeps_samples_contiguous(cli, tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["A0", "A1", "A2"], samples_chunk_size=2))
    cli("append", tmp_path / "r", make_vcz(tmp_path, "b", ["B0", "B1"], samples_chunk_size=2), "--no-align")
    assert list(repo.group()["sample_id"][:]) == ["A0", "A1", "A2", "B0", "B1"]
    assert "n_padding" not in repo.log()[0].metadata


def _stored_chunk(array: zarr.Array, coords: tuple[int, ...]) -> bytes:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    return sync(array.store.get(chunk_key(array, coords), prototype=default_buffer_prototype())).to_bytes()


def _encoded_at(level: int, like: zarr.Array, values: np.ndarray) -> bytes:
    """values as one chunk encoded with like's codecs at blosc level `level`."""
    from vczrepo.checksums import codecs_without_checksum  # the crc32c is appended by callers

    serializer, compressor = chunks._codecs_at_level(codecs_without_checksum(like.metadata.codecs), level)
    mem = zarr.create_array({}, shape=values.shape, chunks=values.shape, dtype=like.dtype,
                            serializer=serializer, compressors=[compressor], fill_value=like.fill_value)
    mem[...] = values
    return _stored_chunk(mem, (0,) * values.ndim)


@pytest.mark.parametrize("level", [None, 9])
def test_rewritten_chunks_use_the_compression_level_metadata_keeps_its_own(cli, tmp_path, level, monkeypatch):
    batch = make_vcz(tmp_path, "b", ["S1", "S2", "S3", "S4"], samples_chunk_size=2, variants_chunk_size=4)
    cli("init", tmp_path / "r", batch)
    options = [] if level is None else ["--compression-level", str(level)]
    cli(*options, "remove", tmp_path / "r", "S1")
    dp = vczrepo.Repository.open(tmp_path / "r").group()["call_DP"]
    from vczrepo import checksums  # repository chunks end with their crc32c

    assert checksums.has_checksum(dp)
    assert checksums.codecs_without_checksum(dp.metadata.codecs) == tuple(
        zarr.open_array(str(batch / "call_DP"), mode="r").metadata.codecs)  # level 7 stated
    values = dp[0:4, 0:2]
    assert (values[:, 0] == -1).all()
    summed = checksums.with_checksum
    assert _stored_chunk(dp, (0, 0)) == bytes(summed(_encoded_at(level or 1, dp, values)))  # S1's column: rewritten
    assert _stored_chunk(dp, (0, 1)) == bytes(summed(_stored_chunk(zarr.open_array(str(batch / "call_DP"), mode="r"),
                                                                   (0, 1))))


def test_rewritten_chunks_keep_the_block_size_of_the_arrays_own_level(monkeypatch):
    # blosc picks 32 KiB blocks at level 1 but 512 KiB at bio2zarr's level 7; the small
    # blocks encode and decode slower and compress worse, so a rewrite keeps the big ones.
    codec = BloscCodec(cname="zstd", clevel=7, shuffle="shuffle", typesize=2)
    array = zarr.create_array({}, shape=(512, 2048), chunks=(512, 1024), dtype="int16", compressors=[codec])
    values = np.random.default_rng(1).integers(0, 60, size=array.shape, dtype=np.int16)
    array[:, :1024] = values[:, :1024]  # encoded by zarr at the metadata's level 7
    chunks.Pipeline(vczrepo.Settings(compression_level=1)).writer(array)[:, 1024:] = values[:, 1024:]  # level 1

    def block_size(coords):  # from the blosc frame header
        return int.from_bytes(_stored_chunk(array, coords)[8:12], "little")

    assert block_size((0, 0)) == block_size((0, 1)) == 512 * 1024
    plain_level_1 = Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE, typesize=2).encode(values[:, 1024:].copy())
    assert int.from_bytes(plain_level_1[8:12], "little") < 512 * 1024  # what the fix avoids
    np.testing.assert_array_equal(array[:], values)
    assert array.metadata.codecs[1].clevel == 7


def test_a_batch_at_another_compression_level_is_still_copied_as_bytes(tmp_path, monkeypatch):
    copied = []
    original = chunks.Pipeline.copy_encoded
    monkeypatch.setattr(chunks.Pipeline, "copy_encoded", lambda *a: copied.append(a[2].path) or original(*a))
    a = make_vcz(tmp_path, "a", ["A1", "A2"], samples_chunk_size=2)
    b = make_vcz(tmp_path, "b", ["B1", "B2"], samples_chunk_size=2)
    dp = zarr.open_array(str(b / "call_DP"), mode="r+")
    relevelled = dp.metadata.to_dict()
    relevelled["codecs"][1]["configuration"]["clevel"] = 3
    (b / "call_DP" / "zarr.json").write_text(json.dumps(relevelled))
    repo, _ = vczrepo.Repository.init(tmp_path / "r", a)
    copied.clear()
    repo.append(b)
    assert "call_DP" in copied
    assert vcf_body(repo.group()) == vcf_body(make_vcz(tmp_path, "w", ["A1", "A2", "B1", "B2"]))


@pytest.mark.parametrize("config", [("zstd", 7, "bitshuffle", 1), ("zstd", 9, "shuffle", 8), ("lz4", 5, "shuffle", 4),
                                    ("blosclz", 1, "noshuffle", 2), ("zstd", 7, "shuffle", 2)])
@pytest.mark.parametrize("chunk_nbytes", [6 << 20, 300_000])
def test_the_probed_block_size_is_the_one_blosc_picks_for_the_whole_chunk(config, chunk_nbytes):
    cname, clevel, shuffle, typesize = config
    whole = Blosc(cname=cname, clevel=clevel, shuffle=["noshuffle", "shuffle", "bitshuffle"].index(shuffle),
                  typesize=typesize).encode(np.zeros(chunk_nbytes, np.uint8))
    assert chunks._auto_blocksize(cname, clevel, shuffle, typesize, chunk_nbytes) == int.from_bytes(whole[8:12],
                                                                                                    "little")
