"""The header of a VCF/BCF file, read without reading any record.

What a batch's samples and contigs are can be known from its header alone, so init,
append and extend refuse a batch the repository cannot take before bio2zarr converts it
(minutes to hours for a large batch). bio2zarr takes its sample ids from the #CHROM line
and its contigs from the ##contig lines (htslib's `seqnames`), which is what is read here:
plain text VCF, BGZF- or gzip-compressed VCF, and BCF (compressed or not).
"""

from __future__ import annotations

import gzip
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"
BCF_MAGIC = b"BCF\x02"
CONTIG_ID = re.compile(r"^##contig=<(?:.*?,)?ID=([^,>]+)")


@dataclass(frozen=True)
class VcfHeader:
    """Sample ids in column order, and the declared contigs (None when the header declares
    none: bio2zarr then takes them from the index, which the header cannot tell)."""

    samples: list[str]
    contigs: list[str] | None


def read_header(path: Path) -> VcfHeader:
    """The samples and contigs of a VCF/BCF file, from its header lines only."""
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC  # BGZF is gzip
            raw.seek(0)
            lines = _header_lines(gzip.GzipFile(fileobj=raw) if compressed else raw)
    except (OSError, EOFError, struct.error, ValueError) as e:
        raise SourceError(f"cannot read the VCF header of {path}: {type(e).__name__}: {e}") from e
    contigs: list[str] = []
    for line in lines:
        if line.startswith("#CHROM"):
            columns = line.rstrip("\n").split("\t")
            declared = list(dict.fromkeys(contigs))  # htslib keeps the first of repeated ids
            return VcfHeader(columns[9:], declared or None)
        match = CONTIG_ID.match(line)
        if match:
            contigs.append(match.group(1))
    raise SourceError(f"not a VCF/BCF file: {path} (no #CHROM header line)")


def _header_lines(stream: io.BufferedIOBase) -> list[str]:
    """The header's lines (up to and with #CHROM): a BCF's header text block, or a VCF's
    leading '#' lines."""
    if stream.read(len(BCF_MAGIC)) == BCF_MAGIC:
        stream.read(1)  # minor version
        (length,) = struct.unpack("<I", stream.read(4))
        text = stream.read(length).rstrip(b"\0")
        return text.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    stream.seek(0)
    lines = []
    for raw_line in stream:
        line = raw_line.decode("utf-8", "surrogateescape")
        lines.append(line)
        if not line.startswith("#") or line.startswith("#CHROM"):
            break
    return lines
