"""Real-shaped cohort VCFs (as a biobank's chr22 batches look) and bcftools as their reference.

FORMAT GT, AD (Number=., so bio2zarr names its axis FORMAT_AD_dim), DP, GQ, PL (Number=G)
and AB (Float); INFO AC/AN/NS from `bcftools +fill-tags`. Every value is drawn from a seed,
so a batch converted on its own gets bio2zarr's narrowest types for *its* values: a batch
whose largest DP is 300 stores call_DP as int16 where the others store int8.
"""

from __future__ import annotations

import math
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER = """##fileformat=VCFv4.3
##contig=<ID=chr22,length=50818468>
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes">
##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">
##INFO=<ID=NS,Number=1,Type=Integer,Description="Number of samples with data">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=.,Type=Integer,Description="Allelic depths">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods">
##FORMAT=<ID=AB,Number=1,Type=Float,Description="Allele balance">
"""
COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
# as typed on a command line: bcftools and vcztools both read the escapes
QUERY = r"%CHROM\t%POS\t%REF\t%ALT\t%INFO/AC\t%INFO/AN\t%INFO/NS[\t%GT:%AD:%DP:%GQ:%PL:%AB]\n"

Site = tuple[int, str, str]  # position, REF, ALT (comma-separated)


def sites(n: int, start: int = 10_510_000, step: int = 1_254, multiallelic_every: int = 4) -> list[Site]:
    """n sites on chr22, every `multiallelic_every`-th with two ALT alleles (0: none)."""
    bases = "ACGT"
    out = []
    for i in range(n):
        ref = bases[i % 4]
        alts = [b for b in bases if b != ref]
        alt = ",".join(alts[:2]) if multiallelic_every and i % multiallelic_every == 0 else alts[i % 3]
        out.append((start + step * i, ref, alt))
    return out


@dataclass
class Batch:
    """How one batch's calls are drawn."""

    samples: list[str]
    seed: int
    dp_max: int = 99  # the largest depth drawn (300: bio2zarr stores call_DP as int16)
    pl_max: int = 120
    ploidy: int = 2
    ad_values: int | None = None  # AD values written per call (None: one per allele)
    missing: float = 0.1  # share of missing calls
    big: dict[int, int] = field(default_factory=dict)  # site index -> a DP written for its first sample


def _call(rng: np.random.Generator, n_alleles: int, b: Batch, forced_dp: int | None) -> str:
    if rng.random() < b.missing and forced_dp is None:
        gt = "/".join(["."] * b.ploidy)
        return f"{gt}:.:.:.:.:."
    alleles = rng.integers(0, n_alleles, size=b.ploidy)
    gt = ("|" if rng.random() < 0.5 else "/").join(str(a) for a in alleles)
    width = n_alleles if b.ad_values is None else min(b.ad_values, n_alleles)
    ad = rng.integers(0, max(2, b.dp_max // max(width, 1)), size=width)
    dp = int(forced_dp if forced_dp is not None else min(int(ad.sum()), b.dp_max))
    n_pl = math.comb(n_alleles + b.ploidy - 1, b.ploidy)
    pl = rng.integers(0, b.pl_max + 1, size=n_pl)
    pl[rng.integers(0, n_pl)] = 0
    ab = "." if rng.random() < 0.3 else f"{0.001 + 0.997 * rng.random():.3f}"  # (vcztools prints 1 as 1.0)
    return (f"{gt}:{','.join(map(str, ad))}:{dp}:{int(rng.integers(0, 100))}:{','.join(map(str, pl))}:{ab}")


def records(b: Batch, at: list[Site]) -> list[str]:
    rows = []
    for i, (pos, ref, alt) in enumerate(at):
        n_alleles = 1 + len(alt.split(","))
        calls = []
        for j, s in enumerate(b.samples):
            rng = np.random.default_rng(zlib.crc32(f"{s}:{pos}:{b.seed}".encode()))
            calls.append(_call(rng, n_alleles, b, b.big.get(i) if j == 0 else None))
        rows.append("\t".join(["chr22", str(pos), ".", ref, alt, ".", "PASS", ".", "GT:AD:DP:GQ:PL:AB", *calls]))
    return rows


def bcftools(*args: str) -> str:
    return subprocess.run(["bcftools", *args], check=True, capture_output=True, text=True).stdout


def indexed(out: Path) -> Path:
    bcftools("index", "-f", str(out))
    return out


def write(tmp: Path, name: str, b: Batch, at: list[Site]) -> Path:
    """`tmp/name.vcf.gz`, bgzipped, indexed, with INFO AC/AN/NS from bcftools +fill-tags."""
    raw = tmp / f"{name}.vcf"
    raw.write_text(HEADER + "\t".join(COLUMNS + b.samples) + "\n" + "\n".join(records(b, at)) + "\n")
    return fill_tags(raw, tmp / f"{name}.vcf.gz")


def fill_tags(src: Path, out: Path) -> Path:
    bcftools("+fill-tags", str(src), "-Oz", "-o", str(out), "--", "-t", "AC,AN,NS")
    return indexed(out)


def merge(tmp: Path, name: str, parts: list[Path]) -> Path:
    """`bcftools merge -m none` of the parts (missing where a part lacks a site), +fill-tags."""
    merged = tmp / f"{name}.merged.vcf.gz"
    bcftools("merge", "-m", "none", "-Oz", "-o", str(merged), *map(str, parts))
    return fill_tags(indexed(merged), tmp / f"{name}.vcf.gz")


def concat(tmp: Path, name: str, parts: list[Path]) -> Path:
    """`bcftools concat` of parts with the same samples, one after another, +fill-tags."""
    joined = tmp / f"{name}.concat.vcf.gz"
    bcftools("concat", "-Oz", "-o", str(joined), *map(str, parts))
    return fill_tags(indexed(joined), tmp / f"{name}.vcf.gz")


def query(vcf: Path, fmt: str = QUERY) -> str:
    return bcftools("query", "-f", fmt, str(vcf))
