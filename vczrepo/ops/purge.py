"""purge: erase withdrawn samples from every snapshot a branch or tag can reach.

icechunk snapshots are immutable, so every commit from the one that first held a purged
sample onwards is rewritten into a new snapshot: same arrays, same changed chunks (copied
as encoded bytes from the old commit), the purged samples' columns nulled, their names
scrubbed from the journal entry and the commit message. Branches then move to the new
chain (compare-and-swap) and tags on the old chain are replaced by new names (a deleted
tag name can never be reused); the old names keep resolving to the new tags. The old
chain is then unreachable, and `gc` deletes its objects.

It is a recorded plan (vczrepo.transaction): the plan, with the new tag names, is
written before the first step; each rewritten commit is recorded as it is made; a purge
cut short is finished by the next write or by running purge again, so tag names are
never lost and no branch is left on the old chain.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .. import schema
from ..errors import ConcurrentUpdateError, RefError, RepositoryError, SampleError, VczRepoError, listing
from ..internals import chunk_key
from ..journal import names_digest
from ..summaries import MAINTAINED, update_summaries
from ..transaction import Plan, PlanKind
from .remove import null_columns

if TYPE_CHECKING:
    from ..repository import Repository

NAME_KEYS = ("samples_removed", "samples_restored")
PURGED = "[purged]"


@dataclass
class PurgeResult:
    """What a purge rewrote (or, with dry_run, would rewrite)."""

    samples: list[str]
    rewrite: list[str] = field(default_factory=list)  # old snapshot ids, oldest first
    branches: dict[str, str] = field(default_factory=dict)  # branch -> old head
    tags: dict[str, str] = field(default_factory=dict)  # tag -> old snapshot
    new_tag_names: dict[str, str] = field(default_factory=dict)  # old tag -> its replacement
    rewritten: dict[str, str] = field(default_factory=dict)  # old -> new snapshot
    dry_run: bool = True

    def to_json(self) -> dict:
        return {"samples": self.samples, "dry_run": self.dry_run, "rewrite": self.rewrite,
                "branches": self.branches, "tags": self.tags, "new_tag_names": self.new_tag_names,
                "rewritten": self.rewritten}


def _holds(repo: Repository, sid: str, names: set[str], cache: dict[str, bool]) -> bool:
    if sid not in cache:
        try:
            root = repo.group(sid, verify=False)  # one array read per commit of the history
        except RefError:  # the empty root commit
            cache[sid] = False
        else:
            cache[sid] = "sample_id" in root and bool(names & set(schema.sample_ids(root).tolist()))
    return cache[sid]


def _new_tag_names(repo: Repository, tags: Sequence[str]) -> dict[str, str]:
    taken = repo.icechunk.list_tags() | repo.icechunk.list_branches() | set(repo.renamed_tags())
    out = {}
    for tag in tags:
        new = next(f"{tag}.purged{n}" for n in itertools.count(1) if f"{tag}.purged{n}" not in taken)
        taken.add(new)
        out[tag] = new
    return out


def plan(repo: Repository, samples: Sequence[str]) -> PurgeResult:
    """Which commits, branches and tags a purge of `samples` rewrites, and the new tag names."""
    names = set(samples)
    if len(names) != len(samples):
        raise SampleError("a sample is listed more than once")
    result = PurgeResult(list(samples))
    cache: dict[str, bool] = {}
    order: dict[str, int] = {}
    refs = [("branch", n, s) for n, s in repo.branches().items()] + [("tag", n, s) for n, s in repo.tags().items()]
    for kind, name, tip in refs:
        chain = repo.ancestry_ids(tip)[::-1]  # oldest first
        first = next((i for i, sid in enumerate(chain) if _holds(repo, sid, names, cache)), None)
        if first is None:
            continue
        for depth, sid in enumerate(chain[first:], start=first):
            order.setdefault(sid, depth)
        (result.branches if kind == "branch" else result.tags)[name] = tip
    if not order:
        raise SampleError(f"no snapshot holds {listing(sorted(names))}: nothing to purge")
    result.rewrite = sorted(order, key=order.__getitem__)
    result.new_tag_names = _new_tag_names(repo, sorted(result.tags))
    return result


def purge(repo: Repository, samples: Sequence[str], *, dry_run: bool = False) -> PurgeResult:
    """Rewrite history so no branch or tag reaches the samples' data; run `gc` afterwards."""
    with repo.tx.locked(repo) as finished:
        if finished is not None and finished.op == "purge" and sorted(finished.state["samples"]) == sorted(samples):
            return _result(finished)  # this purge was cut short, and is now done
        result = plan(repo, samples)
        result.dry_run = dry_run
        if dry_run:
            return result
        state = {**result.to_json(), "temp": f"vczrepo-purge-{uuid.uuid4().hex[:12]}"}
        running = Plan("purge", state)
        repo.tx.run_plan(repo, running)
    return _result(running)


