"""Everything vczrepo does that leans on zarr's, icechunk's or click's internals, in one place.

Each item has a canary test (tests/test_internals.py) that fails loudly when an upgrade
changes what it relies on:
- `with_codecs`, `with_metadata`: a zarr array object over the same stored array whose chunk
  writes use other codecs, or whose chunks are read with other metadata (zarr builds an
  `AsyncArray` from metadata we change in memory only);
- `store_metadata`: an array's metadata document rewritten in an icechunk session (another
  dtype, shape or chunk shape) keeps the chunks stored under its keys until they are rewritten;
- `chunk_key`: the store key of a chunk, from zarr format 3 metadata's key encoding;
- `SessionStore` (a zarr `WrapperStore`): chunks of a local repository read straight from
  their files, by icechunk's documented layout (`chunks/<id>`) and
  `IcechunkStore.array_chunk_iterator`;
- `click_params` and `click_saw_broken_pipe`: click's `__click_params__` and its EPIPE wrapper;
- `members`: a group's members opened through zarr's `Group._async_group.getitem`;
- `end_interrupted_io`: zarr's event loop, `zarr.core.sync.loop[0]`.

The zarr store vczrepo reads a session through: chunks of a local repository come
straight from their files.

icechunk's local filesystem storage streams every object in 8 KiB reads through a pool of
threads that contend for one lock: measured here, 1.1 GB of chunks took about 2 s and 3.5
CPU seconds through it, and 0.15 s reading the same files directly. icechunk still decides
which file holds a chunk (its manifest, through ``IcechunkStore.array_chunk_iterator``);
only the bytes are read here. Metadata, writes, inline and virtual chunks, chunks this
store has written and object storage all go through icechunk unchanged.

Knowing where one chunk is means listing the whole array's chunk references (icechunk has
no per-chunk lookup), about 1.6 µs per reference in Python, while a chunk read through
icechunk costs 1.4 ms (a ~400 KB chunk) to 7 ms (~4 MB) more than reading its file, and
loads only the manifest split holding it (measured here). So an array of many chunks is
read through icechunk at first and indexed only once a session has read about one chunk per
`REFS_PER_INDEXED_READ` of its grid: a region read does no work proportional to the whole
array, and a sweep pays for its index at most about twice (rent-or-buy). Arrays of fewer
chunks than that are indexed on their first read.

Every chunk read through this store (local or object storage) is verified: a chunk of an
array whose codec chain ends with crc32c (vczrepo.checksums) must match its checksum, a
chunk file must hold the bytes the manifest says, and a chunk icechunk cannot read is
reported by key. Each failure is an `errors.IntegrityError` naming the chunk and the
snapshot, never wrong data and never a storage trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click
import icechunk
import numpy as np
import zarr
from icechunk.store import IcechunkStore
from zarr.abc.store import ByteRequest, Store
from zarr.core.array import AsyncArray
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.core.sync import sync
from zarr.storage import WrapperStore

from . import checksums
from .errors import IntegrityError, short_message
from .storage import Location

ChunkRef = tuple[str, int, int]  # chunk id (in an index) or chunk file path, offset, length
_CHUNK_KEY = re.compile(r"^(?:(?P<array>.*)/)?c(?P<coords>(?:/\d+)*)$")  # default "/" chunk key encoding
# array_chunk_iterator gives kinds as these ints (icechunk's stub lacks ChunkType.__int__, which it has)
_NATIVE = int(icechunk.ChunkType.native)  # type: ignore[call-overload]
_OBJECT = re.compile(r'path="(?:[^"]*/)?(snapshots|manifests|chunks|transactions)/([0-9A-Z]+)"')
_OBJECT_ID = re.compile(r"\b(snapshot|manifest)_id=([0-9A-Z]{20})\b")
REFS_PER_INDEXED_READ = 1_000  # chunk references listed in the time one read through icechunk costs extra


def with_codecs(array: zarr.Array, codecs: tuple) -> zarr.Array:
    """The same stored array, encoding the chunks it writes with `codecs`.

    Only chunk writes go through it; its metadata is never stored."""
    assert array.metadata.zarr_format == 3  # format 2 metadata has no codec chain
    return with_metadata(array, dataclasses.replace(array.metadata, codecs=codecs))


def with_metadata(array: zarr.Array, metadata: ArrayV3Metadata) -> zarr.Array:
    """The same stored array seen through other metadata (its chunks decoded as `metadata`
    says); the metadata is never stored."""
    return zarr.Array(AsyncArray(metadata, array.async_array.store_path, array.async_array.config))


def store_metadata(array: zarr.Array, metadata: ArrayV3Metadata) -> zarr.Array:
    """Rewrite a format 3 array's metadata document in place (another dtype, shape or chunk
    shape) and return the array as it now reads. In an icechunk session the chunks stored
    under the array's keys stay as they were (icechunk updates the array node, it does not
    replace it): read them with `with_metadata(..., old metadata)` until they are rewritten."""
    from zarr.core.buffer import default_buffer_prototype

    documents = metadata.to_buffer_dict(default_buffer_prototype())
    prefix = f"{array.path}/" if array.path else ""
    for key, document in documents.items():
        sync(array.store.set(prefix + key, document))
    return with_metadata(array, metadata)


def chunk_key(array: zarr.Array, coords: tuple[int, ...]) -> str:
    """The key of a chunk in the array's store (zarr format 3)."""
    key = array.metadata.encode_chunk_key(coords)
    return f"{array.path}/{key}" if array.path else key


