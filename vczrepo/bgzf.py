"""BGZF, the block gzip of bgzip/htslib: what `view -O z` (or `-o out.vcf.gz`) writes, so that
tabix and bcftools can index and read the file (vcztools writes only plain VCF).

Each block is a complete gzip member of at most 64 KiB of input whose header carries the
'BC' extra field (the block's compressed size); the stream ends with the standard empty
block. Written with zlib only, block by block as the text comes (nothing is held back
but the block being filled).
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO, TextIO

BLOCK = 0xFF00  # input bytes per block, as bgzip uses
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
DEFAULT_LEVEL = 6  # zlib's default, as bgzip's


def _block(data: bytes, level: int) -> bytes:
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
    payload = deflate.compress(data) + deflate.flush()
    size = len(payload) + 25  # header 18 + trailer 8, minus 1
    header = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", 6) + b"BC" + struct.pack("<HH", 2, size)
    return header + payload + struct.pack("<II", zlib.crc32(data), len(data))


class _Blocks(io.RawIOBase):
    """Bytes in, BGZF blocks out to `dst` as each block fills."""

    def __init__(self, dst: BinaryIO, level: int):
        super().__init__()
        self._dst: BinaryIO | None = dst
        self._level, self._pending = level, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if self._dst is None:  # detached: what the text wrapper flushes when it is collected
            return len(data)
        self._pending += data
        while len(self._pending) >= BLOCK:
            self._dst.write(_block(bytes(self._pending[:BLOCK]), self._level))
            del self._pending[:BLOCK]
        return len(data)

    def finish(self) -> None:
        assert self._dst is not None
        if self._pending:
            self._dst.write(_block(bytes(self._pending), self._level))
            self._pending.clear()
        self._dst.write(EOF_BLOCK)
        self._dst.flush()

    def detach_output(self) -> None:
        self._dst = None


@contextlib.contextmanager
def text_writer(dst: BinaryIO, level: int = DEFAULT_LEVEL) -> Iterator[TextIO]:
    """A text stream whose UTF-8 bytes reach `dst` as BGZF; the end-of-file block is written
    only when the block ends without an error (`dst` itself stays open)."""
    blocks = _Blocks(dst, level)
    text = io.TextIOWrapper(io.BufferedWriter(blocks, BLOCK), encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
        blocks.finish()
    finally:  # after an error (a closed pipe) nothing more reaches `dst`, not even at collection
        blocks.detach_output()
