"""Cost of checksums (docs/concepts.md: Integrity), each with and without:

- chunks: init + aligned append of two batches with and without the crc32c codec, time and
  bytes on disk; then `check --deep` time;
- digests: an aligned append and a remove with and without digest records of the new
  snapshot and manifests (vczrepo.digests); the recording step alone (timed by re-recording
  the append's commit); the records on disk; `check`'s verification of every reachable
  snapshot and manifest against its record.

    python scripts/checksum_cost.py DATA_DIR [REPEATS] [chunks|digests]   # DATA_DIR from scripts/make_data.py --out
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import vczrepo
from vczrepo import checksums, digests
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


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_digests(data: Path, with_records: bool) -> dict:
    original = digests.record_commit
    if not with_records:
        digests.record_commit = lambda *a: 0  # as a repository made before records
    tmp = Path(tempfile.mkdtemp(prefix="vczrepo-digests-"))
    try:
        repo, _ = vczrepo.Repository.init(tmp / "r", data / "batch-0.vcz")
        append_s, result = _timed(lambda: repo.append(data / "batch-1.vcz"))
        remove_s, _ = _timed(lambda: repo.remove([repo.samples()[1]]))
        digests.record_commit = original
        record_s, n = _timed(lambda: digests.record_commit(repo.icechunk, repo.location, result.snapshot_id))
        keys = digests.reachable(repo.icechunk, [repo.resolve("main")])
        verify_s, found = _timed(lambda: digests.verify(repo.location, keys))
        records = [p for p in (tmp / "r" / "vczrepo-digests").rglob("*") if p.is_file()]
        return {"append_s": append_s, "remove_s": remove_s, "record_s": record_s, "recorded": n,
                "verify_s": verify_s, "objects": len(keys), "verified": found.verified,
                "record_files": len(records), "record_bytes": sum(p.stat().st_size for p in records)}
    finally:
        digests.record_commit = original
        shutil.rmtree(tmp)


def _chunks_line(r: dict) -> str:
    return (f"init {r['init_s']:.2f}s  aligned append {r['append_s']:.2f}s (CPU {r['append_cpu_s']:.2f}s)  "
            f"chunks+manifests {r['bytes']:,} B  check --deep {r['check_deep_s']:.2f}s "
            f"({r['verified']} chunks verified)")


def _digests_line(r: dict) -> str:
    return (f"append {r['append_s']:.2f}s  remove {r['remove_s']:.2f}s  recording the append alone "
            f"{r['record_s'] * 1000:.0f} ms ({r['recorded']} objects)  verify {r['objects']} objects "
            f"{r['verify_s'] * 1000:.0f} ms  records on disk {r['record_files']} files, {r['record_bytes']:,} B")


MODES = {"chunks": (run, _chunks_line, ("none  ", "crc32c")),
         "digests": (run_digests, _digests_line, ("none   ", "records"))}

if __name__ == "__main__":
    data = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    measure, line, labels = MODES[sys.argv[3] if len(sys.argv) > 3 else "chunks"]
    for i in range(repeats):
        for with_it in (False, True):
            print(f"{labels[with_it]} run {i}: {line(measure(data, with_it))}", flush=True)
