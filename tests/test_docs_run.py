"""The tutorial and the README's tour, re-run command block by command block against what they print.

A page is read as a series of steps: each ```bash block, and the ```text block right after
it (nothing but blank lines between) when there is one. The blocks run in order in one
directory as a reader would type them (bash, the installed `vczrepo` first on PATH; a
block's `cd` and variables carry over to the next), each must exit 0, and what it prints
(stdout and stderr, as a terminal shows them) must be its text block, line for line, but
for what differs on every run: snapshot ids (each one the page shows must stand for the same
snapshot wherever it appears, and two ids for two snapshots), dates and times, and byte
counts. A text line `…` stands for any number of lines. A bash block with no text block
must only succeed. So the test fails when the docs drift from what the commands do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
SNAPSHOT = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{20}\b")  # icechunk ids: 20 Crockford base32 characters
VOLATILE = [(re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"), "<time>"), (re.compile(r"\b\d+ bytes\b"), "<n> bytes")]
ANY_LINES = "…"


@dataclass
class Step:
    code: str
    expected: list[str] | None  # None: the block has no text block
    line: int  # where the bash block starts in the page


def steps(markdown: str) -> list[Step]:
    fences = list(FENCE.finditer(markdown))
    out = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "bash":
            continue
        after = fences[i + 1] if i + 1 < len(fences) else None
        adjacent = after is not None and after.group(1) == "text" and not markdown[fence.end():after.start()].strip()
        expected = after.group(2).splitlines() if adjacent and after is not None else None
        out.append(Step(fence.group(2), expected, markdown.count("\n", 0, fence.start()) + 1))
    return out


class Ids:
    """The page's snapshot ids and the real ones, matched one for one over the whole page."""

    def __init__(self):
        self.real: dict[str, str] = {}
        self.page: dict[str, str] = {}

    def match(self, page_id: str, real_id: str) -> bool:
        if self.real.setdefault(page_id, real_id) != real_id or self.page.setdefault(real_id, page_id) != page_id:
            return False
        return True


def _line_matches(page: str, real: str, ids: Ids) -> bool:
    for pattern, placeholder in VOLATILE:
        page, real = pattern.sub(placeholder, page), pattern.sub(placeholder, real)
    page_ids, real_ids = SNAPSHOT.findall(page), SNAPSHOT.findall(real)
    if SNAPSHOT.sub("<id>", page) != SNAPSHOT.sub("<id>", real) or len(page_ids) != len(real_ids):
        return False
    return all(ids.match(p, r) for p, r in zip(page_ids, real_ids, strict=True))


def matches(expected: list[str], actual: list[str], ids: Ids) -> bool:
    """Does `actual` read as `expected` (with `…` lines matching any run of lines)?"""
    if not expected:
        return not actual
    if expected[0] == ANY_LINES:
        return any(matches(expected[1:], actual[k:], ids) for k in range(len(actual) + 1))
    if not actual:
        return False
    saved = (dict(ids.real), dict(ids.page))
    if _line_matches(expected[0], actual[0], ids) and matches(expected[1:], actual[1:], ids):
        return True
    ids.real, ids.page = saved
    return False


def run_page(page: Path, workdir: Path) -> None:
    """Run every step of `page` in `workdir`, failing at the first that does not do what it says."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    saved = workdir / ".docs-run-state"
    ids = Ids()
    for step in steps(page.read_text()):
        script = (f"set -a\n[ -f {saved} ] && . {saved}\nset -e\n{step.code}\n"
                  f"{{ export -p; printf 'cd %q\\n' \"$PWD\"; }} > {saved}\n")
        result = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        where = f"{page.name}:{step.line}:\n{step.code}"
        if result.returncode != 0:
            pytest.fail(f"{where}\nexited {result.returncode}:\n{result.stdout}", pytrace=False)
        if step.expected is not None and not matches(step.expected, result.stdout.splitlines(), ids):
            pytest.fail(f"{where}\nprinted:\n{result.stdout}\nthe page says:\n" + "\n".join(step.expected),
                        pytrace=False)


def test_tutorial_does_what_it_says(tmp_path):
    if not (shutil.which("bcftools") and shutil.which("tabix")):
        pytest.skip("the tutorial reads its output back with bcftools and tabix")
    run_page(ROOT / "docs" / "tutorial.md", tmp_path)


def test_readme_tour_runs(tmp_path):
    """The five-minute tour, from a checkout's root (its `vczrepo/data`)."""
    readme = ROOT / "README.md"
    tour = readme.read_text().split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "vczrepo").mkdir()
    (tmp_path / "vczrepo" / "data").symlink_to(ROOT / "vczrepo" / "data")
    (tmp_path / "tour.md").write_text(tour)
    assert steps(tour), "the tour has no bash block"
    run_page(tmp_path / "tour.md", tmp_path)


def test_steps_and_matching_are_what_the_pages_rely_on():
    page = "```bash\necho a\n```\n\n```text\nKEVE6D9P2YTETV0S67WG main\n```\nprose\n```bash\nls\n```\n"
    first, second = steps(page)
    assert (first.code, first.expected, second.expected) == ("echo a\n", ["KEVE6D9P2YTETV0S67WG main"], None)
    ids = Ids()
    assert matches(["KEVE6D9P2YTETV0S67WG at 2026-01-02 03:04:05", "…", "end"],
                   ["ZZZZZZZZZZZZZZZZZZZZ at 2027-05-06 07:08:09", "x", "y", "end"], ids)
    assert not matches(["KEVE6D9P2YTETV0S67WG"], ["YYYYYYYYYYYYYYYYYYYY"], ids)  # one page id, two snapshots
    assert not matches(["AAAAAAAAAAAAAAAAAAAA"], ["ZZZZZZZZZZZZZZZZZZZZ"], ids)  # two page ids, one snapshot
    assert not matches(["3 place(s)"], ["4 place(s)"], Ids())
    assert not matches(["a"], ["a", "b"], Ids())
