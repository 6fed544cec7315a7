"""Chunk-level data movement with bounded memory and bounded concurrency.

Two paths move a block of samples from one array into another at a sample offset:
- encoded bytes: when both arrays are zarr format 3 with the same chunk shape, codecs and
  fill value, and the offset sits on a chunk boundary, each stored chunk is copied as
  bytes under its shifted key (no decode, no encode);
- decoded: otherwise each destination chunk is assembled from decoded source values, one
  chunk row at a time, each source chunk decoded once.
Either way at most `Settings.concurrency` chunks (or chunk rows) are in flight, so memory
does not grow with the size of the repository or of the batch. A `Pipeline` carries the
settings; the functions that need none are plain functions.

Chunks vczrepo re-encodes (remove, unaligned append, padding, checkout --drop-removed) are
compressed at `Settings.compression_level` rather than the level in the array's metadata: a blosc
frame decodes the same whatever level made it, and on genotype data zstd level 1 encodes
10-20x faster than bio2zarr's level 7 for about the same size (README: Semantics). They keep
the block size blosc picks at the metadata's level: at level 1 it would pick 16x smaller
blocks, which encode and decode slower and compress worse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr
from numcodecs import Blosc
from tqdm import tqdm
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import checksums, schema
from .errors import IntegrityError, SourceError
from .internals import SessionStore, chunk_key, with_codecs
from .settings import DEFAULT, Settings

ENCODED_COMPARE_CONCURRENCY = 8  # chunk pairs compared at once by encoded_equal


def chunk_ranges(length: int, chunk: int, start: int = 0, stop: int | None = None) -> Iterator[slice]:
    """Chunk-aligned slices covering [start, stop) of an axis."""
    stop = length if stop is None else stop
    pos = start
    while pos < stop:
        end = min((pos // chunk + 1) * chunk, stop)
        yield slice(pos, end)
        pos = end


def sample_regions(array: zarr.Array, start: int, stop: int) -> Iterator[tuple[slice, ...]]:
    """Chunk-aligned regions of `array` covering samples [start, stop) on every other axis."""
    axis = schema.sample_axis(array)
    axes = []
    for i, (n, c) in enumerate(zip(array.shape, array.chunks, strict=True)):
        axes.append(list(chunk_ranges(n, c, start, stop)) if i == axis else list(chunk_ranges(n, c)))
    yield from itertools.product(*axes)


def _codecs_at_level(codecs: tuple, level: int) -> tuple:
    return tuple(dataclasses.replace(c, clevel=level) if isinstance(c, BloscCodec) else c for c in codecs)


def same_encoding(src: zarr.Array, dst: zarr.Array) -> bool:
    """Can encoded chunks of src be stored as chunks of dst unchanged?

    Blosc's compression level is not part of the frame format, so it may differ."""
    if src.metadata.zarr_format != 3 or dst.metadata.zarr_format != 3:
        return False
    sm, dm = src.metadata, dst.metadata
    return (
        src.chunks == dst.chunks
        and sm.data_type == dm.data_type
        and _codecs_at_level(checksums.codecs_without_checksum(sm.codecs), 0)  # modulo crc32c
        == _codecs_at_level(checksums.codecs_without_checksum(dm.codecs), 0)
        and sm.chunk_key_encoding == dm.chunk_key_encoding
        and np.array_equal(np.asarray(sm.fill_value), np.asarray(dm.fill_value))
    )


PROBE_NBYTES = 4 << 20  # more than any block size blosc chooses by itself (at most 1 MiB)
_SHUFFLES = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


def _numcodecs_blosc(cname: str, clevel: int, shuffle: str, typesize: int, blocksize: int = 0) -> Blosc:
    return Blosc(cname=cname, clevel=clevel, shuffle=_SHUFFLES[shuffle], typesize=typesize, blocksize=blocksize)


def _settings(codec: BloscCodec) -> tuple[str, int, str, int]:
    """cname, clevel, shuffle, typesize (zarr gives cname and shuffle as enums or strings)."""
    return (str(getattr(codec.cname, "value", codec.cname)), codec.clevel,
            str(getattr(codec.shuffle, "value", codec.shuffle)), codec.typesize)


