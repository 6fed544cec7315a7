"""Reading a ref: vcztools view/query on a read-only group (VCF or BGZF out), export to a plain VCZ, xarray."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from . import schema
from .bgzf import DEFAULT_LEVEL, text_writer
from .chunks import Pipeline
from .errors import OutputExistsError, ReadError, UsageError

if TYPE_CHECKING:
    from .repository import Repository

# Options of vcztools' view/query that vczrepo does not pass on: the store is the repository.
STORE_OPTIONS = ("path", "backend_storage", "zarr_backend_storage", "storage_options")
REGION_OPTIONS = ("regions", "regions_file", "targets", "targets_file")


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
    for the same VCZ as a plain store. Regions and targets on contigs the group lacks select
    no records, with a warning, as in bcftools (vczrepo.regions). A closed output pipe is
    a BrokenPipeError (vcztools itself would exit 1).
    """
    import click

    from .regions import known_contigs_only

    command = vcztools_command(name)
    contigs = [str(c) for c in np.asarray(schema.array(group, "contig_id")[:])]
    with known_contigs_only(contigs, options) as selected:
        if selected is None:  # only contigs the repository lacks: no records, as bcftools
            unselected = {k: v for k, v in options.items() if k not in REGION_OPTIONS}
            if name == "view" and not options.get("no_header"):
                selected = {**unselected, "header_only": True}  # the header, no records
            elif name == "query" and options.get("list_samples"):
                selected = unselected  # -l lists the samples whatever the regions
            else:
                return
        with click.Context(command, info_name=command.name) as ctx, _logging_kept():
            try:
                ctx.invoke(command, path=group, **selected)
            except click.ClickException as e:
                raise ReadError(e.format_message()) from e
            except SystemExit as e:  # vcztools exits (1) only when its output pipe has closed
                raise BrokenPipeError(errno.EPIPE, "the reader of the output went away") from e


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Leave the caller's logging as it was: vcztools' commands reconfigure the root logger
    (`logging.basicConfig(force=True)`, which would close the caller's handlers)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def bgzf_level(output_type: str | None, output: Any) -> int | None:
    """The BGZF level `view` writes at, or None for plain VCF: bcftools' `-O` (v, or z with an
    optional level 0-9), else from the output's name (.gz or .bgz: BGZF)."""
    if output_type is None:
        named = isinstance(output, str | os.PathLike) and os.fspath(output).endswith((".gz", ".bgz"))
        return DEFAULT_LEVEL if named else None
    if output_type[:1] in ("b", "u"):
        raise UsageError(f"-O {output_type}: vczrepo view writes VCF only (-O v plain, -O z BGZF); "
                         "for BCF pipe it into `bcftools view -O b`")
    if output_type == "v":
        return None
    if output_type[:1] == "z" and (output_type[1:] == "" or output_type[1:] in tuple("0123456789")):
        return int(output_type[1:] or DEFAULT_LEVEL)
    raise UsageError(f"-O {output_type}: unknown output type; vczrepo view writes v (plain VCF) "
                     "or z (BGZF VCF; z0-z9 with a compression level)")


class _Stream:
    """A text stream as vcztools view is given it: under a neutral name, because vcztools refuses
    outputs named .gz (it cannot compress) and vczrepo has chosen plain or BGZF already."""

    name = "<vcf>"

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


def view(group: zarr.Group, output_type: str | None = None, **options: Any) -> None:
    """vcztools view of `group` into `output` (a path, "-" for stdout, or a file object), as
    plain VCF or BGZF (`bgzf_level`). A BGZF file appears only when complete."""
    output = options.pop("output", "-")
    level = bgzf_level(output_type, output)

    def into(text: Any) -> None:
        run_vcztools("view", group, output=_Stream(text), **options)

    if not isinstance(output, str | os.PathLike) or os.fspath(output) == "-":
        stream: Any = sys.stdout if output == "-" else output
        if level is None:
            into(stream)
            return
        stream.flush()
        with text_writer(stream.buffer if hasattr(stream, "buffer") else stream, level) as text:
            into(text)
        return
    if level is None:
        with open(output, "w") as text:
            into(text)
        return
    out = Path(output)
    if not out.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(out))
    fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as packed, text_writer(packed, level) as text:
            into(text)
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


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
