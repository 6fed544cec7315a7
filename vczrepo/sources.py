"""Opening a batch: a VCZ (zarr format 2 or 3) or a VCF/BCF converted with bio2zarr."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import zarr

from .errors import SourceError

if TYPE_CHECKING:
    from zarr.storage import ObjectStore

VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
OBJECT_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss")
REQUIRED_ARRAYS = ("sample_id", "contig_id", "variant_contig", "variant_position", "variant_allele")


@dataclass(frozen=True)
class Source:
    """An opened batch and the provenance recorded in commit metadata."""

    group: zarr.Group
    path: str
    kind: str  # "vcz" or "vcf"
    size: int
    sha256: str
    vcz_path: str | None = None  # the VCZ directory actually read (a temporary one for VCF input)
    options: dict = field(default_factory=dict)  # storage options to reopen vcz_path (object storage)

    def provenance(self) -> dict:
        return {"path": self.path, "kind": self.kind, "size": self.size, "sha256": self.sha256}


def is_vcf(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(VCF_SUFFIXES)


def _file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return path.stat().st_size, h.hexdigest()


def _tree_digest(root: Path) -> tuple[int, str]:
    """Size of a VCZ directory and a fingerprint of its layout and metadata (not every chunk)."""
    files = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            files.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    h = hashlib.sha256()
    total = 0
    for rel, path in sorted(files):
        size = os.stat(path).st_size
        total += size
        h.update(f"{rel}\0{size}\n".encode())
        if os.path.basename(path) in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
            with open(path, "rb") as f:
                h.update(f.read())
    return total, h.hexdigest()


def is_url(path) -> bool:
    return isinstance(path, str) and path.split("://")[0].lower() in OBJECT_SCHEMES and "://" in path


def _object_store(url: str, options: dict[str, str]) -> zarr.storage.ObjectStore:
    """A read-only zarr store on object storage (obstore), from vczrepo's storage options:
    the same names, checks and defaults per kind (s3, gs, az) as for repositories."""
    from .storage import object_store, parse_location

    return zarr.storage.ObjectStore(object_store(parse_location(url, options)), read_only=True)


def open_vcz(path: str | os.PathLike, storage_options: dict[str, str] | None = None) -> zarr.Group:
    """Open a VCZ (local path or object-storage URL) read-only, with a SourceError naming what is wrong."""
    if is_url(path):
        store = _object_store(str(path), storage_options or {})  # bad options: ValueError, exit 2
        try:
            group = zarr.open_group(store, mode="r")
        except Exception as e:
            raise SourceError(f"not a VCZ store: {path} ({type(e).__name__})") from e
        return _checked(group, path)
    p = Path(path)
    if not p.exists():
        raise SourceError(f"source not found: {path}")
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception as e:  # zarr raises several types for non-zarr directories
        raise SourceError(f"not a VCZ store: {path} ({type(e).__name__}: {e})") from e
    return _checked(group, path)


def _checked(group: zarr.Group, path) -> zarr.Group:
    from .validate import check_chunks

    check_chunks(group, path)  # an unfinished conversion (arrays may be missing), chunks a VCZ cannot omit
    missing = [a for a in REQUIRED_ARRAYS if a not in group]
    if missing:
        raise SourceError(f"not a VCZ store: {path} lacks {', '.join(missing)}")
    return group


# Dimensions whose size a conversion may take from the repository: the trailing axes of fields
# (a larger one pads the batch's rows with the fill value, as one conversion of more data would).
FIXED_DIMENSIONS = ("variants", "samples", "filters", "contigs")


def _sizes(like: zarr.Group) -> dict[str, int]:
    """The largest size of each dimension among the repository's arrays."""
    from . import schema

    sizes: dict[str, int] = {}
    for array in schema.arrays(like).values():
        for dim, n in zip(schema.dims(array), array.shape, strict=True):
            sizes[dim] = max(sizes.get(dim, 0), int(n))
    return sizes


def fit_schema(b2z_schema, like: zarr.Group) -> None:
    """Make a bio2zarr schema of a batch encode into the repository's types where the batch's
    values fit them: an integer field bio2zarr would store narrower than the repository's array
    (it picks the narrowest type for this batch's values) gets the repository's dtype, and a
    trailing dimension shorter than the repository's gets its size (rows are padded). Where the
    batch needs more (a wider type, a longer axis), its own choice stands: the append widens."""
    import numpy as np
    from bio2zarr.vcz import VcfZarrDimension

    from . import schema

    arrays = schema.arrays(like)
    for spec in b2z_schema.fields:
        ours = arrays.get(spec.name)
        if ours is None:
            continue
        theirs, dtype = np.dtype(spec.dtype), np.dtype(ours.dtype)
        if theirs.kind == dtype.kind == "i" and theirs.itemsize <= dtype.itemsize:
            spec.dtype = dtype.str
    sizes = _sizes(like)
    for dim, spec in b2z_schema.dimensions.items():
        if dim not in FIXED_DIMENSIONS and sizes.get(dim, 0) > spec.size:
            b2z_schema.dimensions[dim] = VcfZarrDimension.unchunked(sizes[dim])


