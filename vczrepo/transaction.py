"""The one write path: lock → writable session on a branch → apply → commit once.

Every mutation (init, append, remove, …) goes through `run`. Any exception before the
commit leaves the branch head where it was: the session is simply dropped. If another
writer commits first (icechunk ``ConflictError``) the whole operation is re-run from a
fresh session on the new head, because two appends resize the same arrays and cannot be
rebased onto each other. Each commit carries an operation id, so a retry can tell that a
commit whose response was lost did in fact land.
"""

from __future__ import annotations

import datetime
import getpass
import random
import socket
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version

import icechunk
import zarr

from .chunkfiles import session_store
from .errors import ConcurrentUpdateError, RefError
from .storage import Location, write_lock

METADATA_SCHEMA = 2
MAX_ATTEMPTS = 8

Apply = Callable[[zarr.Group], dict]


def _versions() -> dict[str, str]:
    return {pkg: version(pkg) for pkg in ("vczrepo", "icechunk", "zarr", "bio2zarr", "vcztools")}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers), or no login at all
        return "unknown"


def commit_metadata(op: str, op_id: str, branch: str, parent: str, summary: dict) -> dict:
    """The repository's journal entry for one operation (read by log, diff, check)."""
    return {
        "vczrepo": METADATA_SCHEMA,
        "op": op,
        "op_id": op_id,
        "branch": branch,
        "parent": parent,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "user": _user(),
        "host": socket.gethostname(),
        "versions": _versions(),
        **summary,
    }


def _landed(repo: icechunk.Repository, branch: str, op_id: str, base: str) -> str | None:
    """The snapshot carrying op_id among the branch's commits made since base, if any."""
    for snap in repo.ancestry(branch=branch):
        if snap.id == base:
            return None
        if snap.metadata.get("op_id") == op_id:
            return snap.id
    return None


def run(
    repo: icechunk.Repository,
    location: Location,
    branch: str,
    op: str,
    message: str,
    apply: Apply,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    new_root: bool = False,
) -> tuple[str, dict]:
    """Apply an operation to the branch head and commit it once; returns (snapshot id, metadata)."""
    op_id = uuid.uuid4().hex
    for attempt in range(max_attempts):
        with write_lock(location):
            if branch not in repo.list_branches():
                raise RefError(f"no such branch: {branch}")
            session = repo.writable_session(branch)
            base = session.snapshot_id
            root = zarr.open_group(session_store(session, location), mode="w" if new_root else "r+", zarr_format=3)
            summary = apply(root)
            metadata = commit_metadata(op, op_id, branch, base, summary)
            try:
                return session.commit(message, metadata=metadata), metadata
            except icechunk.IcechunkError as e:  # a conflict, or a commit whose response was lost
                landed = _landed(repo, branch, op_id, base)
                if landed is not None:
                    return landed, metadata
                if not isinstance(e, icechunk.ConflictError):
                    raise
        time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())
    raise ConcurrentUpdateError(
        f"{op} not applied: branch {branch} kept moving ({max_attempts} attempts); try again"
    )
