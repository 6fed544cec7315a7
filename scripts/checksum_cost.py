"""Cost of chunk checksums (README: Integrity): init + aligned append of two batches with and
without the crc32c codec, time and bytes on disk; then `check --deep` time.

    python scripts/checksum_cost.py DATA_DIR [REPEATS]   # DATA_DIR from scripts/make_data.py --out
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import vczrepo
from vczrepo import checksums
from vczrepo.check import check


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(data: Path, with_sums: bool) -> dict:
    original = checksums.with_checksum_codec
    if not with_sums:
        checksums.with_checksum_codec = lambda codecs: tuple(codecs)
    tmp = Path(tempfile.mkdtemp(prefix="vczrepo-cost-"))
    try:
        t0 = time.perf_counter()
        repo, _ = vczrepo.Repository.init(tmp / "r", data / "batch-0.vcz")
        t1 = time.perf_counter()
        c1 = time.process_time()
        repo.append(data / "batch-1.vcz")
        t2 = time.perf_counter()
        cpu = time.process_time() - c1
        size = tree_size(tmp / "r" / "chunks") + tree_size(tmp / "r" / "manifests")
        t3 = time.perf_counter()
        report = check(vczrepo.Repository.open(tmp / "r"), deep=True)
        t4 = time.perf_counter()
        assert report.ok, report.problems
        return {"init_s": t1 - t0, "append_s": t2 - t1, "append_cpu_s": cpu, "bytes": size, "check_deep_s": t4 - t3,
                "verified": report.chunks_verified}
    finally:
        checksums.with_checksum_codec = original
        shutil.rmtree(tmp)


if __name__ == "__main__":
    data = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for i in range(repeats):
        for with_sums in (False, True):
            r = run(data, with_sums)
            print(f"{'crc32c' if with_sums else 'none  '} run {i}: init {r['init_s']:.2f}s  "
                  f"aligned append {r['append_s']:.2f}s (CPU {r['append_cpu_s']:.2f}s)  "
                  f"chunks+manifests {r['bytes']:,} B  "
                  f"check --deep {r['check_deep_s']:.2f}s ({r['verified']} chunks verified)", flush=True)
