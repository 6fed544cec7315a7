"""Realistic VCZ batches for benchmarks: one msprime simulation split by sample into batches.

Every batch holds exactly the same variants (sites, positions, alleles) and disjoint
samples, as successive sequencing waves of one cohort would. Genotype-only data compresses
about 40x, so synthetic per-sample FORMAT fields call_DP and call_GQ are added to make a
batch weigh what real data does. Batches are cached (default ~/.cache/vczrepo-bench/SIZE)
and reused while their spec is unchanged.

    uv run python scripts/make_data.py --size small
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msprime
import numpy as np
import tskit
import zarr
from bio2zarr import tskit as b2z_tskit
from zarr.codecs import BloscCodec

POPULATION_SIZE = 10_000
RATE = 1e-8  # recombination and mutation, per base per generation
PLOIDY = 2
DEFAULT_CACHE = Path.home() / ".cache" / "vczrepo-bench"
SPEC_FILE = "spec.json"  # written last: its presence marks a complete data set
GENERATOR_VERSION = 2  # bump when what is generated changes, to invalidate caches
# bio2zarr's compressors for integer and boolean fields, as vcf2zarr writes them.
FORMAT_CODEC = BloscCodec(cname="zstd", clevel=7, shuffle="shuffle")
FILTER_CODEC = BloscCodec(cname="zstd", clevel=7, shuffle="bitshuffle")
TABLE_BITS = 16  # synthetic values drawn through a 2**16-entry inverse-CDF table


@dataclass(frozen=True)
class Spec:
    """What to generate; any change invalidates the cache."""

    samples_per_batch: int
    n_batches: int
    unaligned_samples: int  # a batch whose sample count is not a multiple of the chunk
    n_variants: int
    variants_chunk_size: int
    samples_chunk_size: int
    seed: int = 42

    @property
    def n_individuals(self) -> int:
        return self.samples_per_batch * self.n_batches + self.unaligned_samples


SIZES = {
    "tiny": Spec(200, 2, 50, 2_000, 500, 100),
    "small": Spec(1_000, 2, 500, 10_000, 1_000, 1_000),
    "medium": Spec(10_000, 2, 5_000, 100_000, 1_000, 10_000),
}


@dataclass(frozen=True)
class Dataset:
    """Paths of a generated data set: the full batches, the unaligned one, and its spec."""

    root: Path
    spec: Spec
    batches: list[Path]
    unaligned: Path

    @classmethod
    def at(cls, root: Path, spec: Spec) -> Dataset:
        batches = [root / f"batch-{i}.vcz" for i in range(spec.n_batches)]
        return cls(root, spec, batches, root / "unaligned.vcz")


def sequence_length(spec: Spec) -> int:
    """Length giving ~15% more segregating sites than wanted (Watterson), trimmed later."""
    nodes = spec.n_individuals * PLOIDY
    harmonic = sum(1 / i for i in range(1, nodes))
    return math.ceil(1.15 * spec.n_variants / (4 * POPULATION_SIZE * RATE * harmonic))


def simulate(spec: Spec) -> tskit.TreeSequence:
    """Diploid genotypes under the standard neutral model, with exactly n_variants sites."""
    ts = msprime.sim_ancestry(
        samples=spec.n_individuals, ploidy=PLOIDY, population_size=POPULATION_SIZE,
        recombination_rate=RATE, sequence_length=sequence_length(spec), discrete_genome=True,
        random_seed=spec.seed,
    )
    ts = msprime.sim_mutations(
        ts, rate=RATE, model=msprime.JC69(), discrete_genome=True, random_seed=spec.seed
    )
    if ts.num_sites < spec.n_variants:
        raise RuntimeError(f"simulated {ts.num_sites} sites, fewer than {spec.n_variants}")
    return ts.delete_sites(np.arange(spec.n_variants, ts.num_sites))


def inverse_cdf_table(pmf: np.ndarray) -> np.ndarray:
    """Values 0..len(pmf)-1 at 2**16 evenly spaced probabilities of their distribution."""
    q = (np.arange(1 << TABLE_BITS) + 0.5) / (1 << TABLE_BITS)
    cdf = np.cumsum(pmf) / pmf.sum()
    return np.minimum(np.searchsorted(cdf, q), len(pmf) - 1)


def poisson_pmf(mean: float, n: int) -> np.ndarray:
    k = np.arange(n)
    log_factorial = np.array([math.lgamma(i + 1) for i in k])
    return np.exp(k * math.log(mean) - mean - log_factorial)


# Read depth ~ Poisson(30) as at 30x coverage; genotype quality: ~60% of calls at the cap
# of 99, the rest spread over 0..98.
DP_TABLE = inverse_cdf_table(poisson_pmf(30, 200)).astype(np.int16)
GQ_TABLE = inverse_cdf_table(np.r_[np.full(99, 0.4 / 99), 0.6]).astype(np.int8)


def synthetic_blocks(shape: tuple[int, int], chunk: int, table: np.ndarray,
                     rng: np.random.Generator) -> Iterator[tuple[slice, np.ndarray]]:
    """Values drawn through `table`, one variant chunk at a time to bound memory."""
    for start in range(0, shape[0], chunk):
        stop = min(start + chunk, shape[0])
        draws = rng.integers(0, len(table), size=(stop - start, shape[1]), dtype=np.uint16)
        yield slice(start, stop), table[draws]


def add_vcf_fields(path: Path, seed: int) -> None:
    """Add what vcf2zarr output has and the tskit converter lacks: FILTER arrays (vcztools
    query needs them) and synthetic call_DP/call_GQ chunked like call_genotype."""
    root = zarr.open_group(path, mode="r+")
    gt = root["call_genotype"]
    shape, chunks = gt.shape[:2], gt.chunks[:2]
    root.create_array("filter_id", data=np.array(["PASS"]), dimension_names=["filters"])
    root.create_array("filter_description", data=np.array(["All filters passed"]),
                      dimension_names=["filters"])
    root.create_array(
        "variant_filter", shape=(shape[0], 1), dtype=bool, chunks=(chunks[0], 1),
        compressors=[FILTER_CODEC], fill_value=False, dimension_names=["variants", "filters"],
        attributes={"description": "Filter status of each variant"},
    )[:] = True
    rng = np.random.default_rng(seed)
    for name, table, description in (
        ("call_DP", DP_TABLE, "Read depth (synthetic)"),
        ("call_GQ", GQ_TABLE, "Genotype quality (synthetic)"),
    ):
        array = root.create_array(
            name, shape=shape, dtype=table.dtype, chunks=chunks, compressors=[FORMAT_CODEC],
            fill_value=-1, dimension_names=["variants", "samples"],
            attributes={"description": description},
        )
        for rows, values in synthetic_blocks(shape, chunks[0], table, rng):
            array[rows] = values


def write_batch(ts: tskit.TreeSequence, individuals: np.ndarray, out: Path, spec: Spec,
                seed: int) -> None:
    """One batch: the given individuals at every site, converted by bio2zarr's tskit path."""
    mapping = ts.map_to_vcf_model(
        individuals=individuals.tolist(), position_transform=lambda p: np.round(p).astype(int) + 1
    )
    b2z_tskit.convert(
        ts, str(out), model_mapping=mapping, variants_chunk_size=spec.variants_chunk_size,
        samples_chunk_size=spec.samples_chunk_size, worker_processes=0, zarr_format=3,
    )
    add_vcf_fields(out, seed)


