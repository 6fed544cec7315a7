"""Chunk checksums: zarr's ``crc32c`` codec at the end of every repository array's codec chain.

Design (README: Integrity). Every array vczrepo creates ends its codec chain with
``zarr.codecs.Crc32cCodec``: the stored chunk is the encoded chunk followed by the 4-byte
CRC-32C (Castagnoli) of those bytes, little endian (what zarr's codec computes and checks).
So every reader that decodes through zarr (vcztools, xarray, zarr itself) verifies every
chunk it reads and raises on a mismatch, with no index of checksums to keep in step with
commits. A chunk copied as encoded bytes from a batch whose arrays lack the codec gets its
checksum appended here without decoding (`with_checksum`); re-encoded chunks get it from
the codec chain. Arrays made before the change have no crc32c codec: they still read and
append, and `check --deep` reports them as unverified (`add_checksums` upgrades them).
"""

from __future__ import annotations

from collections.abc import Sequence

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

CHECKSUM_NBYTES = 4
CODEC = Crc32cCodec()


def _codecs(array_or_codecs) -> tuple:
    if isinstance(array_or_codecs, zarr.Array):
        meta = array_or_codecs.metadata
        return tuple(meta.codecs) if meta.zarr_format == 3 else ()
    return tuple(array_or_codecs)


def has_checksum(array_or_codecs: zarr.Array | Sequence) -> bool:
    """Does this zarr format 3 array (or codec chain) end with the crc32c codec?"""
    codecs = _codecs(array_or_codecs)
    return bool(codecs) and isinstance(codecs[-1], Crc32cCodec)


def codecs_without_checksum(codecs: Sequence) -> tuple:
    """A codec chain without its trailing crc32c codec (unchanged if it has none)."""
    codecs = tuple(codecs)
    return codecs[:-1] if has_checksum(codecs) else codecs


def with_checksum_codec(codecs: Sequence) -> tuple:
    """A codec chain ending with the crc32c codec (unchanged if it has one)."""
    codecs = tuple(codecs)
    return codecs if has_checksum(codecs) else (*codecs, CODEC)


def _bytes(data) -> np.ndarray:
    """Any bytes-like object as a flat uint8 array, no copy (google_crc32c reads numpy buffers)."""
    return np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data).reshape(-1).view(np.uint8)


def checksum(data) -> bytes:
    """The 4 bytes zarr's crc32c codec appends to `data` (CRC-32C, little endian)."""
    return google_crc32c.value(_bytes(data)).to_bytes(4, "little")


def with_checksum(data) -> np.ndarray:
    """Encoded chunk bytes followed by their checksum, as the crc32c codec would store them
    (a new uint8 array: one copy, no decode; `bytes(...)` of it if bytes are needed)."""
    raw = _bytes(data)
    out = np.empty(raw.size + CHECKSUM_NBYTES, dtype=np.uint8)
    out[:-CHECKSUM_NBYTES] = raw
    out[-CHECKSUM_NBYTES:] = np.frombuffer(checksum(raw), dtype=np.uint8)
    return out


def verify(data) -> bool:
    """Do stored chunk bytes end with the checksum of the bytes before it?"""
    raw = _bytes(data)
    if raw.size < CHECKSUM_NBYTES:
        return False
    return checksum(raw[:-CHECKSUM_NBYTES]) == raw[-CHECKSUM_NBYTES:].tobytes()


def payload(data) -> np.ndarray:
    """The encoded chunk inside stored bytes that end with a checksum (a view, no copy)."""
    return _bytes(data)[:-CHECKSUM_NBYTES]