def convert_vcf(path: Path, out: Path, variants_chunk_size: int | None, samples_chunk_size: int | None,
                show_progress: bool = False, workers: int = 0, like: zarr.Group | None = None) -> None:
    """Convert a VCF/BCF with bio2zarr (its warnings, e.g. on string FORMAT fields, go to the
    `bio2zarr` logger and Python warnings: shown with -v only). With `like` (the repository it
    goes to), in its types and trailing widths where the values fit (`fit_schema`): vcf2zarr's
    explode, schema, edit, encode."""
    import logging
    import warnings

    from bio2zarr import vcf as b2z_vcf

    quiet = not logging.getLogger("vczrepo").isEnabledFor(logging.INFO)
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="vczrepo-icf-") as tmp:
            if quiet:
                warnings.simplefilter("ignore")
            icf = Path(tmp) / "icf"
            b2z_vcf.explode(icf, [str(path)], worker_processes=workers, show_progress=show_progress)
            b2z_schema = b2z_vcf.IntermediateColumnarFormat(icf).generate_schema(
                variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size)
            if like is not None:
                fit_schema(b2z_schema, like)
            schema_path = Path(tmp) / "schema.json"
            schema_path.write_text(b2z_schema.asjson())
            b2z_vcf.encode(icf, str(out), schema_path=str(schema_path), zarr_format=3, show_progress=show_progress,
                           worker_processes=workers)
    except Exception as e:
        hint = " (index it: bcftools index FILE, or tabix -p vcf FILE)" if "indexed" in str(e) else ""
        raise SourceError(f"cannot convert VCF {path}: {type(e).__name__}: {e}{hint}") from e


@contextlib.contextmanager
def open_source(
    path: str | os.PathLike | zarr.Group,
    *,
    variants_chunk_size: int | None = None,
    samples_chunk_size: int | None = None,
    storage_options: dict[str, str] | None = None,
    show_progress: bool = False,
    workers: int = 0,
    like: zarr.Group | None = None,
) -> Iterator[Source]:
    """Open a batch for reading; a VCF/BCF is converted into a temporary VCZ first (with
    the chunk sizes given, a progress bar if asked, `workers` conversion processes, and the
    types of `like`, the repository it goes to, where its values fit them).

    An already-open zarr group (e.g. built in memory) is used as it is.
    """
    if isinstance(path, zarr.Group):
        yield Source(path, f"<zarr group {path.store}>", "vcz", 0, "")
        return
    if is_url(path):
        group = open_vcz(path, storage_options)
        yield Source(group, str(path), "vcz", *_object_digest(group), str(path), dict(storage_options or {}))
        return
    p = Path(path)
    if not p.exists():
        raise SourceError(f"source not found: {path}")
    if p.is_file() and is_vcf(p):
        size, digest = _file_digest(p)
        with tempfile.TemporaryDirectory(prefix="vczrepo-") as tmp:
            out = Path(tmp) / "batch.vcz"
            convert_vcf(p, out, variants_chunk_size, samples_chunk_size, show_progress, workers, like)
            yield Source(open_vcz(out), str(p.absolute()), "vcf", size, digest, str(out))
        return
    if not p.is_dir():
        raise SourceError(f"not a VCZ directory or VCF/BCF file: {path}")
    group = open_vcz(p)
    size, digest = _tree_digest(p)
    yield Source(group, str(p.absolute()), "vcz", size, digest, str(p.absolute()))


def _object_digest(group: zarr.Group) -> tuple[int, str]:
    """Size and fingerprint (keys, sizes, metadata documents) of a VCZ on object storage."""
    from obstore import list as list_objects

    store = cast("ObjectStore", group.store).store  # opened by open_vcz on an obstore store
    h = hashlib.sha256()
    total = 0
    metas = sorted((m for batch in list_objects(store) for m in batch), key=lambda m: m["path"])
    for meta in metas:
        total += meta["size"]
        h.update(f"{meta['path']}\0{meta['size']}\n".encode())
    return total, h.hexdigest()
