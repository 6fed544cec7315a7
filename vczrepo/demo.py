"""`vczrepo demo`: the main job end to end on the bundled example VCFs.

init from part 1, append part 2, tag, remove a sample, tag again, read the log, and read
both tags back through vcztools. Succeeds only if every step gives what it should; the
report lists each step and each check (`vczrepo demo --json` prints it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path

import vcztools

from .repository import Repository

PART1 = "sample-part1.vcf.gz"
PART2 = "sample-part2.vcf.gz"


@dataclass
class DemoReport:
    """The demo's steps (what each did) and checks (what it gave against what it should)."""

    steps: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    repository: str | None = None  # where the demo's repository stays (None: a temporary directory)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def check(self, name: str, got: object, expected: object) -> None:
        self.checks.append({"check": name, "got": got, "expected": expected, "ok": got == expected})

    def to_json(self) -> dict:
        return {"ok": self.ok, "repository": self.repository, "steps": self.steps, "checks": self.checks}


def _vcztools_samples(repo: Repository, ref: str) -> list[str]:
    with vcztools.VczReader(repo.group(ref)) as reader:
        return [str(s) for s in reader.sample_ids]


def _steps(directory: Path, data: Path, report: DemoReport, echo: Callable[[str], None]) -> None:
    def step(name: str, text: str, **what: object) -> None:
        report.steps.append({"step": name, **what})
        echo(text)

    path = directory / "cohort.vczrepo"
    repo, r = Repository.init(path, data / PART1)
    step("init", f"init    {r.snapshot_id}  {repo.samples_added(r.snapshot_id)}", snapshot=r.snapshot_id,
         samples_added=repo.samples_added(r.snapshot_id))
    report.check("init samples", repo.samples(), ["NA00001", "NA00002"])
    r = repo.append(data / PART2, message="wave 2")
    step("append", f"append  {r.snapshot_id}  {repo.samples_added(r.snapshot_id)}", snapshot=r.snapshot_id,
         samples_added=repo.samples_added(r.snapshot_id))
    repo.create_tag("release-1")
    r = repo.remove("NA00002", message="consent withdrawn")
    step("remove", f"remove  {r.snapshot_id}  {r.metadata['samples_removed']}", snapshot=r.snapshot_id,
         samples_removed=r.metadata["samples_removed"])
    repo.create_tag("release-2")
    history = repo.log()
    lines = []
    for c in history:
        refs = ", ".join([*c.branches, *(f"tag: {t}" for t in c.tags)])
        lines.append(f"  {c.id}  {c.op:<7} {c.message}" + (f"  ({refs})" if refs else ""))
    step("log", "\n".join(["log:", *lines]), commits=[c.to_json() for c in history])
    for tag, expected in (("release-1", ["NA00001", "NA00002", "NA00003"]),
                          ("release-2", ["NA00001", "NA00003"])):
        got = _vcztools_samples(repo, tag)
        step("read", f"vcztools samples at {tag}: {' '.join(got)}", ref=tag, samples=got)
        report.check(f"samples at {tag}", got, expected)
    report.check("commits", [c.op for c in history], ["remove", "append", "init", "root"])


def run_demo(directory: str | None = None, echo: Callable[[str], None] = print) -> DemoReport:
    """Run the demo, echoing each step and any failed check; its report says whether all passed."""
    report = DemoReport(repository=str(Path(directory) / "cohort.vczrepo") if directory else None)
    with tempfile.TemporaryDirectory(prefix="vczrepo-demo-") as tmp:
        target = Path(directory) if directory else Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        with as_file(files("vczrepo") / "data") as data:
            _steps(target, Path(data), report, echo)
    failed = [c for c in report.checks if not c["ok"]]
    for c in failed:
        echo(f"FAILED {c['check']}: got {c['got']}, expected {c['expected']}")
    echo("demo: all steps gave the expected result" if not failed else f"demo: {len(failed)} check(s) failed")
    return report