def blosc_encoder(codec: BloscCodec) -> Blosc:
    """numcodecs' Blosc encoding as `codec` does."""
    return _numcodecs_blosc(*_settings(codec), codec.blocksize)


@functools.lru_cache
def _auto_blocksize(cname: str, clevel: int, shuffle: str, typesize: int, chunk_nbytes: int) -> int:
    """The block size blosc chooses at a level: it depends on the codec settings, and on the
    chunk size only when the chunk is smaller than a block. Read from the header of a frame
    of zeros no larger than needed (encoding a whole 20 MB chunk at level 7 takes a second)."""
    size = min(chunk_nbytes, PROBE_NBYTES)
    probe = _numcodecs_blosc(cname, clevel, shuffle, typesize).encode(np.zeros(size - size % typesize, np.uint8))
    return int.from_bytes(probe[8:12], "little")


def _blocksize(codec: BloscCodec, chunk_nbytes: int) -> int:
    return codec.blocksize or _auto_blocksize(*_settings(codec), chunk_nbytes)


def rewrite_codecs(array: zarr.Array, level: int) -> tuple:
    """The codecs vczrepo encodes `array`'s chunks with: blosc at `level`, with the block
    size the array's own level gives (an explicit block size is kept)."""
    chunk_nbytes = math.prod(array.chunks) * array.dtype.itemsize
    meta = array.metadata
    assert meta.zarr_format == 3  # only format 3 arrays are rewritten (Pipeline.writer)
    return tuple(
        dataclasses.replace(c, clevel=level, blocksize=_blocksize(c, chunk_nbytes))
        if isinstance(c, BloscCodec) else c
        for c in meta.codecs
    )


# decoded size of the chunks copied at once into a local repository (at least 2, at most
# Settings.concurrency): each is held two or three times on its way (read, checksum appended,
# icechunk's copy). 2 of 20 MB call chunks at a time copy a batch no slower than 8 on a local
# disk, with ~75 MB less peak memory (measured: 10,000 samples x 100,000 variants, 1.1 GB). On
# object storage each write waits a round trip: Settings.concurrency of them stay in flight.
COPY_BUDGET_BYTES = 32 << 20

Share = tuple[int, int]  # (k, n): this worker's part of the work, chunk rows k, k+n, k+2n, …
WHOLE: Share = (0, 1)


def mine(first_chunk_index: int, share: Share) -> bool:
    """Is this chunk row in the worker's share?"""
    return first_chunk_index % share[1] == share[0]


def _blosc_only(array: zarr.Array) -> bool:
    meta = array.metadata
    assert meta.zarr_format == 3  # called after same_encoding, which requires format 3
    codecs = checksums.codecs_without_checksum(meta.codecs)  # modulo crc32c
    return len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)


def _blosc_frame_intact(data, expected_nbytes: int) -> bool:
    """A blosc frame's header states its compressed and uncompressed sizes: a truncated or
    padded chunk, or one of the wrong shape, does not match them. (Reads 16 bytes, copies none.)"""
    raw = data.as_numpy_array()
    if raw.nbytes < 16:
        return False
    header = raw[:16].tobytes()
    nbytes = int.from_bytes(header[4:8], "little")
    cbytes = int.from_bytes(header[12:16], "little")
    return cbytes == raw.nbytes and nbytes == expected_nbytes


