"""promote and reset: moving a branch, as a compare-and-swap or a recorded replay.

A fast-forward is one compare-and-swap of the branch. A replay re-applies the source's
operations on a temporary branch started at the target's head, then moves the target to
the result in one compare-and-swap: readers of the target see all of it or nothing. Its
plan is recorded first, so a replay cut short (a crash, a kill) is finished by the next
write to the repository, or by running promote again: the operations already replayed on
the temporary branch are recognised by their journal and not repeated.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import schema
from ..errors import ConcurrentUpdateError, RefError, SampleError, listing
from ..journal import Commit
from ..refs import SNAPSHOT_ID
from ..transaction import Plan, PlanKind

if TYPE_CHECKING:
    from ..repository import BranchMove, CommitResult, Repository


def _is_ancestor(repo: Repository, ancestor: str, snapshot: str) -> bool:
    return ancestor in repo.ancestry_ids(snapshot)


def promote(repo: Repository, source: str, into: str, *, replay: bool = False) -> BranchMove:
    """Fast-forward `into` to `source`; with `replay`, re-apply source's operations on `into`."""
    from ..repository import BranchMove

    with repo.tx.locked(repo) as finished:
        target = repo._require_branch(into)
        head = repo.resolve(source)
        if head == target or _is_ancestor(repo, head, target):
            return BranchMove(into, target, target, "up-to-date", [])
        head_ids, target_ids = repo.ancestry_ids(head), repo.ancestry_ids(target)
        if target in head_ids:
            repo.tx.move_branch(into, head, target)
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
        replayed = {c.metadata.get("replayed_from") for c in repo.log(target)[:behind]}
        ops = [c for c in repo.log(head)[:ahead][::-1] if c.id not in replayed]
        if not ops:  # every operation of source is on `into` already (a replay that was finished)
            mode = "replay" if finished is not None and finished.op == "replay" else "up-to-date"
            return BranchMove(into, target, target, mode, [])
        _check_replayable(repo, into, target, ops)
        plan = Plan("replay", {
            "branch": into, "target": target, "ops": [c.id for c in ops],
            "temp": f"vczrepo-replay-{uuid.uuid4().hex[:12]}",
        })
        repo.tx.run_plan(repo, plan)
        new = repo._require_branch(into)
    commits = [c for c in repo.log(new, limit=len(ops))][::-1]
    from ..repository import CommitResult

    return BranchMove(into, target, new, "replay", [CommitResult(c.id, into, c.metadata) for c in commits])


def _replayed(repo: Repository, head: str, target: str) -> set[str]:
    """The source commits re-applied between `target` and `head` (newer), by their journal."""
    done = set()
    for c in repo.log(head):
        if c.id == target:
            break
        if "replayed_from" in c.metadata:
            done.add(c.metadata["replayed_from"])
    return done


def _moved(repo: Repository, plan: Plan) -> bool:
    """Has the branch been moved onto the replayed commits? (Its head then holds every
    operation replayed since the target: a cut after the move leaves only the clean-up.)"""
    st = plan.state
    head = repo.icechunk.lookup_branch(st["branch"])
    return head != st["target"] and set(st["ops"]) <= _replayed(repo, head, st["target"])


def resume_replay(repo: Repository, plan: Plan) -> None:
    """Run or finish a replay plan; every step checks what is already done."""
    st = plan.state
    into, temp = st["branch"], st["temp"]
    if not _moved(repo, plan):
        branches = repo.icechunk.list_branches()
        head = repo.icechunk.lookup_branch(into)
        if head != st["target"]:  # the branch moved since the plan (object stores): replay onto its new head
            if temp in branches:
                repo.tx.delete_branch(temp)
                branches = branches - {temp}
            st["target"] = head
            repo.tx.save_plan(plan)
        if temp not in branches:
            repo.tx.create_branch(temp, st["target"])
        done = _replayed(repo, repo.icechunk.lookup_branch(temp), st["target"])
        for cid in st["ops"]:
            if cid not in done:
                repo.settings.at("replay")
                _replay_one(repo, repo.log(cid, limit=1)[0], temp)
        final = repo.icechunk.lookup_branch(temp)
        try:
            repo.tx.move_branch(into, final, st["target"])
        except ConcurrentUpdateError:
            repo.tx.save_plan(plan)  # the next write (or a re-run) replays onto the new head
            raise
    if temp in repo.icechunk.list_branches():
        repo.tx.delete_branch(temp)
    repo.tx.end_plan(plan)


