"""Cost of digest records (docs/concepts.md: Integrity): an aligned append and a remove, each
with and without recording the digests of the new snapshot and manifests; the recording
step alone (timed by re-recording the same commit); what the records take on disk; and the
time `check` spends verifying every reachable snapshot and manifest against its record.

    python scripts/digest_cost.py DATA_DIR [REPEATS]   # DATA_DIR from scripts/make_data.py --out
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import vczrepo
from vczrepo import digests


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(data: Path, with_records: bool) -> dict:
    original = digests.record_commit
    if not with_records:
        digests.record_commit = lambda *a: 0  # as a repository made before records
    tmp = Path(tempfile.mkdtemp(prefix="vczrepo-digests-"))
    try:
        repo, _ = vczrepo.Repository.init(tmp / "r", data / "batch-0.vcz")
        append_s, result = _timed(lambda: repo.append(data / "batch-1.vcz"))
        remove_s, _ = _timed(lambda: repo.remove([repo.samples()[1]]))
        digests.record_commit = original
        head = result.snapshot_id  # type: ignore[attr-defined]
        record_s, n = _timed(lambda: digests.record_commit(repo.icechunk, repo.location, head))
        keys = digests.reachable(repo.icechunk, [repo.resolve("main")])
        verify_s, found = _timed(lambda: digests.verify(repo.location, keys))
        records = list((tmp / "r" / "vczrepo-digests").rglob("*"))
        return {"append_s": append_s, "remove_s": remove_s, "record_s": record_s, "recorded": n,
                "verify_s": verify_s, "objects": len(keys), "verified": found.verified,  # type: ignore[attr-defined]
                "record_files": sum(p.is_file() for p in records),
                "record_bytes": sum(p.stat().st_size for p in records if p.is_file())}
    finally:
        digests.record_commit = original
        shutil.rmtree(tmp)


if __name__ == "__main__":
    data = Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for i in range(repeats):
        for with_records in (False, True):
            r = run(data, with_records)
            print(f"{'records' if with_records else 'none   '} run {i}: append {r['append_s']:.2f}s  "
                  f"remove {r['remove_s']:.2f}s  recording the append alone {r['record_s'] * 1000:.0f} ms "
                  f"({r['recorded']} objects)  verify {r['objects']} objects {r['verify_s'] * 1000:.0f} ms  "
                  f"records on disk {r['record_files']} files, {r['record_bytes']:,} B", flush=True)
