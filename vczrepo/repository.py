"""Repository: the one front door. Every command is a method of it.

A Repository is a VCZ store kept as an icechunk repository, with refs and history. The
CLI only parses arguments, calls one of these methods and formats what it returns. Every
write goes through `self.tx` (vczrepo.transaction); every chunk moves through
`self.pipe` (vczrepo.chunks), both with the handle's `Settings`.

Ref arguments are named `at` (the ref read, or pointed at) and `branch` (the branch a
commit goes to, or that moves); both take ref expressions (vczrepo.refs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icechunk
import numpy as np
import zarr

from . import precheck, refs, schema, storage, validate
from .chunks import Pipeline
from .errors import (
    IntegrityError,
    OutputExistsError,
    RefError,
    RepositoryError,
    StorageError,
    UsageError,
    from_icechunk,
    short_message,
)
from .internals import session_store
from .journal import Commit
from .settings import DEFAULT, Settings
from .sources import Source, is_vcf, open_source
from .transaction import Apply, OpenMode, Transaction

if TYPE_CHECKING:
    import xarray

    from .audit import Finding
    from .check import CheckReport
    from .diff import DiffResult
    from .ops.append import AppendPlan
    from .ops.gc import GCResult
    from .ops.grow import GrowthCost
    from .ops.purge import PurgeResult
    from .vcfheader import VcfHeader

DEFAULT_BRANCH = "main"
TEMPORARY_BRANCH = re.compile(r"^vczrepo-(replay|purge)-[0-9a-f]{12}$")  # promote --replay's and purge's own
RENAMED_TAGS = "vczrepo_renamed_tags"


@dataclass(frozen=True)
class CommitResult:
    """What a data mutation returns: the new snapshot and its journal entry."""

    snapshot_id: str
    branch: str
    metadata: dict

    def to_json(self) -> dict:
        return {"snapshot": self.snapshot_id, "branch": self.branch, "op": self.metadata.get("op"),
                "n_samples": self.metadata.get("n_samples"), "metadata": dict(sorted(self.metadata.items()))}


@dataclass(frozen=True)
class BranchMove:
    """What promote and reset return."""

    branch: str
    old: str
    new: str
    mode: str  # "fast-forward", "replay", "reset", "up-to-date"
    commits: list[CommitResult]

    def to_json(self) -> dict:
        return {"branch": self.branch, "old": self.old, "new": self.new, "mode": self.mode,
                "commits": [c.to_json() for c in self.commits]}


def _remove_local_init(path: Path, wrote: bool, created_dir: bool) -> None:
    """Undo a failed local init, under its lock: what it wrote (it found the directory empty),
    then the directory if it made it and nobody else has filled it since."""
    if wrote:
        for child in path.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if created_dir:
        with contextlib.suppress(OSError):
            path.rmdir()


class Repository:
    """A vczrepo repository at a path or URL: get one with `Repository.open` or `Repository.init`."""

    def __init__(self, location: storage.Location, repo: icechunk.Repository, settings: Settings = DEFAULT,
                 author: str | None = None):
        self.location = location
        self.icechunk = repo
        self.settings = settings
        """How this handle does its work (vczrepo.Settings)."""
        self.author = " ".join((author or "").split()) or None
        """Who this handle's commits are by, one line (e.g. `Ana <ana@example.org>`); None: the
        journal's user@host only. `log` shows it."""
        self.tx = Transaction(repo, location, settings)
        self.pipe = Pipeline(settings)

    # ----- opening -----
    @classmethod
    def open(cls, url: str | os.PathLike, storage_options: dict | None = None, *,
             settings: Settings | None = None, author: str | None = None) -> Repository:
        """Open an existing repository (local path or URL); `author` signs its commits."""
        loc = storage.parse_location(url, storage_options)
        if loc.is_local and not Path(loc.path).is_dir():
            raise RepositoryError(f"not a vczrepo repository (no such directory): {loc.url}")
        st = storage.make_storage(loc)
        try:
            repo = icechunk.Repository.open(st)  # no exists() first: one request less on object storage
        except icechunk.RepositoryNotFoundError as e:
            raise RepositoryError(f"not a vczrepo repository: {loc.url}") from e
        except icechunk.IcechunkError as e:
            mapped = from_icechunk(e, f"opening {loc.url}")
            if loc.is_local and (Path(loc.path) / "repo").is_file() and isinstance(mapped, StorageError):
                # the repository document is there but cannot be read: damage, not a storage failure
                raise IntegrityError(f"damaged repository document {Path(loc.path) / 'repo'}: "
                                     f"{short_message(e)}") from e
            raise mapped from e
        return cls(loc, repo, settings or DEFAULT, author)

    @classmethod
    def init(
        cls,
        url: str | os.PathLike,
        source: str | os.PathLike | zarr.Group | None = None,
        *,
        variants_from: str | os.PathLike | Sequence[str | os.PathLike] = (),
        message: str | None = None,
        storage_options: dict | None = None,
        settings: Settings | None = None,
        variants_chunk_size: int | None = None,
        samples_chunk_size: int | None = None,
        author: str | None = None,
    ) -> tuple[Repository, CommitResult]:
        """Create a repository whose first commit holds the samples and variants of `source`.

        With `variants_from` instead, the first commit holds no samples and the sorted union
        of those VCZs' variants, so batches from different panels can share the store
        (append them with `normalise=True`).
        """
        from .ops.init import import_batch
        from .ops.normalise import union_source

        variants_from = [variants_from] if isinstance(variants_from, str | os.PathLike) else list(variants_from)
        if (source is None) == (not variants_from):
            raise UsageError("give either a source batch or --variants-from VCZs, not both or neither")
        settings = settings or DEFAULT
        loc = storage.parse_location(url, storage_options)
        if source is not None:
            _precheck(source, precheck.before_init)  # before anything is created
        created_dir = False
        if loc.is_local:
            path = Path(loc.path)
            if path.exists() and (not path.is_dir() or storage.stored_keys(loc)):
                raise RepositoryError(f"refusing to overwrite existing path: {loc.url}")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.mkdir()  # to lock it until the first commit
                created_dir = True
            except FileExistsError:  # there already, or another init made it just now
                pass
        if loc.scheme in ("s3", "gs", "az") and "/" not in loc.path.strip("/"):
            raise RepositoryError(f"a repository needs a prefix inside the bucket: {loc.url.rstrip('/')}/PREFIX")
        with storage.write_lock(loc):  # a concurrent init waits, then finds this one's repository
            wrote = False
            try:
                st = storage.make_storage(loc)
                if icechunk.Repository.exists(st):
                    raise RepositoryError(f"refusing to overwrite existing repository: {loc.url}")
                storage.ensure_empty(loc)
                with contextlib.ExitStack() as stack:
                    if variants_from:
                        src = stack.enter_context(union_source(variants_from))
                    else:
                        assert source is not None  # checked above: a source or variants_from
                        src = stack.enter_context(_open_batch(source, loc, settings, variants_chunk_size,
                                                              samples_chunk_size))
                    wrote = True
                    repo = cls(loc, icechunk.Repository.create(st, storage.creation_config(loc)), settings, author)
                    default = (f"init: union of the variants of {len(variants_from)} VCZs" if variants_from
                               else f"init from {Path(src.path).name}")
                    result = repo._commit(DEFAULT_BRANCH, "init", message or default,
                                          lambda root: import_batch(repo.pipe, root, src), mode="w")
            except BaseException:
                if loc.is_local:
                    _remove_local_init(Path(loc.path), wrote, created_dir)
                raise
        return repo, result

    # ----- refs -----
    def branches(self) -> dict[str, str]:
        """Every branch and its head snapshot."""
        return {b: self.icechunk.lookup_branch(b) for b in sorted(self.icechunk.list_branches())}

    def tags(self) -> dict[str, str]:
        """Every tag and its snapshot."""
        return {t: self.icechunk.lookup_tag(t) for t in sorted(self.icechunk.list_tags())}

    def renamed_tags(self) -> dict[str, str]:
        """Tags replaced by `purge` (icechunk never reuses a deleted tag's name): old → new."""
        return dict(self.icechunk.get_metadata().get(RENAMED_TAGS) or {})

    def resolve(self, ref: str) -> str:
        """The snapshot id a ref expression names: a branch, a tag, a snapshot id or a unique
        prefix of one (at least 4 characters), optionally followed by ~N (N-th ancestor)."""
        base, back = refs.split_ancestor(ref)
        sid = self._resolve_base(base)
        if back:
            chain = [s.id for s in self.icechunk.ancestry(snapshot_id=sid)]
            if back >= len(chain):
                raise RefError(f"{ref}: {base} has only {len(chain) - 1} ancestor(s)")
            sid = chain[back]
        return sid

    def _resolve_base(self, ref: str) -> str:
        # looked up directly: each icechunk call reads the repository document (one request on
        # object storage), and a branch, the usual ref, is then one read instead of three
        for lookup in (self.icechunk.lookup_branch, self.icechunk.lookup_tag):
            try:
                return lookup(ref)
            except icechunk.RefNotFoundError:
                pass
        renamed = self.renamed_tags()
        if ref in renamed:
            try:
                return self.icechunk.lookup_tag(renamed[ref])
            except icechunk.RefNotFoundError:
                pass
        if refs.SNAPSHOT_ID.match(ref):
            try:
                return self.icechunk.lookup_snapshot(ref).id
            except icechunk.SnapshotNotFoundError:
                pass
            except icechunk.IcechunkError as e:
                raise from_icechunk(e, f"looking up snapshot {ref}") from e
        elif refs.SNAPSHOT_PREFIX.match(ref.upper()):
            found = refs.by_prefix(ref, self._known_snapshots())
            if found:
                return found
        raise refs.unknown(ref, set(self.icechunk.list_branches()) | set(self.icechunk.list_tags()))

    def _known_snapshots(self) -> set[str]:
        """Snapshot ids reachable from any branch or tag."""
        heads = set(self.branches().values()) | set(self.tags().values())
        return {s.id for head in heads for s in self.icechunk.ancestry(snapshot_id=head)}

    def ancestry_ids(self, snapshot_id: str) -> list[str]:
        """Snapshot ids from `snapshot_id` back to the root, newest first."""
        return [s.id for s in self.icechunk.ancestry(snapshot_id=snapshot_id)]

    def merge_base(self, a: str, b: str) -> str | None:
        """Newest common ancestor of two snapshots."""
        seen = set(self.ancestry_ids(a))
        return next((s for s in self.ancestry_ids(b) if s in seen), None)

    def branch_list(self, base: str = DEFAULT_BRANCH) -> list[dict]:
        """Every branch with its head and how far it is ahead of / behind `base`."""
        base_ids = set(self.ancestry_ids(self.resolve(base)))
        out = []
        for name, sid in self.branches().items():
            ids = self.ancestry_ids(sid)
            out.append({"name": name, "head": sid, "ahead": sum(i not in base_ids for i in ids),
                        "behind": len(base_ids - set(ids))})
        return out

    def tag_list(self) -> list[dict]:
        """Every tag with its snapshot, and the commit message there."""
        return [{"name": t, "snapshot": s, "message": self.icechunk.lookup_snapshot(s).message}
                for t, s in self.tags().items()]

    def _check_new_name(self, name: str, kind: str) -> None:
        refs.validate_name(name, kind)
        if name in self.icechunk.list_branches():
            raise RefError(f"a branch named {name!r} already exists")
        if name in self.icechunk.list_tags():
            raise RefError(f"a tag named {name!r} already exists")

    def create_tag(self, name: str, at: str = DEFAULT_BRANCH) -> str:
        """Tag a ref; returns the snapshot tagged. Tags never move, and icechunk never
        reuses a deleted tag's name."""
        with self.tx.locked(self):
            self._check_new_name(name, "tag")
            sid = self.resolve(at)
            self.tx.create_tag(name, sid)
        return sid

    def delete_tag(self, name: str) -> str:
        """Delete a tag (for good: its name can never be used again); returns its snapshot."""
        with self.tx.locked(self):
            if name not in self.icechunk.list_tags():
                raise RefError(f"no such tag: {name}")
            sid = self.icechunk.lookup_tag(name)
            self.tx.delete_tag(name)
        return sid

    def create_branch(self, name: str, at: str = DEFAULT_BRANCH) -> str:
        """Create a branch at a ref; returns its head."""
        with self.tx.locked(self):
            self._check_new_name(name, "branch")
            sid = self.resolve(at)
            self.tx.create_branch(name, sid)
        return sid

    def delete_branch(self, name: str) -> str:
        """Delete a branch (never main); its commits stay findable with `log(all=True)`."""
        with self.tx.locked(self):
            if name == DEFAULT_BRANCH:
                raise RefError(f"refusing to delete the default branch {name!r}")
            sid = self._require_branch(name)
            self.tx.delete_branch(name)
        return sid

    def _require_branch(self, branch: str) -> str:
        try:
            return self.icechunk.lookup_branch(branch)
        except icechunk.RefNotFoundError as e:
            raise RefError(f"no such branch: {branch}") from e

    # ----- reading -----
    def group(self, at: str = DEFAULT_BRANCH, *, verify: bool = True) -> zarr.Group:
        """Read-only root group of the VCZ at a ref (for vcztools.VczReader). `verify` opens every
        array's metadata first, so that damage is one IntegrityError before a reader lists them
        (False: for callers that read a named array or two, e.g. once per commit of a history)."""
        sid = self.resolve(at)
        try:
            session = self.icechunk.readonly_session(snapshot_id=sid)
            root = zarr.open_group(session_store(session, self.location), mode="r")
        except zarr.errors.GroupNotFoundError as e:
            raise RefError(f"snapshot {sid} holds no VCZ (the repository's empty root commit)") from e
        except icechunk.IcechunkError as e:  # a missing or corrupt snapshot: damage (exit 8)
            from .internals import damaged_object

            raise IntegrityError(f"snapshot {sid} unreadable: {damaged_object(e)}") from e
        if not verify:
            return root
        try:
            schema.arrays(root)  # a damaged array metadata document is named here, before any reader lists them
        except IntegrityError as e:
            raise IntegrityError(f"snapshot {sid}: {e}") from e
        return root

    def samples(self, at: str = DEFAULT_BRANCH) -> list[str]:
        """The live sample ids at a ref, in column order (removed and padding columns left out)."""
        return schema.live_samples(self.group(at))

    def samples_added(self, at: str) -> list[str]:
        """The sample ids an init or append commit added, read from its own snapshot (the
        journal keeps their columns, not their names); purged ones read as null."""
        sid = self.resolve(at)
        start, stop = self.log(sid, limit=1)[0].metadata.get("sample_range", (0, 0))
        return schema.sample_ids(self.group(sid, verify=False))[start:stop].tolist() if stop > start else []

    def log(self, at: str = DEFAULT_BRANCH, limit: int | None = None) -> list[Commit]:
        """History of a ref, newest first, with the branches and tags pointing at each commit."""
        return self._walk(self.resolve(at), self._pointers(), limit)

    def _pointers(self) -> dict[str, tuple[list[str], list[str]]]:
        """The branches and the tags at each snapshot that has any."""
        pointers: dict[str, tuple[list[str], list[str]]] = {}
        for b, s in self.branches().items():
            pointers.setdefault(s, ([], []))[0].append(b)
        for t, s in self.tags().items():
            pointers.setdefault(s, ([], []))[1].append(t)
        return pointers

    def _walk(self, sid: str, pointers: dict[str, tuple[list[str], list[str]]],
              limit: int | None = None) -> list[Commit]:
        out: list[Commit] = []
        for snap in self.icechunk.ancestry(snapshot_id=sid):
            if limit is not None and len(out) >= limit:
                break
            branches, tags = pointers.get(snap.id, ([], []))
            out.append(Commit(snap.id, snap.parent_id, snap.written_at, snap.message,
                              dict(snap.metadata), branches, tags))
        return out

    def log_all(self, limit: int | None = None) -> list[Commit]:
        """Every commit reachable from a branch, a tag, or a head that a reset or a deletion left
        behind (icechunk's operations log), children before parents, each line of history in
        one block (vczrepo.graph). Commits only a left-behind head reaches are marked
        `reachable=False`, the heads themselves with the refs they were (`was_head_of`)."""
        pointers = self._pointers()
        was: dict[str, list[str]] = {}
        for update in self.icechunk.ops_log():
            previous = getattr(update.kind, "previous_snap_id", None)
            if not previous:  # only BranchReset, BranchDeleted and TagDeleted leave a head behind
                continue
            name = str(getattr(update.kind, "name", ""))
            name = f"tag: {name}" if type(update.kind).__name__ == "TagDeleted" else name
            names = was.setdefault(previous, [])
            if name not in names and not TEMPORARY_BRANCH.match(name):  # its own branches: no name to show
                names.append(name)
        for names in was.values():
            names.sort(key=lambda n: n.startswith("tag: "))  # branches first, as in a decoration
        seen: dict[str, Commit] = {}
        reachable: set[str] = set()
        for head in [*sorted(pointers), *sorted(set(was) - set(pointers))]:
            if head in seen:
                continue
            try:
                commits = self._walk(head, pointers)
            except icechunk.IcechunkError:  # a left-behind head that gc has collected
                continue
            for c in commits:
                if head in pointers:
                    reachable.add(c.id)
                seen.setdefault(c.id, c)
        from .graph import topological

        marked = [c if c.id in reachable else dataclasses.replace(c, reachable=False, was_head_of=was.get(c.id, []))
                  for c in seen.values()]
        return topological(marked)[:limit]

    def pending(self) -> dict | None:
        """The multi-step operation in progress (or left by a writer that died), if any: its
        kind, owner, start, progress (step of steps), temporary branch and finishing command."""
        plan = self.tx.pending()
        return None if plan is None else self.tx.describe(self, plan)

    def info(self, at: str = DEFAULT_BRANCH) -> dict:
        """Summary of the VCZ at a ref: samples, variants, contigs, fields, chunking, refs there."""
        sid = self.resolve(at)
        root = self.group(sid)
        ids = schema.sample_ids(root)
        padding = sum(c.metadata.get("n_padding", 0) for c in self.log(sid))  # null columns from padding
        contigs = [str(c) for c in np.asarray(schema.array(root, "contig_id")[:])]
        used = sorted({int(i) for i in np.asarray(schema.array(root, "variant_contig")[:])})
        from .summaries import maintained_fields, stale_fields

        return {
            "ref": at,
            "snapshot": sid,
            "info_maintained": maintained_fields(root),
            "info_stale": stale_fields(root),
            "n_samples": int((ids != schema.NULL_SAMPLE).sum()),
            "n_removed": int((ids == schema.NULL_SAMPLE).sum()) - padding,
            "n_padding": padding,
            "n_variants": int(schema.array(root, "variant_position").shape[0]),
            "n_contigs": len(contigs),
            "contigs_with_variants": [contigs[i] for i in used],
            "variants_chunk_size": int(schema.array(root, "variant_position").chunks[0]),
            "samples_chunk_size": schema.samples_chunk_size(root),
            "branches": [b for b, s in self.branches().items() if s == sid],
            "tags": [t for t, s in self.tags().items() if s == sid],
            "in_progress": self.pending(),
            "fields": {
                name: {"dims": list(schema.dims(a)), "dtype": str(a.dtype), "shape": list(a.shape),
                       "chunks": list(a.chunks)}
                for name, a in schema.arrays(root).items()
            },
        }

    def diff(self, a: str, b: str = DEFAULT_BRANCH) -> DiffResult:
        """What changed going from ref `a` to ref `b` (b's samples not in a are 'added')."""
        from .diff import diff

        return diff(self, a, b)

    def check(self, at: str | None = None, deep: bool = False) -> CheckReport:
        """Integrity check of every ref (or one); returns a report, never raises on damage found."""
        from .check import check

        return check(self, at, deep)

    def checkout(self, out: str | os.PathLike, at: str = DEFAULT_BRANCH, *, drop_removed: bool = False) -> str:
        """Write the VCZ at a ref to `out` as a plain zarr format 3 store; returns the snapshot."""
        from .read import checkout

        return checkout(self, at, out, drop_removed=drop_removed)

    def view(self, at: str = DEFAULT_BRANCH, *, output_type: str | None = None, **options: Any) -> None:
        """`vcztools view` at a ref (options as vcztools' Python names, e.g. samples="A,B").
        `output_type` is bcftools' `-O`: "v" plain VCF, "z" (or "z0"…"z9") BGZF (bgzip's format,
        for tabix/bcftools); by default an output ending in .gz or .bgz is written as BGZF."""
        from .read import view

        view(self.group(at), output_type, **options)

    def query(self, at: str = DEFAULT_BRANCH, **options: Any) -> None:
        """`vcztools query` at a ref (e.g. format="%CHROM\\t%POS\\n", list_samples=True)."""
        from .read import run_vcztools

        run_vcztools("query", self.group(at), **options)

    def open_dataset(self, at: str = DEFAULT_BRANCH, *, keep_null_samples: bool = False) -> xarray.Dataset:
        """xarray Dataset of the VCZ at a ref (needs the `xarray` extra), as sgkit reads VCZ;
        null columns (removed samples, padding) are left out unless `keep_null_samples`."""
        from .read import dataset

        return dataset(self, at, keep_null_samples)

    def normalise(self, batch: str | os.PathLike, out: str | os.PathLike, *, at: str = DEFAULT_BRANCH,
                  allow_new_alleles: bool = False) -> dict:
        """Write `batch` mapped onto the variants at a ref as a plain VCZ at `out` (see ops.normalise)."""
        from .ops.normalise import normalise

        if Path(out).exists():
            raise OutputExistsError(f"output already exists: {out}")
        with open_source(batch, storage_options=self.location.options) as src:
            return normalise(src.group, self.group(at), out, allow_new_alleles=allow_new_alleles, pipe=self.pipe)

    # ----- data mutations -----
    def _commit(self, branch: str, op: str, message: str, apply: Apply, mode: OpenMode = "r+") -> CommitResult:
        author = self.author
        signed = apply if author is None else lambda root: {"author": author, **apply(root)}  # a replay's wins
        sid, metadata = self.tx.commit(branch, op, message, signed, context=self, mode=mode)
        return CommitResult(sid, branch, metadata)

    def append(
        self,
        source: str | os.PathLike | zarr.Group,
        *,
        branch: str = DEFAULT_BRANCH,
        message: str | None = None,
        variants_chunk_size: int | None = None,
        samples_chunk_size: int | None = None,
        fill_missing_fields: bool = False,
        align: bool | None = None,
        normalise: bool = False,
        allow_new_alleles: bool = False,
        drop_stale_info: bool = False,
        grow_variants: bool = False,
    ) -> CommitResult:
        """Add the samples of a VCZ (or VCF/BCF) batch as one commit on `branch`.

        `fill_missing_fields` accepts call fields present on one side only (missing values fill
        the gaps) and ignores per-variant fields the repository lacks. `normalise` maps a batch
        with a different variant set onto the repository's variants first (see ops.normalise);
        `allow_new_alleles` (with `normalise`) adds its new ALT alleles at existing sites.
        `align` pads the repository with null columns to a sample-chunk boundary first, so a
        batch with the repository's chunking is copied as encoded bytes (fast) rather than
        recomposed; vcztools never shows null columns. The default (None) pads only when that
        makes the copy byte-for-byte and adds fewer null columns than the batch has samples;
        False keeps the samples contiguous, as one bio2zarr conversion would. A VCF/BCF is
        converted with the repository's chunking unless the chunk sizes are given, and with its
        types and trailing widths where the values fit. A repository array the batch's values or
        rows do not fit is widened first in the same commit (vczrepo.widen; the journal's
        `widened`), unless `Settings.widen` is off: then the batch is refused. `plan_append`
        says what an append would do, writing nothing.
        INFO fields that are functions of the genotypes (AC, AN, AF, NS, …) are updated in the
        same commit; `drop_stale_info` drops the INFO fields that cannot be (site DP, …).
        `grow_variants` first makes the repository's variants the sorted union with the batch's
        (its new sites are inserted, missing for the samples already there; see ops.grow and
        `growth` for what that rewrites), then appends the batch normalised onto them.
        """
        return self._append(source, branch=branch, message=message, variants_chunk_size=variants_chunk_size,
                            samples_chunk_size=samples_chunk_size, fill_missing_fields=fill_missing_fields,
                            align=align, normalise=normalise, allow_new_alleles=allow_new_alleles,
                            drop_stale_info=drop_stale_info, grow_variants=grow_variants)

    def _append(self, source: str | os.PathLike | zarr.Group, *, branch: str, message: str | None,
                extra: dict | None = None, variants_chunk_size: int | None = None,
                samples_chunk_size: int | None = None, fill_missing_fields: bool = False,
                align: bool | None = None, normalise: bool = False, allow_new_alleles: bool = False,
                drop_stale_info: bool = False, grow_variants: bool = False) -> CommitResult:
        from .ops.append import append_batch, append_grown, append_normalised

        self._check_append_options(normalise, allow_new_alleles, grow_variants)
        if self.settings.distributed:
            _require_dask()
        head = self._require_branch(branch)
        self._precheck_append(source, head, same_variants=not (normalise or grow_variants))
        options: dict[str, Any] = {"fill_missing_fields": fill_missing_fields, "align": align}
        with self._open_batch(source, head, variants_chunk_size, samples_chunk_size) as src:

            def apply(root: zarr.Group) -> dict:
                if grow_variants:
                    summary = append_grown(self.pipe, root, self._before(root), self.location, src, **options)
                elif normalise:
                    summary = append_normalised(self.pipe, root, src, allow_new_alleles=allow_new_alleles, **options)
                else:
                    summary = append_batch(self.pipe, root, src, **options)
                return {**summary, **_dropped(root, drop_stale_info), **(extra or {})}

            return self._commit(branch, "append", message or f"append {Path(src.path).name}", apply)

    @staticmethod
    def _check_append_options(normalise: bool, allow_new_alleles: bool, grow_variants: bool) -> None:
        if allow_new_alleles and not normalise:
            raise UsageError("--allow-new-alleles needs --normalise")
        if allow_new_alleles and grow_variants:
            raise UsageError("--allow-new-alleles does not go with --grow-variants (a new ALT allele makes a new site)")

    def growth(self, source: str | os.PathLike | zarr.Group, *, branch: str = DEFAULT_BRANCH) -> GrowthCost:
        """What `append(source, grow_variants=True)` would rewrite on `branch` (nothing is written):
        the sites it inserts, and the chunks and stored bytes of the rows that move."""
        from .ops.grow import cost, plan

        head = self._require_branch(branch)
        _precheck(source, precheck.before_init)  # what check_batch can tell from the header
        with self._open_batch(source, head) as src:
            validate.check_batch(src.group)
            root = self.group(head)
            return cost(root, plan(root, src.group))

    def plan_append(self, source: str | os.PathLike | zarr.Group, *, branch: str = DEFAULT_BRANCH,
                    variants_chunk_size: int | None = None, samples_chunk_size: int | None = None,
                    fill_missing_fields: bool = False, align: bool | None = None, normalise: bool = False,
                    allow_new_alleles: bool = False, grow_variants: bool = False) -> AppendPlan:
        """What `append` with these options would do on `branch`, nothing written (`append
        --dry-run`): the batch is checked as append checks it, and the plan names its sample
        columns, the null columns padding them, the fields added, every repository array widened
        for it (chunks and stored bytes rewritten) and, with `grow_variants`, the growth."""
        from .ops.append import plan_append

        self._check_append_options(normalise, allow_new_alleles, grow_variants)
        head = self._require_branch(branch)
        self._precheck_append(source, head, same_variants=not (normalise or grow_variants))
        with self._open_batch(source, head, variants_chunk_size, samples_chunk_size) as src:
            return plan_append(self.pipe, self.group(head), src.group, fill_missing_fields=fill_missing_fields,
                               align=align, normalise=normalise, allow_new_alleles=allow_new_alleles,
                               grow_variants=grow_variants)

    def _precheck_append(self, source: str | os.PathLike | zarr.Group, head: str, *, same_variants: bool) -> None:
        """What an append can refuse from a VCF/BCF batch's header, before converting it."""
        _precheck(source, lambda header: precheck.before_append(self.group(head), header,
                                                                 same_variants=same_variants))

    def _before(self, root: zarr.Group) -> zarr.Group:
        """The committed state a writable session's root started from, read-only."""
        from .internals import SessionStore

        assert isinstance(root.store, SessionStore)  # opened by the transaction on its session
        return self.group(root.store.session.snapshot_id, verify=False)

    @contextlib.contextmanager
    def _open_batch(self, source: str | os.PathLike | zarr.Group, head: str, variants: int | None = None,
                    samples: int | None = None) -> Iterator[Source]:
        """A batch opened for a write to `head`. A VCF/BCF is converted with the chunk sizes given,
        else the repository's (so the batch can be copied as bytes), and with the repository's
        types and trailing widths where its values fit (so the common batch widens nothing); a
        VCZ is read as it is."""
        like = None
        if isinstance(source, str | os.PathLike) and is_vcf(source):
            like = self.group(head)
            variants = variants or int(schema.array(like, "variant_position").chunks[0])
            if not samples and "sample_id" in like and schema.array(like, "sample_id").shape[0]:
                samples = schema.samples_chunk_size(like)
        with _open_batch(source, self.location, self.settings, variants, samples, like=like) as src:
            yield src

    def extend(self, source: str | os.PathLike | zarr.Group, *, branch: str = DEFAULT_BRANCH,
               message: str | None = None) -> CommitResult:
        """Add a batch's variants after the repository's as one commit on `branch` (same samples,
        variants sorting after the last one or on new contigs; see ops.extend)."""
        from .ops.extend import extend_variants

        head = self._require_branch(branch)
        _precheck(source, lambda header: precheck.before_extend(self.group(head), header))
        with self._open_batch(source, head) as src:
            return self._commit(branch, "extend", message or f"extend {Path(src.path).name}",
                                lambda root: extend_variants(self.pipe, root, src))

    def remove(self, samples: str | Sequence[str], *, branch: str = DEFAULT_BRANCH, message: str | None = None,
               drop_stale_info: bool = False, extra: dict | None = None) -> CommitResult:
        """Withdraw samples (one id, or several) as one commit on `branch` (their data becomes
        missing; INFO fields that are functions of the genotypes are updated; `drop_stale_info`
        drops the others)."""
        from .ops.remove import remove_samples

        if self.settings.distributed:
            _require_dask()
        self._require_branch(branch)
        names = _ids(samples)
        n = len(names)
        return self._commit(
            branch, "remove", message or f"remove {n} sample{'s' if n != 1 else ''}",
            lambda root: {**remove_samples(self.pipe, root, names, lambda s: self._was_removed(branch, s)),
                          **_dropped(root, drop_stale_info), **(extra or {})},
        )

    def _was_removed(self, branch: str, name: str) -> bool:
        return any(name in c.metadata.get("samples_removed", ()) for c in self.log(branch))

    def revert(self, commit: str, *, branch: str = DEFAULT_BRANCH, message: str | None = None) -> CommitResult:
        """A new commit on `branch` undoing one append (removes its samples) or remove (restores them)."""
        from .ops.revert import revert

        return revert(self, commit, branch, message)

    # ----- history -----
    def promote(self, source: str, *, branch: str = DEFAULT_BRANCH, replay: bool = False) -> BranchMove:
        """Fast-forward `branch` to `source`; with `replay`, re-apply source's operations on
        `branch` instead (a recorded plan: all or nothing, finished by the next write if cut)."""
        from .ops.promote import promote

        return promote(self, source, branch, replay=replay)

    def reset(self, branch: str, at: str, *, expect: str | None = None, force: bool = False) -> BranchMove:
        """Move `branch` to any ref; refuses if it is no longer at `expect` (the head you saw),
        unless forced. The old head stays findable in `log_all` (icechunk's operations log)."""
        from .ops.promote import reset

        return reset(self, branch, at, expect=expect, force=force)

    def purge(self, samples: str | Sequence[str], *, dry_run: bool = False) -> PurgeResult:
        """Rewrite history so no branch or tag reaches the samples' data (one id, or several;
        then `gc(now=True)`)."""
        from .ops.purge import purge

        return purge(self, _ids(samples), dry_run=dry_run)

    def gc(self, older_than: dt.timedelta = dt.timedelta(days=7), *, expire: bool = False, now: bool = False,
           dry_run: bool = False) -> GCResult:
        """Delete storage objects no branch or tag reaches and older than `older_than` (with `now`,
        at once, where that is safe); with `expire`, also drop history older than that."""
        from .ops.gc import gc

        return gc(self, older_than, expire=expire, now=now, dry_run=dry_run)

    def repair(self, *, branch: str = DEFAULT_BRANCH, message: str | None = None) -> CommitResult:
        """Rewrite masks that disagree with their arrays' missing values (null columns written by
        vczrepo before 0.2 left call_genotype_mask False), as one commit."""
        from .check import repair_masks

        self._require_branch(branch)
        return self._commit(branch, "repair", message or "repair masks", lambda root: repair_masks(self.pipe, root))

    def add_checksums(self, *, branch: str = DEFAULT_BRANCH, message: str | None = None) -> CommitResult:
        """Give every array of a repository made before checksums the crc32c codec (each chunk
        gets its checksum appended, as bytes), as one commit (none if every array has it); then
        record the digest of every snapshot and manifest any ref reaches that has none."""
        from . import digests
        from .check import add_checksums, lacking_checksums

        self._require_branch(branch)
        if lacking_checksums(self.group(branch)):
            result = self._commit(branch, "add-checksums", message or "add chunk checksums",
                                  lambda root: add_checksums(self.pipe, root))
        else:
            result = CommitResult(self.resolve(branch), branch, {"op": "add-checksums"})
        heads = {*self.branches().values(), *self.tags().values()}
        recorded = digests.record_reachable(self.icechunk, self.location, sorted(heads))
        return CommitResult(result.snapshot_id, branch, {**result.metadata, "digests_recorded": recorded})

    def audit(self, samples: str | Sequence[str]) -> list[Finding]:
        """Every place in storage (object, and layer inside it) where one of the ids (one, or
        several) still appears."""
        from .audit import audit

        return audit(self.location, _ids(samples))

    def finish_pending(self) -> dict | None:
        """Finish a multi-step operation a dead writer left (any write does this first anyway)."""
        with self.tx.locked(self):
            pass
        return self.pending()


