"""Cost of widening (docs/performance.md: Widening), against a plain append measured in the same run.

On the benchmark batches (scripts/make_data.py), per repetition:

- baseline: init from batch 0, aligned append of batch 1 (every call chunk copied as bytes);
- retype alone, each in a commit of its own on the repository after the baseline:
  call_GQ int8 -> int16 (a dtype: every stored chunk), call_genotype's ploidy 2 -> 3 (a
  trailing axis: every chunk);
- an append that widens: batch 1 again under new names with one call_DP of 70,000 (stored
  int32), onto the int16 repository of init from batch 0: call_DP is rewritten, then the batch lands.

Prints the medians of CPU time (the process's, all threads) and, per rewritten chunk, the ratio
to the baseline's CPU time per copied chunk; wall times are in the JSON beside.

    python scripts/widen_cost.py DATA_DIR [REPEATS]   # DATA_DIR from scripts/make_data.py --out
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

import vczrepo
from vczrepo import schema, widen


def _timed(fn):
    """CPU seconds of the process (all its threads: steadier than wall time on a shared machine) and
    the result; wall seconds are recorded beside."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _timed.wall = time.perf_counter() - t0
    return time.process_time() - c0, out


def call_chunks(vcz: Path) -> int:
    group = zarr.open_group(str(vcz), mode="r")
    return sum(a.nchunks_initialized for n, a in group.arrays() if schema.dims(a)[:2] == (schema.VARIANTS,
                                                                                           schema.SAMPLES))


def deep_batch(batch: Path, out: Path) -> Path:
    """`batch` with its samples renamed and call_DP stored int32 holding one 70,000."""
    shutil.copytree(batch, out)
    group = zarr.open_group(str(out), mode="r+")
    ids = schema.as_str(group["sample_id"][:])
    group["sample_id"][:] = np.array([f"deep-{s}" for s in ids], dtype=object)
    old = schema.array(group, "call_DP")
    values = np.asarray(old[:]).astype(np.int32)
    values[0, 0] = 70_000
    attrs, chunks, dims = dict(old.attrs), old.chunks, schema.dims(old)
    blosc = [BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=c.shuffle) for c in old.compressors
             if isinstance(c, BloscCodec)]  # bio2zarr's compressor, typesize from the new dtype
    del group["call_DP"]
    new = group.create_array("call_DP", shape=values.shape, dtype=np.int32, chunks=chunks, dimension_names=dims,
                             attributes=attrs, compressors=blosc, fill_value=old.fill_value)
    new[...] = values
    return out


def retype_commit(repo: vczrepo.Repository, name: str, **target) -> widen.Widening:
    done = []

    def apply(root):
        done.append(widen.retype(repo.pipe, root, name, **target))
        return {"widened": [done[0].to_json()]}

    repo._commit("main", "widen", f"widen {name}", apply)
    return done[0]


def once(data: Path, tmp: Path) -> dict:
    settings = vczrepo.Settings(progress=False)
    base, _ = vczrepo.Repository.init(tmp / "base", data / "batch-0.vcz", settings=settings)
    append_s, _ = _timed(lambda: base.append(data / "batch-1.vcz"))
    copied = call_chunks(data / "batch-1.vcz")
    out = {"append_s": append_s, "append_wall_s": _timed.wall, "append_chunks": copied}
    for label, name, target in (("gq_dtype", "call_GQ", {"dtype": "int16"}),
                                ("gt_ploidy", "call_genotype", {"trailing": (3,)})):
        seconds, w = _timed(lambda name=name, target=target: retype_commit(base, name, **target))
        out[f"{label}_s"], out[f"{label}_chunks"], out[f"{label}_bytes"] = seconds, w.chunks, w.bytes_written
        out[f"{label}_wall_s"] = _timed.wall
    deep = deep_batch(data / "batch-1.vcz", tmp / "deep.vcz")
    repo, _ = vczrepo.Repository.init(tmp / "widening", data / "batch-0.vcz", settings=settings)
    seconds, result = _timed(lambda: repo.append(deep))
    (w,) = result.metadata["widened"]
    out.update(widening_append_s=seconds, widening_append_wall_s=_timed.wall, widening_chunks=w["chunks"],
               widening_bytes=w["bytes_written"])
    assert repo.check(deep=True).ok
    return out


def main(data: Path, repeats: int) -> None:
    runs = []
    for _ in range(repeats):
        tmp = Path(tempfile.mkdtemp(prefix="vczrepo-widen-"))
        try:
            runs.append(once(data, tmp))
        finally:
            shutil.rmtree(tmp)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    per_copied = median["append_s"] / median["append_chunks"]
    print(json.dumps({"runs": runs, "median": median}, indent=1))
    print(f"plain append: {median['append_s']:.2f} CPU s for {median['append_chunks']:.0f} chunks copied "
          f"({1e3 * per_copied:.2f} ms per chunk)")
    for label, what in (("gq_dtype", "call_GQ int8 -> int16"), ("gt_ploidy", "call_genotype ploidy 2 -> 3")):
        per = median[f"{label}_s"] / median[f"{label}_chunks"]
        print(f"{what}: {median[f'{label}_s']:.2f} CPU s for {median[f'{label}_chunks']:.0f} chunks "
              f"({1e3 * per:.2f} ms per chunk, {per / per_copied:.1f}x a copied chunk)")
    print(f"append widening call_DP int16 -> int32: {median['widening_append_s']:.2f} CPU s "
          f"({median['widening_append_s'] / median['append_s']:.1f}x the plain append; "
          f"{median['widening_chunks']:.0f} chunks rewritten)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
