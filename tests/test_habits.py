"""What bcftools and git users type: `vczrepo` alone and `-h`, `view -O v|z`, samples files
(`-S FILE`, `-` for stdin), regions on contigs the repository lacks (no records, a warning,
as bcftools), `view | head` (exit 141, quietly), and a revert of the init commit (exit 3)."""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import state
from vcfgen import make_vcz

import vczrepo
from vczrepo.cli import main

VCZREPO = [sys.executable, "-m", "vczrepo"]


def _run(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VCZREPO, *map(str, args)], capture_output=True, input=stdin,
                          text=stdin is not None or None)


@pytest.fixture
def parts(tmp_path, data):
    """The VCF spec's example as a repository: part 1 (NA00001, NA00002), then part 2 (NA00003)."""
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, data / "sample-part1.vcf.gz")
    repo.append(data / "sample-part2.vcf.gz")
    return path


def _records(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_bare_vczrepo_prints_its_usage_and_commands_on_stderr_and_exits_2():
    result = _run()
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.startswith("Usage: vczrepo [OPTIONS] COMMAND [ARGS]...")
    commands = err[err.index("Commands:"):].splitlines()[1:]
    assert {line.split()[0] for line in commands if line.startswith("  ") and line.split()} >= {
        "init", "append", "remove", "log", "view", "query", "purge", "demo"}


def test_dash_h_is_help_on_the_group_and_every_command():
    assert _run("-h").stdout == _run("--help").stdout
    assert _run("-h").stdout.startswith(b"Usage: vczrepo [OPTIONS] COMMAND")
    assert _run("log", "-h").stdout == _run("log", "--help").stdout
    runner = CliRunner()
    for name in main.list_commands(None):  # type: ignore[arg-type]
        if name == "view":  # bcftools view -h: the header only (vcztools' option)
            continue
        short = runner.invoke(main, [name, "-h"], prog_name="vczrepo")
        long = runner.invoke(main, [name, "--help"], prog_name="vczrepo")
        assert short.exit_code == 0, (name, short.output)
        assert short.output == long.output
        assert short.output.startswith(f"Usage: vczrepo {name} "), name


def test_view_dash_h_is_the_header_only_as_in_bcftools(parts):
    header = _run("view", parts, "-h").stdout.decode()
    assert header.splitlines()[-1].startswith("#CHROM\tPOS")
    assert _records(header) == []
    assert _run("view", parts, "--help").stdout.startswith(b"Usage: vczrepo view")


def test_view_output_types_as_bcftools(parts, tmp_path):
    plain = _run("view", parts, "-O", "v")
    assert plain.returncode == 0, plain.stderr
    packed = _run("view", parts, "-O", "z")  # BGZF to stdout
    assert packed.returncode == 0, packed.stderr
    assert packed.stdout[:4] == b"\x1f\x8b\x08\x04"
    assert packed.stdout[12:14] == b"BC"
    assert _records(gzip.decompress(packed.stdout).decode()) == _records(plain.stdout.decode())
    out = tmp_path / "out.vcf.gz"
    assert _run("view", parts, "-O", "z1", "-o", out).returncode == 0
    bcftools = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True, check=True)
    assert bcftools.stdout.splitlines() == _records(plain.stdout.decode())
    named = tmp_path / "plain.vcf.gz"  # -O wins over the name, as in bcftools
    assert _run("view", parts, "-O", "v", "-o", named).returncode == 0
    assert _records(named.read_text()) == _records(plain.stdout.decode())
    for kind in ("b", "u"):
        refused = _run("view", parts, "-O", kind, "-o", tmp_path / f"x.{kind}")
        assert refused.returncode == 2
        lines = refused.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert "writes VCF only (-O v plain, -O z BGZF)" in lines[0]
        assert not (tmp_path / f"x.{kind}").exists()
    unknown = _run("view", parts, "-O", "q")
    assert unknown.returncode == 2
    assert b"unknown output type" in unknown.stderr


def _read(repo: vczrepo.Repository, command: str, **options) -> str:
    out = io.StringIO()
    getattr(repo, command)(output=out, **options)
    return out.getvalue()


