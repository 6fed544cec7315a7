"""The least an aligned append can cost through icechunk, timed with nothing else.

An aligned append copies the batch's stored chunks as encoded bytes into the repository.
This writes every object of the batch directory as it is (metadata first, since icechunk
stores chunks only under arrays it knows, then every chunk) into a new local icechunk
repository through icechunk's own store, with the given number of writes in flight, and
commits: no zarr, no checks, no vczrepo. bench.py uses it as a baseline next to `cp -r`
of the same directory: it bounds how close any append through icechunk's API can come to
copying the bytes on this machine.

    uv run python scripts/icechunk_floor.py BATCH.vcz NEW_REPO [--in-flight N]
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
import icechunk
from zarr.core.buffer import default_buffer_prototype


async def store_objects(store: icechunk.IcechunkStore, batch: Path, in_flight: int) -> int:
    """Write every file under `batch` to `store` under its relative path; returns the bytes."""
    files = sorted(p for p in batch.rglob("*") if p.is_file())
    metadata = [p for p in files if p.name == "zarr.json"]
    chunk_files = [p for p in files if p.name != "zarr.json"]
    limit = asyncio.Semaphore(in_flight)
    proto = default_buffer_prototype()

    async def put(path: Path) -> int:
        async with limit:
            data = await asyncio.to_thread(path.read_bytes)
            await store.set(path.relative_to(batch).as_posix(), proto.buffer.from_bytes(data))
            return len(data)

    for path in sorted(metadata, key=lambda p: len(p.parts)):  # parents before children
        await put(path)
    return sum(await asyncio.gather(*(put(p) for p in chunk_files)))


@click.command()
@click.argument("batch", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo", type=click.Path(exists=False, path_type=Path))
@click.option("--in-flight", default=8, show_default=True, help="Writes in flight (vczrepo's chunk copy uses 8).")
def main(batch: Path, repo: Path, in_flight: int) -> None:
    """Store the objects of BATCH in a new icechunk repository at REPO and commit."""
    start = time.perf_counter()
    session = icechunk.Repository.create(icechunk.local_filesystem_storage(str(repo))).writable_session("main")
    written = asyncio.run(store_objects(session.store, batch, in_flight))
    session.commit("the batch's objects as they are")
    click.echo(f"stored {written / 2**20:.0f} MiB through icechunk in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
