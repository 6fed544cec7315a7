"""The everyday CLI a bcftools and git user expects: one ref convention, ref expressions,
tag list/delete, --json on every command with a stable key order, one-line usage errors,
capped lists, and a `--help` that imports neither vcztools nor pandas."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import state
from vcfgen import make_vcz

import vczrepo


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "a", ["S0", "S1", "S2"]))
    repo.create_tag("release-1")
    repo.append(make_vcz(tmp_path, "b", ["T0"], seed=1))
    repo.remove(["S1"])
    return path


def test_ref_expressions_prefixes_and_ancestors(cli, repo_path):
    repo = vczrepo.Repository.open(repo_path)
    history = [c.id for c in repo.log()]
    assert repo.resolve("main~1") == history[1]
    assert repo.resolve("main~") == history[1]
    assert repo.resolve("main~2") == repo.resolve("release-1")
    assert repo.resolve(history[1][:6]) == history[1]
    assert repo.resolve(history[1][:6].lower()) == history[1]
    assert cli("samples", repo_path, "--at", "main~1").output.split() == ["S0", "S1", "S2", "T0"]
    result = cli("samples", repo_path, "--at", "main~9", ok=False)
    assert result.exit_code == 3
    assert "has only 3 ancestor(s)" in result.stderr


def test_tag_list_and_delete(cli, repo_path):
    rows = json.loads(cli("tag", repo_path, "--list", "--json").output)
    assert [r["name"] for r in rows] == ["release-1"]
    assert set(rows[0]) == {"name", "snapshot", "message"}
    cli("tag", repo_path, "t2", "--at", "main~1")
    before = state(repo_path)
    refused = cli("tag", repo_path, "t2", "--delete", ok=False)
    assert refused.exit_code == 2
    assert "permanent" in refused.stderr
    assert state(repo_path) == before
    out = json.loads(cli("tag", repo_path, "t2", "--delete", "--yes", "--json").output)
    assert out["deleted"] == "t2"
    assert "t2" not in cli("tag", repo_path, "--list").output
    again = cli("tag", repo_path, "t2", ok=False)  # icechunk never reuses a deleted tag's name
    assert again.exit_code == 3
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ["log"], ["samples"], ["info"], ["branch", "--list"], ["tag", "--list"], ["diff", "release-1"],
    ["check"], ["tag", "t9"], ["branch", "b9"], ["remove", "S0"], ["revert", "main"],
    ["purge", "S2", "--dry-run"], ["gc", "--older-than", "1h"], ["reset", "--at", "main"],
])
def test_every_command_speaks_json_with_a_stable_key_order(cli, repo_path, args):
    first = cli(args[0], repo_path, *args[1:], "--json").output
    parsed = json.loads(first)
    assert json.dumps(parsed, indent=2, sort_keys=True) == first.strip()


def test_mutations_print_the_commit_they_made(cli, repo_path, tmp_path):
    out = json.loads(cli("append", repo_path, make_vcz(tmp_path, "c", ["U0"], seed=2), "--json").output)
    assert out["op"] == "append"
    assert out["n_samples"] == 4
    assert out["snapshot"] == vczrepo.Repository.open(repo_path).resolve("main")


@pytest.mark.parametrize(("args", "text"), [
    (["log", "{repo}", "--bogus"], "No such option '--bogus'"),
    (["nosuchcommand"], "No such command"),
    (["gc", "{repo}", "--older-than", "5m"], "--older-than 5m is inside the safety margin of 10m"),
    (["gc", "{repo}", "--older-than", "soon"], "invalid duration 'soon'"),
    (["append", "{repo}", "{batch}", "--allow-new-alleles"], "--allow-new-alleles needs --normalise"),
    (["tag", "{repo}", "--delete"], "--delete needs a tag NAME"),
])
def test_usage_errors_are_one_line_with_exit_2(cli, repo_path, tmp_path, args, text):
    batch = make_vcz(tmp_path, "u", ["U1"], seed=3)
    before = state(repo_path)
    result = cli(*[a.format(repo=repo_path, batch=batch) for a in args], ok=False)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vczrepo: error:"), result.stderr
    assert text in lines[0], result.stderr
    assert state(repo_path) == before


def test_lists_in_errors_are_capped(cli, repo_path, tmp_path):
    names = [f"N{i}" for i in range(40)]
    result = cli("remove", repo_path, *names, ok=False)
    assert result.exit_code == 6
    assert len(result.stderr) < 300


def test_revert_takes_a_message_and_info_summarises_contigs(cli, repo_path):
    cli("revert", repo_path, "main", "-m", "undo the withdrawal")
    repo = vczrepo.Repository.open(repo_path)
    assert repo.log()[0].message == "undo the withdrawal"
    text = cli("info", repo_path).output
    assert "contigs:" in text
    assert "in the header; with variants:" in text


def test_help_imports_neither_vcztools_nor_pandas():
    code = ("import sys\nfrom vczrepo.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in ('vcztools', 'pandas', 'icechunk', 'zarr') if m in sys.modules)\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMPORTED []" in out, out
    for command in ("log", "append", "purge"):
        code_c = code.replace("['--help']", f"['{command}', '--help']")
        out = subprocess.run([sys.executable, "-c", code_c], capture_output=True, text=True, check=True).stdout
        assert "IMPORTED []" in out, (command, out)


def test_view_writes_bgzf_when_the_output_ends_in_gz(cli, repo_path, tmp_path):
    import gzip
    import shutil

    plain, packed = tmp_path / "out.vcf", tmp_path / "out.vcf.gz"
    cli("view", repo_path, "--at", "release-1", "-o", plain)
    cli("view", repo_path, "--at", "release-1", "-o", packed)
    data = packed.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x04"
    assert data[12:14] == b"BC"
    assert data.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    body = [line for line in gzip.decompress(data).decode().splitlines() if not line.startswith("##vcztools")]
    assert body == [line for line in plain.read_text().splitlines() if not line.startswith("##vcztools")]
    if shutil.which("tabix"):
        subprocess.run(["tabix", "-p", "vcf", str(packed)], check=True)


def test_disk_full_is_one_line_naming_the_path_and_gc_now_collects_what_it_left(cli, tmp_path, monkeypatch):
    import errno

    from vczrepo.internals import SessionStore

    shape = {"n_variants": 3000, "samples_chunk_size": 20, "variants_chunk_size": 1000}
    repo_path = tmp_path / "big.vczrepo"
    vczrepo.Repository.init(repo_path, make_vcz(tmp_path, "base", [f"B{i}" for i in range(20)], seed=4, **shape))
    batch = make_vcz(tmp_path, "big", [f"D{i}" for i in range(40)], seed=5, **shape)

    def chunk_files() -> set[str]:
        return {p.name for p in (repo_path / "chunks").glob("*")}

    before, files = state(repo_path), chunk_files()
    real_set, written = SessionStore.set, []

    async def fill_up(self, key, value):
        if len(written) >= 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(repo_path / "chunks" / "X"))
        written.append(key)
        await real_set(self, key, value)

    monkeypatch.setattr(SessionStore, "set", fill_up)
    result = cli("append", repo_path, batch, ok=False)
    monkeypatch.undo()
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert "No space left on device" in lines[0]
    assert str(repo_path) in lines[0]
    assert state(repo_path) == before
    assert chunk_files() - files  # the chunks written before the disk filled up
    cli("gc", repo_path, "--now")  # a local repository under its lock: collectable at once
    assert not chunk_files() - files


def test_shell_completion_offers_the_repositorys_refs(repo_path):
    import os

    for words, cword in ((f"vczrepo log {repo_path} --at re", "4"), (f"vczrepo promote {repo_path} ", "3")):
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": cword, "_VCZREPO_COMPLETE": "bash_complete"}
        out = subprocess.run([sys.executable, "-m", "vczrepo"], env=env, capture_output=True, text=True).stdout
        offered = [line.split(",", 1)[1] for line in out.splitlines()]
        assert "release-1" in offered, (words, out)
