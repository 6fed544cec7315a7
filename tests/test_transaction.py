"""The one write path: a commit whose response is lost is recognised by its operation id."""

from __future__ import annotations

import icechunk
import pytest
from vcfgen import make_vcz

import vczrepo


def test_commit_that_landed_although_its_response_was_lost(monkeypatch, tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["A1"]))
    real_commit = icechunk.Session.commit

    def commit_then_lose_response(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)
        raise icechunk.IcechunkError("connection reset while reading the response")

    monkeypatch.setattr(icechunk.Session, "commit", commit_then_lose_response)
    result = repo.append(make_vcz(tmp_path, "b", ["B1"]))
    monkeypatch.undo()
    assert repo.resolve("main") == result.snapshot_id
    assert [c.op for c in repo.log()] == ["append", "init", "root"]  # once, not twice


def test_commit_that_failed_is_reported_and_changes_nothing(monkeypatch, tmp_path):
    repo, _ = vczrepo.Repository.init(tmp_path / "r", make_vcz(tmp_path, "a", ["A1"]))
    head = repo.resolve("main")

    def failing_commit(self, *args, **kwargs):
        raise icechunk.IcechunkError("storage unavailable")

    monkeypatch.setattr(icechunk.Session, "commit", failing_commit)
    with pytest.raises(icechunk.IcechunkError, match="storage unavailable"):
        repo.append(make_vcz(tmp_path, "b", ["B1"]))
    monkeypatch.undo()
    assert repo.resolve("main") == head
