"""Chunks of a local repository are read straight from their files, with the same result as
reading them through icechunk, and never a stale one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from icechunk.store import IcechunkStore
from vcfgen import make_vcz
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import vczrepo
from vczrepo import chunks, internals, storage
from vczrepo.errors import IntegrityError
from vczrepo.internals import SessionStore, chunk_key, session_store

PROTO = default_buffer_prototype()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> vczrepo.Repository:
    # no inline chunks: every chunk is a file of its own
    config = storage.repository_config()
    config.inline_chunk_threshold_bytes = 0
    monkeypatch.setattr(storage, "repository_config", lambda: config)
    batch = make_vcz(tmp_path, "b", [f"S{i}" for i in range(6)], n_variants=30, samples_chunk_size=4,
                     variants_chunk_size=10)
    return vczrepo.Repository.init(tmp_path / "r", batch)[0]


def _get(store, key: str) -> bytes | None:
    data = sync(store.get(key, prototype=PROTO))
    return None if data is None else data.to_bytes()


def _keys(group: zarr.Group) -> list[str]:
    keys = ["zarr.json"]
    for name, array in group.arrays():
        keys.append(f"{name}/zarr.json")
        keys.extend(chunk_key(array, c) for c in chunks._chunk_grid(array))
    return keys


def test_every_key_reads_as_icechunk_reads_it_and_chunks_come_from_files(repo, monkeypatch):
    root = repo.group()
    store = root.store
    assert isinstance(store, SessionStore)
    keys = _keys(root)
    expected = {key: _get(store._store, key) for key in keys}
    asked = []
    original = IcechunkStore.get
    monkeypatch.setattr(IcechunkStore, "get",
                        lambda self, key, *a, **k: asked.append(key) or original(self, key, *a, **k))
    assert {key: _get(store, key) for key in keys} == expected
    # icechunk is asked for metadata and for chunks never written (they read as fill), no more
    stored_chunks = {k for k in keys if not k.endswith("zarr.json") and expected[k] is not None}
    assert stored_chunks
    assert not stored_chunks & set(asked)
    assert {k for k in keys if k.endswith("zarr.json")} <= set(asked)


def test_an_array_is_indexed_only_once_a_session_has_read_enough_of_it(repo, monkeypatch):
    """A few chunks are read through icechunk (no listing of the array's references); past one
    read per REFS_PER_INDEXED_READ chunks of its grid the array is listed once, and its chunks
    then come from their files."""
    monkeypatch.setattr(internals, "REFS_PER_INDEXED_READ", 2)  # call_DP: 3 x 2 chunks, so 3 reads first
    listed, asked = [], []
    iterate, get = IcechunkStore.array_chunk_iterator, IcechunkStore.get
    monkeypatch.setattr(IcechunkStore, "array_chunk_iterator",
                        lambda self, path, *a, **k: listed.append(path) or iterate(self, path, *a, **k))
    monkeypatch.setattr(IcechunkStore, "get", lambda self, key, *a, **k: asked.append(key) or get(self, key, *a, **k))
    store = repo.group().store
    dp = zarr.open_group(store, mode="r")["call_DP"]
    grid = list(chunks._chunk_grid(dp))
    expected = {c: _get(store._store, chunk_key(dp, c)) for c in grid}
    asked.clear()
    got = {c: _get(store, chunk_key(dp, c)) for c in grid}
    assert got == expected
    assert listed == ["call_DP"]
    assert [k for k in asked if "/c/" in k] == [chunk_key(dp, c) for c in grid[:3]]
    assert (dp[...] == zarr.open_group(store._store, mode="r")["call_DP"][...]).all()
    assert listed == ["call_DP"]  # listed once per session


def test_a_chunk_written_in_the_session_reads_back_new(repo):
    session = repo.icechunk.writable_session("main")
    root = zarr.open_group(session_store(session, repo.location), mode="r+")
    dp = root["call_DP"]
    before = dp[...]
    dp[0:10, 0:4] = 77  # chunk (0, 0), read just before through its file
    after = before.copy()
    after[0:10, 0:4] = 77
    assert (zarr.open_group(session_store(session, repo.location))["call_DP"][...] == after).all()
    assert (dp[...] == after).all()


def _outcome(store, key: str):
    try:
        return _get(store, key)
    except Exception as e:  # noqa: BLE001 - compared below
        return type(e)


@pytest.mark.parametrize("key", ["nosuch/c/0", "c/0", "call_DP/c/99/0", "call_DP/c/0"])
def test_keys_of_no_chunk_read_as_icechunk_reads_them(repo, key):
    store = repo.group().store
    assert _outcome(store, key) == _outcome(store._store, key)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_damaged_chunk_file_is_an_integrity_error(repo, damage):
    root = repo.group()
    key = chunk_key(root["call_DP"], (0, 0))
    expected = _get(root.store._store, key)
    victim = next(f for f in Path(repo.location.path, "chunks").iterdir() if f.read_bytes() == expected)
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(expected[:-1])
    with pytest.raises(IntegrityError, match=f"chunk {key} at snapshot "):
        _get(repo.group().store, key)


def test_a_read_only_view_of_the_session_sees_its_writes(repo):
    session = repo.icechunk.writable_session("main")
    store = session_store(session, repo.location)
    dp = zarr.open_group(store, mode="r+")["call_DP"]
    seen = zarr.open_group(store, mode="r")["call_DP"]
    assert (seen[0:10, 0:4] != 77).all()  # the read-only view has located the chunk in its file
    dp[0:10, 0:4] = 77
    assert (seen[0:10, 0:4] == 77).all()


# ----- canaries: each fails loudly if an upgrade changes what vczrepo.internals relies on -----

def test_canary_with_codecs_writes_other_codecs_and_never_stores_them():
    from zarr.codecs import BloscCodec

    from vczrepo.internals import chunk_key, with_codecs

    array = zarr.create_array({}, shape=(64, 64), chunks=(32, 32), dtype="int16",
                              compressors=[BloscCodec(cname="zstd", clevel=7, shuffle="shuffle")])
    level_1 = tuple(c if not isinstance(c, BloscCodec) else BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")
                    for c in array.metadata.codecs)
    with_codecs(array, level_1)[:32, :32] = np.arange(1024, dtype=np.int16).reshape(32, 32)
    assert array.metadata.codecs[1].clevel == 7  # the stored metadata is untouched
    np.testing.assert_array_equal(array[:32, :32], np.arange(1024).reshape(32, 32))
    assert chunk_key(array, (1, 0)) == "c/1/0"


def test_canary_click_internals():
    import click
    import click.core

    from vczrepo.internals import click_params

    assert [p.name for p in click_params(click.option("--x", type=int))] == ["x"]
    assert hasattr(click.core, "_PacifyFlushWrapper")  # click's EPIPE handling, read by click_saw_broken_pipe


def test_canary_end_interrupted_io_cancels_what_runs_on_zarrs_loop():
    """What an interrupted sync() leaves running (here: a coroutine nobody waits for) is
    cancelled and ended, on zarr's own loop (zarr.core.sync.loop[0])."""
    import asyncio

    from zarr.core import sync as zarr_sync

    sync(asyncio.sleep(0))  # zarr's loop is running
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    left = asyncio.run_coroutine_threadsafe(forever(), zarr_sync.loop[0])
    sync(started.wait())
    internals.end_interrupted_io()
    assert left.cancelled()
    assert sync(asyncio.sleep(0, result="alive")) == "alive"  # the loop itself goes on


def test_canary_icechunk_chunk_iterator_and_layout(tmp_path):
    from icechunk.store import IcechunkStore

    assert hasattr(IcechunkStore, "array_chunk_iterator")
    import icechunk

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    session = repo.writable_session("main")
    arr = zarr.create_array(session.store, name="a", shape=(4096,), chunks=(4096,), dtype="int64")
    arr[:] = np.random.default_rng(0).integers(0, 1 << 40, 4096)  # too big to be inlined
    session.commit("x")
    files = list((tmp_path / "r" / "chunks").iterdir())  # icechunk's documented layout: chunks/<id>
    assert len(files) == 1


def test_canary_members_opens_every_member_and_returns_each_failure(tmp_path):
    from vczrepo.internals import members

    root = zarr.open_group(tmp_path / "g", mode="w", zarr_format=3)
    for name in ("a", "b", "c"):
        root.create_array(name, shape=(4,), dtype="int8")
    root.create_group("sub")
    (tmp_path / "g" / "stray").mkdir()
    doc = (tmp_path / "g" / "b" / "zarr.json")
    doc.write_text(doc.read_text().replace('"int8"', '"no_such_type"'))
    found = dict(members(zarr.open_group(tmp_path / "g", mode="r")))
    assert sorted(found) == ["a", "b", "c", "sub"]
    assert isinstance(found["a"], zarr.Array)
    assert isinstance(found["sub"], zarr.Group)
    assert isinstance(found["b"], ValueError)


def test_canary_rewritten_array_metadata_keeps_its_chunks_in_an_icechunk_session(tmp_path):
    """widen.retype relies on it: the chunks under an array's keys survive a new metadata
    document (another dtype, shape and chunk shape) until each is rewritten."""
    import icechunk
    from zarr.core.metadata.v3 import ArrayV3Metadata

    from vczrepo.internals import store_metadata, with_metadata

    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    session = repo.writable_session("main")
    array = zarr.create_array(session.store, name="a", shape=(4, 2), chunks=(2, 2), dtype="int8")
    array[...] = np.arange(8, dtype=np.int8).reshape(4, 2)
    session.commit("x")
    session = repo.writable_session("main")
    array = zarr.open_array(session.store, path="a")
    old = array.metadata
    doc = old.to_dict()
    doc.update(shape=(4, 3), data_type="int16",
               chunk_grid={"name": "regular", "configuration": {"chunk_shape": (2, 3)}},
               codecs=[{"name": "bytes", "configuration": {"endian": "little"}}, *doc["codecs"][1:]])
    new = store_metadata(array, ArrayV3Metadata.from_dict(doc))
    assert zarr.open_array(session.store, path="a").dtype == np.int16  # stored
    np.testing.assert_array_equal(with_metadata(new, old)[2:4], [[4, 5], [6, 7]])  # the old chunks, as they were
    new[0:2] = np.array([[0, 1, -2], [2, 3, -2]], dtype=np.int16)
    np.testing.assert_array_equal(with_metadata(new, old)[2:4], [[4, 5], [6, 7]])  # untouched by the other's write
