"""The object-storage benchmark (scripts/bench_storage.py) runs end to end on `tiny` against moto,
and the proxy counts every operation's requests (about a minute on an idle 2-core machine, data
generation included; 83 s at load 6). Figures are not asserted: wall-clock times depend on what
else the machine is doing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench_storage.py"


def test_bench_storage_tiny_counts_every_operation(tmp_path: Path) -> None:
    pytest.importorskip("moto", reason="moto's S3 server is not installed")
    out = tmp_path / "bench.json"
    env = {**os.environ, "VCZREPO_BENCH_CACHE": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--size", "tiny", "--commits", "3", "--columns", "2",
         "--overhead-repeats", "1", "--json", str(out), "--work-dir", str(tmp_path)],
        check=False, env=env, capture_output=True, text=True,
    )
    if proc.returncode and "moto_server" in proc.stderr and "did not answer" in proc.stderr:
        pytest.skip("moto's S3 server did not start")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    runs = results["runs"]
    assert {"init", "append_aligned", "append_small", "append_unaligned", "remove_1_at_N", "checkout",
            "view_region", "query", "append_1_at_2_columns", "remove_1_at_3_commits"} <= set(runs)
    counted = {k: r["requests"] for k, r in runs.items()}
    empty = [k for k, q in counted.items() if not (q["total"] > 0 and q["GET"] > 0)]
    assert not empty, empty
    writes = [k for k in counted if k.startswith(("init", "append", "remove"))]
    assert all(counted[k]["PUT"] > 0 and counted[k]["mib_up"] > 0 for k in writes), writes
    assert counted["checkout"]["PUT"] == 0
    assert counted["checkout"]["mib_down"] > 0
    assert results["proxy_overhead"] > 0
