"""Shared fixtures: example data, a CLI runner, and reading back through vcztools."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("ICECHUNK_LOG", "error")  # icechunk's warning about local storage: vczrepo locks it
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import vczrepo
from vczrepo.cli import main

DATA = Path(vczrepo.__file__).parent / "data"


@pytest.fixture
def data() -> Path:
    return DATA


@pytest.fixture
def cli():
    """Run `vczrepo ARGS…` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args, ok: bool = True):
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    return run


@pytest.fixture
def part_repo(tmp_path, data) -> Path:
    """A repository made from part 1 of the VCF spec's example, with part 2 appended."""
    path = tmp_path / "cohort.vczrepo"
    repo, _ = vczrepo.Repository.init(path, data / "sample-part1.vcf.gz")
    repo.append(data / "sample-part2.vcf.gz")
    return path


@pytest.fixture
def whole_vcz(tmp_path_factory, data) -> Path:
    from bio2zarr import vcf as b2z_vcf

    out = tmp_path_factory.mktemp("whole") / "sample.vcz"
    b2z_vcf.convert([str(data / "sample.vcf.gz")], str(out), zarr_format=3)
    return out



@pytest.fixture
def tagged(tmp_path) -> Path:
    """A small repository: an init tagged t1, then an append on main (two sample chunks each)."""
    from vcfgen import make_vcz

    path = tmp_path / "t"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"], samples_chunk_size=2))
    repo.create_tag("t1")
    repo.append(make_vcz(tmp_path, "b", ["S3", "S4"], samples_chunk_size=2))
    return path


@pytest.fixture
def no_narrowing():
    """Fail the test if any zarr write stores a value other than the one written (helpers.narrowed)."""
    from helpers import narrowing_guard

    with narrowing_guard() as problems:
        yield problems
    assert not problems, f"{len(problems)} write(s) narrowed, first: {problems[:3]}"
