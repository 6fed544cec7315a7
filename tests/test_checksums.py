"""Checksummed chunks: zarr's crc32c codec ends every repository array's codec chain; byte
copies append the checksum without decoding; every reader fails on a flipped byte."""

from __future__ import annotations

import random

import numpy as np
import pytest
import zarr
from helpers import vcf_body
from vcfgen import make_vcz
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

import vczrepo
from vczrepo import checksums, chunks, schema
from vczrepo.check import add_checksums, check
from vczrepo.errors import IntegrityError


def test_with_checksum_is_what_zarrs_codec_stores(tmp_path):
    """A chunk encoded without the codec, given its checksum here, decodes through an array
    whose chain ends with crc32c; the bytes equal what zarr's codec itself writes."""
    values = np.arange(60, dtype=np.int16).reshape(6, 10)
    plain = zarr.create_array(zarr.storage.LocalStore(tmp_path / "plain"), shape=(6, 10), chunks=(3, 10),
                              dtype="i2", compressors=[BloscCodec(cname="zstd", clevel=3)])
    summed = zarr.create_array(zarr.storage.LocalStore(tmp_path / "summed"), shape=(6, 10), chunks=(3, 10),
                               dtype="i2", compressors=[BloscCodec(cname="zstd", clevel=3), Crc32cCodec()])
    plain[:] = values
    summed[:] = values
    for c in ("0/0", "1/0"):
        raw = (tmp_path / "plain" / "c" / c).read_bytes()
        stored = (tmp_path / "summed" / "c" / c).read_bytes()
        assert bytes(checksums.with_checksum(raw)) == stored  # little-endian CRC-32C of the encoded bytes
        assert checksums.verify(stored)
        assert not checksums.verify(raw)
        (tmp_path / "summed" / "c" / c).write_bytes(bytes(checksums.with_checksum(raw)))
    again = zarr.open_array(zarr.storage.LocalStore(tmp_path / "summed"), mode="r")
    np.testing.assert_array_equal(again[:], values)
    assert checksums.has_checksum(again)
    assert not checksums.has_checksum(plain)
    assert checksums.codecs_without_checksum(again.metadata.codecs) == tuple(plain.metadata.codecs)


def test_a_flipped_byte_makes_zarr_raise(tmp_path):
    a = zarr.create_array(zarr.storage.LocalStore(tmp_path / "a"), shape=(100,), chunks=(100,), dtype="i4",
                          compressors=[BloscCodec(cname="zstd", clevel=1), Crc32cCodec()])
    a[:] = np.arange(100)
    path = tmp_path / "a" / "c" / "0"
    data = bytearray(path.read_bytes())
    for i in range(len(data)):
        data[i] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="checksum"):
            zarr.open_array(zarr.storage.LocalStore(tmp_path / "a"), mode="r")[:]
        data[i] ^= 0x01


def test_same_encoding_is_modulo_the_checksum(tmp_path):
    g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    blosc = BloscCodec(cname="zstd", clevel=7, shuffle="bitshuffle")
    a = g.create_array("a", shape=(4, 4), chunks=(2, 2), dtype="i1", serializer=BytesCodec(), compressors=[blosc])
    b = schema.create_like(g, "b", a)
    assert checksums.has_checksum(b)
    assert chunks.same_encoding(a, b)
    assert chunks.same_encoding(b, a)


def _noisy_vcz(tmp_path, name: str, samples: list[str], seed: int):
    """A bio2zarr VCZ whose depths are random, so call_DP chunks (like call_genotype's) are
    large enough to be stored as chunk files rather than inline in manifests."""
    import re

    from bio2zarr import vcf as b2z_vcf
    from vcfgen import genotypes, sites, vcf_text

    rng = random.Random(seed)
    text = vcf_text(samples, sites(1500), genotypes(samples, 1500, seed))
    text = re.sub(r"(\d\|\d):\d+", lambda m: f"{m[1]}:{rng.randrange(1000)}", text)
    (tmp_path / f"{name}.vcf").write_text(text)
    out = tmp_path / f"{name}.vcz"
    b2z_vcf.convert([str(tmp_path / f"{name}.vcf")], str(out), samples_chunk_size=8, variants_chunk_size=500,
                    zarr_format=3)
    return out


