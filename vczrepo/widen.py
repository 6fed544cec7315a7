"""Widening: rewrite one repository array in a wider dtype and/or wider trailing axes.

A repository grows for years and every batch is converted on its own, so a batch's field
can need more than the repository's array holds: a depth of 300 in an int8 `call_DP`, a
fourth AD value where the repository has three, a diploid batch in a haploid repository.
`retype` rewrites that array in place in the operation's session, chunk by chunk through
the chunk pipeline (bounded memory, `Settings.concurrency` chunks in flight, dask workers
sharing the chunk rows), so the batch then lands as every other one does, in the same
commit. It keeps the array's dimension names, attributes, chunking along variants and
samples, codecs (blosc's typesize follows the new item size) and crc32c codec; a trailing
axis held in one chunk stays in one chunk. Values are kept exactly; the new trailing
entries hold the VCZ fill value (-2, the float fill NaN, "" — True in a `*_mask` array,
since the calls they pad are the fill -2, never data). It never narrows: a narrower dtype
or a shorter trailing axis is refused.

How: the array's metadata document is rewritten first (icechunk keeps the chunks stored
under its keys, `internals.store_metadata`), then each chunk is read through the old
metadata and written back through the new one under the same key. A trailing axis never
changes the chunk grid along variants and samples, so a new chunk covers exactly its old
chunk's values, and no chunk reads another one's key.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass

import icechunk
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.dtype import parse_dtype
from zarr.core.metadata.v3 import ArrayV3Metadata

from . import chunks, schema
from .errors import IncompatibleBatchError
from .internals import store_metadata, stored_chunk_sizes, with_metadata
from .settings import Settings

INT_TYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


@dataclass(frozen=True)
class Widening:
    """One array widened (or, in a plan, to widen), and what it costs."""

    name: str
    old_dtype: str
    new_dtype: str
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]
    chunks: int  # chunks rewritten
    bytes_read: int  # stored bytes of the repository's chunks rewritten, before
    bytes_written: int | None  # stored bytes of the chunks written (None: planned, not done)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        """For people: `call_AD int8 -> int16, shape [9, 4, 2] -> [9, 4, 3]`."""
        changes = [f"{self.old_dtype} -> {self.new_dtype}"] if self.old_dtype != self.new_dtype else []
        if self.old_shape != self.new_shape:
            changes.append(f"shape {list(self.old_shape)} -> {list(self.new_shape)}")
        return f"{self.name} {', '.join(changes)}"


def first_trailing_axis(array: zarr.Array) -> int:
    """The first axis after samples (call arrays) or after variants (variant arrays); an array
    along neither (region_index) has no trailing axes: only its dtype widens."""
    axis = schema.sample_axis(array)
    if axis is not None:
        return axis + 1
    if schema.dims(array)[:1] == (schema.VARIANTS,):
        return 1
    return array.ndim


def narrowest_int(lo: int, hi: int, at_least: np.dtype) -> np.dtype:
    """The narrowest signed integer dtype, no narrower than `at_least`, that holds [lo, hi]."""
    for dtype in INT_TYPES:
        info = np.iinfo(dtype)
        if dtype.itemsize >= at_least.itemsize and info.min <= lo and hi <= info.max:
            return dtype
    raise IncompatibleBatchError(f"values {lo}..{hi} fit no integer type")


def _target(name: str, array: zarr.Array, dtype, trailing: tuple[int, ...] | None) -> tuple[np.dtype, tuple]:
    """The dtype and shape `array` becomes; a narrowing or a change of kind is refused."""
    old = np.dtype(array.dtype)
    new = old if dtype is None else np.dtype(dtype)
    if new != old:
        if not (old.kind == new.kind == "i" or old.kind == new.kind == "u"):
            raise IncompatibleBatchError(f"cannot retype {name} from {old} to {new}: only integers are widened")
        if new.itemsize < old.itemsize:
            raise IncompatibleBatchError(f"refusing to narrow {name} from {old} to {new}")
    shape = tuple(array.shape)
    if trailing is not None:
        first = first_trailing_axis(array)
        trailing = tuple(int(n) for n in trailing)
        if len(trailing) != array.ndim - first:
            raise IncompatibleBatchError(f"cannot widen {name}: it has {array.ndim - first} trailing axes, "
                                         f"not {len(trailing)}")
        if any(n < o for n, o in zip(trailing, shape[first:], strict=True)):
            raise IncompatibleBatchError(f"refusing to narrow {name} from {shape[first:]} to {trailing}")
        shape = (*shape[:first], *trailing)
    return new, shape


def _chunk_shape(array: zarr.Array, shape: tuple[int, ...], first: int) -> tuple[int, ...]:
    """Variants and samples keep their chunking; a trailing axis held in one chunk stays in one."""
    return tuple(c if i < first or c < old else max(c, new)
                 for i, (c, old, new) in enumerate(zip(array.chunks, array.shape, shape, strict=True)))


def _codec_for(codec, dtype: np.dtype):
    if isinstance(codec, BytesCodec) and dtype.itemsize > 1 and codec.endian is None:
        return BytesCodec(endian="little")
    if isinstance(codec, BloscCodec):
        return BloscCodec(typesize=dtype.itemsize, cname=codec.cname, clevel=codec.clevel, shuffle=codec.shuffle,
                          blocksize=codec.blocksize)
    return codec


def _metadata(array: zarr.Array, dtype: np.dtype, shape: tuple[int, ...], first: int) -> ArrayV3Metadata:
    old = array.metadata
    assert isinstance(old, ArrayV3Metadata)  # repository arrays are zarr format 3 (schema.create_like)
    same = dtype == np.dtype(array.dtype)
    return ArrayV3Metadata(
        shape=shape, data_type=old.data_type if same else parse_dtype(dtype, zarr_format=3),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": _chunk_shape(array, shape, first)}},
        chunk_key_encoding=old.chunk_key_encoding,
        fill_value=old.fill_value if same else np.asarray(old.fill_value).astype(dtype)[()],
        codecs=old.codecs if same else tuple(_codec_for(c, dtype) for c in old.codecs),
        attributes=old.attributes, dimension_names=old.dimension_names,
        storage_transformers=old.storage_transformers, extra_fields=old.extra_fields)


def _regions(shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    return list(itertools.product(*(list(chunks.chunk_ranges(n, c)) for n, c in zip(shape, chunk_shape,
                                                                                    strict=True))))


def _coords(region: tuple[slice, ...], chunk_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(r.start // c for r, c in zip(region, chunk_shape, strict=True))


@dataclass(frozen=True)
class _Work:
    """The chunks a retype rewrites: every chunk when a trailing axis grows (its new entries are
    padding), else the stored ones (a chunk never written reads as the fill value either way)."""

    regions: list[tuple[slice, ...]]
    stored: dict[tuple[int, ...], int]  # stored size of each of the old chunks

    @classmethod
    def of(cls, root: zarr.Group, array: zarr.Array, meta: ArrayV3Metadata) -> _Work:
        stored = stored_chunk_sizes(root.store, array.path)
        chunk_shape = meta.chunks
        regions = _regions(meta.shape, chunk_shape)
        if tuple(meta.shape) == tuple(array.shape):
            regions = [r for r in regions if _coords(r, chunk_shape) in stored]
        return cls(regions, stored)

    def bytes_read(self, chunk_shape: tuple[int, ...]) -> int:
        return sum(self.stored.get(_coords(r, chunk_shape), 0) for r in self.regions)


def plan(root: zarr.Group, name: str, *, dtype=None, trailing: tuple[int, ...] | None = None) -> Widening:
    """What `retype` would rewrite (nothing is written)."""
    array = schema.array(root, name)
    new_dtype, shape = _target(name, array, dtype, trailing)
    meta = _metadata(array, new_dtype, shape, first_trailing_axis(array))
    work = _Work.of(root, array, meta) if (new_dtype, shape) != (np.dtype(array.dtype), array.shape) else None
    return Widening(name, str(np.dtype(array.dtype)), str(new_dtype), tuple(array.shape), shape,
                    len(work.regions) if work else 0, work.bytes_read(meta.chunks) if work else 0, None)


def retype(pipe: chunks.Pipeline, root: zarr.Group, name: str, *, dtype=None,
           trailing: tuple[int, ...] | None = None) -> Widening:
    """Rewrite array `name` of a writable session group in a wider dtype and/or wider trailing
    axes (see the module docstring); returns what was done and what it cost."""
    array = schema.array(root, name)
    old_dtype, old_shape = np.dtype(array.dtype), tuple(array.shape)
    new_dtype, shape = _target(name, array, dtype, trailing)
    if (new_dtype, shape) == (old_dtype, old_shape):
        return Widening(name, str(old_dtype), str(old_dtype), old_shape, old_shape, 0, 0, 0)
    old_meta = array.metadata
    assert isinstance(old_meta, ArrayV3Metadata)  # checked by _metadata
    meta = _metadata(array, new_dtype, shape, first_trailing_axis(array))
    work = _Work.of(root, array, meta)
    pad = schema.pad_value(name, array)
    new = store_metadata(array, meta)
    if pipe.settings.distributed:
        from .distributed import run_forked

        document = json.loads(old_meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes())
        run_forked(root.store, pipe.settings, rewrite_share, (name, document, work.regions, pad))
    else:
        _rewrite(pipe, new, with_metadata(new, old_meta), work.regions, pad, chunks.WHOLE)
    after = stored_chunk_sizes(root.store, array.path)
    written = sum(after.get(_coords(r, meta.chunks), 0) for r in work.regions)
    return Widening(name, str(old_dtype), str(new_dtype), old_shape, shape, len(work.regions),
                    work.bytes_read(meta.chunks), written)


def _rewrite(pipe: chunks.Pipeline, new: zarr.Array, old: zarr.Array, regions: list[tuple[slice, ...]], pad,
             share: chunks.Share) -> None:
    """Write each region (a chunk of `new`) from the values `old` holds there, padded with `pad`."""
    dtype = np.dtype(object) if np.dtype(new.dtype).kind in "OTUS" else np.dtype(new.dtype)
    out = pipe.writer(new).with_config({"write_empty_chunks": True})  # a chunk rewritten stays stored
    vc = new.chunks[0]

    def one(region: tuple[slice, ...]) -> None:
        block = np.full(tuple(r.stop - r.start for r in region), pad, dtype=dtype)
        within = tuple(slice(min(r.start, n), min(r.stop, n)) for r, n in zip(region, old.shape, strict=True))
        if all(w.stop > w.start for w in within):
            block[tuple(slice(0, w.stop - w.start) for w in within)] = chunks.read_region(old, within)
        out[region] = block

    mine = [r for r in regions if chunks.mine(r[0].start // vc, share)]
    pipe.run_bounded(one, mine, "recompose", desc=f"widen {new.path}")


def rewrite_share(fork: icechunk.ForkSession, settings: Settings, name: str, old_document: dict,
                  regions: list[tuple[slice, ...]], pad, share: chunks.Share) -> icechunk.ForkSession:
    """A dask worker's share of a retype's chunks (runs on the worker; the coordinator has
    stored the new metadata already)."""
    new = schema.array(zarr.open_group(fork.store, mode="r+"), name)
    _rewrite(chunks.Pipeline(settings), new, with_metadata(new, ArrayV3Metadata.from_dict(old_document)), regions,
             pad, share)
    return fork



# ----- what a batch needs -----

@dataclass(frozen=True)
class Need:
    """How one repository array must grow to take a batch's field."""

    name: str
    dtype: np.dtype | None  # None: the dtype holds the batch's values
    trailing: tuple[int, ...] | None  # None: the batch's rows fit (or are padded)
    reason: str  # what does not fit, for a refusal

    def refusal(self) -> IncompatibleBatchError:
        return IncompatibleBatchError(f"field {self.name}: {self.reason}; widening is off (--no-widen)")


