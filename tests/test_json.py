"""`--json` for scripts: view/query/demo speak it, and under --json every error is one JSON
line on stderr, `{"error": {"exit_code": N, "kind": …, "message": …}}`, stdout left empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import damage_array_metadata, state
from vcfgen import make_vcz

import vczrepo


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"]))
    repo.create_tag("release-1")
    return path


def _error(result) -> dict:
    """The one JSON error line of a failed command (stdout empty)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    parsed = json.loads(lines[0])
    assert set(parsed) == {"error"}
    assert set(parsed["error"]) == {"exit_code", "kind", "message"}
    assert parsed["error"]["exit_code"] == result.exit_code
    return parsed["error"]


FAMILIES = {  # exit code: (kind, arguments, what the message says)
    1: ("storage", ["view", "{repo}", "-o", "/dev/full"], "No space left on device"),
    2: ("usage", ["gc", "{repo}", "--older-than", "soon"], "invalid duration 'soon'"),
    3: ("repository", ["log", "{repo}", "--at", "nope"], "unknown ref 'nope'; nearest: main"),
    4: ("source", ["append", "{repo}", "{tmp}/missing.vcz"], "source not found"),
    5: ("incompatible-batch", ["append", "{repo}", "{data}/sample-part2.vcf.gz"], "contigs differ"),
    6: ("sample", ["remove", "{repo}", "NOPE"], "cannot remove NOPE: unknown sample"),
    7: ("concurrent-update", ["reset", "{repo}", "--at", "release-1", "--expect", "release-1~1"],
        "it moved since you looked"),
}


@pytest.mark.parametrize("code", list(FAMILIES))
def test_every_error_family_has_a_json_form(cli, repo_path, tmp_path, data, code):
    if code == 1 and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    kind, args, message = FAMILIES[code]
    before = state(repo_path)
    result = cli(*[a.format(repo=repo_path, tmp=tmp_path, data=data) for a in args], "--json", ok=False)
    assert result.exit_code == code, result.stderr
    error = _error(result)
    assert error["kind"] == kind
    assert message in error["message"]
    assert state(repo_path) == before


def test_damage_and_interruption_have_a_json_form(cli, repo_path, monkeypatch):
    damage_array_metadata(repo_path, "call_DP")
    error = _error(cli("info", repo_path, "--json", ok=False))
    assert (error["exit_code"], error["kind"]) == (8, "integrity")
    assert "call_DP" in error["message"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vczrepo.Repository, "remove", interrupted)
    error = _error(cli("remove", repo_path, "S0", "--json", ok=False))
    assert error == {"exit_code": 130, "kind": "interrupted", "message": "interrupted; nothing was committed"}


def test_usage_errors_met_while_parsing_have_a_json_form(repo_path):
    for args, text in ((["log", repo_path, "--bogus", "--json"], "No such option '--bogus'"),
                       (["nosuch", "--json"], "No such command 'nosuch'")):
        result = subprocess.run([sys.executable, "-m", "vczrepo", *map(str, args)], capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert error["kind"] == "usage"
        assert text in error["message"]
    plain = subprocess.run([sys.executable, "-m", "vczrepo", "log", str(repo_path), "--bogus"], capture_output=True,
                           text=True)
    assert plain.stderr.startswith("vczrepo: error: No such option '--bogus'")  # without --json: as before


def test_audit_findings_are_a_result_not_an_error(cli, repo_path):
    result = cli("audit", repo_path, "S1", "--json", ok=False)
    assert result.exit_code == 9
    assert result.stderr == ""
    found = json.loads(result.output)
    assert found["clean"] is False
    assert {f["name"] for f in found["findings"]} == {"S1"}


def test_view_and_query_with_json(cli, repo_path, tmp_path):
    sid = vczrepo.Repository.open(repo_path).resolve("release-1")
    out = tmp_path / "out.vcf.gz"
    summary = json.loads(cli("view", repo_path, "--at", "release-1", "-o", out, "--json").output)
    assert summary == {"out": str(out), "ref": "release-1", "snapshot": sid, "output_type": "z"}
    assert out.read_bytes()[:4] == b"\x1f\x8b\x08\x04"
    plain = json.loads(cli("view", repo_path, "-O", "v", "-o", tmp_path / "out.vcf", "--json").output)
    assert plain["output_type"] == "v"
    to_stdout = cli("view", repo_path, "--no-version", "--json").output  # the VCF is the output
    assert to_stdout.startswith("##fileformat=VCF")
    assert to_stdout == cli("view", repo_path, "--no-version").output
    assert json.loads(cli("query", repo_path, "-l", "--json").output) == ["S0", "S1", "S2"]
    table = tmp_path / "pos.txt"
    summary = json.loads(cli("query", repo_path, "-f", "%POS\\n", "-o", table, "--json").output)
    assert summary == {"out": str(table), "ref": "main", "snapshot": sid}
    assert table.read_text().split()[:2] == ["100", "110"]


def test_demo_with_json(cli, tmp_path):
    report = json.loads(cli("demo", tmp_path / "demo", "--json").output)
    assert report["ok"] is True
    assert report["repository"] == str(tmp_path / "demo" / "cohort.vczrepo")
    assert [s["step"] for s in report["steps"]] == ["init", "append", "remove", "log", "read", "read"]
    assert report["steps"][2]["samples_removed"] == ["NA00002"]
    assert all(c["ok"] for c in report["checks"])
    assert {c["check"] for c in report["checks"]} == {"init samples", "samples at release-1", "samples at release-2",
                                                      "commits"}