def progress(repo: Repository, plan: Plan) -> tuple[int, int]:
    """(steps done, steps in all), read from the repository: the plan recorded, then each
    operation replayed, then the branch moved."""
    st = plan.state
    steps = 2 + len(st["ops"])
    if _moved(repo, plan):
        return steps, steps
    if st["temp"] not in repo.icechunk.list_branches():
        return 1, steps
    replayed = _replayed(repo, repo.icechunk.lookup_branch(st["temp"]), st["target"])
    return 1 + len(replayed & set(st["ops"])), steps


def _appended(repo: Repository, commit: Commit) -> list[str]:
    """The samples an append commit added that its own snapshot still holds (not purged)."""
    return [s for s in repo.samples_added(commit.id) if s != schema.NULL_SAMPLE]


def _check_replayable(repo: Repository, into: str, target: str, ops: list[Commit]) -> None:
    """Refuse, before anything is recorded, a replay that would stop part-way: an operation
    that cannot be replayed, or samples `into` has already (appended) or lacks (removed),
    followed through the operations in turn."""
    live = set(repo.samples(target))
    for c in ops:
        if c.op == "append" and "sample_range" in c.metadata:
            added = _appended(repo, c)
            clash = live.intersection(added)
            if clash:
                raise SampleError(f"cannot replay {c.id} onto {into}: it appends {listing(sorted(clash))}, "
                                  f"which {into} has already; nothing was replayed")
            live.update(added)
        elif c.op in ("remove", "revert") and "samples_removed" in c.metadata:  # a revert of an append
            absent = set(c.metadata["samples_removed"]) - live
            if absent:
                raise SampleError(f"cannot replay {c.id} onto {into}: it removes {listing(sorted(absent))}, "
                                  f"which {into} does not hold; nothing was replayed")
            live.difference_update(c.metadata["samples_removed"])
        else:
            raise RefError(f"cannot replay {c.op} commit {c.id}: only appends, removes and reverts of appends "
                           "replay; nothing was replayed")


def _replay_one(repo: Repository, commit: Commit, branch: str) -> CommitResult:
    """Re-apply one vczrepo operation (as _check_replayable allows), taking appended samples'
    data from the commit itself; the original author stays the author (as git's cherry-pick),
    the replayer is the journal's user."""
    m, note = commit.metadata, f" (replayed from {commit.id})"
    extra = {"replayed_from": commit.id, **({"author": commit.author} if commit.author else {})}
    if commit.op != "append":
        return repo.remove(m["samples_removed"], branch=branch, message=commit.message + note, extra=extra)
    from ..read import export_group

    root = repo.group(commit.id)
    start, stop = m["sample_range"]
    keep = start + np.flatnonzero(schema.sample_ids(root)[start:stop] != schema.NULL_SAMPLE)
    with tempfile.TemporaryDirectory(prefix="vczrepo-replay-") as tmp:
        batch = Path(tmp) / "batch.vcz"
        export_group(root, batch, keep=keep, pipe=repo.pipe)
        return repo._append(batch, branch=branch, message=commit.message + note, extra=extra)


def reset(repo: Repository, branch: str, at: str, *, expect: str | None = None, force: bool = False) -> BranchMove:
    """Move `branch` to any ref, as a compare-and-swap against the head seen (or `expect`)."""
    from ..repository import BranchMove

    with repo.tx.locked(repo):
        old = repo._require_branch(branch)
        if expect is not None and not force and old != (expect if SNAPSHOT_ID.match(expect) else repo.resolve(expect)):
            raise ConcurrentUpdateError(f"{branch} is at {old}, not {expect}: it moved since you looked "
                                        "(use --force to reset anyway)")
        new = repo.resolve(at)
        repo.tx.move_branch(branch, new, old)
    return BranchMove(branch, old, new, "reset", [])


REPLAY = PlanKind("promote --replay", "vczrepo promote --replay", resume_replay, _moved, progress)