def _result(done: Plan) -> PurgeResult:
    st = done.state
    return PurgeResult(st["samples"], st["rewrite"], st["branches"], st["tags"], st["new_tag_names"],
                       st["rewritten"], dry_run=False)


def _scrub_text(text: str, names: set[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, PURGED)
    return text


def _scrub_value(value: Any, names: set[str]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, names)
    if isinstance(value, list):
        return [_scrub_value(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, names) for k, v in value.items()}
    return value


def _scrub(metadata: dict, names: set[str], old: str, ids: list[str]) -> dict:
    """The journal entry of a rewritten commit (whose sample ids are now `ids`), without the names."""
    out = dict(metadata)
    for key in NAME_KEYS:
        if key in out:
            out[key] = [schema.NULL_SAMPLE if s in names else s for s in out[key]]
    out = _scrub_value(out, names)
    if "sample_range" in out:
        start, stop = out["sample_range"]
        out["samples_sha256"] = names_digest(ids[start:stop])
    out["purge"] = {"rewritten_from": old, "n_samples_purged": len(names)}
    return out


@dataclass
class Changes:
    """What one commit changed from its parent, as store keys."""

    keys: list[str]  # metadata documents and chunks written
    deleted: list[str]  # groups and arrays deleted (e.g. `--drop-stale-info`'s INFO arrays)


async def _copy_changes(src, dst, changes: Changes) -> None:
    """Delete the nodes the commit deleted, then copy the keys it wrote (a node deleted and
    made again in one commit is both)."""
    for path in changes.deleted:
        await dst.delete_dir(path)
    proto = default_buffer_prototype()
    for key in changes.keys:
        data = await src.get(key, prototype=proto)
        if data is None:
            await dst.delete(key)
        else:
            await dst.set(key, data)


def _changes(repo: Repository, parent: str, commit: str, root: zarr.Group) -> Changes:
    """The changes `commit` made to `parent`; `root` is the commit's root group."""
    d = repo.icechunk.diff(from_snapshot_id=parent, to_snapshot_id=commit)
    if d.moved_nodes:
        raise RepositoryError(f"cannot purge through commit {commit}: it moves nodes (icechunk's move, "
                              "which no vczrepo operation makes)")
    keys = []
    for path in sorted(d.new_groups | d.updated_groups | d.new_arrays | d.updated_arrays):
        keys.append(f"{path.strip('/')}/zarr.json".lstrip("/"))
    for path, coords in d.updated_chunks.items():
        array = schema.array(root, path.strip("/"))
        keys.extend(chunk_key(array, tuple(c)) for c in coords)
    return Changes(keys, sorted(p.strip("/") for p in d.deleted_arrays | d.deleted_groups))


def _rewrite(repo: Repository, commit_id: str, parent: str, names: set[str], temp: str) -> str:
    """Commit `commit_id`'s changes again on top of `parent` (through the temporary branch),
    with the purged samples' columns nulled and their names scrubbed."""
    old = repo.log(commit_id, limit=1)[0]
    current = repo.icechunk.lookup_branch(temp)
    if current != parent:
        repo.tx.move_branch(temp, parent, current)
    source = repo.group(commit_id)
    changes = _changes(repo, old.parent or "", commit_id, source)
    # the commit's own ids: a chunk it changed may hold a purged sample whose id it left alone
    ids = schema.sample_ids(source).tolist() if "sample_id" in source else []
    columns = [i for i, s in enumerate(ids) if s in names]

    # a commit that wrote INFO summaries wrote them with the purged samples' counts: subtract
    # them (otherwise the rewritten parent's, already without them, carry over)
    wrote_summaries = any(k.startswith(tuple(f"variant_{f}/" for f in MAINTAINED)) for k in changes.keys)

    def apply(root: zarr.Group) -> dict:
        sync(_copy_changes(source.store, root.store, changes))
        fresh = zarr.open_group(root.store, mode="r+")
        attrs = dict(fresh.attrs)
        if _scrub_value(attrs, names) != attrs:  # e.g. a VCF header line naming the samples
            fresh.attrs.put(_scrub_value(attrs, names))
        if columns:
            if wrote_summaries:
                update_summaries(fresh, removed=columns, removed_from=source)
            null_columns(repo.pipe, fresh, columns)
        return {}

    scrubbed = [schema.NULL_SAMPLE if s in names else s for s in ids]
    repo.settings.at("purge-rewrite")
    sid, _ = repo.tx.commit(temp, "purge", _scrub_text(old.message, names), apply, mode="a",
                            journal_entry=_scrub(old.metadata, names, commit_id, scrubbed))
    return sid


def _rewrite_pending(repo: Repository, plan: Plan) -> None:
    st = plan.state
    names = set(st["samples"])
    for sid in st["rewrite"]:
        if sid in st["rewritten"]:
            continue
        parent = repo.icechunk.lookup_snapshot(sid).parent_id or ""
        st["rewritten"][sid] = _rewrite(repo, sid, st["rewritten"].get(parent, parent), names, st["temp"])
        repo.tx.save_plan(plan)


def _move_branches(repo: Repository, plan: Plan) -> None:
    """Move each branch onto the rewritten chain; a branch that gained commits since the plan
    (object stores: another writer) has those rewritten too."""
    st = plan.state
    for branch in list(st["branches"]):
        while branch in repo.icechunk.list_branches():
            tip = st["branches"][branch]
            head = repo.icechunk.lookup_branch(branch)
            if head == st["rewritten"][tip]:
                break
            if head != tip:
                newer = []
                for snap in repo.icechunk.ancestry(snapshot_id=head):
                    if snap.id == tip:
                        break
                    newer.append(snap.id)
                else:
                    raise VczRepoError(f"purge: branch {branch} was reset during the purge; run purge again")
                st["rewrite"].extend(reversed(newer))
                st["branches"][branch] = head
                repo.tx.save_plan(plan)
                _rewrite_pending(repo, plan)
                continue
            repo.settings.at("purge-branch")
            try:
                repo.tx.move_branch(branch, st["rewritten"][tip], tip)
            except ConcurrentUpdateError:
                continue  # it moved between our look and the swap: look again


def _replace_tags(repo: Repository, plan: Plan) -> None:
    """Record the new names first, then create each new tag and delete the old one: at any
    point the old name resolves (to the old tag, or through the record to the new one)."""
    st = plan.state
    from ..repository import RENAMED_TAGS

    renamed = repo.renamed_tags()
    new_names = st["new_tag_names"]
    wanted = {**{old: new_names.get(cur, cur) for old, cur in renamed.items()}, **new_names}
    if wanted != renamed:
        repo.settings.at("purge-tag")
        repo.tx.update_metadata({RENAMED_TAGS: wanted})
    existing = repo.icechunk.list_tags()
    for tag, sid in st["tags"].items():
        if new_names[tag] not in existing:
            repo.settings.at("purge-tag")
            repo.tx.create_tag(new_names[tag], st["rewritten"][sid])
        if tag in existing:
            repo.tx.delete_tag(tag)


def resume_purge(repo: Repository, plan: Plan) -> None:
    """Run or finish a purge plan; every step checks what is already done."""
    st = plan.state
    if st["temp"] not in repo.icechunk.list_branches():
        first = repo.icechunk.lookup_snapshot(st["rewrite"][0]).parent_id or ""
        repo.tx.create_branch(st["temp"], first)
    _rewrite_pending(repo, plan)
    _move_branches(repo, plan)
    _replace_tags(repo, plan)
    if st["temp"] in repo.icechunk.list_branches():
        repo.tx.delete_branch(st["temp"])
    repo.tx.end_plan(plan)


def progress(repo: Repository, plan: Plan) -> tuple[int, int]:
    """(steps done, steps in all), read from the repository: the plan recorded, then each
    commit rewritten, each branch moved and each tag replaced."""
    st = plan.state
    branches, tags = repo.icechunk.list_branches(), repo.icechunk.list_tags()
    moved = sum(b not in branches or repo.icechunk.lookup_branch(b) == st["rewritten"].get(tip)
                for b, tip in st["branches"].items())
    replaced = sum(new in tags and old not in tags for old, new in st["new_tag_names"].items())
    return (1 + len(st["rewritten"]) + moved + replaced,
            1 + len(st["rewrite"]) + len(st["branches"]) + len(st["tags"]))


def published(repo: Repository, plan: Plan) -> bool:
    """Has the purge moved a branch or begun replacing tags? (Until then its work is only on
    its temporary branch.)"""
    st = plan.state
    branches, tags = repo.icechunk.list_branches(), repo.icechunk.list_tags()
    new_names = set(st["new_tag_names"].values())
    return (any(b in branches and repo.icechunk.lookup_branch(b) == st["rewritten"].get(tip)
                for b, tip in st["branches"].items())
            or bool(new_names & tags) or bool(new_names & set(repo.renamed_tags().values())))


PURGE = PlanKind("purge", "vczrepo purge", resume_purge, published, progress)
