"""The benchmark (scripts/bench.py) runs end to end on the `small` size (1,000 + 1,000
samples x 10,000 variants, 1,000-commit history), data generation included, once per
measurement (~1 minute here), and fails only on gross regressions: a ratio 3x beyond its
target. Absolute times (log/tag/branch < 0.5 s) and append against `cp -r` (fixed costs
swamp a batch this small) are reported but not checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def test_bench_small_has_no_gross_regression(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "VCZREPO_BENCH_CACHE": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--size", "small", "--repeats", "1", "--json", str(out),
         "--work-dir", str(tmp_path)],
        check=False, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    checked = [t for t in results["targets"] if t["ci_limit"] is not None]
    assert len(checked) >= 10
    gross = [f"{t['name']}: {t['value']:.2f} > {t['ci_limit']:g}" for t in checked
             if t["value"] > t["ci_limit"]]
    assert not gross, "\n".join(gross) + "\n\n" + proc.stdout