def value_range(pipe: chunks.Pipeline, array: zarr.Array) -> tuple[int, int]:
    """The smallest and largest value of an integer array, one chunk at a time."""
    found: list[tuple[int, int]] = []

    def one(region: tuple[slice, ...]) -> None:
        values = chunks.read_region(array, region)
        if values.size:
            found.append((int(values.min()), int(values.max())))  # list.append is atomic

    pipe.run_bounded(one, _regions(tuple(array.shape), tuple(array.chunks)), None, desc=f"range {array.path}")
    return (min(lo for lo, _ in found), max(hi for _, hi in found)) if found else (0, 0)


def _dtype_need(pipe: chunks.Pipeline, name: str, dst: zarr.Array, src: zarr.Array) -> tuple[np.dtype | None, str]:
    s, d = np.dtype(src.dtype), np.dtype(dst.dtype)
    if (s.kind in "OTU" and d.kind in "OTU") or np.can_cast(s, d, casting="safe"):
        return None, ""
    if s.kind in "iu" and d.kind == "i":  # a batch converted on its own: its type says little, its values all
        lo, hi = value_range(pipe, src)
        want = narrowest_int(lo, hi, d)
        return (None if want == d else want), f"batch dtype {s} (values {lo}..{hi}) does not fit the repository's {d}"
    raise IncompatibleBatchError(f"field {name}: batch dtype {s} does not fit the repository's {d}")