def test_a_region_on_an_unknown_contig_selects_no_records_with_a_warning(parts, data, tmp_path, caplog):
    repo = vczrepo.Repository.open(parts)
    handlers = logging.getLogger().handlers[:]  # vcztools reconfigures logging; the caller's stays
    vcf = str(data / "sample.vcf.gz")  # the whole example: the repository's records
    for regions, known in (("chrZZ:1-1000", None), ("chrZZ:1-1000,20:1-20000", "20:1-20000"),
                           ("20:1-20000,X", "20:1-20000,X")):
        caplog.clear()
        theirs = subprocess.run(["bcftools", "query", "-r", regions, "-f", "%CHROM:%POS\\n", vcf],
                                capture_output=True, text=True, check=True)
        assert _read(repo, "query", regions=regions, format="%CHROM:%POS\\n") == theirs.stdout, regions
        view = _read(repo, "view", regions=regions, no_header=True)
        assert view == (_read(repo, "view", regions=known, no_header=True) if known else "")
        warnings = [r.getMessage() for r in caplog.records if r.name == "vczrepo"]
        assert warnings == (["warning: no contig chrZZ in the repository: no records from it"] * 2
                            if "chrZZ" in regions else [])
    header = _read(repo, "view", regions="chrZZ:1-1000")
    assert header.splitlines()[-1].startswith("#CHROM")
    assert _records(header) == []
    regions_file = tmp_path / "regions.tsv"
    regions_file.write_text("chrZZ\t1\t1000\n20\t1\t20000\nchrYY\t5\t9\n")
    caplog.clear()
    assert _read(repo, "query", regions_file=str(regions_file), format="%POS\\n").split() == ["14370", "17330"]
    assert [r.getMessage() for r in caplog.records if r.name == "vczrepo"] == [
        "warning: no contig chrZZ, chrYY in the repository: no records from them"]
    everything = _read(repo, "query", format="%POS\\n")
    assert _read(repo, "query", targets="^chrZZ", format="%POS\\n") == everything  # excludes nothing
    assert _read(repo, "query", regions="chrZZ", targets="20", format="%POS\\n") == ""
    assert logging.getLogger().handlers == handlers
    cli = _run("view", parts, "-H", "-r", "chrZZ:1-1000")  # the command: exit 0, the warning on stderr
    assert (cli.returncode, cli.stdout) == (0, b"")
    assert cli.stderr.decode().splitlines() == [
        "vczrepo: warning: no contig chrZZ in the repository: no records from it"]


def test_view_into_a_reader_that_stops_early_exits_141_quietly(tmp_path):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, make_vcz(tmp_path, "big", ["A", "B", "C"], n_variants=9000))
    for command in (["view", path], ["view", path, "-O", "z", "--json"]):  # (query: the same vcztools call)
        proc = subprocess.Popen([*VCZREPO, *map(str, command)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.read(100)  # the output has started (far more than a pipe holds is to come)
        proc.stdout.close()  # `| head -c 100`
        err = proc.stderr.read()
        assert proc.wait() == 141, (command, err)
        assert err == b"", command


def test_remove_purge_and_audit_read_a_samples_file(parts, tmp_path):
    names = tmp_path / "withdrawn.txt"
    names.write_text("NA00002\n\nNA00003 \n")
    removed = _run("remove", parts, "-S", names, "-m", "withdrawn")
    assert removed.returncode == 0, removed.stderr
    assert vczrepo.Repository.open(parts).samples() == ["NA00001"]
    assert vczrepo.Repository.open(parts).log()[0].metadata["samples_removed"] == ["NA00002", "NA00003"]
    dry = _run("purge", parts, "-S", "-", "--dry-run", "--json", stdin="NA00002\n")
    assert dry.returncode == 0, dry.stderr
    assert '"samples": [\n    "NA00002"\n  ]' in dry.stdout
    found = _run("audit", parts, "NA00001", "-S", names)
    assert found.returncode == 9
    assert "hold 3 id(s)" in found.stderr.decode()


def test_a_bad_samples_file_changes_nothing(parts, tmp_path):
    before = state(parts)
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "unknown.txt").write_text("NA00001\nNOPE\n")
    for args, code, text in (
        (["remove", parts], 2, "give the SAMPLES, or a samples file with -S FILE"),
        (["remove", parts, "-S", tmp_path / "empty.txt"], 2, "give the SAMPLES, or a samples file with -S FILE"),
        (["purge", parts, "-S", tmp_path / "missing.txt"], 2, "missing.txt"),
        (["remove", parts, "-S", tmp_path / "unknown.txt"], 6, "cannot remove NOPE: unknown sample"),
    ):
        result = _run(*args)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1, (args, lines)
        assert text in lines[0], (args, lines)
    assert state(parts) == before


def test_reverting_the_init_commit_is_a_ref_error(parts):
    before = state(parts)
    init = vczrepo.Repository.open(parts).log()[1].id
    result = _run("revert", parts, init)
    assert result.returncode == 3
    assert result.stderr.decode().splitlines() == [
        f"vczrepo: error: cannot revert {init}: it is the init commit, which made the repository "
        "(to withdraw its samples, `remove` them)"]
    assert state(parts) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_view_into_a_full_disk_is_a_storage_failure(parts):
    result = _run("view", parts, "-o", "/dev/full")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == ["vczrepo: error: No space left on device"]