def end_interrupted_io(timeout: float = 10.0) -> None:
    """Cancel what still runs on zarr's event loop and wait for it to end. A `sync()` whose
    caller was interrupted (Ctrl-C) leaves its coroutines running on zarr's IO thread; the
    process would then exit with asyncio's "Task was destroyed but it is pending!" on stderr."""
    from zarr.core import sync as zarr_sync

    loop = zarr_sync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
    except Exception:  # noqa: BLE001 - best effort on the way out: the exit code is decided already
        pass


def click_saw_broken_pipe() -> bool:
    """Did click end the command because its output pipe closed? (click handles EPIPE itself:
    it wraps stdout in its `_PacifyFlushWrapper` and exits 1, even outside standalone mode.)"""
    return type(sys.stdout).__name__ in ("PacifyFlushWrapper", "_PacifyFlushWrapper")


def click_params(decorator: Callable) -> list[click.Parameter]:
    """The click parameters an option decorator would add (to build a command from parts)."""

    def target() -> None:
        pass

    decorator(target)
    return list(getattr(target, "__click_params__", []))


_NOT_MEMBERS = frozenset({"zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"})


def members(group: zarr.Group) -> list[tuple[str, zarr.Array | zarr.Group | Exception]]:
    """Every direct member of a group, by name, opened concurrently; a member whose metadata
    cannot be read comes back as its exception. (zarr's `Group.arrays` stops at the first
    failure and leaves its other tasks pending or unretrieved: asyncio then prints "Task
    exception was never retrieved" and the process can even crash at exit.)"""
    return sync(_members(group))


async def _members(group: zarr.Group) -> list[tuple[str, zarr.Array | zarr.Group | Exception]]:
    async_group = group._async_group
    limit = asyncio.Semaphore(zarr.config.get("async.concurrency"))

    async def one(name: str):
        async with limit:
            return await async_group.getitem(name)

    if async_group.metadata.consolidated_metadata is not None:
        names = sorted(async_group.metadata.consolidated_metadata.metadata)
    else:
        names = sorted({n async for n in group.store.list_dir(group.path)} - _NOT_MEMBERS)
    opened = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
    out: list[tuple[str, zarr.Array | zarr.Group | Exception]] = []
    for name, node in zip(names, opened, strict=True):
        if isinstance(node, KeyError):  # a key that is no node (e.g. a stray file)
            continue
        if isinstance(node, BaseException) and not isinstance(node, Exception):
            raise node  # an interrupt
        out.append((name, node if isinstance(node, Exception) else
                    zarr.Array(node) if isinstance(node, AsyncArray) else zarr.Group(node)))
    return out


@dataclass
class _Known:
    """What the stores of one session know of its chunk files (a read-only view shares it)."""

    chunk_dir: Path | None  # None: read nothing directly
    local: bool = False  # the repository is on a local disk
    indexes: dict[tuple[int, str], asyncio.Future[dict[tuple[int, ...], ChunkRef]]] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)  # keys rewritten in the session: ask icechunk
    arrays: dict[tuple[int, str], asyncio.Future[_Array]] = field(default_factory=dict)
    reads: dict[tuple[int, str], int] = field(default_factory=dict)  # chunks read through icechunk, not indexed


