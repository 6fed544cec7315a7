"""Build small VCZ batches for tests: VCF text converted with bio2zarr, or arrays written
directly following the VCZ spec (fast enough for thousands of state-machine steps)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import zarr
from bio2zarr import vcf as b2z_vcf

HEADER = """##fileformat=VCFv4.3
##contig=<ID=chr20,length=100000>
##contig=<ID=chr21,length=100000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
"""


def sites(n: int) -> list[tuple[str, int, str, str]]:
    """n sites on one contig (bio2zarr needs an index for multi-contig VCFs), some multi-allelic."""
    return [("chr20", 100 + 10 * i, "A", "C" if i % 3 else "G,T") for i in range(n)]


def genotypes(samples: list[str], n_variants: int, seed: int) -> np.ndarray:
    """Deterministic diploid genotypes per (variant, sample), distinct per sample name."""
    out = np.zeros((n_variants, len(samples), 2), dtype=np.int8)
    for j, s in enumerate(samples):
        rng = np.random.default_rng(zlib.crc32(f"{s}:{seed}".encode()))
        out[:, j, :] = rng.integers(0, 2, size=(n_variants, 2))
    return out


def vcf_text(samples: list[str], variants: list[tuple[str, int, str, str]], gts: np.ndarray) -> str:
    lines = [HEADER.rstrip("\n"), "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                                             "FORMAT", *samples])]
    for i, (chrom, pos, ref, alt) in enumerate(variants):
        calls = [f"{gts[i, j, 0]}|{gts[i, j, 1]}:{(i + zlib.crc32(s.encode())) % 50}"
                 for j, s in enumerate(samples)]
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT:DP", *calls]))
    return "\n".join(lines) + "\n"


def write_vcf(path: Path, samples: list[str], n_variants: int = 12, seed: int = 0,
              variants: list | None = None) -> Path:
    variants = variants or sites(n_variants)
    path.write_text(vcf_text(samples, variants, genotypes(samples, len(variants), seed)))
    return path


def make_vcz(tmp: Path, name: str, samples: list[str], *, n_variants: int = 12, seed: int = 0,
             variants: list | None = None, samples_chunk_size: int | None = None,
             variants_chunk_size: int | None = None, zarr_format: int = 3) -> Path:
    """A VCZ made by bio2zarr from generated VCF text."""
    vcf = write_vcf(tmp / f"{name}.vcf", samples, n_variants, seed, variants)
    out = tmp / f"{name}.vcz"
    b2z_vcf.convert([str(vcf)], str(out), samples_chunk_size=samples_chunk_size,
                    variants_chunk_size=variants_chunk_size, zarr_format=zarr_format)
    return out


def write_vcz_direct(path, samples: list[str], gts: np.ndarray, *, n_variants: int,
                     samples_chunk_size: int, variants_chunk_size: int, dp_dtype=np.int16,
                     with_dp: bool = True, variants: list | None = None) -> Path:
    """A minimal spec-following VCZ (GT and DP) written straight with zarr: fast for state machines.

    `path` may be a zarr Store (then the group is returned) or a filesystem path (returned).
    The variants are `sites(n_variants)` unless given (as `sites` gives them).
    """
    in_memory = isinstance(path, zarr.abc.store.Store)
    root = zarr.open_group(path if in_memory else str(path), mode="w-", zarr_format=3)
    sc = max(1, samples_chunk_size)
    root.attrs["vcf_zarr_version"] = "0.4"
    vs = variants or sites(n_variants)
    contigs = ["chr20", "chr21"]
    vc = variants_chunk_size

    def arr(name, data, dims, chunks):
        a = root.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, dimension_names=dims)
        a[...] = data

    arr("contig_id", np.array(contigs, dtype=str), ["contigs"], (len(contigs),))
    arr("variant_contig", np.array([contigs.index(v[0]) for v in vs], dtype=np.int8), ["variants"], (vc,))
    arr("variant_position", np.array([v[1] for v in vs], dtype=np.int32), ["variants"], (vc,))
    alleles = np.array([[v[2], *v[3].split(","), ""][:3] for v in vs], dtype=str)
    arr("variant_allele", alleles, ["variants", "alleles"], (vc, 3))
    arr("sample_id", np.array(samples, dtype=str), ["samples"], (sc,))
    arr("call_genotype", gts, ["variants", "samples", "ploidy"], (vc, sc, gts.shape[2]))
    arr("call_genotype_phased", np.ones(gts.shape[:2], dtype=bool), ["variants", "samples"], (vc, sc))
    if with_dp:
        dp = gts.sum(axis=2).astype(dp_dtype) * 7 + 3
        arr("call_DP", dp, ["variants", "samples"], (vc, sc))
    return root if in_memory else path
