"""purge: erase withdrawn samples' call data from every snapshot a branch or tag can reach.

icechunk snapshots are immutable, so every commit from the one that first held a purged
sample onwards is rewritten into a new snapshot: same arrays, same changed chunks (copied
as encoded bytes from the old commit), the purged samples' columns nulled, their names
blanked in the journal. Branches are then moved to the new chain (compare-and-swap) and
tags on the old chain are replaced by new names (a deleted tag name can never be reused),
recorded in the repository metadata so the old names still resolve. The old chain is
then unreachable, and `gc` deletes its objects.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import chunks, schema, storage
from .chunkfiles import session_store
from .errors import RefError, SampleError, VczRepoError
from .history import _swap
from .ops.remove import null_columns
from .repository import Repository
from .summaries import MAINTAINED, update_summaries  # summaries:

NAME_KEYS = ("samples_removed", "samples_restored")


@dataclass
class PurgePlan:
    samples: list[str]
    rewrite: list[str] = field(default_factory=list)  # old snapshot ids, oldest first
    branches: dict[str, str] = field(default_factory=dict)  # branch -> old head
    tags: dict[str, str] = field(default_factory=dict)  # tag -> old snapshot
    rewritten: dict[str, str] = field(default_factory=dict)  # old -> new snapshot
    renamed_tags: dict[str, str] = field(default_factory=dict)  # old tag -> new tag
    dry_run: bool = True

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("samples", "rewrite", "branches", "tags", "rewritten",
                                              "renamed_tags", "dry_run")}


def _holds(repo: Repository, sid: str, names: set[str], cache: dict[str, bool]) -> bool:
    if sid not in cache:
        try:
            root = repo.group(sid)
        except RefError:  # the empty root commit
            cache[sid] = False
        else:
            cache[sid] = "sample_id" in root and bool(names & set(schema.sample_ids(root).tolist()))
    return cache[sid]


def plan(repo: Repository, samples: Sequence[str]) -> PurgePlan:
    """Which commits, branches and tags a purge of `samples` rewrites."""
    names = set(samples)
    result = PurgePlan(list(samples))
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
        raise SampleError(f"no snapshot holds {', '.join(sorted(names))}: nothing to purge")
    result.rewrite = sorted(order, key=order.get)
    return result


def _scrub(metadata: dict, names: set[str], old: str, ids: list[str]) -> dict:
    """The journal entry of a rewritten commit (whose sample ids are now `ids`), without the names."""
    out = dict(metadata)
    for key in NAME_KEYS:
        if key in out:
            out[key] = [schema.NULL_SAMPLE if s in names else s for s in out[key]]
    if "sample_range" in out:
        start, stop = out["sample_range"]
        out["samples_sha256"] = schema.names_digest(ids[start:stop])
    out["purge"] = {"rewritten_from": old, "n_samples_purged": len(names)}
    return out


async def _copy_keys(src, dst, keys: list[str]) -> None:
    proto = default_buffer_prototype()
    for key in keys:
        data = await src.get(key, prototype=proto)
        if data is None:
            await dst.delete(key)
        else:
            await dst.set(key, data)


def _changed_keys(repo: Repository, parent: str, commit: str, root: zarr.Group) -> list[str]:
    """Metadata documents and chunk keys changed from parent to commit."""
    d = repo.icechunk.diff(from_snapshot_id=parent, to_snapshot_id=commit)
    if d.deleted_arrays or d.deleted_groups or d.moved_nodes:
        raise VczRepoError(f"cannot purge through commit {commit}: it deletes or moves nodes")
    keys = []
    for path in sorted(d.new_groups | d.updated_groups | d.new_arrays | d.updated_arrays):
        keys.append(f"{path.strip('/')}/zarr.json".lstrip("/"))
    for path, coords in d.updated_chunks.items():
        array = root[path.strip("/")]
        keys.extend(chunks._chunk_key(array, tuple(c)) for c in coords)
    return keys


def _rewrite(repo: Repository, commit_id: str, parent: str, names: set[str], temp: str) -> str:
    old = repo.log(commit_id, limit=1)[0]
    repo.icechunk.reset_branch(temp, parent)
    session = repo.icechunk.writable_session(temp)
    source = repo.group(commit_id)
    keys = _changed_keys(repo, old.parent, commit_id, source)  # summaries: kept for the check below
    sync(_copy_keys(source.store, session.store, keys))
    root = zarr.open_group(session_store(session, repo.location), mode="r+")
    # the commit's own ids: a chunk it changed may hold a purged sample whose id it left alone
    ids = schema.sample_ids(source).tolist()
    columns = [i for i, s in enumerate(ids) if s in names]
    if columns:
        # summaries: subtract the purged columns' counts only where this commit wrote summaries
        # (else they come from the rewritten parent, already without them)
        if any(k.startswith(tuple(f"variant_{f}/" for f in MAINTAINED)) for k in keys):
            update_summaries(root, removed=columns, removed_from=source)
        null_columns(root, columns)
    scrubbed = [schema.NULL_SAMPLE if s in names else s for s in ids]
    return session.commit(old.message, metadata=_scrub(old.metadata, names, commit_id, scrubbed), allow_empty=True)


def _new_tag_name(repo: Repository, tag: str) -> str:
    taken = repo.icechunk.list_tags() | repo.icechunk.list_branches() | set(repo.renamed_tags())
    return next(f"{tag}.purged{n}" for n in itertools.count(1) if f"{tag}.purged{n}" not in taken)


def purge(repo: Repository, samples: Sequence[str], *, dry_run: bool = False) -> PurgePlan:
    """Rewrite history so no branch or tag reaches the samples' call data; run `gc` afterwards."""
    names = set(samples)
    with storage.write_lock(repo.location):
        result = plan(repo, samples)
        result.dry_run = dry_run
        if dry_run:
            return result
        temp = f"vczrepo-purge-{uuid.uuid4().hex[:12]}"
        first_parent = repo.log(result.rewrite[0], limit=1)[0].parent
        repo.icechunk.create_branch(temp, first_parent)
        try:
            for sid in result.rewrite:
                parent = repo.log(sid, limit=1)[0].parent
                result.rewritten[sid] = _rewrite(repo, sid, result.rewritten.get(parent, parent), names, temp)
        finally:
            repo.icechunk.delete_branch(temp)
        for branch, tip in result.branches.items():
            _swap(repo, branch, result.rewritten[tip], tip)
        renamed = repo.renamed_tags()
        for tag, sid in result.tags.items():
            new = _new_tag_name(repo, tag)
            repo.icechunk.create_tag(new, result.rewritten[sid])
            repo.icechunk.delete_tag(tag)
            result.renamed_tags[tag] = new
            renamed.update({old: new for old, cur in renamed.items() if cur == tag} | {tag: new})
        if result.renamed_tags:
            repo.icechunk.update_metadata({"vczrepo_renamed_tags": renamed})
    return result
