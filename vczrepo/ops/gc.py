"""gc: delete storage objects no branch or tag can reach, never ones a writer may still need.

Measured with icechunk: ``garbage_collect`` with a threshold more recent than an open
writer deletes that writer's new chunks, and its later commit then succeeds with
unreadable data. So gc holds the repository's write lock (local storage: no vczrepo
writer is mid-operation) and, on object stores, refuses thresholds inside a safety
margin (a writer started within the margin keeps its chunks). `now` collects at once:
allowed where the lock makes it safe (local repositories), refused elsewhere; it also
deletes icechunk's copies of superseded repository documents (`overwritten/`), which
hold every commit message and journal entry the repository ever had (vczrepo.audit).
The digest records of the snapshots and manifests collected are deleted with them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .. import digests
from ..errors import UsageError

if TYPE_CHECKING:
    from ..repository import Repository

SAFE_MARGIN = dt.timedelta(minutes=10)
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '10m', '12h', '7d', '2w' → timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"invalid duration {text!r}: use e.g. 30m, 12h, 7d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class GCResult:
    """What `gc` deleted (or, with dry_run, would delete): counts by kind of object."""

    threshold: dt.datetime
    dry_run: bool
    expired_snapshots: list[str]
    chunks_deleted: int
    manifests_deleted: int
    snapshots_deleted: int
    bytes_deleted: int
    documents_deleted: int = 0  # superseded repository documents (overwritten/…), with `now`
    records_deleted: int = 0  # digest records of the collected snapshots and manifests (vczrepo.digests)

    def to_json(self) -> dict:
        return {**asdict(self), "threshold": self.threshold.isoformat(timespec="seconds")}


def gc(repo: Repository, older_than: dt.timedelta = dt.timedelta(days=7), *, expire: bool = False,
       now: bool = False, dry_run: bool = False, safe_margin: dt.timedelta = SAFE_MARGIN) -> GCResult:
    """Collect unreachable objects older than `older_than` (everything unreachable with `now`);
    with `expire`, also drop history older than that.

    Without `expire` no history reachable from a branch or tag is ever lost: only objects that
    nothing points at (abandoned writes, heads left by reset or purge) are deleted.
    """
    if now:
        if not repo.location.is_local:
            raise UsageError(
                f"gc --now is only safe on local repositories (a lock keeps writers out); on "
                f"{repo.location.scheme} a writer may be mid-session: use --older-than {_format(safe_margin)} "
                "or more once no writer has run for that long")
        older_than = dt.timedelta(0)
    elif older_than < safe_margin:
        raise UsageError(f"--older-than {_format(older_than)} is inside the safety margin of "
                         f"{_format(safe_margin)}: a writer may still need those objects (local: use --now)")
    with repo.tx.locked(repo):
        threshold = dt.datetime.now(dt.UTC) - older_than
        expired: set[str] = set()
        repo.settings.at("gc")
        if expire and not dry_run:
            expired = repo.icechunk.expire_snapshots(threshold)
        summary = repo.icechunk.garbage_collect(threshold, dry_run=dry_run)
        forgotten = 0 if dry_run else digests.forget_collected(repo.location)
        erased = []
        if now:  # icechunk keeps a copy of every superseded repository document (commit messages, journal)
            from ..audit import erase_overwritten

            erased = erase_overwritten(repo.location, dry_run=dry_run)
    return GCResult(threshold, dry_run, sorted(expired), summary.chunks_deleted, summary.manifests_deleted,
                    summary.snapshots_deleted, summary.bytes_deleted, len(erased), forgotten)


def _format(delta: dt.timedelta) -> str:
    """A duration as a user writes it (the largest unit that divides it)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
