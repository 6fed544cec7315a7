"""The benchmark (scripts/bench.py) runs end to end.

The default suite runs it on the `tiny` size (400 samples, 200-commit history; about 80 s on an
idle 2-core machine, data generation included) and checks only that every measurement ran and
every target has a figure: wall-clock ratios depend on what else the machine is doing (a loaded
CI runner once failed `log 1000 commits / 1 commit: 7.76 > 6`), so they are not asserted here.

The gross-regression check (each CI-checked ratio within 3x its target) on the `small` size is
marked `slow` and runs only when selected: `pytest -m slow tests/test_bench.py`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def _bench(tmp_path: Path, size: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    env = {**os.environ, "VCZREPO_BENCH_CACHE": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--size", size, "--repeats", "1", "--json", str(out),
         "--work-dir", str(tmp_path)],
        check=False, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_bench_tiny_runs_end_to_end(tmp_path: Path) -> None:
    results, _ = _bench(tmp_path, "tiny")
    assert results["size"] == "tiny"
    runs = results["runs"]
    for key in ("append_aligned", "append_unaligned", "remove_1_at_N", "view_vczrepo", "log_H", "tag_H", "extend",
                "grow"):
        assert key in runs, sorted(runs)
    assert results["variant_axis"]["grow: sites inserted"] > 0
    targets = results["targets"]
    assert len([t for t in targets if t["ci_limit"] is not None]) >= 10
    bad = [t["name"] for t in targets if not (math.isfinite(t["value"]) and t["value"] > 0)]
    assert not bad, bad


def _slow_selected(config) -> bool:
    return "slow" in (config.getoption("markexpr", default="") or "")


@pytest.mark.slow
def test_bench_small_has_no_gross_regression(tmp_path: Path, request) -> None:
    if not _slow_selected(request.config):
        pytest.skip("wall-clock ratios: run with -m slow on a quiet machine")
    results, stdout = _bench(tmp_path, "small")
    checked = [t for t in results["targets"] if t["ci_limit"] is not None]
    assert len(checked) >= 10
    gross = [f"{t['name']}: {t['value']:.2f} > {t['ci_limit']:g}" for t in checked
             if t["value"] > t["ci_limit"]]
    assert not gross, "\n".join(gross) + "\n\n" + stdout
