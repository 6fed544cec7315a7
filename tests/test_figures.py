"""The docs' figures (scripts/figures.py, drawn by the mkdocs hook at build time) show what
the committed benchmark results say, and the same bytes at every build."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import figures  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "bench-small.json"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text())


def test_chart_has_every_operation_of_the_run_and_its_three_series(results):
    svg = figures.performance_chart(results)
    for ours, theirs, baseline, label in figures.OPERATIONS:
        assert ours in results["runs"], ours  # the committed run measured it
        assert theirs in results["runs"], theirs
        assert baseline is None or baseline in results["runs"]
        assert f">{label}</text>" in svg, label
    assert "vczstore (the peer)" in svg
    assert results["vczrepo_revision"] in svg


def test_chart_leaves_out_what_a_run_did_not_measure(results):
    partial = {**results, "runs": {k: v for k, v in results["runs"].items() if not k.startswith("peer_")}}
    assert "init from a batch" in figures.performance_chart(partial)
    with pytest.raises(ValueError, match="none of the charted operations"):
        figures.performance_chart({**results, "runs": {}})


def test_figures_are_the_same_bytes_at_every_build(results):
    assert figures.performance_chart(results) == figures.performance_chart(results)
    assert figures.history_diagram() == figures.history_diagram()


def test_history_diagram_names_the_refs_purge_moves():
    svg = figures.history_diagram()
    for name in ("main", "trial", "tag release-1", "tag release-2", "tag release-1.purged1", "tag release-2.purged1"):
        assert name in svg, name


def test_performance_page_quotes_the_run_it_charts(results):
    """The page's words about the chart name the committed run (its revision and size)."""
    page = (ROOT / "docs" / "performance.md").read_text()
    assert "img/performance.svg" in page
    assert f"vczrepo {results['vczrepo_revision']}" in page
    assert results["size"] == "small"
