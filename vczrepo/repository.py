"""Repository: a VCZ store kept as an icechunk repository, with refs and history.

This is the Python API behind every command: the CLI only parses arguments, calls these
methods and formats what they return.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import icechunk
import zarr

from . import schema, storage, transaction
from .chunkfiles import session_store
from .errors import RefError, RepositoryError, SourceError
from .ops.append import append_batch, append_normalised
from .ops.init import import_batch
from .ops.remove import remove_samples
from .sources import open_source, union_source

DEFAULT_BRANCH = "main"
SNAPSHOT_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{20}$")  # icechunk ids: 20 Crockford base32 chars
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-/]*$")


@dataclass(frozen=True)
class Commit:
    """One snapshot in a branch's history, with vczrepo's journal entry."""

    id: str
    parent: str | None
    written_at: datetime
    message: str
    metadata: dict
    branches: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def op(self) -> str:
        return self.metadata.get("op", "root" if self.parent is None else "external")

    def to_json(self) -> dict:
        return {
            "id": self.id, "parent": self.parent, "written_at": self.written_at.isoformat(),
            "message": self.message, "op": self.op, "branches": self.branches, "tags": self.tags,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class CommitResult:
    """What a mutation returns: the new snapshot and its journal entry."""

    snapshot_id: str
    branch: str
    metadata: dict


def validate_name(name: str, kind: str) -> None:
    """Branch and tag names: git-like, and never mistakable for a snapshot id."""
    if (
        not NAME.match(name) or ".." in name or name.endswith(("/", ".", ".lock"))
        or "//" in name or SNAPSHOT_ID.match(name)
    ):
        raise RefError(f"invalid {kind} name: {name!r}")


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
    """A vczrepo repository at a path or URL."""

    def __init__(self, location: storage.Location, repo: icechunk.Repository):
        self.location = location
        self.icechunk = repo

    # ----- opening -----
    @classmethod
    def open(cls, url: str | os.PathLike, storage_options: dict | None = None) -> Repository:
        loc = storage.parse_location(url, storage_options)
        if loc.is_local and not Path(loc.path).is_dir():
            raise RepositoryError(f"not a vczrepo repository (no such directory): {loc.url}")
        st = storage.make_storage(loc)
        try:
            exists = icechunk.Repository.exists(st)
        except icechunk.IcechunkError as e:
            raise RepositoryError(f"cannot open repository {loc.url}: {storage.short_message(e)}") from e
        if not exists:
            raise RepositoryError(f"not a vczrepo repository: {loc.url}")
        return cls(loc, icechunk.Repository.open(st))

    @classmethod
    def init(
        cls,
        url: str | os.PathLike,
        source: str | os.PathLike | zarr.Group | None = None,
        *,
        variants_from: Sequence[str | os.PathLike] = (),
        message: str | None = None,
        storage_options: dict | None = None,
        variants_chunk_size: int | None = None,
        samples_chunk_size: int | None = None,
    ) -> tuple[Repository, CommitResult]:
        """Create a repository whose first commit holds the samples and variants of `source`.

        With `variants_from` instead, the first commit holds no samples and the sorted union
        of those VCZs' variants, so batches from different panels can share the store
        (append them with `normalise=True`).
        """
        if (source is None) == (not variants_from):
            raise SourceError("give either a source batch or --variants-from VCZs, not both or neither")
        loc = storage.parse_location(url, storage_options)
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
                        src = stack.enter_context(open_source(
                            source, variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
                            storage_options=loc.options))
                    wrote = True
                    repo = cls(loc, icechunk.Repository.create(st, storage.repository_config()))
                    default = (f"init: union of the variants of {len(variants_from)} VCZs" if variants_from
                               else f"init from {Path(src.path).name}")
                    result = repo._commit(
                        DEFAULT_BRANCH, "init", message or default, lambda root: import_batch(root, src),
                        new_root=True,
                    )
            except BaseException:
                if loc.is_local:
                    _remove_local_init(Path(loc.path), wrote, created_dir)
                raise
        return repo, result

    # ----- refs -----
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

    def delete_branch(self, name: str) -> str:
        """Delete a branch (never main); its commits stay findable with `log --all`."""
        with storage.write_lock(self.location):
            if name == DEFAULT_BRANCH:
                raise RefError(f"refusing to delete the default branch {name!r}")
            if name not in self.icechunk.list_branches():
                raise RefError(f"no such branch: {name}")
            sid = self.icechunk.lookup_branch(name)
            self.icechunk.delete_branch(name)
        return sid

    def branches(self) -> dict[str, str]:
        return {b: self.icechunk.lookup_branch(b) for b in sorted(self.icechunk.list_branches())}

    def tags(self) -> dict[str, str]:
        return {t: self.icechunk.lookup_tag(t) for t in sorted(self.icechunk.list_tags())}

    def resolve(self, ref: str) -> str:
        """Snapshot id of a branch, tag or snapshot id."""
        branches = self.icechunk.list_branches()
        if ref in branches:
            return self.icechunk.lookup_branch(ref)
        tags = self.icechunk.list_tags()
        if ref in tags:
            return self.icechunk.lookup_tag(ref)
        if SNAPSHOT_ID.match(ref):
            try:
                return self.icechunk.lookup_snapshot(ref).id
            except icechunk.IcechunkError:
                pass
        renamed = self.renamed_tags()
        if ref in renamed:
            return self.resolve(renamed[ref])
        names = sorted(branches | tags)
        near = difflib.get_close_matches(ref, names, n=3, cutoff=0.3) or names[:5]
        raise RefError(f"unknown ref {ref!r}; nearest: {', '.join(near) or '(none)'}")

    def renamed_tags(self) -> dict[str, str]:
        """Tags replaced by `purge` (icechunk never reuses a deleted tag's name): old → new."""
        return dict(self.icechunk.get_metadata().get("vczrepo_renamed_tags", {}))

    def _check_new_name(self, name: str, kind: str) -> None:
        validate_name(name, kind)
        if name in self.icechunk.list_branches():
            raise RefError(f"a branch named {name!r} already exists")
        if name in self.icechunk.list_tags():
            raise RefError(f"a tag named {name!r} already exists")

    def create_tag(self, name: str, ref: str = DEFAULT_BRANCH) -> str:
        """Tag a ref; tags never move (and icechunk never reuses a deleted tag's name)."""
        with storage.write_lock(self.location):
            self._check_new_name(name, "tag")
            sid = self.resolve(ref)
            try:
                self.icechunk.create_tag(name, sid)
            except icechunk.IcechunkError as e:
                raise RefError(f"cannot create tag {name!r}: {e.message}") from e
        return sid

    def create_branch(self, name: str, from_ref: str = DEFAULT_BRANCH) -> str:
        with storage.write_lock(self.location):
            self._check_new_name(name, "branch")
            sid = self.resolve(from_ref)
            self.icechunk.create_branch(name, sid)
        return sid

    # ----- reading -----
    def group(self, ref: str = DEFAULT_BRANCH) -> zarr.Group:
        """Read-only root group of the VCZ at a ref."""
        sid = self.resolve(ref)
        try:
            session = self.icechunk.readonly_session(snapshot_id=sid)
            return zarr.open_group(session_store(session, self.location), mode="r")
        except zarr.errors.GroupNotFoundError as e:
            raise RefError(f"snapshot {sid} holds no VCZ (the repository's empty root commit)") from e
        except icechunk.IcechunkError as e:  # integrity: a missing or corrupt snapshot is damage (exit 8)
            from .chunkfiles import damaged_object
            from .errors import IntegrityError

            raise IntegrityError(f"snapshot {sid} unreadable: {damaged_object(e)}") from e

    def samples(self, ref: str = DEFAULT_BRANCH) -> list[str]:
        return schema.live_samples(self.group(ref))

    def samples_added(self, ref: str) -> list[str]:
        """The sample ids an init or append commit added, read from its own snapshot (the
        journal keeps their columns, not their names); purged ones read as null."""
        sid = self.resolve(ref)
        start, stop = self.log(sid, limit=1)[0].metadata.get("sample_range", (0, 0))
        return schema.sample_ids(self.group(sid))[start:stop].tolist() if stop > start else []

    def log(self, ref: str = DEFAULT_BRANCH, limit: int | None = None) -> list[Commit]:
        """History of a ref, newest first, with the branches and tags pointing at each commit."""
        sid = self.resolve(ref)
        pointers: dict[str, tuple[list[str], list[str]]] = {}
        for b, s in self.branches().items():
            pointers.setdefault(s, ([], []))[0].append(b)
        for t, s in self.tags().items():
            pointers.setdefault(s, ([], []))[1].append(t)
        out = []
        for snap in self.icechunk.ancestry(snapshot_id=sid):
            if limit is not None and len(out) >= limit:
                break
            branches, tags = pointers.get(snap.id, ([], []))
            out.append(Commit(snap.id, snap.parent_id, snap.written_at, snap.message,
                              dict(snap.metadata), branches, tags))
        return out

    def info(self, ref: str = DEFAULT_BRANCH) -> dict:
        """Summary of the VCZ at a ref: samples, variants, contigs, fields, chunking, head."""
        sid = self.resolve(ref)
        root = self.group(sid)
        ids = schema.sample_ids(root)
        padding = sum(c.metadata.get("n_padding", 0) for c in self.log(sid))  # null columns from padding
        fields = {
            name: {"dims": list(schema.dims(a)), "dtype": str(a.dtype), "shape": list(a.shape),
                   "chunks": list(a.chunks)}
            for name, a in schema.arrays(root).items()
        }
        return {
            "ref": ref,
            "snapshot": sid,
            "n_samples": int((ids != schema.NULL_SAMPLE).sum()),
            "n_removed": int((ids == schema.NULL_SAMPLE).sum()) - padding,
            "n_padding": padding,
            "n_variants": int(root["variant_position"].shape[0]),
            "contigs": [str(c) for c in root["contig_id"][:]],
            "variants_chunk_size": int(root["variant_position"].chunks[0]),
            "samples_chunk_size": schema.samples_chunk_size(root),
            "branches": [b for b, s in self.branches().items() if s == sid],
            "tags": [t for t, s in self.tags().items() if s == sid],
            "fields": fields,
        }

    # ----- mutations -----
    def _commit(self, branch: str, op: str, message: str, apply, new_root: bool = False) -> CommitResult:
        sid, metadata = transaction.run(
            self.icechunk, self.location, branch, op, message, apply, new_root=new_root
        )
        return CommitResult(sid, branch, metadata)

    def append(
        self,
        source: str | os.PathLike,
        *,
        branch: str = DEFAULT_BRANCH,
        message: str | None = None,
        variants_chunk_size: int | None = None,
        samples_chunk_size: int | None = None,
        fill_missing_fields: bool = False,
        align: bool | None = None,
        normalise: bool = False,
        allow_new_alleles: bool = False,
        workers: int = 1,
        scheduler: str | None = None,
    ) -> CommitResult:
        """Add the samples of a VCZ (or VCF/BCF) batch as one commit on `branch`.

        `fill_missing_fields` accepts call fields present on one side only (missing values fill
        the gaps) and ignores per-variant fields the repository lacks. `normalise` maps a batch
        with a different variant set onto the repository's variants first (see ops.normalise).
        `align` pads the repository with null columns to a sample-chunk boundary first, so a
        batch with the repository's chunking is copied as encoded bytes (fast) rather than
        recomposed; vcztools never shows null columns. The default (None) pads only when that
        makes the copy byte-for-byte and adds fewer null columns than the batch has samples;
        False keeps the samples contiguous, as one bio2zarr conversion would.

        With `workers` > 1 (or a dask `scheduler` address) the chunk copy is spread over
        dask.distributed workers; it still lands as one commit.
        """
        self._require_branch(branch)
        options = {"fill_missing_fields": fill_missing_fields, "align": align, "workers": workers,
                   "scheduler": scheduler}
        with open_source(
            source, variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
            storage_options=self.location.options,
        ) as src:
            return self._commit(
                branch, "append", message or f"append {Path(src.path).name}",
                lambda root: (append_normalised(root, src, allow_new_alleles=allow_new_alleles, **options)
                              if normalise else append_batch(root, src, **options)),
            )

    def remove(self, samples: Sequence[str], *, branch: str = DEFAULT_BRANCH, message: str | None = None,
               workers: int = 1, scheduler: str | None = None) -> CommitResult:
        """Withdraw samples as one commit on `branch` (optionally spread over dask workers)."""
        self._require_branch(branch)
        names = list(samples)
        return self._commit(
            branch, "remove", message or f"remove {', '.join(names[:5])}{' …' if len(names) > 5 else ''}",
            lambda root: remove_samples(root, names, lambda n: self._was_removed(branch, n),
                                        workers=workers, scheduler=scheduler),
        )

    def _require_branch(self, branch: str) -> None:
        if branch not in self.icechunk.list_branches():
            raise RefError(f"no such branch: {branch}")

    def _was_removed(self, branch: str, name: str) -> bool:
        return any(name in c.metadata.get("samples_removed", ()) for c in self.log(branch))
