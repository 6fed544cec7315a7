"""Settings: how vczrepo does its work (never what it writes), passed explicitly.

One frozen object travels from `Repository.open(..., settings=...)` through every
operation and is pickled to dask workers with their share of the work, so a worker
encodes exactly as the coordinator would. Nothing is read from module globals.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass

# Where an injected fault can fire (tests' `checkpoint` hook is called with one of these).
SITES = (
    "copy-encoded",  # one chunk copied as encoded bytes
    "recompose",  # one chunk row re-encoded from decoded batch chunks
    "fill",  # one chunk rewritten with null/missing columns (remove, padding, purge)
    "restore",  # one chunk rewritten with restored columns (revert of a remove)
    "purge-rewrite",  # one commit of a purge rewritten
    "purge-branch",  # one branch moved onto a purge's rewritten chain
    "purge-tag",  # a purge's new tag names recorded, or one tag replaced by its purged name
    "replay",  # one operation of promote --replay re-applied
    "plan",  # a multi-step plan written or updated, or about to be removed (its last step done)
    "gc",  # before garbage collection deletes objects
    "ref-move",  # before a branch or tag is created, moved or deleted
    "before-commit",  # all data written, commit not yet made
    "after-commit",  # commit made, its response not yet seen by the caller
)


@dataclass(frozen=True)
class Settings:
    """Tuning and test hooks for one repository handle.

    compression_level: blosc level of the chunks vczrepo re-encodes (None keeps each
    array's own); progress: show progress bars (None: only on a terminal); concurrency:
    chunks in flight per process; workers/scheduler: spread chunk work over dask workers
    (a LocalCluster of `workers` processes, or the cluster at `scheduler`); lease_seconds:
    on object stores, how long a multi-step operation's owner is trusted before another
    writer may finish its plan; widen: rewrite a repository array in a wider type or shape
    when a batch needs it (False: refuse such batches, so writes only ever add bytes);
    checkpoint: called with a site name (see SITES) at every
    write site, for fault injection in tests.
    """

    compression_level: int | None = 1
    progress: bool | None = None
    concurrency: int = 8
    workers: int = 1
    scheduler: str | None = None
    lease_seconds: float = 600.0
    widen: bool = True
    checkpoint: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.compression_level is not None and not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression level must be 0-9, got {self.compression_level}")
        if self.concurrency < 1 or self.workers < 1:
            raise ValueError("concurrency and workers must be at least 1")

    @property
    def distributed(self) -> bool:
        return self.workers > 1 or self.scheduler is not None

    @property
    def show_progress(self) -> bool:
        return sys.stderr.isatty() if self.progress is None else self.progress

    def at(self, site: str) -> None:
        """Mark a write site (a no-op unless a test installed a checkpoint)."""
        if self.checkpoint is not None:
            self.checkpoint(site)

    def for_workers(self) -> Settings:
        """What a dask worker gets: the same settings, local work, no hook (it would not pickle)."""
        return dataclasses.replace(self, workers=1, scheduler=None, checkpoint=None, progress=False)


DEFAULT = Settings()
