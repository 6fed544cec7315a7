"""Reading a ref: vcztools view/query on a read-only group, export to a plain VCZ, xarray."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from . import schema
from .chunks import Pipeline
from .errors import OutputExistsError, ReadError

if TYPE_CHECKING:
    from .repository import Repository

# Options of vcztools' view/query that vczrepo does not pass on: the store is the repository.
STORE_OPTIONS = ("path", "backend_storage", "zarr_backend_storage", "storage_options")


def export_group(src: zarr.Group, out: str | os.PathLike, *, keep: np.ndarray | None = None,
                 pipe: Pipeline | None = None) -> None:
    """Write `src` as a standalone zarr format 3 VCZ at `out`, atomically (all or nothing).

    `keep`: indexes of the sample columns to export (default all).
    """
    pipe = pipe or Pipeline()
    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"output already exists: {out}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    try:
        dst = zarr.open_group(str(tmp / "vcz"), mode="w-", zarr_format=3)
        dst.attrs.update(dict(src.attrs))
        for name, arr in schema.arrays(src).items():
            axis = schema.sample_axis(arr)
            if keep is None or axis is None:
                pipe.copy_array(arr, schema.create_like(dst, name, arr))
                continue
            shape = tuple(len(keep) if i == axis else n for i, n in enumerate(arr.shape))
            pipe.copy_samples(arr, schema.create_like(dst, name, arr, shape), 0, select=keep)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp / "vcz", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkout(repo: Repository, at: str, out: str | os.PathLike, *, drop_removed: bool = False) -> str:
    """Export the VCZ at `at` to `out`; returns the snapshot id exported.

    By default removed samples stay as null columns, so the export equals the repository
    array for array and sample indexes match the history; vcztools hides them anyway.
    """
    sid = repo.resolve(at)
    src = repo.group(sid)
    keep = np.flatnonzero(schema.sample_ids(src) != schema.NULL_SAMPLE) if drop_removed else None
    export_group(src, out, keep=keep, pipe=repo.pipe)
    return sid


def vcztools_command(name: str) -> Any:
    """vcztools' own click command (view or query)."""
    import vcztools.cli

    return getattr(vcztools.cli, name)


def vcztools_options(command: Any) -> list:
    """vcztools' own click parameters for `command`, minus those that locate a store."""
    return [p for p in command.params if p.name not in STORE_OPTIONS]


def run_vcztools(name: str, group: zarr.Group, **options: Any) -> None:
    """Run a vcztools command (view, query) on a zarr group with vcztools' own option handling.

    Options not given take vcztools' defaults, so output is exactly what vcztools prints
    for the same VCZ as a plain store.
    """
    import click

    command = vcztools_command(name)
    with click.Context(command, info_name=command.name) as ctx:
        try:
            ctx.invoke(command, path=group, **options)
        except click.ClickException as e:
            raise ReadError(e.format_message()) from e


def view_compressed(group: zarr.Group, output: str, **options: Any) -> None:
    """vcztools view into `output` as BGZF: plain VCF to a temporary file, then compressed
    block by block; the output appears only when complete."""
    from .bgzf import compress_file

    out = Path(output)
    with tempfile.TemporaryDirectory(prefix="vczrepo-view-", dir=out.parent if out.parent.exists() else None) as tmp:
        plain, packed = Path(tmp) / "out.vcf", Path(tmp) / "out.vcf.gz"
        with open(plain, "w") as text:
            run_vcztools("view", group, **{**options, "output": text})
        with open(plain, "rb") as src, open(packed, "wb") as dst:
            compress_file(src, dst)
        os.replace(packed, out)


def dataset(repo: Repository, at: str, keep_null_samples: bool = False) -> Any:
    """xarray Dataset of the VCZ at a ref (needs the optional `xarray` extra), as sgkit reads VCZ.

    Null sample columns (removed samples and padding, id "") are left out, so statistics see
    the live samples only; `keep_null_samples=True` keeps every stored column (indexes then
    match the repository's sample indexes)."""
    try:
        import xarray as xr
    except ImportError as e:
        raise ReadError("open_dataset needs xarray: install vczrepo[xarray]") from e
    root = repo.group(at, verify=False)
    try:
        ds = xr.open_zarr(root.store, consolidated=False, zarr_format=3)
    except Exception:
        repo.group(at)  # damaged array metadata: one IntegrityError naming the array
        raise
    if keep_null_samples:
        return ds
    from .summaries import drop_null_samples

    return drop_null_samples(ds)
