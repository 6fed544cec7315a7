"""Reading any ref through vcztools: view, query, open_group, open_dataset, diff."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import vcztools
from click.testing import CliRunner
from helpers import vcztools_samples
from vcfgen import make_vcz
from vcztools.cli import vcztools_main

import vczrepo

NAMES = [f"S{i}" for i in range(7)]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """init(3) → tag a → append(4) → tag b → remove S1,S5 → tag c → append(1) on main."""
    tmp = tmp_path_factory.mktemp("hist")
    path = tmp / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp, "b0", NAMES[:3], samples_chunk_size=2,
                                                     variants_chunk_size=5))
    repo.create_tag("a")
    repo.append(make_vcz(tmp, "b1", NAMES[3:], samples_chunk_size=3, variants_chunk_size=4))
    repo.create_tag("b")
    repo.remove(["S1", "S5"])
    repo.create_tag("c")
    repo.append(make_vcz(tmp, "b2", ["T1"], samples_chunk_size=2, variants_chunk_size=5))
    exports = {}
    for ref in ("a", "b", "c", "main"):
        exports[ref] = tmp / f"{ref}.vcz"
        repo.checkout(exports[ref], ref)
    return path, exports


def _strip_provenance(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("##vcztools"))


SELECTIONS = [
    ("view",),
    ("view", "-s", "S0,S2"),
    ("view", "-s", "^S0"),
    ("view", "-r", "chr20:120-180"),
    ("view", "-t", "chr20:150-300", "-i", "POS>160"),
    ("view", "-G"),
    ("view", "-H", "-e", "FMT/DP>30"),
    ("query", "-f", "%CHROM\\t%POS\\t%REF\\t%ALT[\\t%SAMPLE=%GT]\\n"),
    ("query", "-f", "%POS[\\t%DP]\\n", "-s", "S2,S0", "-r", "chr20:100-150"),
    ("query", "-l"),
]


@pytest.mark.parametrize("ref", ["a", "b", "c", "main"])
@pytest.mark.parametrize("args", SELECTIONS, ids=lambda a: " ".join(a))
def test_output_at_ref_equals_vcztools_on_checkout(cli, history, ref, args):
    path, exports = history
    command, *options = args
    ours = cli(command, path, "--at", ref, *options).output
    theirs = CliRunner().invoke(vcztools_main, [command, str(exports[ref]), *options])
    assert theirs.exit_code == 0, theirs.output
    assert _strip_provenance(ours) == _strip_provenance(theirs.output)
    assert ours.strip()


def test_removed_samples_hidden_after_removal_only(cli, history):
    path, _ = history
    assert cli("query", path, "--at", "b", "-l").output.split() == NAMES
    for ref in ("c", "main"):
        listed = cli("query", path, "--at", ref, "-l").output.split()
        assert "S1" not in listed
        assert "S5" not in listed
        header = next(x for x in cli("view", path, "--at", ref).output.splitlines() if x.startswith("#CHROM"))
        assert "S1" not in header.split("\t")
        assert "S5" not in header.split("\t")
    assert "S5" in cli("view", path, "--at", "b", "-s", "S5").output


def test_python_api_reads_any_ref(history):
    path, _ = history
    root = vczrepo.open_group(path, ref="b")
    with vcztools.VczReader(root) as reader:
        assert list(reader.sample_ids) == NAMES
    ds = vczrepo.open_dataset(path, ref="c", keep_null_samples=True)  # summaries: null columns kept on request
    assert list(ds.sample_id.values) == ["S0", "", "S2", "S3", "S4", "", "S6"]
    assert ds.call_genotype.shape[1] == 7
    ds = vczrepo.open_dataset(path, ref="c")  # summaries: live samples only by default
    assert list(ds.sample_id.values) == ["S0", "S2", "S3", "S4", "S6"]


def test_diff_between_refs(cli, history):
    path, _ = history
    d = json.loads(cli("diff", path, "a", "c", "--json").output)
    assert d["samples_added"] == ["S3", "S4", "S6"]
    assert d["samples_removed"] == ["S1"]
    assert d["variant_arrays_changed"] is False
    assert {"sample_id", "call_genotype", "call_DP"} <= set(d["arrays_changed"])
    assert "variant_position" not in d["arrays_changed"]
    assert [o["op"] for o in d["operations"]] == ["append", "remove"]
    back = vczrepo.Repository.open(path).diff("c", "a")
    assert back.samples_added == ["S1"]
    assert back.samples_removed == ["S3", "S4", "S6"]
    text = cli("diff", path, "b", "c").output
    assert "samples removed (2): S1 S5" in text


def test_diff_of_diverged_branches(cli, history, tmp_path):
    path, _ = history
    cli("branch", path, "side", "--at", "b")
    cli("remove", path, "S0", "-b", "side")
    d = vczrepo.Repository.open(path).diff("main", "side")
    assert d.base == vczrepo.Repository.open(path).resolve("b")
    assert d.samples_added == ["S1", "S5"]
    assert d.samples_removed == ["S0", "T1"]
    assert [o["op"] for o in d.operations] == ["remove"]
    assert [o["op"] for o in d.operations_only_in_from] == ["remove", "append"]


def test_unknown_ref_lists_nearest(cli, history):
    path, _ = history
    result = cli("view", path, "--at", "mainn", ok=False)
    assert result.exit_code == 3
    assert result.stderr.startswith("vczrepo: error: unknown ref 'mainn'; nearest: main")


def test_bad_vcztools_option_is_one_line_error(cli, history):
    path, _ = history
    result = cli("view", path, "-s", "S0", "-G", ok=False)
    assert result.exit_code == 2
    assert "Cannot select samples and drop genotypes" in result.stderr
    result = cli("query", path, ok=False)
    assert result.exit_code != 0
    assert "format" in result.stderr.lower()


def test_reading_a_tag_is_stable_while_main_is_appended(tmp_path):
    path = tmp_path / "r"
    repo, _ = vczrepo.Repository.init(path, make_vcz(tmp_path, "b0", ["A0", "A1"], samples_chunk_size=2))
    repo.create_tag("frozen")
    expected = vcztools_samples(repo.group("frozen"))
    batches = [make_vcz(tmp_path, f"w{k}", [f"W{k}"], samples_chunk_size=2) for k in range(4)]
    script = "import sys, vczrepo\nr = vczrepo.Repository.open(sys.argv[1])\n" \
             "for b in sys.argv[2:]: r.append(b)\n"
    writer = subprocess.Popen([sys.executable, "-c", script, str(path), *map(str, batches)])
    reads = 0
    try:
        while writer.poll() is None or reads < 3:
            root = vczrepo.open_group(path, "frozen")
            assert vcztools_samples(root) == expected
            assert root["call_genotype"].shape[1] == 2
            reads += 1
            time.sleep(0.01)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert vczrepo.Repository.open(path).samples() == ["A0", "A1", "W0", "W1", "W2", "W3"]
