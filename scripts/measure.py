"""Measure one command: wall time, peak RSS and, for a click CLI, its work apart from start-up.

A process started from a large one (the benchmark imports zarr and numpy) inherits that
process's peak RSS in Linux's accounting, so measured commands are started from this small
launcher instead. Python start-up and imports (about a second for vczrepo, more for
vcztools) would swamp small operations, so a click CLI is run in a forked child that times
its imports and its work apart:

    python scripts/measure.py OUT.json -- cp -r a b
    python scripts/measure.py --cli vczrepo.cli:main [--preload a,b] OUT.json -- ARGS...

OUT.json gets {"wall", "rss_mib", "exit"} and, with --cli, {"startup", "op"} (seconds).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path


def run_cli(entry: str, preload: list[str], args: list[str], report: int) -> None:
    """In the child: import, run the click command, send the two timings; never returns."""
    start = time.perf_counter()
    for name in preload:
        importlib.import_module(name)
    module, _, attribute = entry.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    ready = time.perf_counter()
    code: int | str | None = 0
    try:
        command.main(args, prog_name=module.partition(".")[0])
    except SystemExit as e:
        code = e.code
    done = time.perf_counter()
    os.write(report, json.dumps({"startup": ready - start, "op": done - ready}).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cli", metavar="MODULE:COMMAND", help="a click command to run in-process")
    parser.add_argument("--preload", default="", help="modules imported before the clock starts")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        if args.cli:
            run_cli(args.cli, [m for m in args.preload.split(",") if m], command, write)
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    os.close(write)
    with os.fdopen(read) as pipe:
        timings = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    result = {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "exit": code}
    result.update(json.loads(timings) if timings else {"startup": 0.0, "op": wall})
    args.out.write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
