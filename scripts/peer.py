"""The peer in the benchmark: sgkit-dev's vczstore on icechunk storage, in an environment of its own.

vczstore pins numpy < 2.4, so it cannot share vczrepo's environment: `environment` makes
one with uv from the base interpreter (never a Python download), cached under the bench
cache and keyed by the requirements, with the same icechunk, zarr and vcztools versions as
vczrepo's so that both sides use the same storage engine and readers. `bench_peer` runs it
on the same files as vczrepo's writes, and `bench_peer_reads` reads its store through
vcztools' icechunk backend.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench import Bench
    from make_data import Dataset

VERSION = "0.1.0"
CLI = "vczstore.cli:vczstore_main"
VCZTOOLS = "vcztools.cli:vcztools_main"
BACKEND = ["--backend-storage", "icechunk"]
READY = "ready"  # written last in the environment: its presence marks a complete install
OVERRIDES = Path(__file__).resolve().parent.parent / "overrides.txt"


class PeerUnavailableError(RuntimeError):
    """The peer's environment cannot be made (no uv, or the install failed)."""


def requirements() -> list[str]:
    """What the peer's environment holds: vczstore with its icechunk extra, and vczrepo's own
    versions of the storage engine and the reader."""
    ours = {p: version(p) for p in ("icechunk", "zarr", "vcztools")}
    return [f"vczstore[icechunk]=={VERSION}", "numpy<2.4", "pyranges",
            *(f"{p}=={v}" for p, v in ours.items())]


def uv() -> list[str]:
    """The uv command: on PATH, or as a module of the base interpreter or of PATH's python3
    (.ci/run installs it with `python3 -m pip` when missing)."""
    if found := shutil.which("uv"):
        return [found]
    for python in (sys._base_executable, shutil.which("python3")):
        command = [str(python), "-m", "uv"]
        if python and subprocess.run([*command, "--version"], capture_output=True, check=False).returncode == 0:
            return command
    raise PeerUnavailableError("uv not found (neither on PATH nor as `python -m uv`)")


def environment(cache: Path, log: Callable[[str], None]) -> Path:
    """The peer environment's python, made on first use (about a second from uv's cache)."""
    reqs = requirements()
    key = hashlib.sha256("\n".join([sys.version, OVERRIDES.read_text(), *reqs]).encode()).hexdigest()[:12]
    env = cache / f"vczstore-{VERSION}-{key}"
    python = env / "bin" / "python"
    if (env / READY).exists():
        return python
    shutil.rmtree(env, ignore_errors=True)
    log(f"  making the peer's environment in {env}")
    for argv in ([*uv(), "venv", "--quiet", "--python", sys._base_executable, str(env)],
                 [*uv(), "pip", "install", "--quiet", "--python", str(python),
                  "--overrides", str(OVERRIDES), *reqs]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise PeerUnavailableError(f"{' '.join(argv[:4])} failed: {proc.stderr.strip()[-500:]}")
    (env / READY).write_text("\n".join(reqs) + "\n")
    return python


def fresh(path: Path) -> Path:
    """`path`, after removing what a previous repeat left there."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def copied(src: Path, dst: Path) -> Path:
    """A fresh copy of a peer store (vczstore changes its store in place, amending its commit)."""
    shutil.copytree(src, fresh(dst))
    return dst


def refusal(python: Path, argv: list[str]) -> str | None:
    """The peer's error message if it refuses `argv` (run once, not timed), else None."""
    proc = subprocess.run([str(python), "-m", "vczstore", *argv], capture_output=True, text=True,
                          check=False)
    lines = proc.stderr.strip().splitlines()
    message = lines[-1] if lines else f"exit {proc.returncode}"
    return (message[:100] + " ...)" if len(message) > 100 else message) if proc.returncode else None


def bench_peer(b: Bench, python: Path, data: Dataset, remove: dict[str, list[str]]) -> dict:
    """The peer's store made from the first batch, then the writes vczrepo's bench_writes makes,
    on the same batches, each into a fresh copy of the store it starts from. `remove` maps a
    count to the samples vczrepo removes. Returns what the peer refused and its store paths."""
    n, u = data.spec.samples_per_batch, data.spec.unaligned_samples
    root = b.work / "peer"
    store = {name: root / f"{name}.icechunk" for name in ("base", "aligned", "small-N", "small-2N", "unaligned")}

    def run(key: str, label: str, argv: Callable[[int], list]) -> None:
        b.best_of(key, f"vczstore: {label}", argv, cli=CLI, python=python)

    b.best_of("peer_init", f"vczstore: copy-store-to-icechunk of a {n}-sample batch",
              lambda i: ["copy-store-to-icechunk", data.batches[0], fresh(store["base"])], cli=CLI,
              python=python, again=False)
    appends = (
        ("peer_append_aligned", f"append {n} samples, store {n} (aligned)", "aligned", "base", data.batches[1]),
        ("peer_append_small_at_N", f"append {u} samples, store {n}", "small-N", "base", data.unaligned),
        ("peer_append_small_at_2N", f"append {u} samples, store {2 * n}", "small-2N", "aligned", data.unaligned),
        ("peer_append_unaligned", f"append {n} samples, store {n + u} (unaligned)", "unaligned", "small-N",
         data.batches[1]),
    )
    for key, label, out, start, batch in appends:
        run(key, label, lambda i, o=out, s=start, bt=batch: [
            "append", *BACKEND, copied(store[s], store[o]), bt])
    refused = {}
    removing = ["remove", "-Q", *BACKEND]
    for count, samples in remove.items():
        if count != "1" and (message := refusal(python, [*removing, copied(store["base"], root / "tried.icechunk"),
                                                          *samples])):
            refused[f"remove {count}"] = message
            continue
        for start, at, size in (("base", "N", n), ("unaligned", "L", 2 * n + u)):
            run(f"peer_remove_{count}_at_{at}", f"remove {count} sample(s), store {size}",
                lambda i, s=start, r=samples: [*removing, copied(store[s], root / "removed.icechunk"), *r])
    for path in [*(store[k] for k in store if k != "aligned"), root / "removed.icechunk", root / "tried.icechunk"]:
        shutil.rmtree(path, ignore_errors=True)  # a medium run's copies would fill a small disk
    return {"refused": refused, "stores": {"aligned": str(store["aligned"])}}


def bench_peer_reads(b: Bench, python: Path, store: Path, reads: dict[str, tuple[str, list]]) -> None:
    """vcztools (in the peer's environment) reading the peer's store through its icechunk
    backend: `reads` maps a read's name to (what, vcztools arguments after the store)."""
    for name, (what, args) in reads.items():
        b.best_of(f"{name}_peer", f"vcztools {args[0]} of vczstore's icechunk store ({what})",
                  lambda i, a=args: [a[0], *BACKEND, store, *a[1:]], cli=VCZTOOLS, python=python)


def startup_commands() -> list[tuple[str, list[str]]]:
    """Commands whose start-up is compared: (name, arguments), the same for both CLIs."""
    return [("--version", ["--version"]), ("--help", ["--help"]),
            ("append --help", ["append", "--help"]), ("remove --help", ["remove", "--help"])]
