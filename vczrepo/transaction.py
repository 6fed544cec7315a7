"""The only code that writes to a repository: three primitives.

(a) `Transaction.commit`: a data commit. Take the repository's write lock (local
    storage), open a writable session on the branch, apply the operation, commit once
    with an operation id. Any exception before the commit drops the session: the branch
    head is unchanged. If another writer commits first (a conflict), the whole operation
    is re-run on the new head; a commit whose response was lost is recognised by its op id.
(b) `Transaction.move_branch`, `create_branch`, `delete_branch`, `create_tag`,
    `delete_tag`: ref changes, each a compare-and-swap with a typed failure.
(c) Plans: an operation that makes more than one commit or ref change (purge, promote
    --replay) first records its plan in the repository metadata, then runs idempotent
    steps that check the plan. If it dies, the plan stays; the next write to the
    repository (or re-running the command) finishes it before doing anything else. The
    kinds of plan are a static table (`PLAN_KINDS`), so any write of any process finishes
    any plan; a Ctrl-C or an error that may pass (storage, a concurrent update) inside a plan
    says how far it got and that it is recorded. Any other error means the plan cannot be
    done: while it has changed no user's ref it is dropped (its temporary branch deleted),
    so it never blocks the writes after it.

Fairness on object stores: a writer that lost a race registers in the repository
metadata; writers that see an older registration than their own wait for it to commit
first, so a long append is not starved by a stream of short removes and tags.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import icechunk
import zarr

from . import journal
from .errors import (
    ConcurrentUpdateError,
    InterruptedAfterCommit,
    PlanInterrupted,
    RefError,
    RepositoryError,
    StorageError,
    VczRepoError,
    from_icechunk,
    short_message,
)
from .internals import session_store
from .settings import Settings
from .storage import Location, write_lock

PLAN_KEY = "vczrepo_plan"
WAITING_PREFIX = "vczrepo_waiting."
MIN_DEADLINE = 120.0  # seconds a data commit keeps retrying at least (object stores)
DEADLINE_FACTOR = 20.0  # … or this many times its own first attempt, whichever is longer

Apply = Callable[[zarr.Group], dict]
OpenMode = Literal["r", "r+", "a", "w", "w-"]  # how a data commit opens the root group (zarr's modes)
# The kinds of plan, by the op they record: the PlanKind (module:name) that finishes one. A
# static table, resolved when a plan is met, so that a process that never imported a kind's
# module finishes its plans too; a kind missing here was recorded by a newer vczrepo.
PLAN_KINDS = {"purge": "vczrepo.ops.purge:PURGE", "replay": "vczrepo.ops.promote:REPLAY"}
_RUNNING: set[str] = set()  # ids of the plans this process is running now
# Errors after which a plan is kept for the next write: the storage or a concurrent writer, not the plan
PASSING = (StorageError, ConcurrentUpdateError, OSError, icechunk.IcechunkError)
log = logging.getLogger("vczrepo")


def _owner_gone(plan: Plan) -> bool:
    """Is the process that recorded the plan known to have stopped running it? (Only a
    process of this machine can be checked; others are trusted until their lease ends.)"""
    who, _, pid_text = plan.owner.rpartition(":")
    if who.rpartition("@")[2] != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return plan.id not in _RUNNING
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Plan:
    """A multi-step operation in progress, as stored in the repository metadata."""

    op: str
    state: dict
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = field(default_factory=lambda: f"{journal.user()}@{socket.gethostname()}:{os.getpid()}")
    started: str = field(default_factory=journal.now)
    heartbeat: float = field(default_factory=time.time)
    recorded: bool = field(default=False, compare=False)  # written to the repository at least once
    dropped: bool = field(default=False, compare=False)  # could not be done, and was removed unpublished

    def to_json(self) -> dict:
        return {"id": self.id, "op": self.op, "owner": self.owner, "started": self.started,
                "heartbeat": self.heartbeat, "state": self.state}

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        return cls(d["op"], dict(d["state"]), d["id"], d["owner"], d["started"], float(d["heartbeat"]),
                   recorded=True)

    @property
    def temporary_branch(self) -> str | None:
        """The branch the plan builds its result on (not a user's ref)."""
        return self.state.get("temp")


@dataclass(frozen=True)
class PlanKind:
    """How one kind of plan is run or finished, and how far one has got."""

    label: str  # the operation as its user names it: "purge", "promote --replay"
    command: str  # the command that finishes it, for messages: "vczrepo purge"
    resume: Callable[[Any, Plan], None]  # (Repository, plan): run or finish it; every step idempotent
    published: Callable[[Any, Plan], bool]  # has it changed a user's ref yet? (else it can be dropped)
    progress: Callable[[Any, Plan], tuple[int, int]]  # (steps done, steps in all), read from the repository


def plan_kind(plan: Plan) -> PlanKind:
    """The kind of a recorded plan; a kind this version does not know is a newer version's."""
    target = PLAN_KINDS.get(plan.op)
    if target is None:
        from . import __version__

        raise RepositoryError(f"the repository holds an unfinished {plan.op!r} (started {plan.started} by "
                              f"{plan.owner}) recorded by a newer vczrepo than this one ({__version__}): "
                              "upgrade vczrepo to finish it")
    module, _, name = target.partition(":")
    kind = getattr(importlib.import_module(module), name)
    assert isinstance(kind, PlanKind), target
    return kind


class Transaction:
    """Every write to one repository goes through one of these."""

    def __init__(self, repo: icechunk.Repository, location: Location, settings: Settings):
        self.repo = repo
        self.location = location
        self.settings = settings
        self._plan: Plan | None = None  # the plan this process is running (its steps skip settling)

    # ----- the lock and pending plans -----
    @contextlib.contextmanager
    def locked(self, context: Any = None) -> Iterator[Plan | None]:
        """Hold the write lock; first finish any plan a dead writer left (when `context` is
        given). Yields the plan it finished, if any (a re-run of that command is then done)."""
        with write_lock(self.location):
            finished = self.settle(context) if context is not None and self._plan is None else None
            yield finished

    def pending(self) -> Plan | None:
        raw = self.metadata().get(PLAN_KEY)
        return Plan.from_json(raw) if raw else None

    def settle(self, context: Any) -> Plan | None:
        """Finish a plan left in the repository (its owner died, or its lease ran out)."""
        plan = self.pending()
        if plan is None:
            return None
        if not (self.location.is_local or _owner_gone(plan)
                or time.time() - plan.heartbeat >= self.settings.lease_seconds):
            raise ConcurrentUpdateError(
                f"{plan.op} in progress by {plan.owner} since {plan.started}; try again when it ends"
            )
        try:
            self.run_plan(context, plan)
        except Exception as e:
            if not plan.dropped:
                raise
            log.warning("dropped the unfinished %s started %s by %s: %s", plan_kind(plan).label, plan.started,
                        plan.owner, short_message(e))
            return None
        return plan

    def run_plan(self, context: Any, plan: Plan) -> None:
        """Run (or finish) a plan's steps, then remove it; the steps are idempotent. A new plan
        is recorded first. If a step is cut (Ctrl-C, an error), the exception says how far the
        plan got and that the next write finishes it (read back from the repository); a plan
        that cannot be done is dropped while it has changed no user's ref."""
        kind = plan_kind(plan)
        outer, self._plan = self._plan, plan
        _RUNNING.add(plan.id)
        try:
            if not plan.recorded:
                self.save_plan(plan)
            kind.resume(context, plan)
        except KeyboardInterrupt:
            standing = self._standing(context, plan, kind)
            if standing is None:  # nothing recorded: a plain interrupt, nothing was written
                raise
            raise PlanInterrupted(f"{kind.label} interrupted {standing}") from None
        except Exception as e:
            if not isinstance(e, PASSING) and self._drop(context, plan, kind):
                e.add_note(f"{kind.label} not done: nothing was changed")
                raise
            standing = self._standing(context, plan, kind)
            if standing is not None:
                e.add_note(f"{kind.label} stopped {standing}")
            raise
        finally:
            _RUNNING.discard(plan.id)
            self._plan = outer

    def _drop(self, context: Any, plan: Plan, kind: PlanKind) -> bool:
        """Remove a recorded plan that failed before changing any user's ref, with its
        temporary branch; False if it has changed one, or the storage failed too (it stays)."""
        if not plan.recorded:
            return False
        try:
            if kind.published(context, plan):
                return False
            temp = plan.temporary_branch
            if temp is not None and temp in self.repo.list_branches():
                self.delete_branch(temp)
            self.end_plan(plan)
        except Exception:  # noqa: BLE001 - the plan stays recorded: the next write finishes or drops it
            return False
        plan.dropped = True
        return True

    def _standing(self, context: Any, plan: Plan, kind: PlanKind) -> str | None:
        """What a cut plan leaves in the repository: None if it was never recorded."""
        try:
            recorded = self.pending()
        except Exception:  # noqa: BLE001 - the storage failed as well: say what this process knows
            recorded = plan if plan.recorded else None
        if recorded is None or recorded.id != plan.id:
            return "after its last step: done" if plan.recorded else None
        try:
            step, steps = kind.progress(context, recorded)
            where = f"after step {step} of {steps}"
        except Exception:  # noqa: BLE001 - as above
            where = "part-way"
        return f"{where}: recorded; the next write or `{kind.command}` finishes it"

    def describe(self, context: Any, plan: Plan, *, progress: bool = True) -> dict:
        """A recorded plan for users (log, info, check): kind, owner, start, progress (with
        `progress`: a few reads), temporary branch and the command that finishes it."""
        known = plan.op in PLAN_KINDS
        kind = plan_kind(plan) if known else None
        step, steps = kind.progress(context, plan) if kind is not None and progress else (None, None)
        return {"op": plan.op, "operation": kind.label if kind else plan.op, "owner": plan.owner,
                "started": plan.started, "step": step, "steps": steps,
                "temporary_branch": plan.temporary_branch, "finish_with": kind.command if kind else None}

    def save_plan(self, plan: Plan) -> None:
        """Record a plan's progress (and keep its lease)."""
        plan.heartbeat = time.time()
        self.update_metadata({PLAN_KEY: plan.to_json()})
        plan.recorded = True
        self.settings.at("plan")

    def end_plan(self, plan: Plan, metadata: dict | None = None) -> None:
        """Remove a finished plan (with any metadata that goes with its end, in one write)."""
        self.settings.at("plan")
        self.update_metadata({PLAN_KEY: None, **(metadata or {})})

    # ----- (a) data commits -----
    def commit(self, branch: str, op: str, message: str, apply: Apply, *, context: Any = None,
               mode: OpenMode = "r+", journal_entry: dict | None = None) -> tuple[str, dict]:
        """Apply an operation to the branch head and commit it once; returns (snapshot id, journal entry).

        `context` (the Repository) lets the commit first finish a plan a dead writer left;
        `mode` opens the root group ("w": a new root, "a": whatever is there, if anything);
        `journal_entry` replaces the entry built from `apply`'s summary (purge keeps the
        rewritten commit's own), and then the commit may hold no change. Once the commit has
        landed, the digests of its new snapshot and manifests are recorded (vczrepo.digests)."""
        sid, metadata = self._commit(branch, op, message, apply, context, mode, journal_entry)
        try:
            self._record_digests(sid)
        except KeyboardInterrupt:
            raise InterruptedAfterCommit(sid) from None
        return sid, metadata

    def _record_digests(self, sid: str) -> None:
        """Best effort: the commit has landed, so a failure here leaves it unverified, not undone."""
        from . import digests

        try:
            digests.record_commit(self.repo, self.location, sid)
        except Exception as e:  # noqa: BLE001 - any storage failure; the commit stands
            log.warning(
                "commit %s landed, but its digests were not recorded (%s): `vczrepo add-checksums` records them",
                sid, short_message(e))

    def _commit(self, branch: str, op: str, message: str, apply: Apply, context: Any, mode: OpenMode,
                journal_entry: dict | None) -> tuple[str, dict]:
        op_id = uuid.uuid4().hex
        started = time.monotonic()
        deadline: float | None = None
        waiting = False
        attempt = 0
        try:
            while True:
                attempt += 1
                attempt_started = time.monotonic()
                if waiting is False and not self.location.is_local:
                    self._wait_for_turn(op_id, deadline)
                with self.locked(context):
                    self._require_branch(branch)
                    session = self.repo.writable_session(branch)
                    base = session.snapshot_id
                    root = zarr.open_group(session_store(session, self.location), mode=mode, zarr_format=3)
                    summary = apply(root)
                    if journal_entry is None:
                        metadata = journal.entry(op, op_id, branch, base, summary)
                    else:
                        metadata = {**journal_entry, "op_id": op_id}
                    self.settings.at("before-commit")
                    try:
                        sid = session.commit(message, metadata=metadata, allow_empty=journal_entry is not None)
                        self.settings.at("after-commit")
                        return sid, metadata
                    except icechunk.IcechunkError as e:  # a conflict, or a commit whose response was lost
                        landed = self._landed(branch, op_id, base)
                        if landed is not None:
                            return landed, metadata
                        if not isinstance(e, icechunk.ConflictError):
                            raise from_icechunk(e, f"committing {op} to {branch}") from e
                    except VczRepoError:
                        raise
                    except (Exception, KeyboardInterrupt) as e:  # a fault or Ctrl-C after the commit: did it land?
                        landed = self._landed(branch, op_id, base)
                        if landed is None:
                            raise
                        if isinstance(e, KeyboardInterrupt):
                            raise InterruptedAfterCommit(landed) from None
                        return landed, metadata
                if deadline is None:
                    deadline = started + max(MIN_DEADLINE, DEADLINE_FACTOR * (time.monotonic() - attempt_started))
                if time.monotonic() > deadline:
                    raise ConcurrentUpdateError(
                        f"{op} not applied: branch {branch} kept moving ({attempt} attempts); try again")
                if not self.location.is_local and not waiting:
                    self._register_waiting(op_id)
                    waiting = True
                self._backoff(attempt, time.monotonic() - attempt_started)
                if waiting:
                    self._wait_for_turn(op_id, deadline)
        finally:
            if waiting:
                with contextlib.suppress(icechunk.IcechunkError):
                    self.update_metadata({WAITING_PREFIX + op_id: None})

    def _landed(self, branch: str, op_id: str, base: str) -> str | None:
        """The snapshot carrying op_id among the branch's commits made since base, if any."""
        for snap in self.repo.ancestry(branch=branch):
            if snap.id == base:
                return None
            if snap.metadata.get("op_id") == op_id:
                return snap.id
        return None

    @staticmethod
    def _backoff(attempt: int, duration: float) -> None:
        """Sleep a random part of a window that grows with the attempts and the operation's length."""
        window = min(max(0.05 * 2**attempt, duration), 30.0)
        time.sleep(window * random.random())

    def _register_waiting(self, op_id: str) -> None:
        self.update_metadata({WAITING_PREFIX + op_id: time.time()})

    def _wait_for_turn(self, op_id: str, deadline: float | None) -> None:
        """Object stores: let writers that registered before us (and are still alive) commit first."""
        while True:
            meta = self.metadata()
            mine = meta.get(WAITING_PREFIX + op_id)
            now = time.time()
            ahead = [t for k, t in meta.items() if k.startswith(WAITING_PREFIX) and t is not None
                     and k != WAITING_PREFIX + op_id and now - float(t) < self.settings.lease_seconds
                     and (mine is None or float(t) < float(mine))]
            if not ahead or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(0.2 + random.random() * 0.5)

    # ----- (b) ref changes -----
    def _ref_change(self, doing: str, change: Callable[[], None]) -> None:
        self.settings.at("ref-move")
        try:
            change()
        except icechunk.IcechunkError as e:
            raise from_icechunk(e, doing) from e

    def move_branch(self, branch: str, new: str, expected: str) -> None:
        """Point `branch` at `new` only if it still points at `expected`."""
        try:
            self._ref_change(f"moving {branch}",
                             lambda: self.repo.reset_branch(branch, new, from_snapshot_id=expected))
        except ConcurrentUpdateError as e:
            raise ConcurrentUpdateError(
                f"{branch} moved (no longer at {expected}); nothing changed, look again and retry") from e

    def create_branch(self, name: str, snapshot: str) -> None:
        self._ref_change(f"creating branch {name}", lambda: self.repo.create_branch(name, snapshot))

    def delete_branch(self, name: str) -> None:
        self._ref_change(f"deleting branch {name}", lambda: self.repo.delete_branch(name))

    def create_tag(self, name: str, snapshot: str) -> None:
        self._ref_change(f"creating tag {name}", lambda: self.repo.create_tag(name, snapshot))

    def delete_tag(self, name: str) -> None:
        self._ref_change(f"deleting tag {name}", lambda: self.repo.delete_tag(name))

    # ----- repository metadata -----
    def metadata(self) -> dict:
        try:
            return dict(self.repo.get_metadata())
        except icechunk.IcechunkError as e:
            raise from_icechunk(e, "reading the repository metadata") from e

    def update_metadata(self, values: dict) -> None:
        try:
            self.repo.update_metadata(values)
        except icechunk.IcechunkError as e:
            raise from_icechunk(e, "writing the repository metadata") from e

    def _require_branch(self, branch: str) -> None:
        if branch not in self.repo.list_branches():
            raise RefError(f"no such branch: {branch}")
