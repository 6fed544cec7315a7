"""Everything vczrepo does that leans on zarr's or icechunk's internals, in one place.

Each item has a canary test (tests/test_internals.py) that fails loudly when an upgrade
changes what it relies on:
- `with_codecs`: a zarr array object over the same stored array whose chunk writes use
  other codecs (zarr builds an `AsyncArray` from metadata we change in memory only);
- `chunk_key`: the store key of a chunk, from zarr format 3 metadata's key encoding;
- direct chunk-file reads of local repositories (vczrepo.chunkfiles): icechunk's documented
  layout (`chunks/<id>`) and `IcechunkStore.array_chunk_iterator`.
"""

from __future__ import annotations

import dataclasses

import zarr
from zarr.core.array import AsyncArray


def with_codecs(array: zarr.Array, codecs: tuple) -> zarr.Array:
    """The same stored array, encoding the chunks it writes with `codecs`.

    Only chunk writes go through it; its metadata is never stored."""
    assert array.metadata.zarr_format == 3  # format 2 metadata has no codec chain
    meta = dataclasses.replace(array.metadata, codecs=codecs)
    return zarr.Array(AsyncArray(meta, array.async_array.store_path, array.async_array.config))


def chunk_key(array: zarr.Array, coords: tuple[int, ...]) -> str:
    """The key of a chunk in the array's store (zarr format 3)."""
    key = array.metadata.encode_chunk_key(coords)
    return f"{array.path}/{key}" if array.path else key


def click_saw_broken_pipe() -> bool:
    """Did click end the command because its output pipe closed? (click handles EPIPE itself:
    it wraps stdout in its `_PacifyFlushWrapper` and exits 1, even outside standalone mode.)"""
    return type(__import__("sys").stdout).__name__ in ("PacifyFlushWrapper", "_PacifyFlushWrapper")
