"""The commit journal: what vczrepo records in each commit's metadata, and reads back.

log, diff, check, revert and purge read these entries; nothing else is trusted to know
what a commit did. An append records the columns its samples went to and a fingerprint
of their ids, not the ids: icechunk keeps every commit's metadata in one document that
each commit, tag and branch rewrites, so names there would slow every operation as the
cohort grows; removes (few names each) keep theirs.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

SCHEMA = 2


@dataclass(frozen=True)
class Commit:
    """One snapshot in a branch's history, with vczrepo's journal entry.

    `reachable` is False for a commit that only a head left behind by a reset or a
    deletion reaches (`Repository.log_all`); `was_head_of` then names the refs whose head
    it was, e.g. `["main"]` or `["tag: release-1"]`.
    """

    id: str
    parent: str | None
    written_at: datetime.datetime
    message: str
    metadata: dict
    branches: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    reachable: bool = True
    was_head_of: list[str] = field(default_factory=list)

    @property
    def op(self) -> str:
        return str(self.metadata.get("op", "root" if self.parent is None else "external"))

    @property
    def time(self) -> datetime.datetime:
        """When the operation was done: the journal's time, which a purge's rewrite of the commit
        keeps (its `written_at` is the rewrite's); icechunk's own commits have only `written_at`."""
        recorded = self.metadata.get("time")
        return datetime.datetime.fromisoformat(recorded) if isinstance(recorded, str) else self.written_at

    @property
    def author(self) -> str | None:
        """Who made the commit: the author given (`--author`, VCZREPO_AUTHOR), else user@host."""
        if self.metadata.get("author"):
            return str(self.metadata["author"])
        user = self.metadata.get("user")
        return f"{user}@{self.metadata['host']}" if user and self.metadata.get("host") else user

    def to_json(self) -> dict:
        return {
            "id": self.id, "parent": self.parent, "written_at": self.written_at.isoformat(),
            "time": self.time.isoformat(), "author": self.author,
            "op": self.op, "message": self.message, "branches": self.branches, "tags": self.tags,
            "reachable": self.reachable, "was_head_of": self.was_head_of,
            "metadata": dict(sorted(self.metadata.items())),
        }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers), or no login at all
        return "unknown"


def _versions() -> dict[str, str]:
    return {pkg: version(pkg) for pkg in ("vczrepo", "icechunk", "zarr", "bio2zarr", "vcztools")}


def entry(op: str, op_id: str, branch: str, parent: str, summary: dict) -> dict:
    """The journal entry of one commit."""
    return {
        "vczrepo": SCHEMA, "op": op, "op_id": op_id, "branch": branch, "parent": parent,
        "time": now(), "user": user(), "host": socket.gethostname(), "versions": _versions(), **summary,
    }


def names_digest(names: Sequence[str]) -> str:
    """A fingerprint of a list of sample ids, in order."""
    return hashlib.sha256("\0".join(names).encode()).hexdigest()


def added(ids: Sequence[str], start: int) -> dict:
    """The entry of samples appended at column `start`: their columns and a fingerprint."""
    return {"sample_range": [start, start + len(ids)], "samples_sha256": names_digest(ids),
            "n_samples_added": len(ids)}


def sample_change(metadata: dict) -> str:
    """A commit's change to the sample count, e.g. '+3', '-1', '+2 -1'."""
    plus = metadata.get("n_samples_added", 0) + metadata.get("n_samples_restored", 0)
    minus = metadata.get("n_samples_removed", 0)
    return " ".join(x for x in (f"+{plus}" if plus else "", f"-{minus}" if minus else "") if x)
