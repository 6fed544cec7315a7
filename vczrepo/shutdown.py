"""The end of a process that used icechunk: its runtime's threads finish before Python's shutdown.

Each awaited icechunk call (zarr's reads and writes of a session store) resumes as soon as
its result is handed over; the Rust thread that ran it then takes the GIL once more to drop
the call's task locals (the event loop and a context). CPython 3.12 ends, mid-call, any
thread that takes the GIL once finalization has begun: when the main thread reached it
first (a script's last read, then exit), that drop was cut short while the garbage
collector ran, and the process died with SIGSEGV after all its work and output were done
(pyo3 0.29 in icechunk 2.3; 1 run in 120 to 200 of a short script here). Those threads
cannot be seen from Python, so there is no readiness to wait on: at exit the GIL is
released `_ROUNDS` times, each a chance for a waiting thread to take it and finish, which is
all they need. It runs among the exit handlers, before finalization begins, and costs
about `_ROUNDS` milliseconds once per process.
"""

from __future__ import annotations

import atexit
import time

_ROUNDS = 50  # GIL releases at exit: one is enough unless the machine is too busy to schedule
_PAUSE = 0.001  # seconds per release: a waiting thread needs the GIL for microseconds
_registered = False


def let_icechunk_threads_finish() -> None:
    """Release the GIL `_ROUNDS` times, so that icechunk's threads waiting for it finish."""
    for _ in range(_ROUNDS):
        time.sleep(_PAUSE)


def register() -> None:
    """Run `let_icechunk_threads_finish` at this process's exit (once, however often called)."""
    global _registered
    if not _registered:
        atexit.register(let_icechunk_threads_finish)
        _registered = True
