"""Concurrent writers: N processes' worth of mixed appends, removes and tags against one repository.

Each writer runs its operations one after another, each through the `vczrepo` command line in
its own process, and records exit codes and durations; the writers run at once. Afterwards the
repository is checked: every operation that exited 0 is in main's history exactly once, none
that failed is, the samples are exactly the base's minus the removed plus the appended, and
`check` passes. Reported: exit codes (7 = gave up after concurrent updates), the longest time a
writer took, and the one-writer cost (an append and a remove run alone before the others start).

    python scripts/writers.py --backend local|s3 --writers N --ops K [--json [PATH]]

With --backend s3 a moto server is started on 127.0.0.1 (tests/servers.py). Exit 1 if any
operation was lost or duplicated or the repository fails its check; exit 2 if none was lost
but some writers gave up (exit 7) or hit the deadline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from crash_campaign import VCZREPO, argv, invoke, ok  # noqa: E402  (the CLI adapter)
from vcfgen import write_vcz_direct  # noqa: E402

EXIT_GAVE_UP = 7
KINDS = ("append", "remove", "tag")
N_VARIANTS = 1000
SAMPLES_CHUNK = 8


@dataclass
class OpRecord:
    writer: int
    index: int
    kind: str
    name: str  # commit message (append, remove) or tag name
    code: int | None = None  # None: killed at the deadline
    seconds: float = 0.0
    stderr: str = ""


@dataclass
class Report:
    backend: str
    writers: int
    ops_per_writer: int
    solo_append_seconds: float = 0.0
    solo_remove_seconds: float = 0.0
    wall_seconds: float = 0.0
    deadline_seconds: float = 0.0
    exit_codes: dict = field(default_factory=dict)
    gave_up: dict = field(default_factory=dict)  # kind -> count of exit 7
    timed_out: int = 0
    max_writer_seconds: float = 0.0
    max_op_seconds: float = 0.0
    problems: list = field(default_factory=list)  # lost, duplicated, stray, check failures
    ops: list = field(default_factory=list)

    @property
    def exit7(self) -> int:
        return sum(self.gave_up.values())


def _vcz(path: Path, names: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    gts = rng.integers(0, 2, size=(N_VARIANTS, len(names), 2)).astype(np.int8)
    return write_vcz_direct(path, names, gts, n_variants=N_VARIANTS, samples_chunk_size=SAMPLES_CHUNK,
                            variants_chunk_size=500)


def plan(writers: int, ops: int) -> list[list[OpRecord]]:
    """Writer w's op i is kind (w + i) mod 3: appends, removes and tags in equal parts, mixed."""
    return [[OpRecord(w, i, KINDS[(w + i) % 3], f"w{w}-op{i}") for i in range(ops)]
            for w in range(writers)]


def command(op: OpRecord, url: str, data: Path) -> list[str]:
    if op.kind == "append":
        return [*argv("append", url, data / f"{op.name}.vcz"), "-m", op.name]
    if op.kind == "remove":
        return [*argv("remove", url, f"R-{op.name}"), "-m", op.name]
    return argv("tag", url, op.name, "main")


