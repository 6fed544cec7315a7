"""Run the `vczrepo` command in a subprocess and cut it at the n-th visit of a write site.

The cut is placed by the command's own progress (`Settings.checkpoint`), never by time:
- "kill": the process SIGKILLs itself there (nothing runs after it, as in a crash);
- "interrupt": the process stops there, tells the test (a file appears), and waits until the
  test's SIGINT has been handled: a real Ctrl-C from outside, landing at a known step;
- "error": a storage error is raised there.

A subprocess started by a shell job in the background inherits SIGINT *ignored*, and CPython
then installs no KeyboardInterrupt handler: a Ctrl-C test run that way sees the command finish
as if no signal came (why the Ctrl-C tests used to skip in full runs). The child installs
Python's handler itself, as an interactive shell's child would have it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

WAIT_LIMIT = 600.0  # s: only against a hung child; progress, not time, decides when to act

CHILD = """
import dataclasses, os, signal, sys, threading
site, n, action, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
handled = threading.Event()

def on_sigint(signum, frame):  # Python's own behaviour, and a mark for a parked worker thread
    handled.set()
    raise KeyboardInterrupt

signal.signal(signal.SIGINT, on_sigint)
import vczrepo
import vczrepo.cli as cli

met, lock = [0], threading.Lock()

def checkpoint(at):
    if at != site:
        return
    with lock:
        hit = met[0] == n
        met[0] += 1
    if not hit:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "error":
        raise vczrepo.StorageError(f"storage: injected failure at {site} #{n}")
    open(ready, "w").close()
    while not handled.wait(0.05):  # on the main thread the KeyboardInterrupt is raised in here
        pass

settings = cli.State.settings
cli.State.settings = lambda self, **kw: dataclasses.replace(settings(self, **kw), checkpoint=checkpoint)
cli.run(sys.argv[5:])
"""


def run_cut(args: list, site: str, n: int, action: str, workdir: Path) -> subprocess.CompletedProcess:
    """`vczrepo ARGS…` cut at visit `n` (0-based) of `site`; returns the finished process."""
    ready = workdir / f"cut-{site}-{n}.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, site, str(n), action, str(ready), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if action == "interrupt":
        deadline = time.monotonic() + WAIT_LIMIT
        while not ready.exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{args[0]} never reached {site} #{n} in {WAIT_LIMIT:.0f}s")
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT_LIMIT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def vczrepo_cli(*args) -> subprocess.CompletedProcess:
    """`vczrepo ARGS…` in a new process."""
    return subprocess.run([sys.executable, "-m", "vczrepo", *map(str, args)], capture_output=True, text=True,
                          timeout=WAIT_LIMIT)