def _precheck(source: str | os.PathLike | zarr.Group, check: Callable[[VcfHeader], None]) -> None:
    """Run an operation's header checks on a VCF/BCF batch before it is converted (vczrepo.precheck)."""
    header = precheck.header_of(source)
    if header is not None:
        check(header)


def _open_batch(source: str | os.PathLike | zarr.Group, location: storage.Location, settings: Settings,
                variants_chunk_size: int | None, samples_chunk_size: int | None,
                like: zarr.Group | None = None) -> contextlib.AbstractContextManager[Source]:
    """open_source for a batch to commit: a VCF/BCF is converted with the chunking given (and the
    types of `like`, the repository, where its values fit), the handle's progress bars and,
    with several workers, as many conversion processes."""
    return open_source(source, variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
                       like=like, storage_options=location.options, show_progress=settings.show_progress,
                       workers=settings.workers if settings.workers > 1 else 0)


def _ids(samples: str | Sequence[str]) -> list[str]:
    """Sample ids as a list: a single str is one id (not its characters)."""
    return [samples] if isinstance(samples, str) else list(samples)


def _dropped(root: zarr.Group, drop: bool) -> dict:
    """Drop the stale INFO fields if asked; the journal records which."""
    if not drop:
        return {}
    from .summaries import drop_stale

    return {"info_dropped": drop_stale(root)}


def _require_dask() -> None:
    """A distributed operation needs the `distributed` extra: say so before any work."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise UsageError("--workers and --scheduler need dask.distributed: install vczrepo[distributed]") from e


def open_group(url: str | os.PathLike, ref: str = DEFAULT_BRANCH, storage_options: dict | None = None) -> zarr.Group:
    """Read-only zarr group of the VCZ at a branch, tag or snapshot (for vcztools.VczReader)."""
    return Repository.open(url, storage_options).group(ref)


def open_dataset(url: str | os.PathLike, ref: str = DEFAULT_BRANCH, storage_options: dict | None = None, *,
                 keep_null_samples: bool = False) -> xarray.Dataset:
    """xarray Dataset of the VCZ at a ref (needs the optional `xarray` extra), as sgkit reads VCZ;
    null columns (removed samples, padding) are left out unless `keep_null_samples`."""
    return Repository.open(url, storage_options).open_dataset(ref, keep_null_samples=keep_null_samples)
