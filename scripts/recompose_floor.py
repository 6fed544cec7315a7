"""The least work an unaligned append must do, timed without zarr, icechunk or any write.

With a regular sample grid, appending a batch at an offset that is not a multiple of the
sample chunk size recomposes every chunk: for each batch chunk, the repository's partial
chunk and the batch chunk are decoded and two new chunks are encoded (blosc at level 1, with
the block size vczrepo uses). This does exactly that on the batch's own chunks (each read
once and decoded twice, standing in for the partial repository chunk), on a small thread
pool, and prints the seconds it took. bench.py uses it as a baseline: it bounds how close
an unaligned append can come to an aligned one on this machine and data.

    uv run python scripts/recompose_floor.py BATCH.vcz [--workers N]
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import click
import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from vczrepo import chunks, schema
from vczrepo.internals import chunk_key


def _encoder(array: zarr.Array) -> Blosc:
    return chunks.blosc_encoder(next(c for c in chunks.rewrite_codecs(array, 1) if isinstance(c, BloscCodec)))


def recompose_all(batch: zarr.Group, workers: int) -> int:
    """Recompose every chunk of the batch's blosc-compressed numeric sample arrays; returns
    the encoded bytes (so the work cannot be skipped)."""
    arrays = [a for a in schema.sample_arrays(batch).values()
              if a.dtype.kind in "biuf" and any(isinstance(c, BloscCodec) for c in a.metadata.codecs)]
    tasks = [(a, coords) for a in arrays for coords in chunks._chunk_grid(a)]
    local = threading.local()
    proto = default_buffer_prototype()

    def one(task) -> int:
        array, coords = task
        buffers = getattr(local, "buffers", {})
        local.buffers = buffers
        if array.path not in buffers:
            buffers[array.path] = [np.empty(array.chunks, array.dtype) for _ in range(4)], _encoder(array)
        (partial, own, first, second), encoder = buffers[array.path]
        data = sync(array.store.get(chunk_key(array, coords), prototype=proto))
        if data is None:
            return 0
        decoder = Blosc()
        decoder.decode(data.as_numpy_array(), out=partial)
        decoder.decode(data.as_numpy_array(), out=own)
        axis = schema.sample_axis(array)
        half = array.chunks[axis] // 2
        cut = [slice(None)] * own.ndim
        for out, pieces in ((first, (partial, own)), (second, (own, partial))):
            cut[axis] = slice(None, half)
            out[tuple(cut)] = pieces[0][tuple(cut)]
            cut[axis] = slice(half, None)
            out[tuple(cut)] = pieces[1][tuple(cut)]
        return len(encoder.encode(first)) + len(encoder.encode(second))

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, tasks))


@click.command()
@click.argument("batch", type=click.Path(exists=True))
@click.option("--workers", default=4, show_default=True, help="Threads (4 measured fastest on 2 cores).")
def main(batch: str, workers: int) -> None:
    """Time the decode + reassemble + encode work of an unaligned append of BATCH."""
    start = time.perf_counter()
    encoded = recompose_all(zarr.open_group(batch, mode="r"), workers)
    click.echo(f"recomposed {encoded / 2**20:.0f} MiB of new chunks in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