def _timed(args: list[str], options: list[str], timeout: float) -> tuple[int | None, float, str]:
    start = time.monotonic()
    proc = subprocess.Popen([*VCZREPO, *args, *options], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        code = None
    return code, time.monotonic() - start, err.strip()[-400:]


def run(url: str, options: list[str], work: Path, writers: int, ops: int, backend: str,
        log=lambda m: None) -> Report:
    """Build the repository at `url`, run the writers, verify; returns the report."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    schedule = plan(writers, ops)
    removes = [f"R-{op.name}" for w in schedule for op in w if op.kind == "remove"]
    base = ["B0", "B1", "solo-R", *removes]
    ok([*argv("init", url, _vcz(data / "base.vcz", base, 1)), *options])
    for w in schedule:
        for op in w:
            if op.kind == "append":
                _vcz(data / f"{op.name}.vcz", [f"{op.name}-a", f"{op.name}-b"],
                     2 + op.writer * 100 + op.index)
    solo_batch = _vcz(data / "solo.vcz", ["solo-a", "solo-b"], 99_999)
    report = Report(backend, writers, ops)

    # one writer alone: what an append and a remove cost without contention
    code, report.solo_append_seconds, err = _timed([*argv("append", url, solo_batch), "-m", "solo-append"],
                                                   options, 600)
    if code != 0:
        report.problems.append(f"solo append exited {code}: {err}")
    code, report.solo_remove_seconds, err = _timed([*argv("remove", url, "solo-R"), "-m", "solo-remove"],
                                                   options, 600)
    if code != 0:
        report.problems.append(f"solo remove exited {code}: {err}")
    solo = max(report.solo_append_seconds, report.solo_remove_seconds)
    # generous and scaling with the work: every op serialised, 10x the solo cost each, + 2 min
    report.deadline_seconds = 120 + 10 * solo * writers * ops
    log(f"{backend}: solo append {report.solo_append_seconds:.1f}s, "
        f"remove {report.solo_remove_seconds:.1f}s; "
        f"{writers} writers x {ops} ops, deadline {report.deadline_seconds:.0f}s")

    started = time.monotonic()
    writer_seconds = [0.0] * writers

    def writer(w: int) -> None:
        t0 = time.monotonic()
        for op in schedule[w]:
            left = report.deadline_seconds - (time.monotonic() - started)
            if left <= 0:
                op.code, op.stderr = None, "not started: deadline"
                continue
            op.code, op.seconds, op.stderr = _timed(command(op, url, data), options, left)
        writer_seconds[w] = time.monotonic() - t0

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.wall_seconds = time.monotonic() - started
    report.max_writer_seconds = max(writer_seconds)
    all_ops = [op for w in schedule for op in w]
    report.max_op_seconds = max(op.seconds for op in all_ops)
    report.exit_codes = dict(Counter(str(op.code) for op in all_ops))
    report.gave_up = dict(Counter(op.kind for op in all_ops if op.code == EXIT_GAVE_UP))
    report.timed_out = sum(op.code is None for op in all_ops)
    report.ops = [asdict(op) for op in all_ops]
    verify(url, options, all_ops, base, report)
    return report


def verify(url: str, options: list[str], all_ops: list[OpRecord], base: list[str], report: Report) -> None:
    history = json.loads(ok([*argv("log", url, "main"), *options]))
    messages = Counter(c.get("message") for c in history)
    tags = Counter(t for c in history for t in c.get("tags", []))
    samples = ok([*argv("samples", url, "main"), *options]).split()
    expected = set(base) - {"solo-R"} | {"solo-a", "solo-b"}
    for name in ("solo-append", "solo-remove"):
        if messages[name] != 1:
            report.problems.append(f"{name}: {messages[name]} times in the log")
    for op in all_ops:
        seen = tags[op.name] if op.kind == "tag" else messages[op.name]
        if op.code not in (0, EXIT_GAVE_UP, None):
            report.problems.append(f"{op.name} ({op.kind}) exited {op.code}: {op.stderr}")
        if op.code == 0 and seen != 1:
            report.problems.append(f"{op.name} ({op.kind}) exited 0 and is {seen} times in main's history")
        elif op.code == EXIT_GAVE_UP and seen != 0:
            report.problems.append(f"{op.name} ({op.kind}) gave up but is {seen} times in main's history")
        elif op.code is None and seen > 1:  # killed at the deadline: committed at most once
            report.problems.append(f"{op.name} ({op.kind}) timed out and is {seen} times in main's history")
        landed = seen == 1 and op.code in (0, None)
        if landed and op.kind == "append":
            expected |= {f"{op.name}-a", f"{op.name}-b"}
        if landed and op.kind == "remove":
            expected.discard(f"R-{op.name}")
    dupes = [s for s, n in Counter(samples).items() if n > 1]
    if dupes:
        report.problems.append(f"duplicated samples: {dupes[:10]}")
    if set(samples) != expected:
        report.problems.append(f"samples: missing {sorted(expected - set(samples))[:10]}, "
                               f"unexpected {sorted(set(samples) - expected)[:10]}")
    r = invoke([*argv("check", url, "main"), *options])
    if r.code != 0:
        report.problems.append(f"check exited {r.code}: {(r.output + r.stderr)[-500:]}")


def summary(r: Report) -> str:
    return (f"{r.backend}: {r.writers} writers x {r.ops_per_writer} ops in {r.wall_seconds:.0f}s "
            f"(deadline {r.deadline_seconds:.0f}s); exit codes {r.exit_codes}; gave up (exit 7) "
            f"{r.exit7} {r.gave_up}; timed out {r.timed_out}; longest writer {r.max_writer_seconds:.1f}s, "
            f"longest op {r.max_op_seconds:.1f}s; one writer alone: append {r.solo_append_seconds:.1f}s, "
            f"remove {r.solo_remove_seconds:.1f}s; problems {len(r.problems)}")


def s3_env():
    """A moto server, fake credentials in this process's environment (and so every subprocess's)."""
    from servers import running

    return running("s3")


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--ops", type=int, default=3, help="operations per writer")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH")
    parser.add_argument("--work-dir", type=Path)
    a = parser.parse_args(args)
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="writers-"))

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    try:
        if a.backend == "s3":
            with s3_env() as s3:
                report = run(s3.url("writers"), s3.cli_options, work, a.writers, a.ops, "s3", say)
        else:
            report = run(str(work / "repo"), [], work, a.writers, a.ops, "local", say)
    finally:
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(report))
    for p in report.problems:
        print(f"PROBLEM: {p}")
    if a.json:
        text = json.dumps({**asdict(report), "exit7": report.exit7}, indent=2)
        sys.stdout.write(text + "\n") if a.json == "-" else Path(a.json).write_text(text)
    if report.problems:
        return 1
    return 2 if report.exit7 or report.timed_out else 0


if __name__ == "__main__":
    sys.exit(main())
