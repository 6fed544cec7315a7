"""Moving branches and undoing operations: promote, reset, revert, and the full history.

Branch moves are compare-and-swap (icechunk's ``reset_branch(..., from_snapshot_id=…)``),
so a commit that lands between looking at a branch and moving it is never overwritten.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import icechunk
import numpy as np

from . import schema, storage
from .errors import ConcurrentUpdateError, RefError, VczRepoError
from .ops.remove import remove_samples
from .ops.restore import restore_samples
from .read import export_group
from .repository import DEFAULT_BRANCH, Commit, CommitResult, Repository


@dataclass(frozen=True)
class BranchMove:
    branch: str
    old: str
    new: str
    mode: str  # "fast-forward", "replay", "reset", "up-to-date"
    commits: list[CommitResult]


def is_ancestor(repo: Repository, ancestor: str, snapshot: str) -> bool:
    return ancestor in repo.ancestry_ids(snapshot)


def _swap(repo: Repository, branch: str, new: str, expected: str) -> None:
    """Point `branch` at `new` only if it still points at `expected`."""
    try:
        repo.icechunk.reset_branch(branch, new, from_snapshot_id=expected)
    except icechunk.IcechunkError as e:
        raise ConcurrentUpdateError(
            f"{branch} moved (no longer at {expected}); nothing changed, look again and retry"
        ) from e


def _require_branch(repo: Repository, branch: str) -> str:
    if branch not in repo.icechunk.list_branches():
        raise RefError(f"no such branch: {branch}")
    return repo.icechunk.lookup_branch(branch)


def promote(repo: Repository, source: str, into: str = DEFAULT_BRANCH, *, replay: bool = False) -> BranchMove:
    """Fast-forward `into` to `source`; with `replay`, re-apply source's operations on `into` instead."""
    with storage.write_lock(repo.location):
        target = _require_branch(repo, into)
        head = repo.resolve(source)
        if head == target or is_ancestor(repo, head, target):
            return BranchMove(into, target, target, "up-to-date", [])
        head_ids, target_ids = repo.ancestry_ids(head), repo.ancestry_ids(target)
        if target in head_ids:
            _swap(repo, into, head, target)
            return BranchMove(into, target, head, "fast-forward", [])
        shared = set(target_ids)
        base = next((s for s in head_ids if s in shared), None)
        ahead = head_ids.index(base) if base else len(head_ids)
        behind = target_ids.index(base) if base else len(target_ids)
        if not replay:
            raise RefError(
                f"cannot fast-forward {into} to {source}: {into} has {behind} commit(s) not in {source} "
                f"and {source} has {ahead} not in {into}; use --replay to re-apply {source}'s "
                "operations on top of " + into
            )
    ops = repo.log(head)[:ahead][::-1]
    commits = [_replay(repo, c, into) for c in ops]
    return BranchMove(into, target, commits[-1].snapshot_id, "replay", commits)


def _replay(repo: Repository, commit: Commit, branch: str) -> CommitResult:
    """Re-apply one vczrepo operation, taking appended samples' data from the commit itself."""
    m, note = commit.metadata, f" (replayed from {commit.id})"
    if commit.op == "append":
        root = repo.group(commit.id)
        start, stop = m["sample_range"]
        keep = start + np.flatnonzero(schema.sample_ids(root)[start:stop] != schema.NULL_SAMPLE)
        with tempfile.TemporaryDirectory(prefix="vczrepo-replay-") as tmp:
            batch = Path(tmp) / "batch.vcz"
            export_group(root, batch, keep=keep)
            return repo.append(batch, branch=branch, message=commit.message + note)
    if commit.op == "remove" or (commit.op == "revert" and "samples_removed" in m):
        return repo.remove(m["samples_removed"], branch=branch, message=commit.message + note)
    raise VczRepoError(f"cannot replay {commit.op} commit {commit.id}; nothing after it was replayed")


def reset(repo: Repository, branch: str, to: str, *, expect: str | None = None, force: bool = False) -> BranchMove:
    """Move `branch` to any ref. Refuses if it is no longer at `expect` (the head you saw), unless forced.

    The old head stays findable in `log --all` (icechunk's operations log records it).
    """
    with storage.write_lock(repo.location):
        old = _require_branch(repo, branch)
        if expect is not None and not force and old != expect:
            raise ConcurrentUpdateError(f"{branch} is at {old}, not {expect}: it moved since you looked "
                                        "(use --force to reset anyway)")
        new = repo.resolve(to)
        _swap(repo, branch, new, old)
    return BranchMove(branch, old, new, "reset", [])


def revert(repo: Repository, snapshot: str, *, branch: str = DEFAULT_BRANCH) -> CommitResult:
    """A new commit on `branch` undoing one append (removes its samples) or remove (restores them)."""
    sid = repo.resolve(snapshot)
    head = _require_branch(repo, branch)
    if not is_ancestor(repo, sid, head):
        raise RefError(f"{snapshot} is not in the history of {branch}")
    commit = next(c for c in repo.log(sid, limit=1))
    m = commit.metadata
    if commit.op == "append":
        names = [s for s in repo.samples_added(sid) if s != schema.NULL_SAMPLE]
        return repo._commit(branch, "revert", f"revert {sid}: remove {len(names)} appended sample(s)",
                            lambda root: {"reverts": sid, **remove_samples(
                                root, names, lambda n: repo._was_removed(branch, n))})
    if commit.op == "remove":
        earlier = repo.group(commit.parent)
        return repo._commit(
            branch, "revert", f"revert {sid}: restore {len(m['samples_removed'])} sample(s)",
            lambda root: {"reverts": sid, **restore_samples(root, earlier, m["samples_removed"],
                                                            m["sample_indexes_removed"])},
        )
    raise VczRepoError(f"cannot revert a {commit.op} commit ({sid}): only append and remove")


def log_all(repo: Repository) -> list[Commit]:
    """Every commit reachable from a branch, a tag, or a head that a reset or delete left behind."""
    heads = set(repo.branches().values()) | set(repo.tags().values())
    for update in repo.icechunk.ops_log():
        previous = getattr(update.kind, "previous_snap_id", None)
        if previous:
            heads.add(previous)
    seen: dict[str, Commit] = {}
    for head in sorted(heads):
        try:
            commits = repo.log(head)
        except VczRepoError:  # a left-behind head that gc has collected
            continue
        for c in commits:
            seen.setdefault(c.id, c)
    return sorted(seen.values(), key=lambda c: c.written_at, reverse=True)
