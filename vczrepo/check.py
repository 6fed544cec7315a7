"""`check`: an integrity check of a repository that a user can run at any time.

By default every ref (each branch and tag) is checked, or one ref with `at`. At each ref's
snapshot: the snapshot must open; every chunk of every array is read (which verifies each
chunk's checksum, see vczrepo.checksums and vczrepo.internals); shapes must agree along samples
and variants; sample ids must be unique apart from nulls; null samples must hold only
missing/fill values (True in masks); every mask must equal its array's missing calls
(call_genotype_mask == (call_genotype < 0)); and the commit journal replayed from the first
commit must give the stored sample list; every snapshot and manifest the refs reach must
match its digest record (vczrepo.digests; objects without one are counted as unverified).
With `deep`, the stored bytes of every chunk of every snapshot in the history of the refs
are verified against their checksums; arrays without checksums (repositories made before
them) are reported as unverified.

Damage is reported one line per problem naming the object (ref, snapshot, repository
document, chunk), never a storage trace. `repair_masks` is the data-commit function that
fixes masks written wrong by earlier versions; `add_checksums` upgrades an old repository.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import icechunk
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import checksums, digests, journal, schema, storage
from .chunks import Pipeline, chunk_ranges
from .errors import IntegrityError, RepositoryError, VczRepoError

if TYPE_CHECKING:
    from .repository import Repository

REPO_DOCUMENT = "repo"  # icechunk's repository document: refs, config, commit metadata


@dataclass
class RefReport:
    """What was found at one ref."""

    ref: str
    snapshot: str | None
    problems: list[str] = field(default_factory=list)
    arrays_read: int = 0
    chunks_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ref": self.ref, "snapshot": self.snapshot, "ok": self.ok, "arrays_read": self.arrays_read,
                "chunks_read": self.chunks_read, "problems": list(self.problems)}


@dataclass
class CheckReport:
    """Problems found, per ref and for the repository as a whole (repository document,
    history, deep verification). `problems` lists them all, one line each."""

    refs: list[RefReport] = field(default_factory=list)
    repository_problems: list[str] = field(default_factory=list)
    deep: bool = False
    chunks_verified: int = 0
    unverified: list[str] = field(default_factory=list)  # arrays without checksums (deep only)
    objects_verified: int = 0  # snapshots and manifests matching their digest records
    objects_unverified: int = 0  # … without a record (made before records, or by other tools)
    in_progress: dict | None = None  # a recorded plan (Repository.pending): not damage, its temporary branch unchecked

    @property
    def problems(self) -> list[str]:
        out = list(self.repository_problems)
        for r in self.refs:
            out.extend(f"{r.ref}: {p}" if len(self.refs) > 1 else p for p in r.problems)
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    # single-ref views (one ref checked, as with `at`)
    @property
    def ref(self) -> str | None:
        return self.refs[0].ref if len(self.refs) == 1 else None

    @property
    def snapshot(self) -> str | None:
        return self.refs[0].snapshot if len(self.refs) == 1 else None

    @property
    def arrays_read(self) -> int:
        return sum(r.arrays_read for r in self.refs)

    @property
    def chunks_read(self) -> int:
        return sum(r.chunks_read for r in self.refs)

    def to_json(self) -> dict:
        """A JSON-ready summary, keys in a stable order."""
        return {
            "ok": self.ok,
            "deep": self.deep,
            "refs": [r.to_json() for r in self.refs],
            "repository_problems": list(self.repository_problems),
            "chunks_verified": self.chunks_verified,
            "unverified": list(self.unverified),
            "objects_verified": self.objects_verified,
            "objects_unverified": self.objects_unverified,
            "in_progress": self.in_progress,
            "problems": self.problems,
        }

    def summary(self) -> str:
        """One line: what was read and the verdict."""
        status = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        refs = ", ".join(f"{r.ref} ({r.snapshot or '?'})" for r in self.refs) or "no refs"
        deep = f", {self.chunks_verified} chunks verified by checksum" if self.deep else ""
        unrecorded = f" ({self.objects_unverified} unverified: no digest recorded)" if self.objects_unverified else ""
        return (f"{refs}: {self.arrays_read} arrays, {self.chunks_read} chunks read{deep}, "
                f"{self.objects_verified} snapshots and manifests verified by digest{unrecorded}: {status}"
                f"{in_progress_note(self.in_progress)}")


def in_progress_note(plan: dict | None) -> str:
    """'; purge in progress (step 3 of 9, by …, started …): …' for a summary line ('' if none)."""
    if plan is None:
        return ""
    step = f"step {plan['step']} of {plan['steps']}, " if plan.get("step") is not None else ""
    finish = f" or `{plan['finish_with']}`" if plan.get("finish_with") else ""
    return (f"; {plan['operation']} in progress ({step}by {plan['owner']}, started {plan['started']}): "
            f"the next write{finish} finishes it")


def _say(e: BaseException) -> str:
    """One line for an error: our own messages as they are, icechunk's without its trace."""
    if isinstance(e, VczRepoError):
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, icechunk.IcechunkError):
        from .internals import damaged_object

        return damaged_object(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _regions(array: zarr.Array):
    return itertools.product(*(list(chunk_ranges(n, c)) for n, c in zip(array.shape, array.chunks, strict=True)))


def _chunk_name(name: str, array: zarr.Array, region) -> str:
    coords = [s.start // c for s, c in zip(region, array.chunks, strict=True)]
    return f"{name}/{array.metadata.encode_chunk_key(tuple(coords))}" if array.metadata.zarr_format == 3 \
        else f"{name}/{'.'.join(map(str, coords))}"


def _check_array(pipe: Pipeline, name: str, array: zarr.Array, root_arrays: dict, nulls: np.ndarray, report: RefReport,
                 lock: threading.Lock) -> None:
    axis = schema.sample_axis(array)
    target = schema.masked_by(name, root_arrays) if schema.is_mask(name, array) else None
    if target is not None and root_arrays[target].shape != array.shape:
        report.problems.append(f"{name}: shape {array.shape} differs from {target}'s {root_arrays[target].shape}")
        target = None
    mismatched: list[Any] = [0, None]  # count, first sample index

    def one(region):
        try:
            values = np.asarray(array[region])
            masked = np.asarray(root_arrays[target][region]) if target is not None else None
        except Exception as e:  # noqa: BLE001 - any decode or storage failure is a problem to report
            with lock:
                report.problems.append(_say(e) if isinstance(e, IntegrityError)
                                       else f"chunk {_chunk_name(name, array, region)} unreadable: {_say(e)}")
            return
        with lock:
            report.chunks_read += 1
        if masked is not None:
            wrong = values != schema.mask_of(masked)
            if wrong.any():
                with lock:
                    mismatched[0] += int(wrong.sum())
                    if axis is not None:
                        first = int(region[axis].start + np.nonzero(wrong)[axis].min())
                        mismatched[1] = first if mismatched[1] is None else min(mismatched[1], first)
        if axis is None or name == "sample_id":
            return
        s = region[axis]
        local = np.flatnonzero(nulls[s.start:s.stop])
        if local.size == 0:
            return
        held = np.take(values, local, axis=axis)
        bad = ~schema.is_null_column_value(name, array, held)
        if bad.any():
            cols = sorted({int(s.start + local[i]) for i in np.nonzero(bad)[axis]})
            with lock:
                report.problems.append(f"{name}: null sample(s) at index {cols} hold data")

    pipe.run_bounded(one, _regions(array), None)
    if mismatched[0]:
        where = f" (first at sample index {mismatched[1]})" if mismatched[1] is not None else ""
        report.problems.append(f"{name}: {mismatched[0]} value(s) disagree with {target}'s missing values{where}; "
                               "`vczrepo repair` rewrites the mask")


def _journal_problems(repo: Repository, sid: str, ids: list[str]) -> list[str]:
    """Where sample_id disagrees with the commit journal (nothing if a commit is not vczrepo's).

    Appends journal their columns and a fingerprint of their ids: an appended id is read
    from `ids`, or from the journal of the remove that nulled it (purge nulls the name in both),
    and checked against it."""
    commits = [c for c in repo.log(sid) if c.op != "root"][::-1]
    if any("vczrepo" not in c.metadata for c in commits):
        return []
    oldest: list[str] = []
    if commits and commits[0].op != "init":  # history expired (gc --expire): replay from the oldest commit kept
        oldest = schema.sample_ids(repo.group(commits[0].id, verify=False)).tolist()
        commits = commits[1:]
    removed: dict[int, str] = {}
    for c in commits:
        for i, name in zip(c.metadata.get("sample_indexes_removed", []), c.metadata.get("samples_removed", []),
                           strict=True):
            removed.setdefault(i, name)
    samples = oldest
    for c in commits:
        m = c.metadata
        samples.extend([schema.NULL_SAMPLE] * m.get("n_padding", 0))
        if "sample_range" in m:
            start, stop = m["sample_range"]
            names = [removed.get(i, ids[i]) if ids[i] == schema.NULL_SAMPLE else ids[i]  # purged: null
                     for i in range(start, min(stop, len(ids)))]
            if start != len(samples) or journal.names_digest(names) != m["samples_sha256"]:
                return [(f"sample_id disagrees with the commit journal: the ids of columns {start}-{stop - 1} "
                         f"are not those {c.op} {c.id} added")]
            samples.extend(names)
        for i in m.get("sample_indexes_removed", []):
            if i < len(samples):
                samples[i] = schema.NULL_SAMPLE
        for i, name in zip(m.get("sample_indexes_restored", []), m.get("samples_restored", []), strict=True):
            if i < len(samples):
                samples[i] = name
    if samples != ids:
        return [f"sample_id disagrees with the commit journal ({len(ids)} stored, {len(samples)} expected)"]
    return []


def check_ref(repo: Repository, ref: str, sid: str | None = None) -> RefReport:
    """Check the VCZ at one ref (or snapshot id)."""
    report = RefReport(ref, sid)
    try:
        report.snapshot = sid = sid or repo.resolve(ref)
    except Exception as e:  # noqa: BLE001 - a ref pointing nowhere, an unreadable repository document
        report.problems.append(f"ref {ref}: {_say(e)}")
        return report
    try:
        root = repo.group(sid)
        arrays = schema.arrays(root)
    except Exception as e:  # noqa: BLE001 - a missing, truncated or corrupt snapshot
        report.problems.append(_say(e) if isinstance(e, IntegrityError) else f"snapshot {sid} unreadable: {_say(e)}")
        return report
    for required in ("sample_id", "variant_position", "contig_id", "variant_contig", "variant_allele"):
        if required not in arrays:
            report.problems.append(f"missing array {required}")
    if report.problems:
        return report
    try:
        ids = schema.sample_ids(root)
    except Exception as e:  # noqa: BLE001 - any storage or decode failure is a problem to report
        report.problems.append(_say(e) if isinstance(e, IntegrityError) else f"sample_id unreadable: {_say(e)}")
        return report
    n_samples, n_variants = len(ids), arrays["variant_position"].shape[0]
    for name, a in arrays.items():
        d = schema.dims(a)
        if schema.VARIANTS in d and a.shape[d.index(schema.VARIANTS)] != n_variants:
            report.problems.append(f"{name}: {a.shape[d.index(schema.VARIANTS)]} variants, expected {n_variants}")
        if schema.SAMPLES in d and a.shape[d.index(schema.SAMPLES)] != n_samples:
            report.problems.append(f"{name}: {a.shape[d.index(schema.SAMPLES)]} samples, expected {n_samples}")
    if report.problems:
        return report  # mismatched shapes: reading regions would only add noise
    counts = Counter(s for s in ids.tolist() if s != schema.NULL_SAMPLE)
    dups = sorted(s for s, n in counts.items() if n > 1)
    if dups:
        report.problems.append(f"duplicate sample ids: {', '.join(dups)}")
    nulls = ids == schema.NULL_SAMPLE
    lock = threading.Lock()
    for name, a in arrays.items():
        _check_array(repo.pipe, name, a, arrays, nulls, report, lock)
        report.arrays_read += 1
    try:
        report.problems.extend(_journal_problems(repo, sid, ids.tolist()))
    except Exception as e:  # noqa: BLE001 - an unreadable ancestor snapshot
        report.problems.append(f"history of snapshot {sid} unreadable: {_say(e)}")
    return report


def _all_refs(repo: Repository, report: CheckReport) -> list[tuple[str, str | None]]:
    refs: list[tuple[str, str | None]] = []
    for kind, names, lookup in (("branch", repo.icechunk.list_branches, repo.icechunk.lookup_branch),
                                ("tag", repo.icechunk.list_tags, repo.icechunk.lookup_tag)):
        try:
            listed = sorted(names())
        except Exception as e:  # noqa: BLE001 - the repository document holds the refs
            report.repository_problems.append(f"repository document {REPO_DOCUMENT}: cannot list {kind}es: {_say(e)}")
            continue
        for name in listed:
            try:
                refs.append((name, lookup(name)))
            except Exception as e:  # noqa: BLE001
                report.repository_problems.append(f"{kind} {name}: {_say(e)}")
    return refs


def _verify_snapshot(repo: Repository, sid: str, seen: set, report: CheckReport,
                     no_sums: dict[str, list[str]]) -> None:
    """Read the stored bytes of every chunk of one snapshot (each chunk once across snapshots)
    through the verifying store; arrays without checksums are only listed."""
    from .internals import session_store

    store = session_store(repo.icechunk.readonly_session(snapshot_id=sid), repo.location)
    arrays = schema.arrays(zarr.open_group(store, mode="r"))
    sync(_verify_arrays(store, sid, arrays, seen, report, no_sums, repo.settings.concurrency))


async def _verify_arrays(store, sid: str, arrays: dict, seen: set, report: CheckReport,
                         no_sums: dict[str, list[str]], concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    proto = default_buffer_prototype()

    async def one(name: str, key: str) -> None:
        async with limit:
            try:
                await store.get(key, proto)
                report.chunks_verified += 1
            except Exception as e:  # noqa: BLE001
                report.repository_problems.append(
                    _say(e) if isinstance(e, IntegrityError) else f"chunk {key} at snapshot {sid}: {_say(e)}")

    tasks = []
    for name, array in arrays.items():
        if not checksums.has_checksum(array):
            no_sums.setdefault(name, []).append(sid)
            continue
        async for coords, _kinds, ids, offsets, lengths, _ in store._store.array_chunk_iterator(array.path):
            for i in range(len(coords)):
                ident = (str(ids[i]), int(offsets[i]), int(lengths[i]))
                c = tuple(int(x) for x in coords[i])
                if ident[0] and ident in seen:
                    continue
                seen.add(ident)
                tasks.append((name, f"{array.path}/{array.metadata.encode_chunk_key(c)}"))
    await asyncio.gather(*(one(name, key) for name, key in tasks))


def _deep(repo: Repository, sids: list[str], report: CheckReport) -> None:
    seen: set = set()
    done: set[str] = set()
    no_sums: dict[str, list[str]] = {}
    for head in sids:
        try:
            history = [s.id for s in repo.icechunk.ancestry(snapshot_id=head)]
        except Exception as e:  # noqa: BLE001
            report.repository_problems.append(f"history of snapshot {head} unreadable: {_say(e)}")
            history = [head]
        for sid in history:
            if sid in done:
                continue
            done.add(sid)
            try:
                _verify_snapshot(repo, sid, seen, report, no_sums)
            except zarr.errors.GroupNotFoundError:
                continue  # the empty root commit
            except Exception as e:  # noqa: BLE001
                report.repository_problems.append(f"snapshot {sid} unreadable: {_say(e)}")
    report.unverified = [f"{name}: unverified (no checksums) in {len(sids)} snapshot(s): {', '.join(sids[:3])}"
                         f"{', …' if len(sids) > 3 else ''}" for name, sids in sorted(no_sums.items())]


def check(repo: Repository, at: str | None = None, deep: bool = False) -> CheckReport:
    """Check every ref (each branch and tag), or only `at`; with `deep`, verify the checksum
    of every chunk of every snapshot in their history."""
    report = CheckReport(deep=deep)
    temporary = _in_progress(repo, report)
    refs = [(at, None)] if at is not None else [r for r in _all_refs(repo, report) if r[0] != temporary]
    for name, sid in refs:
        found = check_ref(repo, name, sid)
        found.problems = list(dict.fromkeys(found.problems))  # a chunk read for two arrays is one problem
        report.refs.append(found)
    heads = [r.snapshot for r in report.refs if r.snapshot]
    _verify_digests(repo, heads, report)
    if deep:
        _deep(repo, heads, report)
    report.repository_problems = list(dict.fromkeys(report.repository_problems))
    return report


def _in_progress(repo: Repository, report: CheckReport) -> str | None:
    """Record a multi-step operation in progress in the report; returns its temporary branch
    (whose head is work in progress, e.g. the empty root commit a purge starts from)."""
    try:
        plan = repo.tx.pending()
    except Exception:  # noqa: BLE001 - an unreadable repository document: the refs' listing reports it
        return None
    if plan is None:
        return None
    try:
        report.in_progress = repo.tx.describe(repo, plan)
    except Exception:  # noqa: BLE001 - a damaged ref its progress reads: the refs' checks report it
        report.in_progress = repo.tx.describe(repo, plan, progress=False)
    return plan.temporary_branch


def _verify_digests(repo: Repository, heads: list[str], report: CheckReport) -> None:
    """Every snapshot and manifest reachable from the refs checked, against its digest record."""
    found = digests.verify(repo.location, digests.reachable(repo.icechunk, heads))
    report.repository_problems.extend(found.problems)
    report.objects_verified = found.verified
    report.objects_unverified = len(found.unverified)


def check_path(url, storage_options: dict | None = None, at: str | None = None, deep: bool = False) -> CheckReport:
    """`check` of the repository at `url`, reporting a missing or damaged repository document
    (which holds refs and commit metadata) as a problem rather than "not a repository"."""
    from .repository import Repository

    try:
        repo = Repository.open(url, storage_options)
    except (RepositoryError, IntegrityError) as e:
        loc = storage.parse_location(url, storage_options)
        from pathlib import Path

        if loc.is_local and (Path(loc.path) / "snapshots").is_dir():
            state = "missing" if not (Path(loc.path) / REPO_DOCUMENT).exists() else "unreadable"
            report = CheckReport(deep=deep)
            report.repository_problems.append(
                f"repository document {REPO_DOCUMENT} {state} ({_say(e)}); snapshots and chunks are "
                f"at {loc.path} but no ref can be resolved")
            return report
        raise
    return check(repo, at=at, deep=deep)


def repair_masks(pipe: Pipeline, root: zarr.Group) -> dict:
    """Rewrite every chunk of a *_mask array that disagrees with its array's missing calls
    (call_genotype_mask := call_genotype < 0), as earlier vczrepo left in null columns.
    A data-commit `apply` function: returns the commit's journal summary."""
    arrays = schema.arrays(root)
    fixed: dict[str, int] = {}
    lock = threading.Lock()
    for name, mask in arrays.items():
        target = schema.masked_by(name, arrays)
        if target is None or not schema.is_mask(name, mask) or arrays[target].shape != mask.shape:
            continue
        out = pipe.writer(mask)

        def one(region, mask=mask, target=arrays[target], out=out, name=name):
            expected = schema.mask_of(target[region])
            if not np.array_equal(np.asarray(mask[region]), expected):
                out[region] = expected
                with lock:
                    fixed[name] = fixed.get(name, 0) + 1

        pipe.run_bounded(one, _regions(mask), "fill", desc=name)
    return {"op_detail": "repair masks", "chunks_rewritten": dict(sorted(fixed.items()))}


def lacking_checksums(root: zarr.Group) -> dict[str, zarr.Array]:
    """The arrays add_checksums would upgrade (format 3, no crc32c codec)."""
    return {name: a for name, a in schema.arrays(root).items()
            if a.metadata.zarr_format == 3 and not checksums.has_checksum(a)}


def add_checksums(pipe: Pipeline, root: zarr.Group) -> dict:
    """Give every array without one the crc32c codec: its metadata gains the codec and each
    stored chunk its checksum, as bytes (nothing decoded). A data-commit `apply` function.
    Run it on a writable session of a repository made before checksums."""
    store = root.store
    proto = default_buffer_prototype()
    upgraded: dict[str, int] = {}

    async def upgrade(array: zarr.Array) -> int:
        prefix = f"{array.path}/"
        keys = [k async for k in store.list_prefix(prefix) if not k.endswith("zarr.json")]
        limit = asyncio.Semaphore(pipe.settings.concurrency)

        async def one(key: str) -> None:
            async with limit:
                data = await store.get(key, proto)
                if data is not None:
                    summed = checksums.with_checksum(data.as_numpy_array())
                    await store.set(key, proto.buffer.from_array_like(summed))

        await asyncio.gather(*(one(k) for k in keys))
        assert array.metadata.zarr_format == 3  # repository arrays are format 3
        meta = dataclasses.replace(array.metadata, codecs=checksums.with_checksum_codec(array.metadata.codecs))
        await store.set(f"{array.path}/zarr.json", meta.to_buffer_dict(proto)["zarr.json"])
        return len(keys)

    for name, array in lacking_checksums(root).items():
        upgraded[name] = sync(upgrade(array))
    return {"op_detail": "add checksums", "chunks_upgraded": dict(sorted(upgraded.items()))}