def need(pipe: chunks.Pipeline, name: str, dst: zarr.Array, src: zarr.Array) -> Need | None:
    """What repository array `dst` needs to take the batch's `src` (same dimensions): a wider
    dtype when the batch's values do not fit it, wider trailing axes when the batch's rows
    are longer (shorter ones are padded). None: nothing."""
    first = first_trailing_axis(dst)
    ours, theirs = tuple(dst.shape[first:]), tuple(src.shape[first:])
    trailing = tuple(max(a, b) for a, b in zip(ours, theirs, strict=True)) if ours != theirs else None
    if trailing == ours:
        trailing = None
    dtype, why = _dtype_need(pipe, name, dst, src)
    if dtype is None and trailing is None:
        return None
    if trailing is not None:
        where = ", ".join(schema.dims(dst)[first:])
        why = "; ".join(p for p in (why, f"the batch has {theirs} on ({where}), the repository {ours}") if p)
    return Need(name, dtype, trailing, why)


def needs(pipe: chunks.Pipeline, fields: dict[str, zarr.Array], batch_fields: dict[str, zarr.Array]) -> list[Need]:
    """The widenings of the repository's `fields` that the batch's fields of the same names
    need; a mask widens with the array it masks (also when the batch has no mask). Refused
    as a whole when `Settings.widen` is off."""
    found = {name: n for name in sorted(set(fields) & set(batch_fields))
             if (n := need(pipe, name, fields[name], batch_fields[name]))}
    for name in sorted(fields):
        target = schema.masked_by(name, fields)
        if target in found and name not in found and found[target].trailing is not None:
            found[name] = Need(name, None, found[target].trailing, found[target].reason)
    return allowed(pipe, list(found.values()))


def allowed(pipe: chunks.Pipeline, wanted: list[Need]) -> list[Need]:
    """The widenings, unless `Settings.widen` is off: then the first is refused."""
    if wanted and not pipe.settings.widen:
        raise wanted[0].refusal()
    return wanted


def view(array: zarr.Array, wanted: Need) -> zarr.Array:
    """The array as `retype` would leave it, in memory only: its metadata, to compare encodings
    (its chunks are not rewritten, so read nothing through it)."""
    dtype, shape = _target(wanted.name, array, wanted.dtype, wanted.trailing)
    return with_metadata(array, _metadata(array, dtype, shape, first_trailing_axis(array)))


def plan_all(root: zarr.Group, wanted: list[Need]) -> list[Widening]:
    return [plan(root, n.name, dtype=n.dtype, trailing=n.trailing) for n in wanted]


def retype_all(pipe: chunks.Pipeline, root: zarr.Group, wanted: list[Need]) -> list[Widening]:
    """Widen each array as needed (one at a time: concurrent resizes of a session's arrays deadlock)."""
    return [retype(pipe, root, n.name, dtype=n.dtype, trailing=n.trailing) for n in wanted]
