"""Concurrent writers (scripts/writers.py): mixed appends, removes and tags from many processes.

Nothing may be lost or duplicated (every operation that exited 0 is in main's history exactly
once, none that gave up is, the samples add up, `check` passes). No writer may give up (exit 7)
either: locally the lock queues writers; on object stores writers that lost a race register
and newer writers let them commit first, and retries stop at a deadline that scales with the
operation, not after a fixed number of attempts (vczrepo.transaction). The tests' deadlines
scale with the work (10x the one-writer cost of every operation, serialised, + 2 min); no
wall-clock ratio is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import writers  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    with writers.s3_env() as server:
        yield server


def _integrity(report: writers.Report) -> None:
    print(writers.summary(report))
    assert not report.problems, "\n".join(report.problems) + "\n" + writers.summary(report)
    assert report.solo_append_seconds > 0
    assert report.solo_remove_seconds > 0


def test_16_local_writers_all_complete(tmp_path):
    report = writers.run(str(tmp_path / "repo"), [], tmp_path, writers=16, ops=2, backend="local")
    _integrity(report)
    assert report.timed_out == 0, writers.summary(report)
    assert report.exit7 == 0, writers.summary(report)  # the lock queues local writers


def test_10_s3_writers_all_complete(tmp_path, s3):
    report = writers.run(s3.url("writers"), s3.cli_options, tmp_path, writers=10, ops=3, backend="s3")
    _integrity(report)
    assert report.timed_out == 0, writers.summary(report)
    assert report.exit7 == 0, writers.summary(report)