@pytest.fixture
def repo_path(tmp_path):
    """A repository with chunks large enough to be stored as files (not inline in manifests)."""
    path = tmp_path / "r"
    names = [f"S{i}" for i in range(24)]
    repo, _ = vczrepo.Repository.init(path, _noisy_vcz(tmp_path, "a", names[:16], 1))
    repo.append(_noisy_vcz(tmp_path, "b", names[16:], 2))
    repo.remove(["S2"])
    return path


def test_repository_arrays_are_checksummed_and_read_everywhere(repo_path, tmp_path):
    repo = vczrepo.Repository.open(repo_path)
    root = repo.group("main")
    assert all(checksums.has_checksum(a) for a in schema.arrays(root).values())
    body = vcf_body(root)
    assert body.count("\n") == 1501
    assert "S2" not in body.splitlines()[0].split("\t")
    ds = vczrepo.open_dataset(repo_path, "main", keep_null_samples=True)
    np.testing.assert_array_equal(ds["call_genotype"].values, root["call_genotype"][:])
    report = check(repo, deep=True)
    assert report.ok, report.problems
    assert report.chunks_verified > 0
    assert not report.unverified


def _chunk_files(repo: vczrepo.Repository, ref: str = "main") -> dict[str, str]:
    """Chunk file name -> the chunk key it holds at a ref."""
    import asyncio

    from vczrepo.internals import session_store

    store = session_store(repo.icechunk.readonly_session(snapshot_id=repo.resolve(ref)), repo.location)
    root = zarr.open_group(store, mode="r")
    out: dict[str, str] = {}

    async def walk():
        for name, array in schema.arrays(root).items():
            async for coords, kinds, ids, *_ in store._store.array_chunk_iterator(name):
                for i in range(len(coords)):
                    if int(kinds[i]) == int(__import__("icechunk").ChunkType.native):
                        key = array.metadata.encode_chunk_key(tuple(int(c) for c in coords[i]))
                        out[str(ids[i])] = f"{name}/{key}"

    asyncio.run(walk())
    return out


def test_every_flipped_byte_is_caught(repo_path):
    """>= 100 single-byte flips at random places in random chunk files: each is reported by
    check --deep naming the chunk, and reading that chunk raises IntegrityError."""
    repo = vczrepo.Repository.open(repo_path)
    files = _chunk_files(repo)
    arrays = {key.split("/c/")[0] for key in files.values()}
    assert len(files) >= 12
    assert {"call_genotype", "call_DP"} <= arrays  # small chunks are inline in manifests
    rng = random.Random(16)
    silent, named, flips = [], [], 0
    for _ in range(104):
        name = rng.choice(sorted(files))
        key = files[name]
        path = repo_path / "chunks" / name
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            fresh = vczrepo.Repository.open(repo_path)
            report = check(fresh, at="main", deep=True)
            if not any(key in p for p in report.problems):
                silent.append((key, "check"))
            array = fresh.group("main")[key.split("/c/")[0]]
            try:
                array[...]
                silent.append((key, "read"))
            except IntegrityError as e:
                named.append((key, str(e)))
        finally:
            path.write_bytes(original)
        flips += 1
    assert flips >= 100
    assert silent == []
    for key, message in named:
        assert key in message
        assert "checksum mismatch" in message
        assert "\n" not in message
    assert check(vczrepo.Repository.open(repo_path), deep=True).ok


