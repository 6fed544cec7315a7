"""The Python API as documented: one sample id may be a plain str, results have real types,
exported lazily from `vczrepo` (importing it stays cheap), and the handle keeps its internals
out of the public names."""

from __future__ import annotations

import datetime as dt
import inspect
import subprocess
import sys

import pytest
from helpers import state
from vcfgen import make_vcz

import vczrepo

RESULTS = ["CheckReport", "DiffResult", "Finding", "GCResult", "GrowthCost", "PurgeResult", "RefReport"]


@pytest.fixture
def repo(tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["NA00001", "NA00002", "NA00003"]))
    repo.create_tag("release-1")
    return repo


def test_a_single_sample_id_is_one_sample_not_its_characters(repo):
    result = repo.remove("NA00003")
    assert result.metadata["samples_removed"] == ["NA00003"]
    assert repo.samples() == ["NA00001", "NA00002"]
    plan = repo.purge("NA00003", dry_run=True)
    assert plan.samples == ["NA00003"]
    assert {f.name for f in repo.audit("NA00003")} == {"NA00003"}
    before = state(repo.location.url)
    with pytest.raises(vczrepo.SampleError, match="cannot remove NA00003: already removed"):
        repo.remove("NA00003")
    assert state(repo.location.url) == before


def test_results_have_their_types(repo):
    repo.remove(["NA00002"])
    assert isinstance(repo.diff("release-1"), vczrepo.DiffResult)
    report = repo.check()
    assert isinstance(report, vczrepo.CheckReport)
    assert all(isinstance(r, vczrepo.RefReport) for r in report.refs)
    assert isinstance(repo.purge(["NA00002"], dry_run=True), vczrepo.PurgeResult)
    assert isinstance(repo.gc(dt.timedelta(hours=1), dry_run=True), vczrepo.GCResult)
    assert all(isinstance(f, vczrepo.Finding) for f in repo.audit(["NA00001"]))
    xarray = pytest.importorskip("xarray")
    assert isinstance(repo.open_dataset("release-1"), xarray.Dataset)
    returns = {name: inspect.signature(getattr(vczrepo.Repository, name)).return_annotation
               for name in ("diff", "check", "purge", "gc", "audit", "open_dataset", "growth")}
    assert returns == {"diff": "DiffResult", "check": "CheckReport", "purge": "PurgeResult", "gc": "GCResult",
                       "audit": "list[Finding]", "open_dataset": "xarray.Dataset", "growth": "GrowthCost"}


def test_result_types_are_exported_without_importing_the_library():
    code = ("import sys, vczrepo\n"
            f"missing = [n for n in {RESULTS!r} if n not in vczrepo.__all__]\n"
            "heavy = sorted(m for m in ('icechunk', 'zarr', 'vcztools', 'xarray') if m in sys.modules)\n"
            "print(missing, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] []"
    for name in RESULTS:
        assert not getattr(vczrepo, name).__doc__.startswith(f"{name}("), name  # a docstring, not dataclass's
