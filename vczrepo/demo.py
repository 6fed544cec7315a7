"""`vczrepo demo`: the main job end to end on the bundled example VCFs.

init from part 1, append part 2, tag, remove a sample, tag again, print the log, and
read both tags back through vcztools. Succeeds only if every step gives what it should.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path

import vcztools

from .repository import Repository

PART1 = "sample-part1.vcf.gz"
PART2 = "sample-part2.vcf.gz"


def _vcztools_samples(repo: Repository, ref: str) -> list[str]:
    with vcztools.VczReader(repo.group(ref)) as reader:
        return [str(s) for s in reader.sample_ids]


def _steps(directory: Path, data: Path, echo: Callable[[str], None]) -> list[tuple[str, object, object]]:
    path = directory / "cohort.vczrepo"
    checks: list[tuple[str, object, object]] = []
    repo, r = Repository.init(path, data / PART1)
    echo(f"init    {r.snapshot_id}  {repo.samples_added(r.snapshot_id)}")
    checks.append(("init samples", repo.samples(), ["NA00001", "NA00002"]))
    r = repo.append(data / PART2, message="wave 2")
    echo(f"append  {r.snapshot_id}  {repo.samples_added(r.snapshot_id)}")
    repo.create_tag("release-1")
    r = repo.remove(["NA00002"], message="consent withdrawn")
    echo(f"remove  {r.snapshot_id}  {r.metadata['samples_removed']}")
    repo.create_tag("release-2")
    echo("log:")
    for c in repo.log():
        refs = ", ".join([*c.branches, *(f"tag:{t}" for t in c.tags)])
        echo(f"  {c.id}  {c.op:<7} {c.message}" + (f"  ({refs})" if refs else ""))
    for tag, expected in (("release-1", ["NA00001", "NA00002", "NA00003"]),
                          ("release-2", ["NA00001", "NA00003"])):
        got = _vcztools_samples(repo, tag)
        echo(f"vcztools samples at {tag}: {' '.join(got)}")
        checks.append((f"samples at {tag}", got, expected))
    checks.append(("commits", [c.op for c in repo.log()], ["remove", "append", "init", "root"]))
    return checks


def run_demo(directory: str | None = None, echo: Callable[[str], None] = print) -> bool:
    """Run the demo; returns True only if every check passed."""
    with tempfile.TemporaryDirectory(prefix="vczrepo-demo-") as tmp:
        target = Path(directory) if directory else Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        with as_file(files("vczrepo") / "data") as data:
            checks = _steps(target, Path(data), echo)
    failed = [(name, got, want) for name, got, want in checks if got != want]
    for name, got, want in failed:
        echo(f"FAILED {name}: got {got}, expected {want}")
    echo("demo: all steps gave the expected result" if not failed else f"demo: {len(failed)} check(s) failed")
    return not failed
