"""Chunk-level data movement with bounded memory and bounded concurrency.

Two paths move a block of samples from one array into another at a sample offset:
- encoded bytes: when both arrays are zarr format 3 with the same chunk shape, codecs and
  fill value, and the offset sits on a chunk boundary, each stored chunk is copied as
  bytes under its shifted key (no decode, no encode);
- decoded: otherwise each destination chunk is assembled from decoded source values.
Either way at most ``WORKERS`` chunks are in flight, so memory does not grow with the
size of the repository or of the batch.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import schema
from .errors import SourceError

WORKERS = 8
SHOW_PROGRESS: bool | None = None  # None: only when stderr is a terminal (the CLI's --no-progress sets False)


def progress(total: int, desc: str | None):
    """A tqdm bar, shown only on a terminal unless SHOW_PROGRESS says otherwise."""
    show = sys.stderr.isatty() if SHOW_PROGRESS is None else SHOW_PROGRESS
    return tqdm(total=total, desc=desc, unit="chunk", leave=False, disable=not show)


def run_bounded(fn: Callable, tasks: Iterable, workers: int = WORKERS, desc: str | None = None) -> None:
    """Apply fn to every task on a bounded thread pool, with a progress bar.

    The first error (or Ctrl-C) cancels the tasks not yet started and propagates.
    """
    tasks = list(tasks)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with progress(len(tasks), desc) as bar:
            for _ in pool.map(fn, tasks):
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunk_ranges(length: int, chunk: int, start: int = 0, stop: int | None = None) -> Iterator[slice]:
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
        axes.append(list(_chunk_ranges(n, c, start, stop)) if i == axis else list(_chunk_ranges(n, c)))
    yield from itertools.product(*axes)


def _shift(region: tuple[slice, ...], axis: int, offset: int) -> tuple[slice, ...]:
    return tuple(
        slice(s.start + offset, s.stop + offset) if i == axis else s for i, s in enumerate(region)
    )


def same_encoding(src: zarr.Array, dst: zarr.Array) -> bool:
    """Can encoded chunks of src be stored as chunks of dst unchanged?"""
    if src.metadata.zarr_format != 3 or dst.metadata.zarr_format != 3:
        return False
    sm, dm = src.metadata, dst.metadata
    return (
        src.chunks == dst.chunks
        and sm.data_type == dm.data_type
        and sm.codecs == dm.codecs
        and sm.chunk_key_encoding == dm.chunk_key_encoding
        and np.array_equal(np.asarray(sm.fill_value), np.asarray(dm.fill_value))
    )


def _chunk_key(array: zarr.Array, coords: tuple[int, ...]) -> str:
    key = array.metadata.encode_chunk_key(coords)
    return f"{array.path}/{key}" if array.path else key


Share = tuple[int, int]  # (k, n): this worker's part of the work, chunk rows k, k+n, k+2n, …
WHOLE: Share = (0, 1)


def _mine(first_chunk_index: int, share: Share) -> bool:
    return first_chunk_index % share[1] == share[0]


def _blosc_only(array: zarr.Array) -> bool:
    codecs = array.metadata.codecs
    return len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)


def _blosc_frame_intact(data: bytes, expected_nbytes: int) -> bool:
    """A blosc frame's header states its compressed and uncompressed sizes: a truncated or
    padded chunk, or one of the wrong shape, does not match them."""
    if len(data) < 16:
        return False
    nbytes = int.from_bytes(data[4:8], "little")
    cbytes = int.from_bytes(data[12:16], "little")
    return cbytes == len(data) and nbytes == expected_nbytes


async def _copy_encoded(src: zarr.Array, dst: zarr.Array, axis: int, chunk_offset: int, share: Share) -> None:
    """Copy stored chunks as bytes, each checked on the way: blosc frames by their header
    (sizes), other codecs by decoding once."""
    grid = [c for c in itertools.product(*(range(-(-n // k)) for n, k in zip(src.shape, src.chunks, strict=True)))
            if _mine(c[0], share)]
    limit = asyncio.Semaphore(WORKERS)
    proto = default_buffer_prototype()
    by_header = _blosc_only(src)
    chunk_nbytes = int(np.prod(src.chunks)) * np.dtype(src.dtype).itemsize

    async def check(coords: tuple[int, ...], data) -> None:
        if by_header:
            if not _blosc_frame_intact(data.to_bytes(), chunk_nbytes):
                raise ValueError("blosc frame sizes do not match its header (truncated?)")
            return
        region = tuple(slice(c * k, min((c + 1) * k, n)) for c, k, n in zip(coords, src.chunks, src.shape))
        await src.async_array.getitem(region)

    async def one(coords: tuple[int, ...], bar) -> None:
        async with limit:
            data = await src.store.get(_chunk_key(src, coords), prototype=proto)
            if data is not None:  # never written: reads as fill value on both sides
                try:
                    await check(coords, data)
                except Exception as e:  # a truncated or corrupt chunk: refuse before committing it
                    raise SourceError(f"cannot read {src.path} chunk {list(coords)}: {type(e).__name__}: {e}") from e
                target = tuple(c + chunk_offset if i == axis else c for i, c in enumerate(coords))
                await dst.store.set(_chunk_key(dst, target), data)
            bar.update()

    with progress(len(grid), dst.path) as bar:
        await asyncio.gather(*(one(c, bar) for c in grid))


def copy_samples(src: zarr.Array, dst: zarr.Array, offset: int, select: np.ndarray | None = None,
                 share: Share = WHOLE) -> None:
    """Write all samples of src (or those at `select`) into dst starting at sample `offset`.

    dst must already be large enough. `share` restricts the work to one worker's part.
    """
    axis = schema.sample_axis(dst)
    n = src.shape[axis] if select is None else len(select)
    chunk = dst.chunks[axis]
    if select is None and offset % chunk == 0 and same_encoding(src, dst):
        sync(_copy_encoded(src, dst, axis, offset // chunk, share))
        return

    def one(region: tuple[slice, ...]) -> None:
        s = region[axis]
        if select is None:
            src_sel = _shift(region, axis, -offset)
        else:
            src_sel = tuple(select[s.start - offset : s.stop - offset] if i == axis else r
                            for i, r in enumerate(region))
        try:
            values = src.oindex[src_sel] if select is not None else src[src_sel]
        except Exception as e:  # a truncated or corrupt chunk in the batch
            raise SourceError(f"cannot read {src.path} at {[(r.start, r.stop) for r in src_sel if isinstance(r, slice)]}: "
                              f"{type(e).__name__}: {e}") from e
        dst[region] = values

    regions = [r for r in sample_regions(dst, offset, offset + n) if _mine(r[0].start // dst.chunks[0], share)]
    run_bounded(one, regions, desc=dst.path)


def copy_array(src: zarr.Array, dst: zarr.Array) -> None:
    """Copy a whole array of identical shape (encoded bytes when possible)."""
    if same_encoding(src, dst):
        sync(_copy_encoded(src, dst, 0, 0, WHOLE))
        return
    regions = itertools.product(
        *(list(_chunk_ranges(n, c)) for n, c in zip(dst.shape, dst.chunks, strict=True))
    )

    def one(region: tuple[slice, ...]) -> None:
        dst[region] = src[region]

    run_bounded(one, regions, desc=dst.path)


def write_columns(array: zarr.Array, indexes: list[int], values: Callable, share: Share = WHOLE) -> None:
    """Overwrite the given sample columns, one chunk column at a time (read-modify-write).

    `values(region, columns)` gives the new data for global sample `columns` within the
    region's other axes: a scalar, or an array shaped like the region with those columns.
    """
    axis = schema.sample_axis(array)
    chunk = array.chunks[axis]
    by_chunk: dict[int, list[int]] = {}
    for i in sorted(indexes):
        by_chunk.setdefault(i // chunk, []).append(i)
    tasks = []
    for c, members in by_chunk.items():
        start, stop = c * chunk, min((c + 1) * chunk, array.shape[axis])
        for region in sample_regions(array, start, stop):
            if _mine(region[0].start // array.chunks[0], share):
                tasks.append((region, members))

    def one(task: tuple[tuple[slice, ...], list[int]]) -> None:
        region, members = task
        block = np.array(array[region])
        start = region[axis].start
        index = tuple([i - start for i in members] if k == axis else slice(None) for k in range(block.ndim))
        block[index] = values(region, members)
        array[region] = block

    run_bounded(one, tasks, desc=array.path)


def fill_samples(array: zarr.Array, indexes: list[int], value, share: Share = WHOLE) -> None:
    """Overwrite the given samples of an array with a constant."""
    write_columns(array, indexes, lambda region, members: value, share)


def copy_columns(src: zarr.Array, dst: zarr.Array, indexes: list[int]) -> None:
    """Copy the given sample columns from src into the same positions of dst."""
    axis = schema.sample_axis(dst)

    def values(region, members):
        return src.oindex[tuple(members if k == axis else r for k, r in enumerate(region))]

    write_columns(dst, indexes, values)
