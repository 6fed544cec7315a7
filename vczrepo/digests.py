"""Digest records of icechunk's own files: every snapshot and manifest verifiable, not only chunks.

icechunk's snapshot and manifest files carry no checksum: a flipped byte in a snapshot can
change nothing icechunk reads (a timestamp, a message), or something it reads without
noticing. So after each commit lands vczrepo writes, beside icechunk's objects, one small
record per new object: ``vczrepo-digests/snapshots/<id>`` for the new snapshot and
``vczrepo-digests/manifests/<id>`` for each manifest it references that its parent did not
(the others were recorded with the commit that wrote them). A record is JSON holding the
CRC-32C (vczrepo.checksums) and the size of the object's bytes as stored; its key is the
object's key under the prefix, so it holds no sample id (audit skips the prefix) and gc
removes the records of the objects it collects (`forget_collected`).

`check` verifies every snapshot and manifest reachable from the refs against its record: a
different size or checksum, or a recorded object that is gone, is damage naming the object.
Objects without a record (repositories made before records, commits made by other tools, a
writer that died between its commit and its record) are counted as unverified, never an
error; `add-checksums` records them (`record_reachable`). Writing records is best effort
after the commit has landed: a failure leaves the commit unverified, not undone.
In-memory repositories have no bytes to read: nothing is recorded or verified there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import icechunk

from . import checksums
from .storage import Location, RawObjects

PREFIX = "vczrepo-digests/"
KINDS = ("snapshots/", "manifests/")
THREADS = 16  # objects read at once (object storage latency dominates)


@dataclass(frozen=True)
class Digest:
    """The CRC-32C and size of an object's bytes as stored."""

    crc32c: str  # 8 hex digits
    size: int

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(checksums.checksum(data)[::-1].hex(), len(data))

    def to_bytes(self) -> bytes:
        return json.dumps({"crc32c": self.crc32c, "size": self.size}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Digest:
        doc = json.loads(data)
        return cls(str(doc["crc32c"]), int(doc["size"]))


@dataclass
class Verification:
    """What verifying objects against their records found."""

    problems: list[str] = field(default_factory=list)
    verified: int = 0
    unverified: list[str] = field(default_factory=list)  # keys without a record


def objects(loc: Location) -> RawObjects | None:
    """The location's objects as bytes, or None where there are no bytes to read (memory)."""
    return None if loc.scheme == "memory" else RawObjects(loc)


def _map(fn, items: Iterable) -> list:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(fn, items))


def _record(store: RawObjects, keys: Iterable[str]) -> int:
    """Write the record of each object (one not stored is skipped); returns how many."""
    def one(key: str) -> bool:
        data = store.get(key)
        if data is None:
            return False
        store.put(PREFIX + key, Digest.of(data).to_bytes())
        return True

    return sum(_map(one, dict.fromkeys(keys)))


def _manifests(repo: icechunk.Repository, sid: str) -> list[str]:
    return [f"manifests/{m.id}" for m in repo.list_manifest_files(sid)]


def record_commit(repo: icechunk.Repository, loc: Location, sid: str) -> int:
    """Record a new snapshot and the manifests it references that its parent does not (with
    the first commit, also icechunk's initial snapshot, made when the repository was created)."""
    store = objects(loc)
    if store is None:
        return 0
    keys = [f"snapshots/{sid}"]
    parent = repo.lookup_snapshot(sid).parent_id
    known: set[str] = set()
    if parent is not None:
        known = set(_manifests(repo, parent))
        if repo.lookup_snapshot(parent).parent_id is None:
            keys.append(f"snapshots/{parent}")
    keys.extend(k for k in _manifests(repo, sid) if k not in known)
    return _record(store, keys)


def reachable(repo: icechunk.Repository, heads: Iterable[str]) -> list[str]:
    """Keys of every snapshot and manifest reachable from `heads` (their history included);
    a snapshot that cannot be read contributes itself only (its damage is reported elsewhere)."""
    sids: dict[str, None] = {}
    for head in heads:
        sids[head] = None
        try:
            sids.update((s.id, None) for s in repo.ancestry(snapshot_id=head))
        except icechunk.IcechunkError:
            continue
    keys: dict[str, None] = {}
    for sid in sids:
        keys[f"snapshots/{sid}"] = None
        try:
            keys.update((k, None) for k in _manifests(repo, sid))
        except icechunk.IcechunkError:
            continue
    return list(keys)


def verify(loc: Location, keys: Iterable[str]) -> Verification:
    """Compare each object with its record; one problem line per damaged object."""
    found = Verification()
    store = objects(loc)
    if store is None:
        return found

    def one(key: str) -> tuple[str, str | None, bool]:
        raw = store.get(PREFIX + key)
        if raw is None:
            return key, None, False
        try:
            recorded = Digest.from_bytes(raw)
        except (ValueError, KeyError, TypeError):
            return key, f"{PREFIX}{key}: digest record unreadable", True
        data = store.get(key)
        if data is None:
            return key, f"{key}: missing (its digest is recorded)", True
        if len(data) != recorded.size:
            return key, f"{key}: size changed ({recorded.size} bytes recorded, {len(data)} stored)", True
        if Digest.of(data) != recorded:
            return key, f"{key}: checksum mismatch", True
        return key, None, True

    for key, problem, has_record in _map(one, keys):
        if not has_record:
            found.unverified.append(key)
        elif problem is None:
            found.verified += 1
        else:
            found.problems.append(problem)
    return found


def record_reachable(repo: icechunk.Repository, loc: Location, heads: Iterable[str]) -> int:
    """Record every object reachable from `heads` that has no record yet (add-checksums)."""
    store = objects(loc)
    if store is None:
        return 0
    keys = reachable(repo, heads)
    have = set(store.keys(PREFIX))
    return _record(store, [k for k in keys if PREFIX + k not in have])


def forget_collected(loc: Location) -> int:
    """Delete the records of objects that are gone (gc collected them); returns how many.
    Records are listed before objects: a record written meanwhile is of an object already stored."""
    store = objects(loc)
    if store is None:
        return 0
    records = [k for k in store.keys(PREFIX) if not k.rpartition("/")[2].startswith(".")]  # not one being written
    stored = {k for kind in KINDS for k in store.keys(kind)}
    gone = [r for r in records if r[len(PREFIX):] not in stored]
    store.delete(gone)
    return len(gone)