def generate(spec: Spec, root: Path, log=print) -> Dataset:
    """Simulate once and write every batch into `root` (replaced if present)."""
    data = Dataset.at(root, spec)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.perf_counter()
    ts = simulate(spec)
    log(f"simulated {ts.num_individuals} individuals x {ts.num_sites} sites "
        f"({ts.sequence_length:.0f} bp) in {time.perf_counter() - start:.1f} s")
    n = spec.samples_per_batch
    parts = [np.arange(i * n, (i + 1) * n) for i in range(spec.n_batches)]
    parts.append(np.arange(spec.n_batches * n, spec.n_individuals))
    for i, (individuals, out) in enumerate(zip(parts, [*data.batches, data.unaligned], strict=True)):
        write_batch(ts, individuals, out, spec, seed=spec.seed + 1 + i)
        log(f"wrote {out.name}: {len(individuals)} samples, {tree_size(out) / 2**20:.1f} MiB "
            f"({time.perf_counter() - start:.1f} s)")
    (root / SPEC_FILE).write_text(json.dumps(marker(spec), indent=2))
    return data


def marker(spec: Spec) -> dict:
    """What a cached data set must have been generated with to be reused."""
    return {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(spec)}


def tree_size(path: Path) -> int:
    """Bytes in all files under a directory."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where data sets are cached: the given directory, $VCZREPO_BENCH_CACHE, or the default."""
    return cache_dir or Path(os.environ.get("VCZREPO_BENCH_CACHE", DEFAULT_CACHE))


def ensure(size: str, cache_dir: Path | None = None, log=print) -> Dataset:
    """The data set of a named size, generated unless a complete one with the same spec is cached."""
    spec = SIZES[size]
    root = cache_root(cache_dir) / size
    done = root / SPEC_FILE
    if done.exists() and json.loads(done.read_text()) == marker(spec):
        return Dataset.at(root, spec)
    return generate(spec, root, log)


def load(root: Path) -> Dataset:
    """A complete data set generated into `root` (by --out or into the cache)."""
    done = root / SPEC_FILE
    if not done.exists():
        raise FileNotFoundError(f"no complete data set in {root} (no {SPEC_FILE})")
    fields = {f.name for f in dataclasses.fields(Spec)}
    spec = Spec(**{k: v for k, v in json.loads(done.read_text()).items() if k in fields})
    return Dataset.at(root, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="named size; the options below override its parts")
    parser.add_argument("--cache-dir", type=Path,
                        help=f"default: $VCZREPO_BENCH_CACHE or {DEFAULT_CACHE}")
    parser.add_argument("--samples-per-batch", type=int, help="samples in each full batch")
    parser.add_argument("--batches", type=int, dest="n_batches", help="number of full batches")
    parser.add_argument("--unaligned-samples", type=int,
                        help="samples in the extra batch (best not a multiple of the chunk)")
    parser.add_argument("--variants", type=int, dest="n_variants",
                        help="variants (sites); the sequence length is chosen to give them")
    parser.add_argument("--variants-chunk-size", type=int)
    parser.add_argument("--samples-chunk-size", type=int)
    parser.add_argument("--out", type=Path, help="generate here (always anew) instead of the cache")
    args = parser.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(Spec)
        if getattr(args, f.name, None) is not None
    }
    if overrides or args.out:
        spec = dataclasses.replace(SIZES[args.size], **overrides)
        data = generate(spec, args.out or cache_root(args.cache_dir) / f"custom-{args.size}")
    else:
        data = ensure(args.size, args.cache_dir)
    print(data.root)


if __name__ == "__main__":
    sys.exit(main())
