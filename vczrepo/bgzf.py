"""BGZF, the block gzip of bgzip/htslib: what `view -o out.vcf.gz` writes, so that tabix and
bcftools can index and read the file (vcztools writes only plain VCF).

Each block is a complete gzip member of at most 64 KiB of input whose header carries the
'BC' extra field (the block's compressed size); the file ends with the standard empty
block. Written with zlib only.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

BLOCK = 0xFF00  # input bytes per block, as bgzip uses
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _block(data: bytes, level: int) -> bytes:
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
    payload = deflate.compress(data) + deflate.flush()
    size = len(payload) + 25  # header 18 + trailer 8, minus 1
    header = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", 6) + b"BC" + struct.pack("<HH", 2, size)
    return header + payload + struct.pack("<II", zlib.crc32(data), len(data))


def compress_file(src: BinaryIO, dst: BinaryIO, level: int = 6) -> None:
    """Copy `src` into `dst` as BGZF."""
    while chunk := src.read(BLOCK):
        dst.write(_block(chunk, level))
    dst.write(EOF_BLOCK)