@dataclass(frozen=True)
class _Array:
    """What a store path's metadata says, read once per session."""

    exists: bool
    summed: bool  # its codec chain ends with crc32c
    grid: int  # chunks in its grid (0 when not an array)

    @property
    def reads_before_index(self) -> int:
        return self.grid // REFS_PER_INDEXED_READ


class SessionStore(WrapperStore[IcechunkStore]):
    """An icechunk session's store whose native chunk reads bypass icechunk's local storage."""

    def __init__(self, store: IcechunkStore, chunk_dir: Path | None = None, *, known: _Known | None = None) -> None:
        super().__init__(store)
        self._known = known or _Known(chunk_dir, local=chunk_dir is not None)

    def _with_store(self, store: IcechunkStore) -> SessionStore:
        """The same session seen another way (e.g. read-only)."""
        return type(self)(store, known=self._known)

    @property
    def local(self) -> bool:
        """Is the repository on a local disk (no request round trips to hide)?"""
        return self._known.local

    @property
    def session(self) -> icechunk.Session:
        return self._store.session

    def forget(self) -> None:
        """Drop every known chunk location: the session changed other than through this store
        (e.g. it merged forks)."""
        self._known.indexes.clear()
        self._known.written.clear()

    async def _index(self, array: str) -> dict[tuple[int, ...], ChunkRef]:
        found: dict[tuple[int, ...], ChunkRef] = {}
        try:
            async for coords, kinds, ids, offsets, lengths, _ in self._store.array_chunk_iterator(array):
                for i in (kinds == _NATIVE).nonzero()[0]:
                    found[tuple(int(c) for c in coords[i])] = (ids[i], int(offsets[i]), int(lengths[i]))
        except icechunk.IcechunkError:  # not an array: icechunk answers for it
            return {}
        return found

    async def _location(self, key: str) -> ChunkRef | None:
        match = _CHUNK_KEY.match(key)
        known = self._known
        if known.chunk_dir is None or match is None or key in known.written:
            return None
        array = match["array"] or ""
        slot = (id(asyncio.get_running_loop()), array)
        if slot not in known.indexes:
            reads = known.reads[slot] = known.reads.get(slot, 0) + 1
            if reads <= (await self._array(array)).reads_before_index:
                return None  # through icechunk: it loads only the manifest split holding this chunk
            known.indexes[slot] = asyncio.ensure_future(self._index(array))
        index = await known.indexes[slot]
        found = index.get(tuple(int(c) for c in match["coords"].split("/")[1:]))
        return None if found is None else (str(known.chunk_dir / found[0]), found[1], found[2])

    @staticmethod
    def _read(location: ChunkRef) -> bytes | None:
        path, offset, length = location
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    @staticmethod
    def damaged(error: Exception) -> str:
        """icechunk's one-line message, prefixed with the storage object it names (if any)."""
        return damaged_object(error)

    def _where(self) -> str:
        try:
            return f"snapshot {self._store.session.snapshot_id}"
        except Exception:  # noqa: BLE001 - only used to word a message
            return "this session"

    async def _array(self, array: str) -> _Array:
        """Is there an array at this path, does its codec chain end with crc32c, how many chunks
        has it? (Its metadata, read once per session.)"""
        slot = (id(asyncio.get_running_loop()), array)
        known = self._known
        if slot not in known.arrays:
            known.arrays[slot] = asyncio.ensure_future(self._read_array(array))
        return await known.arrays[slot]

    async def _read_array(self, array: str) -> _Array:
        import json

        from zarr.core.buffer import default_buffer_prototype

        try:
            meta = await self._store.get(f"{array}/zarr.json" if array else "zarr.json", default_buffer_prototype())
            doc = json.loads(meta.to_bytes()) if meta is not None else {}
        except Exception:  # noqa: BLE001 - unreadable metadata fails elsewhere, with its own message
            return _Array(False, False, 0)
        if doc.get("node_type") != "array":
            return _Array(False, False, 0)
        codecs = doc.get("codecs", [])
        summed = bool(codecs) and isinstance(codecs[-1], dict) and codecs[-1].get("name") == "crc32c"
        try:
            shape = doc["chunk_grid"]["configuration"]["chunk_shape"]
            grid = int(np.prod([-(-n // max(c, 1)) for n, c in zip(doc["shape"], shape, strict=True)]))
        except (KeyError, TypeError, ValueError):  # another grid: index on first read, as before
            grid = 0
        return _Array(True, summed, grid)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        match = _CHUNK_KEY.match(key)
        if match is None:  # metadata: icechunk answers for it
            return await self._store.get(key, prototype, byte_range)
        location = await self._location(key) if byte_range is None else None
        data: bytes | np.ndarray | None = await asyncio.to_thread(self._read, location) if location else None
        if data is not None and location is not None and len(data) != location[2]:
            raise IntegrityError(f"corrupt chunk {key} at {self._where()}: "
                                 f"chunk file holds {len(data)} of its {location[2]} bytes (truncated)")
        if data is None:  # not a native chunk, or its file is not where expected: ask icechunk
            try:
                buffer = await self._store.get(key, prototype, byte_range)
            except icechunk.IcechunkError as e:
                if not (await self._array(match["array"] or "")).exists:
                    raise  # no such array: icechunk's answer stands
                raise IntegrityError(f"unreadable chunk {key} at {self._where()}: {damaged_object(e)}") from e
            if buffer is None or byte_range is not None or key in self._known.written:
                return buffer
            data = buffer.as_numpy_array()
        if (await self._array(match["array"] or "")).summed and not checksums.verify(data):
            raise IntegrityError(f"corrupt chunk {key} at {self._where()}: checksum mismatch")
        return prototype.buffer.from_bytes(data) if isinstance(data, bytes) else prototype.buffer.from_array_like(data)

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def set(self, key: str, value: Buffer) -> None:
        self._known.written.add(key)
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._known.written.add(key)
        await self._store.set_if_not_exists(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        values = list(values)
        self._known.written.update(key for key, _ in values)
        await self._store._set_many(values)

    async def delete(self, key: str) -> None:
        self._known.written.add(key)
        await self._store.delete(key)

    async def delete_dir(self, prefix: str) -> None:
        self._known.chunk_dir = None  # rare (overwriting a node): stop reading files for this session
        await self._store.delete_dir(prefix)

    async def clear(self) -> None:
        self._known.chunk_dir = None
        await self._store.clear()


def session_store(session: icechunk.Session, location: Location) -> SessionStore:
    """The store to open a session's zarr group on (direct chunk reads if the repository is local)."""
    return SessionStore(session.store, Path(location.path) / "chunks" if location.is_local else None)


def damaged_object(error: Exception) -> str:
    """icechunk's one-line message, prefixed with the storage object its trace names, e.g.
    "manifest 9G3W…: object not found" (the trace itself is never shown)."""
    found = _OBJECT.findall(str(error)) or [(f"{k}s", i) for k, i in _OBJECT_ID.findall(str(error))]
    kinds = {"snapshots": "snapshot", "manifests": "manifest", "chunks": "chunk file",
             "transactions": "transaction log"}
    prefix = f"{kinds[found[0][0]]} {found[0][1]}: " if found else ""
    return prefix + short_message(error)


def stored_chunk_sizes(store: Store, array: str) -> dict[tuple[int, ...], int]:
    """The stored size of each chunk of an array (in a chunk file or inlined in a manifest; for
    a plain zarr store such as a VCZ directory, the size of each chunk key it lists)."""
    if not isinstance(store, SessionStore):
        return _listed_chunk_sizes(store, array)

    async def sizes() -> dict[tuple[int, ...], int]:
        found: dict[tuple[int, ...], int] = {}
        async for coords, _, _, _, lengths, _ in store._store.array_chunk_iterator(array):
            found.update((tuple(int(c) for c in xs), int(n)) for xs, n in zip(coords, lengths, strict=True))
        return found

    return sync(sizes())


def _listed_chunk_sizes(store: Store, array: str) -> dict[tuple[int, ...], int]:
    meta = zarr.open_array(store, path=array, mode="r").metadata
    assert isinstance(meta, ArrayV3Metadata)  # arrays vczrepo rewrites are zarr format 3
    encoding = meta.chunk_key_encoding
    prefix = f"{array}/" if array else ""

    async def sizes() -> dict[tuple[int, ...], int]:
        keys = [k async for k in store.list_prefix(prefix) if not k.endswith("zarr.json")]
        return {tuple(encoding.decode_chunk_key(k[len(prefix):])): await store.getsize(k) for k in keys}

    return sync(sizes())
