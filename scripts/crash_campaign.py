"""Crash campaign: SIGKILL every write operation at uniform random times, then check and recover.

For each operation kind a template repository is built once. The operation is run once
uninterrupted on a copy (through the `vczrepo` command line, in a subprocess) to measure its
duration and record the expected new state. Then, per trial: a fresh copy of the template, the
same command in a subprocess, SIGKILL at U(0, duration), and

  1. the repository opens and `vczrepo check` exits 0 at every ref the operation touches (for
     the multi-step operations: on the whole repository, where a plan in progress is no damage);
  2. each of those refs is in the old or the new state (log --json, samples, and the
     vcztools output of `vczrepo view`, compared as a whole);
  3. recovery. Data commits: re-running the same command ends in the same state as the
     uninterrupted run (an append whose commit had landed refuses with exit 6, "already in the
     repository"; any refusal is accepted only if the state was already the new one and it
     stays so). Multi-step operations (purge, promote --replay: recorded plans): a *different*
     write — tag, remove, append, branch, or the command itself, in turn — in a *new* process
     must succeed and finish the plan; then every branch and tag (with the samples, history and
     vcztools output each holds), the branch list and `check` must equal an uninterrupted run of
     the operation followed by that write (or of the write alone, when the kill came before the
     plan was recorded).

    python scripts/crash_campaign.py [--trials N] [--ops a,b] [--seed S] [--size ci|full] [--json [PATH]]

Exit 1 if any trial failed. Verification runs the CLI in-process (click's CliRunner) to save interpreter
start-ups; the killed run, the measurement run and the follow-up writes are subprocesses.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from vcfgen import write_vcz_direct  # noqa: E402

# ---------------------------------------------------------------------------------------------
# CLI adapter: the only place that knows the command-line convention (-b/--branch for the
# branch a command commits to or moves, --at REF for reads).
# ---------------------------------------------------------------------------------------------
S = str
CLI: dict[str, Callable[..., list[str]]] = {
    "init": lambda r, src: ["init", S(r), S(src)],
    "append": lambda r, src, *flags: ["append", S(r), S(src), *flags],
    "remove": lambda r, *names: ["remove", S(r), *names],
    "purge": lambda r, *names: ["purge", S(r), *names],
    "gc": lambda r: ["gc", S(r), "--now"],
    "promote_replay": lambda r, src, branch: ["promote", S(r), src, "-b", branch, "--replay"],
    "revert": lambda r, snap, branch: ["revert", S(r), snap, "-b", branch],
    "branch": lambda r, name, at: ["branch", S(r), name, "--at", at],
    "branch_delete": lambda r, name: ["branch", S(r), name, "--delete"],
    "tag": lambda r, name, at: ["tag", S(r), name, "--at", at],
    "log": lambda r, at: ["log", S(r), "--at", at, "--json"],
    "samples": lambda r, at: ["samples", S(r), "--at", at],
    "view": lambda r, at: ["view", S(r), "--at", at, "--no-version"],
    "check": lambda r, at: ["check", S(r), "--at", at],
    "check_all": lambda r: ["check", S(r)],
}
EXIT_ALREADY = 6  # append: "already in the repository"
MAX_STARTUP_SHARE = 0.8  # --skip-startup: kills start at most this far into the measured duration
VCZREPO = [str(Path(sys.executable).parent / "vczrepo")]


def argv(name: str, *args) -> list[str]:
    return CLI[name](*args)


# ---------------------------------------------------------------------------------------------
# Running the CLI
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    code: int
    output: str
    stderr: str


def invoke(args: list[str]) -> Result:
    """Run `vczrepo ARGS` in this process (no interpreter start-up)."""
    from click.testing import CliRunner

    from vczrepo.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return Result(1, r.output, f"{type(r.exception).__name__}: {r.exception}")
    return Result(r.exit_code, r.stdout, r.stderr)


def ok(args: list[str]) -> str:
    r = invoke(args)
    if r.code != 0:
        raise RuntimeError(f"vczrepo {' '.join(args)} exited {r.code}: {r.stderr.strip()}")
    return r.output


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*VCZREPO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


# ---------------------------------------------------------------------------------------------
# Data and templates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    variants: int
    variants_chunk: int
    samples_chunk: int
    base: int  # samples in an aligned base (a multiple of samples_chunk)
    batch: int


SIZES = {
    # CI: seconds per operation, most of it interpreter start-up
    "ci": Size(variants=2000, variants_chunk=500, samples_chunk=16, base=32, batch=32),
    # a few hundred samples x a few thousand variants: writes take ~1 s beyond start-up
    "full": Size(variants=5000, variants_chunk=1000, samples_chunk=64, base=256, batch=256),
}


def batch(path: Path, prefix: str, n: int, size: Size, seed: int) -> Path:
    if not path.exists():
        rng = np.random.default_rng(seed)
        gts = rng.integers(0, 2, size=(size.variants, n, 2)).astype(np.int8)
        write_vcz_direct(path, [f"{prefix}{i}" for i in range(n)], gts, n_variants=size.variants,
                         samples_chunk_size=size.samples_chunk, variants_chunk_size=size.variants_chunk)
    return path


def age(path: Path, seconds: float = 86400) -> None:
    """Make every file look a day old, so gc (--older-than 10m) can collect the garbage."""
    past = time.time() - seconds
    for root, _, files in os.walk(path):
        for f in files:
            os.utime(Path(root) / f, (past, past))


def head(repo: Path, ref: str) -> str:
    return json.loads(ok(argv("log", repo, ref)))[0]["id"]


@dataclass
class Op:
    """One operation kind: how to build its template, its command, the refs it touches."""

    name: str
    build: Callable[[Path, Path, Size], dict]  # (template, data dir, size) -> context
    command: Callable[[Path, dict], list[str]]
    refs: tuple[str, ...] = ("main",)
    plan: bool = False  # a recorded plan (several commits or ref moves): recovered by another write


def _base(template: Path, data: Path, size: Size, extra: int = 0) -> None:
    n = size.base + extra
    ok(argv("init", template, batch(data / f"base{n}.vcz", "A", n, size, 1)))


def build_append_aligned(t, d, s):
    _base(t, d, s)
    return {"batch": batch(d / "batch.vcz", "B", s.batch, s, 2)}


def build_append_unaligned(t, d, s):
    _base(t, d, s, extra=s.samples_chunk // 2)
    return {"batch": batch(d / "batch.vcz", "B", s.batch, s, 2)}


def build_remove(t, d, s):
    _base(t, d, s)
    return {"names": [f"A{i}" for i in range(0, s.base, 3)]}  # a third of the samples, every chunk


def build_revert(t, d, s):
    _base(t, d, s)
    ok(argv("append", t, batch(d / "batch.vcz", "B", s.batch, s, 2)))
    ok(argv("remove", t, *[f"B{i}" for i in range(0, s.batch, 2)]))
    return {"snap": head(t, "main")}  # reverting the remove restores the data: a rewrite


def build_gc(t, d, s):
    _base(t, d, s)
    ok(argv("branch", t, "scratch", "main"))
    ok(argv("append", t, batch(d / "batch.vcz", "B", s.batch, s, 2), "-b", "scratch"))
    ok(argv("append", t, batch(d / "batch2.vcz", "C", s.batch, s, 3), "-b", "scratch"))
    ok(argv("branch_delete", t, "scratch"))
    ok(argv("remove", t, "A0"))
    age(t)
    return {}


def build_purge(t, d, s):
    _base(t, d, s)
    ok(argv("append", t, batch(d / "batch.vcz", "B", s.batch, s, 2)))
    ok(argv("tag", t, "v1", "main"))
    ok(argv("branch", t, "trial", "main"))
    ok(argv("remove", t, "B5", "-b", "trial"))  # a second branch to move, on a commit of its own
    ok(argv("remove", t, "A1"))
    ok(argv("tag", t, "v2", "main"))
    return {"names": ["A1", "B3"], "extra": batch(d / "extra.vcz", "D", s.samples_chunk, s, 5)}


def build_promote(t, d, s):
    _base(t, d, s)
    ok(argv("branch", t, "trial", "main"))
    ok(argv("append", t, batch(d / "batch.vcz", "B", s.batch, s, 2), "-b", "trial"))
    ok(argv("remove", t, "B1", "-b", "trial"))
    ok(argv("append", t, batch(d / "batch2.vcz", "C", s.batch, s, 3)))  # main moved: no fast-forward
    return {"extra": batch(d / "extra.vcz", "D", s.samples_chunk, s, 5)}


# The writes that follow a killed multi-step operation, in turn: each must finish its plan.
FOLLOW_UPS: dict[str, Callable[[Path, dict], list[str]]] = {
    "tag": lambda r, c: argv("tag", r, "after", "main"),
    "remove": lambda r, c: argv("remove", r, "A0"),
    "append": lambda r, c: argv("append", r, c["extra"]),
    "branch": lambda r, c: argv("branch", r, "side", "main"),
    "again": lambda r, c: [],  # the operation's own command (filled in by the trial)
}


OPS = {o.name: o for o in [
    Op("append-aligned", build_append_aligned, lambda r, c: argv("append", r, c["batch"])),
    Op("append-padded", build_append_unaligned, lambda r, c: argv("append", r, c["batch"], "--align")),
    Op("append-no-align", build_append_unaligned,
       lambda r, c: argv("append", r, c["batch"], "--no-align")),
    Op("remove", build_remove, lambda r, c: argv("remove", r, *c["names"])),
    Op("revert", build_revert, lambda r, c: argv("revert", r, c["snap"], "main")),
    Op("gc", build_gc, lambda r, c: argv("gc", r)),
    Op("purge", build_purge, lambda r, c: argv("purge", r, *c["names"]), refs=("main", "v1", "v2", "trial"),
       plan=True),
    Op("promote-replay", build_promote, lambda r, c: argv("promote_replay", r, "trial", "main"),
       refs=("main", "trial"), plan=True),
]}


# ---------------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------------
def ref_state(repo: Path, ref: str) -> dict:
    """What a reader sees at a ref: its history (without ids: a re-run makes new ones), its
    samples and a digest of the vcztools output."""
    log = json.loads(ok(argv("log", repo, ref)))
    history = [[c["op"], c.get("message"), (c.get("metadata") or {}).get("sample_range")]
               for c in log]
    view = ok(argv("view", repo, ref))
    return {"head": log[0]["id"], "history": history, "samples": ok(argv("samples", repo, ref)).split(),
            "view_sha256": hashlib.sha256(view.encode()).hexdigest(), "view_lines": view.count("\n")}


def state(repo: Path, refs: tuple[str, ...]) -> dict:
    return {ref: ref_state(repo, ref) for ref in refs}


def whole_state(repo: Path, refs: tuple[str, ...]) -> dict:
    """Every branch and tag (and the old names in `refs`, which may resolve through a purge's
    renamed tags) as a reader sees it, the branch list, the plan in progress and `check`."""
    branches = json.loads(ok(["branch", S(repo), "--list", "--json"]))
    tags = [t["name"] for t in json.loads(ok(["tag", S(repo), "--list", "--json"]))]
    names = tuple(dict.fromkeys([*refs, *(b["name"] for b in branches), *tags]))
    checked = invoke(argv("check_all", repo))
    return {"refs": state(repo, names), "branch_list": [(b["name"], b["ahead"], b["behind"]) for b in branches],
            "tags": tags, "in_progress": json.loads(ok(["info", S(repo), "--json"]))["in_progress"],
            "check": checked.code}


def same_whole(a: dict, b: dict) -> bool:
    return (a["branch_list"] == b["branch_list"] and a["tags"] == b["tags"] and a["check"] == b["check"] == 0
            and a["in_progress"] is None and b["in_progress"] is None and a["refs"].keys() == b["refs"].keys()
            and same(a["refs"], b["refs"], ids=False))


def same(a: dict, b: dict, ids: bool) -> bool:
    """Equal states; ids compared only when asked (the old state keeps its snapshot ids)."""
    keys = ("history", "samples", "view_sha256") + (("head",) if ids else ())
    return all(a[ref][k] == b[ref][k] for ref in a for k in keys)


def classify(now: dict, old: dict, new: dict) -> str | None:
    """Per ref: 'old', 'new' or None (a state that is neither)."""
    verdicts = {}
    for ref in now:
        if same({ref: now[ref]}, {ref: old[ref]}, ids=True):
            verdicts[ref] = "old"
        elif same({ref: now[ref]}, {ref: new[ref]}, ids=False):
            verdicts[ref] = "new"
        else:
            return None
    return "new" if "new" in verdicts.values() else "old"


# ---------------------------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------------------------
@dataclass
class OpResult:
    op: str
    duration: float = 0.0
    trials: int = 0
    outcomes: dict = field(default_factory=lambda: {"old": 0, "new": 0, "finished": 0})
    failures: list = field(default_factory=list)
    startup: float = 0.0  # kills drawn from U(startup, duration); 0 unless --skip-startup
    plans_pending: int = 0  # multi-step operations: kills that left a recorded plan
    follow_ups: dict = field(default_factory=dict)  # … the writes that followed, and how often


def _kill(op: Op, template: Path, work: Path, ctx: dict, old: dict, new: dict, delay: float,
          result: OpResult) -> tuple[Path, list[str], str, str] | None:
    """A fresh copy, the command killed at `delay`, the refs checked and classified:
    (repository, command, label, 'old' or 'new'), or None once a failure is recorded."""
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(template, repo)
    command = op.command(repo, ctx)
    proc = spawn(command)
    try:
        proc.wait(timeout=delay)
        result.outcomes["finished"] += 1
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    tag = f"{op.name} kill at {delay:.2f}s"
    for ref in () if op.plan else op.refs:  # (a plan's trial checks the whole repository)
        r = invoke(argv("check", repo, ref))
        if r.code != 0:
            result.failures.append(f"{tag}: check at {ref} exited {r.code}: {(r.output + r.stderr)[-500:]}")
            return None
    try:
        after_kill = state(repo, op.refs)
    except RuntimeError as e:
        result.failures.append(f"{tag}: cannot read the repository: {e}")
        return None
    verdict = classify(after_kill, old, new)
    if verdict is None:
        result.failures.append(f"{tag}: a state that is neither old nor new: "
                               f"{json.dumps(after_kill)[:800]}")
        return None
    result.outcomes[verdict] += 1
    return repo, command, tag, verdict


def trial(op: Op, template: Path, work: Path, ctx: dict, old: dict, new: dict, delay: float,
          result: OpResult) -> None:
    """A data commit killed, then re-run in-process: it must end as the uninterrupted run."""
    killed = _kill(op, template, work, ctx, old, new, delay, result)
    if killed is None:
        return
    repo, command, tag, verdict = killed
    after_kill = state(repo, op.refs)
    rerun = invoke(command)
    final = state(repo, op.refs)
    if verdict == "old" and rerun.code != 0:
        result.failures.append(f"{tag}: state old; re-run exited {rerun.code}: {rerun.stderr.strip()}")
        return
    if verdict == "new" and rerun.code != 0 and not same(final, after_kill, ids=True):
        result.failures.append(f"{tag}: state new; re-run refused ({rerun.code}) but changed the repository")
        return
    if not same(final, new, ids=False):
        result.failures.append(f"{tag}: state {verdict}; after the re-run (exit {rerun.code}) the "
                               f"state differs from an uninterrupted run: {json.dumps(final)[:800]}")
        return
    for ref in op.refs:
        r = invoke(argv("check", repo, ref))
        if r.code != 0:
            result.failures.append(f"{tag}: after the re-run check at {ref} exited {r.code}")
            return


def trial_followed(op: Op, template: Path, work: Path, ctx: dict, old: dict, new: dict, delay: float,
                   follow: str, expected: Callable[[str, bool], dict], result: OpResult) -> None:
    """A multi-step operation killed, then another write in a new process, which must finish
    the plan: the whole repository then equals the uninterrupted operation followed by that
    write (`expected(follow, True)`), or that write alone if no plan had been recorded."""
    killed = _kill(op, template, work, ctx, old, new, delay, result)
    if killed is None:
        return
    repo, command, tag, verdict = killed
    tag = f"{tag}, then {follow}"
    whole = invoke(argv("check_all", repo))
    if whole.code != 0:
        result.failures.append(f"{tag}: check of the whole repository exited {whole.code}: {whole.output[-500:]}")
        return
    pending = json.loads(ok(["info", S(repo), "--json"]))["in_progress"]
    applied = verdict == "new" or pending is not None
    result.plans_pending += pending is not None
    args = command if follow == "again" else FOLLOW_UPS[follow](repo, ctx)
    done = subprocess.run([*VCZREPO, *args], capture_output=True, text=True)
    refused = follow == "again" and applied and pending is None and done.returncode == EXIT_ALREADY
    if done.returncode != 0 and not refused:  # purge again after it finished: "nothing to purge" (6)
        result.failures.append(f"{tag}: the {follow} exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return
    final = whole_state(repo, op.refs)
    want = expected(follow, applied)
    if not same_whole(final, want):
        result.failures.append(f"{tag}: state {verdict} (plan {'recorded' if pending else 'none'}); after the "
                               f"{follow} the repository differs from an uninterrupted run: "
                               f"{json.dumps(final)[:600]} != {json.dumps(want)[:600]}")


def expectations(op: Op, template: Path, work: Path, ctx: dict) -> Callable[[str, bool], dict]:
    """(write, operation applied first) -> the whole state an uninterrupted run ends in (each
    computed when first asked for)."""
    cache: dict[tuple[str, bool], dict] = {}

    def expected(follow: str, applied: bool) -> dict:
        if (follow, applied) not in cache:
            repo = work / f"expected-{op.name}"
            shutil.rmtree(repo, ignore_errors=True)
            shutil.copytree(template, repo)
            if applied:
                ok(op.command(repo, ctx))
            if not (follow == "again" and applied):  # (then it is a no-op, or refused)
                ok(op.command(repo, ctx) if follow == "again" else FOLLOW_UPS[follow](repo, ctx))
            cache[(follow, applied)] = whole_state(repo, op.refs)
            shutil.rmtree(repo)
        return cache[(follow, applied)]

    return expected


def run_op(op: Op, work: Path, data: Path, size: Size, trials: int, rng: random.Random,
           log: Callable[[str], None], skip_startup: bool = False, measure_runs: int = 1) -> OpResult:
    result = OpResult(op.name)
    template = work / f"template-{op.name}"
    shutil.rmtree(template, ignore_errors=True)
    ctx = op.build(template, data, size)
    old = state(template, op.refs)
    # one uninterrupted run: its duration and the new state
    measured = work / f"measured-{op.name}"
    shutil.rmtree(measured, ignore_errors=True)
    shutil.copytree(template, measured)
    if skip_startup:  # a read command's time: interpreter start-up, imports, opening the repository
        for _ in range(measure_runs):  # the fastest, as for the duration
            start = time.monotonic()
            spawn(argv("samples", measured, "main")).wait()
            result.startup = min(result.startup or float("inf"), time.monotonic() - start)
    start = time.monotonic()
    proc = spawn(op.command(measured, ctx))
    _, err = proc.communicate()
    result.duration = time.monotonic() - start
    if proc.returncode != 0:
        result.failures.append(f"{op.name}: uninterrupted run exited {proc.returncode}: {err.strip()}")
        return result
    new = state(measured, op.refs)
    if same(new, old, ids=True) and op.name != "gc":
        result.failures.append(f"{op.name}: the uninterrupted run changed nothing")
        return result
    shutil.rmtree(measured)
    for _ in range(measure_runs - 1):  # on a shared machine one run can be slow: keep the fastest
        shutil.copytree(template, measured)
        start = time.monotonic()
        spawn(op.command(measured, ctx)).wait()
        result.duration = min(result.duration, time.monotonic() - start)
        shutil.rmtree(measured)
    log(f"{op.name}: {result.duration:.2f}s uninterrupted (start-up {result.startup:.2f}s); {trials} trials")
    expected = expectations(op, template, work, ctx)
    for i in range(trials):
        # (on a loaded machine a start-up can measure longer than the operation: keep a window)
        delay = rng.uniform(min(result.startup, MAX_STARTUP_SHARE * result.duration), result.duration)
        result.trials += 1
        if op.plan:
            follow = list(FOLLOW_UPS)[i % len(FOLLOW_UPS)]
            result.follow_ups[follow] = result.follow_ups.get(follow, 0) + 1
            trial_followed(op, template, work, ctx, old, new, delay, follow, expected, result)
        else:
            trial(op, template, work, ctx, old, new, delay, result)
        log(f"  {op.name} trial {result.trials}/{trials}: kill at {delay:.2f}s; {result.outcomes}, "
            f"{result.plans_pending} plans pending after the kill, {len(result.failures)} failures")
    shutil.rmtree(work / "repo", ignore_errors=True)
    return result


def campaign(work: Path, ops: list[str], trials: int, seed: int = 0, size: str = "ci",
             log: Callable[[str], None] = lambda m: None, skip_startup: bool = False,
             measure_runs: int = 1) -> dict[str, OpResult]:
    rng = random.Random(seed)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    return {name: run_op(OPS[name], work, data, SIZES[size], trials, rng, log, skip_startup, measure_runs)
            for name in ops}


def format_table(results: dict[str, OpResult]) -> str:
    rows = [f"{'operation':<18}{'duration':>9}{'trials':>8}{'failures':>10}{'old':>6}{'new':>6}"
            f"{'finished':>10}{'pending':>9}  followed by"]
    for r in results.values():
        note = ", ".join(f"{k} {v}" for k, v in r.follow_ups.items()) or "the same command (in-process)"
        rows.append(f"{r.op:<18}{r.duration:>8.2f}s{r.trials:>8}{len(r.failures):>10}"
                    f"{r.outcomes['old']:>6}{r.outcomes['new']:>6}{r.outcomes['finished']:>10}"
                    f"{r.plans_pending:>9}  {note}")
    total = sum(r.trials for r in results.values())
    failed = sum(len(r.failures) for r in results.values())
    rows.append(f"{'total':<18}{'':>9}{total:>8}{failed:>10}")
    return "\n".join(rows)


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=25, help="trials per operation")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, of: {', '.join(OPS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write results as JSON")
    parser.add_argument("--work-dir", type=Path, help="default: a temporary directory")
    parser.add_argument("--measure-runs", type=int, default=1,
                        help="uninterrupted runs per operation; the fastest sets the kill window")
    parser.add_argument("--skip-startup", action="store_true",
                        help="kill at U(t0, duration), t0 = the time of `vczrepo samples` (start-up, "
                             "imports, open), so every kill lands in the operation itself")
    a = parser.parse_args(args)
    ops = [o for o in a.ops.split(",") if o]
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        parser.error(f"unknown operations: {', '.join(unknown)}")
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="crash-campaign-"))
    started = time.monotonic()
    try:
        results = campaign(work, ops, a.trials, a.seed, a.size,
                           log=lambda m: print(m, file=sys.stderr, flush=True),
                           skip_startup=a.skip_startup, measure_runs=a.measure_runs)
    finally:
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(results))
    for r in results.values():
        for f in r.failures:
            print(f"FAIL: {f}")
    if a.json:
        doc = {"seed": a.seed, "size": a.size,
               "seconds": time.monotonic() - started,
               "results": [dataclasses.asdict(r) for r in results.values()]}
        text = json.dumps(doc, indent=2)
        sys.stdout.write(text + "\n") if a.json == "-" else Path(a.json).write_text(text)
    return 1 if any(r.failures for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