def _chunk_grid(array: zarr.Array) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(-(-n // k)) for n, k in zip(array.shape, array.chunks, strict=True)))


async def gather_or_cancel(coroutines: Iterable) -> list:
    """Run coroutines concurrently; on the first error cancel the others and wait for them
    before raising (asyncio.gather would leave them running after the error propagates)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None  # the first error, as the caller expects it (not a group)
    return [t.result() for t in tasks]


def encoded_equal(a: zarr.Array, b: zarr.Array) -> bool:
    """Do two arrays of the same shape and encoding store byte-identical chunks (and so hold
    equal values)? False means "not shown equal": the values may still be equal."""
    if a.shape != b.shape or not same_encoding(a, b):
        return False
    proto = default_buffer_prototype()
    limit = asyncio.Semaphore(ENCODED_COMPARE_CONCURRENCY)
    a_sum, b_sum = checksums.has_checksum(a), checksums.has_checksum(b)

    async def same(coords: tuple[int, ...]) -> bool:
        async with limit:
            x, y = await asyncio.gather(a.store.get(chunk_key(a, coords), prototype=proto),
                                        b.store.get(chunk_key(b, coords), prototype=proto))
        if x is None or y is None:
            return x is y
        xs, ys = x.as_numpy_array(), y.as_numpy_array()
        if a_sum != b_sum:  # compare the encoded chunks, modulo one side's checksum
            xs, ys = (checksums.payload(xs) if a_sum else xs), (checksums.payload(ys) if b_sum else ys)
        return np.array_equal(xs, ys)

    async def all_same() -> bool:
        return all(await gather_or_cancel(same(c) for c in _chunk_grid(a)))

    return sync(all_same())


def read_region(src: zarr.Array, region: tuple, select: np.ndarray | None = None) -> np.ndarray:
    try:
        return np.asarray(src.oindex[region] if select is not None else src[region])
    except IntegrityError:  # a damaged repository chunk, named by the store
        raise
    except Exception as e:  # a truncated or corrupt chunk in the batch
        where = [(r.start, r.stop) for r in region if isinstance(r, slice)]
        raise SourceError(f"cannot read {src.path} at {where}: {type(e).__name__}: {e}") from e


def _on_axis(region: tuple, axis: int, index) -> tuple:
    return tuple(index if i == axis else r for i, r in enumerate(region))


def _outer_regions(array: zarr.Array, axis: int, share: Share) -> list[tuple]:
    """Chunk regions over every axis but the sample axis (whose entry is left as a full slice)."""
    axes = [[slice(None)] if i == axis else list(chunk_ranges(n, c))
            for i, (n, c) in enumerate(zip(array.shape, array.chunks, strict=True))]
    return [r for r in itertools.product(*axes) if mine(r[0].start // array.chunks[0] if axis else 0, share)]


class Pipeline:
    """Moves chunks with the settings of one operation: bounded concurrency, progress bars,
    the compression level of re-encoded chunks, and the write-site checkpoints."""

    def __init__(self, settings: Settings = DEFAULT):
        self.settings = settings

    def progress(self, total: int, desc: str | None) -> tqdm:
        return tqdm(total=total, desc=desc, unit="chunk", leave=False, disable=not self.settings.show_progress)

    def run_bounded(self, fn: Callable, tasks: Iterable, site: str | None, desc: str | None = None) -> None:
        """Apply fn to every task on a bounded thread pool, with a progress bar; each task is
        a write `site` (None: a read). The first error (or Ctrl-C) cancels the tasks not yet
        started and propagates."""
        tasks = list(tasks)
        at = self.settings.at

        def one(task) -> None:
            if site is not None:
                at(site)
            fn(task)

        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency)
        try:
            with self.progress(len(tasks), desc) as bar:
                for _ in pool.map(one, tasks):
                    bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def writer(self, array: zarr.Array) -> zarr.Array:
        """The same stored array, encoding the chunks it writes at the settings' compression level.
        Make it after any resize of the array."""
        level = self.settings.compression_level
        if level is None or array.metadata.zarr_format != 3:
            return array
        return with_codecs(array, rewrite_codecs(array, level))

    async def copy_encoded(self, src: zarr.Array, dst: zarr.Array, axis: int, chunk_offset: int,
                            share: Share) -> None:
        """Copy stored chunks as bytes, each checked on the way: blosc frames by their header
        (sizes), other codecs by decoding once."""
        grid = [c for c in _chunk_grid(src) if mine(c[0], share)]
        proto = default_buffer_prototype()
        by_header = _blosc_only(src)
        chunk_nbytes = int(np.prod(src.chunks)) * np.dtype(src.dtype).itemsize
        in_flight = self.settings.concurrency
        if isinstance(dst.store, SessionStore) and dst.store.local:  # memory to save, no round trips to overlap
            in_flight = max(2, min(in_flight, COPY_BUDGET_BYTES // chunk_nbytes))
        limit = asyncio.Semaphore(in_flight)
        at = self.settings.at
        src_sum, dst_sum = checksums.has_checksum(src), checksums.has_checksum(dst)

        async def check(coords: tuple[int, ...], data) -> None:
            if src_sum and not checksums.verify(data.as_numpy_array()):
                raise ValueError("checksum mismatch")
            if by_header:
                frame = proto.buffer.from_array_like(checksums.payload(data.as_numpy_array())) if src_sum else data
                if not _blosc_frame_intact(frame, chunk_nbytes):
                    raise ValueError("blosc frame sizes do not match its header (truncated?)")
                return
            region = tuple(slice(c * k, min((c + 1) * k, n))
                           for c, k, n in zip(coords, src.chunks, src.shape, strict=True))
            await src.async_array.getitem(region)

        async def one(coords: tuple[int, ...], bar) -> None:
            async with limit:
                data = await src.store.get(chunk_key(src, coords), prototype=proto)
                if data is not None:  # never written: reads as fill value on both sides
                    try:
                        await check(coords, data)
                    except Exception as e:  # a truncated or corrupt chunk: refuse before committing it
                        raise SourceError(
                            f"cannot read {src.path} chunk {list(coords)}: {type(e).__name__}: {e}") from e
                    at("copy-encoded")
                    target = tuple(c + chunk_offset if i == axis else c for i, c in enumerate(coords))
                    if dst_sum and not src_sum:  # the checksum is appended, nothing decoded
                        data = proto.buffer.from_array_like(checksums.with_checksum(data.as_numpy_array()))
                    elif src_sum and not dst_sum:  # a repository made before checksums stores none
                        data = proto.buffer.from_array_like(checksums.payload(data.as_numpy_array()))
                    await dst.store.set(chunk_key(dst, target), data)
                bar.update()

        with self.progress(len(grid), dst.path) as bar:
            await gather_or_cancel(one(c, bar) for c in grid)

    def copy_samples(self, src: zarr.Array, dst: zarr.Array, offset: int, select: np.ndarray | None = None,
                     share: Share = WHOLE) -> None:
        """Write all samples of src (or those at `select`) into dst starting at sample `offset`.

        dst must already be large enough. `share` restricts the work to one worker's part.
        """
        axis = schema.samples_axis(dst)
        n = src.shape[axis] if select is None else len(select)
        same_rows = src.shape[axis + 1:] == dst.shape[axis + 1:]  # else the batch's shorter rows are padded
        if select is None and same_rows and offset % dst.chunks[axis] == 0 and same_encoding(src, dst):
            sync(self.copy_encoded(src, dst, axis, offset // dst.chunks[axis], share))
            return
        out = self.writer(dst)
        if select is None:
            pad = schema.pad_value(dst.path.rsplit("/", 1)[-1], dst)
            self.run_bounded(lambda outer: _recompose(src, out, axis, offset, outer, pad),
                             _outer_regions(dst, axis, share), "recompose", desc=dst.path)
            return

        def one(region: tuple[slice, ...]) -> None:
            s = region[axis]
            got = read_region(src, _on_axis(region, axis, select[s.start - offset : s.stop - offset]), select)
            out[region] = schema.stored_as(got, dst)

        regions = [r for r in sample_regions(dst, offset, offset + n) if mine(r[0].start // dst.chunks[0], share)]
        self.run_bounded(one, regions, "recompose", desc=dst.path)

    def copy_array(self, src: zarr.Array, dst: zarr.Array) -> None:
        """Copy a whole array of identical shape (encoded bytes when possible)."""
        if same_encoding(src, dst):
            sync(self.copy_encoded(src, dst, 0, 0, WHOLE))
            return
        regions = itertools.product(*(list(chunk_ranges(n, c)) for n, c in zip(dst.shape, dst.chunks, strict=True)))
        out = self.writer(dst)

        def one(region: tuple[slice, ...]) -> None:
            out[region] = schema.stored_as(src[region], dst)

        self.run_bounded(one, regions, "recompose", desc=dst.path)

    def write_columns(self, array: zarr.Array, indexes: list[int], values: Callable, share: Share = WHOLE,
                      site: str = "fill") -> None:
        """Overwrite the given sample columns, one chunk column at a time (read-modify-write;
        a chunk whose columns already hold the new values is not re-encoded).

        `values(region, columns)` gives the new data for global sample `columns` within the
        region's other axes: a scalar, or an array shaped like the region with those columns.
        """
        axis = schema.samples_axis(array)
        chunk = array.chunks[axis]
        by_chunk: dict[int, list[int]] = {}
        for i in sorted(indexes):
            by_chunk.setdefault(i // chunk, []).append(i)
        tasks = []
        for c, members in by_chunk.items():
            start, stop = c * chunk, min((c + 1) * chunk, array.shape[axis])
            for region in sample_regions(array, start, stop):
                if mine(region[0].start // array.chunks[0], share):
                    tasks.append((region, members))

        out = self.writer(array)

        def one(task: tuple[tuple[slice, ...], list[int]]) -> None:
            region, members = task
            block = np.asarray(array[region])
            start = region[axis].start
            cols = [i - start for i in members]
            columns: list[int] | slice = cols
            if cols == list(range(cols[0], cols[-1] + 1)):
                columns = slice(cols[0], cols[-1] + 1)  # a view, not a copy
            index = _on_axis((slice(None),) * block.ndim, axis, columns)
            new = values(region, members)  # a scalar compares without a cast
            new = np.asarray(new, dtype=block.dtype) if block.dtype.kind in "OTUS" else schema.stored_as(new, array)
            current = block[index]
            if np.array_equal(current, np.broadcast_to(new, current.shape)):
                return  # e.g. padding columns that already read as missing
            block[index] = new
            out[region] = block

        self.run_bounded(one, tasks, site, desc=array.path)

    def fill_samples(self, array: zarr.Array, indexes: list[int], value, share: Share = WHOLE) -> None:
        """Overwrite the given samples of an array with a constant."""
        self.write_columns(array, indexes, lambda region, members: value, share)

    def copy_columns(self, src: zarr.Array, dst: zarr.Array, indexes: list[int], rows: np.ndarray | None = None,
                     null=None) -> None:
        """Copy the given sample columns from src into the same positions of dst; with `rows`
        (per row of dst, its row in src or -1), each value to its row, `null` where there is none."""
        axis = schema.sample_axis(dst)

        def values(region, members):
            if rows is None:
                return src.oindex[tuple(members if k == axis else r for k, r in enumerate(region))]
            here = rows[region[0]]
            found = here >= 0
            out = np.full(tuple(len(members) if k == axis else r.stop - r.start for k, r in enumerate(region)),
                          null, dtype=src.dtype)
            if found.any():
                where: tuple = tuple(here[found] if k == 0 else np.asarray(members) if k == axis else r
                                     for k, r in enumerate(region))
                out[found] = src.oindex[where]
            return out

        self.write_columns(dst, indexes, values, site="restore")


def _recompose(src: zarr.Array, dst: zarr.Array, axis: int, offset: int, outer: tuple, pad) -> None:
    """Write src's samples at `offset` along one chunk row of dst, decoding each source chunk
    once: every destination chunk is cut from at most a few consecutive source chunks. Rows
    of src shorter than dst's (trailing axes: ploidy, alleles, FORMAT_*_dim) are padded with `pad`."""
    step = src.chunks[axis]
    decoded: dict[int, np.ndarray] = {}

    def source_chunk(j: int) -> np.ndarray:
        if j not in decoded:
            decoded[j] = read_region(src, _on_axis(outer, axis, slice(j * step, min((j + 1) * step, src.shape[axis]))))
        return decoded[j]

    for s in chunk_ranges(dst.shape[axis], dst.chunks[axis], offset, offset + src.shape[axis]):
        a, b = s.start - offset, s.stop - offset
        first, last = a // step, (b - 1) // step
        parts = [source_chunk(j)[_on_axis((slice(None),) * len(outer), axis,
                                          slice(max(a, j * step) - j * step, min(b, (j + 1) * step) - j * step))]
                 for j in range(first, last + 1)]
        for j in [j for j in decoded if j < last]:
            del decoded[j]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
        region = _on_axis(outer, axis, s)
        shape = tuple(r.stop - r.start for r in region)
        dst[region] = schema.stored_as(block if block.shape == shape else schema.fitted(block, shape, pad), dst)