def test_view_fails_in_one_line_on_a_flipped_byte(repo_path):
    repo = vczrepo.Repository.open(repo_path)
    name, key = next((n, k) for n, k in sorted(_chunk_files(repo).items()) if k.startswith("call_genotype/"))
    path = repo_path / "chunks" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"corrupt chunk {key} at snapshot .*: checksum mismatch"):
        vcf_body(vczrepo.Repository.open(repo_path).group("main"))
    with pytest.raises(IntegrityError):
        vczrepo.open_dataset(repo_path, "main")["call_genotype"].values  # noqa: B018


def test_truncated_chunk_file_is_named(repo_path):
    repo = vczrepo.Repository.open(repo_path)
    name, key = sorted(_chunk_files(repo).items())[0]
    path = repo_path / "chunks" / name
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(IntegrityError, match=f"corrupt chunk {key} .*truncated"):
        vczrepo.Repository.open(repo_path).group("main")[key.split("/c/")[0]][...]


@pytest.fixture
def old_repo(tmp_path, monkeypatch):
    """A repository made before checksums (arrays created without the crc32c codec)."""
    path = tmp_path / "old"
    with monkeypatch.context() as m:
        m.setattr(checksums, "with_checksum_codec", lambda codecs: tuple(codecs))
        vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["A0", "A1", "A2", "A3"], n_variants=300,
                                               samples_chunk_size=2, variants_chunk_size=100))
    return path


def test_old_repository_reads_appends_and_upgrades(old_repo, tmp_path):
    repo = vczrepo.Repository.open(old_repo)
    assert not any(checksums.has_checksum(a) for a in schema.arrays(repo.group("main")).values())
    repo.append(make_vcz(tmp_path, "b", ["B0", "B1"], n_variants=300, samples_chunk_size=2, variants_chunk_size=100))
    root = repo.group("main")
    assert not checksums.has_checksum(root["call_genotype"])  # appended bytes carry no checksum either
    before = vcf_body(root)
    report = check(repo, deep=True)
    assert report.ok
    assert any(u.startswith("call_genotype: unverified (no checksums)") for u in report.unverified)
    session = repo.icechunk.writable_session("main")
    summary = add_checksums(chunks.Pipeline(), zarr.open_group(session.store, mode="r+"))
    session.commit("add checksums", metadata={"vczrepo": 2, "op": "add-checksums", **summary})
    repo = vczrepo.Repository.open(old_repo)
    root = repo.group("main")
    assert all(checksums.has_checksum(a) for a in schema.arrays(root).values())
    assert vcf_body(root) == before
    report = check(repo, deep=True)
    head = repo.resolve("main")
    assert report.ok
    assert report.chunks_verified > 0
    assert report.unverified
    assert not any(head in u for u in report.unverified)  # only older snapshots
    repo.append(make_vcz(tmp_path, "c", ["C0", "C1"], n_variants=300, samples_chunk_size=2, variants_chunk_size=100))
    assert check(vczrepo.Repository.open(old_repo), deep=True).ok


def test_a_checksummed_batch_appends_to_an_old_repository(old_repo, tmp_path):
    """Bytes copied from arrays with checksums into arrays without lose them (after checking)."""
    repo = vczrepo.Repository.open(old_repo)
    batch = make_vcz(tmp_path, "b", ["B0", "B1"], n_variants=300, samples_chunk_size=2, variants_chunk_size=100)
    summed = tmp_path / "summed.vcz"
    src = zarr.open_group(str(batch), mode="r")
    dst = zarr.open_group(str(summed), mode="w", zarr_format=3)
    dst.attrs.update(dict(src.attrs))
    for name, a in schema.arrays(src).items():
        chunks.Pipeline().copy_array(a, schema.create_like(dst, name, a))
    assert checksums.has_checksum(zarr.open_group(str(summed), mode="r")["call_genotype"])
    repo.append(summed)
    root = vczrepo.Repository.open(old_repo).group("main")
    assert vcf_body(root, ["B0", "B1"]) == vcf_body(zarr.open_group(str(batch), mode="r"))
