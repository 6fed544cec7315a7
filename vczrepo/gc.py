"""gc: delete storage objects no branch or tag can reach, never ones a writer may still need.

Measured with icechunk: ``garbage_collect`` with a threshold more recent than an open
writer deletes that writer's new chunks, and its later commit then succeeds with
unreadable data. So gc holds the repository's write lock (local storage: no vczrepo
writer is mid-operation) and refuses thresholds inside a safety margin (object stores:
a writer started within the margin keeps its chunks).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from . import storage
from .errors import VczRepoError
from .repository import Repository

SAFE_MARGIN = dt.timedelta(minutes=10)
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '10m', '12h', '7d', '2w' → timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30m, 12h, 7d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class GCResult:
    threshold: dt.datetime
    dry_run: bool
    expired_snapshots: list[str]
    chunks_deleted: int
    manifests_deleted: int
    snapshots_deleted: int
    bytes_deleted: int


def gc(repo: Repository, older_than: dt.timedelta = dt.timedelta(days=7), *, expire: bool = False,
       dry_run: bool = False, safe_margin: dt.timedelta = SAFE_MARGIN) -> GCResult:
    """Collect unreachable objects older than `older_than`; with `expire`, also drop older history.

    Without `expire` no history reachable from a branch or tag is ever lost: only objects that
    nothing points at (abandoned writes, heads left by reset or purge) are deleted.
    """
    if older_than < safe_margin:
        raise VczRepoError(f"--older-than {older_than} is inside the safety margin of {safe_margin}: "
                           "a writer may still need those objects")
    with storage.write_lock(repo.location):
        threshold = dt.datetime.now(dt.UTC) - older_than
        expired: set[str] = set()
        if expire and not dry_run:
            expired = repo.icechunk.expire_snapshots(threshold)
        summary = repo.icechunk.garbage_collect(threshold, dry_run=dry_run)
    return GCResult(threshold, dry_run, sorted(expired), summary.chunks_deleted, summary.manifests_deleted,
                    summary.snapshots_deleted, summary.bytes_deleted)
