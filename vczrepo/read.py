"""Reading a ref: read-only groups for vcztools, and export to a plain VCZ."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import zarr

from . import chunks, schema
from .errors import OutputExistsError
from .repository import DEFAULT_BRANCH, Repository


def open_group(url: str | os.PathLike, ref: str = DEFAULT_BRANCH, storage_options: dict | None = None) -> zarr.Group:
    """Read-only zarr group of the VCZ at a branch, tag or snapshot (for vcztools.VczReader)."""
    return Repository.open(url, storage_options).group(ref)


def export_group(src: zarr.Group, out: str | os.PathLike, *, drop_removed: bool = False) -> None:
    """Write `src` as a standalone zarr format 3 VCZ at `out`, atomically (all or nothing)."""
    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"output already exists: {out}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    try:
        dst = zarr.open_group(str(tmp / "vcz"), mode="w-", zarr_format=3)
        dst.attrs.update(dict(src.attrs))
        keep = None
        if drop_removed:
            keep = np.flatnonzero(schema.sample_ids(src) != schema.NULL_SAMPLE)
        for name, arr in schema.arrays(src).items():
            axis = schema.sample_axis(arr)
            if keep is None or axis is None:
                chunks.copy_array(arr, schema.create_like(dst, name, arr))
                continue
            shape = tuple(len(keep) if i == axis else n for i, n in enumerate(arr.shape))
            chunks.copy_samples(arr, schema.create_like(dst, name, arr, shape), 0, select=keep)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp / "vcz", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkout(repo: Repository, ref: str, out: str | os.PathLike, *, drop_removed: bool = False) -> str:
    """Export the VCZ at `ref` to `out`; returns the snapshot id exported.

    By default removed samples stay as null columns, so the export equals the repository
    array for array and sample indexes match the history; vcztools hides them anyway.
    """
    sid = repo.resolve(ref)
    export_group(repo.group(sid), out, drop_removed=drop_removed)
    return sid
