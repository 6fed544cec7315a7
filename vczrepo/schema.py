"""VCZ knowledge: which arrays run along samples or variants, missing values, compatibility.

Everything vczrepo knows about the VCF Zarr layout lives here, so operations never
guess at array names or sentinel values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, cast

import numpy as np
import zarr

from .errors import IncompatibleBatchError, IntegrityError, short_message
from .internals import members

SAMPLES = "samples"
VARIANTS = "variants"
NULL_SAMPLE = ""  # vcztools' reserved id of a withdrawn sample: never listed or emitted

# VCZ sentinels (VCF Zarr spec): ints use -1 for missing; floats a NaN with a set payload.
INT_MISSING = -1
FLOAT32_MISSING = np.array(0x7F800001, dtype=np.int32).view(np.float32)  # 0-d: keeps the NaN payload
# ... and pad a row beyond its length (alleles beyond a site's, ploidy beyond a sample's)
INT_FILL = -2
FLOAT32_FILL = np.array(0x7F800002, dtype=np.int32).view(np.float32)
STR_MISSING = "."


def dims(array: zarr.Array) -> tuple[str, ...]:
    """Dimension names of a zarr format 2 or 3 array."""
    meta = array.metadata  # format 2 metadata has no dimension_names
    names = array.attrs.get("_ARRAY_DIMENSIONS") or (meta.dimension_names if meta.zarr_format == 3 else None)
    return tuple(cast("Iterable[str]", names or ()))


def sample_axis(array: zarr.Array) -> int | None:
    d = dims(array)
    return d.index(SAMPLES) if SAMPLES in d else None


def array(group: zarr.Group, name: str) -> zarr.Array:
    """`group[name]`, typed as the array a VCZ holds there (zarr types a member as `Array | Group`)."""
    return cast(zarr.Array, group[name])


def arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Top-level arrays of a VCZ group, by name (sorted for deterministic work order).
    An array whose metadata document cannot be read is damage: an IntegrityError naming it."""
    found: dict[str, zarr.Array] = {}
    for name, node in members(group):
        if isinstance(node, Exception):
            raise IntegrityError(f"array {name}: metadata unreadable ({type(node).__name__}: "
                                 f"{short_message(node)})") from node
        if isinstance(node, zarr.Array):
            found[name] = node
    return found


def samples_axis(array: zarr.Array) -> int:
    """The samples axis of an array that has one (a ValueError for one that has none)."""
    axis = sample_axis(array)
    if axis is None:
        raise ValueError(f"{array.path} has no samples axis")
    return axis


def sample_arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Arrays with a samples dimension (call_*, sample_id and any others)."""
    return {k: a for k, a in arrays(group).items() if sample_axis(a) is not None}


def resize_samples(array: zarr.Array, n: int) -> None:
    """Resize an array along its samples axis to `n` samples (its metadata is not rewritten
    when it already has them)."""
    axis = samples_axis(array)
    if array.shape[axis] != n:
        array.resize(tuple(n if i == axis else size for i, size in enumerate(array.shape)))


def samples_chunk_size(group: zarr.Group) -> int:
    sid = array(group, "sample_id")
    return int(sid.chunks[0])


def missing_value(dtype: np.dtype):
    """The value written over a withdrawn sample's data."""
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return INT_MISSING if dtype.kind == "i" else 0
    if dtype.kind == "f":
        return FLOAT32_MISSING if dtype == np.float32 else np.array(np.nan, dtype=dtype)
    return STR_MISSING


def exact_cast(values, dtype, field: str) -> np.ndarray:
    """`values` as `dtype`, refusing any value the cast would change: an integer that wraps, a
    fraction or NaN cast to an integer, a float that overflows, a NaN that would lose its VCZ
    payload (missing vs fill) in a float of another width. Every write of computed or batch
    values into a repository array goes through here, so nothing is ever stored silently changed.
    Floats of a narrower width keep the nearest value (VCF floats are float32).
    Raises IncompatibleBatchError naming the field and the first value that does not fit."""
    values, dtype = np.asarray(values), np.dtype(dtype)
    if values.dtype == dtype or values.dtype.kind in "OTUS" or dtype.kind in "OTUS":
        return values
    if np.can_cast(values.dtype, dtype, casting="safe") and not (dtype.kind == "f" and values.dtype.kind in "iu"):
        return values.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        out = values.astype(dtype)
        if dtype.kind == "f" and values.dtype.kind == "f":
            bad = np.isnan(values) | (np.isfinite(values) & ~np.isfinite(out))
        else:
            bad = out.astype(values.dtype) != values
            if values.dtype.kind == "f":
                bad |= np.isnan(values)
    if bad.any():
        i = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape) if bad.ndim else ()
        if dtype.kind == "f" and np.isnan(values[i]):
            raise IncompatibleBatchError(f"field {field}: a {values.dtype} NaN cannot be stored as {dtype} "
                                         f"without losing VCZ's missing or fill payload")
        raise IncompatibleBatchError(f"field {field}: value {values[i].item()} does not fit {dtype} "
                                     f"(it would be stored as {out[i].item()})")
    return out


def stored_as(values, array: zarr.Array) -> np.ndarray:
    """`values` exactly in `array`'s dtype, ready to write into it (see exact_cast)."""
    return exact_cast(values, array.dtype, array.path.rsplit("/", 1)[-1])


def stored_floats(values, array: zarr.Array) -> np.ndarray:
    """Computed values (any float or integer type, NaN where there is none: AF at AN = 0) in
    `array`'s float dtype, each NaN written as VCZ's missing value. Casting a float64 NaN to
    float32 would not keep the payload (0x7F800001 becomes 0x7FC00001, which vcztools prints as
    nan where bcftools prints ".")."""
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    out = stored_as(np.where(nan, 0, values), array)
    out[nan] = missing_value(out.dtype)
    return out


def fill_like(dtype: np.dtype):
    """The fill value VCZ pads a row with beyond its length (alleles beyond a site's, ploidy)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return FLOAT32_FILL
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return INT_FILL
    return ""


def pad_value(name: str, array: zarr.Array):
    """What pads an array's row beyond its length (a haploid call in a diploid array, alleles
    beyond a site's): the fill value, and True in a mask (it lies over the fill -2, which
    bio2zarr's masks mark: call_genotype_mask == (call_genotype < 0))."""
    return True if is_mask(name, array) else fill_like(array.dtype)


def widen(array: zarr.Array, width: int, value) -> None:
    """Grow an array's second axis to `width`, writing `value` into the new entries of every
    chunk row (a VCZ holds every chunk, so `check` finds none missing)."""
    old = array.shape[1]
    if width <= old:
        return
    array.resize((array.shape[0], width, *array.shape[2:]))
    step, full = array.chunks[0], array.with_config({"write_empty_chunks": True})
    for start in range(0, array.shape[0], step):
        stop = min(start + step, array.shape[0])
        full[start:stop, old:] = np.full((stop - start, width - old, *array.shape[2:]), value,
                                         dtype=object if np.dtype(array.dtype).kind in "OTU" else array.dtype)


ALLELE_DIMS = ("alleles", "alt_alleles")  # per-allele axes (Number=R, Number=A)


def allele_axes(array: zarr.Array) -> list[int]:
    return [i for i, d in enumerate(dims(array)) if d in ALLELE_DIMS]


def fitted(values: np.ndarray, shape: tuple[int, ...], pad) -> np.ndarray:
    """`values` in an array of `shape`: cut, or padded with `pad`, on each axis."""
    dtype = np.dtype(object) if values.dtype.kind in "OTUS" else values.dtype
    out = np.full(shape, pad, dtype=dtype)
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(values.shape, shape, strict=True))
    out[overlap] = values[overlap]
    return out


MASK_SUFFIX = "_mask"


def masked_by(name: str, group_names) -> str | None:
    """The array a boolean mask array describes (call_genotype for call_genotype_mask), if present:
    the mask is True exactly where that array holds a missing (negative) value."""
    if name.endswith(MASK_SUFFIX) and name[: -len(MASK_SUFFIX)] in group_names:
        return name[: -len(MASK_SUFFIX)]
    return None


def is_mask(name: str, array: zarr.Array) -> bool:
    """A boolean *_mask array (bio2zarr: call_genotype_mask == (call_genotype < 0))."""
    return name.endswith(MASK_SUFFIX) and np.dtype(array.dtype).kind == "b"


def null_value(name: str, array: zarr.Array):
    """What a null (withdrawn or padding) sample column is written with: missing values, and
    True in mask arrays (a null column's genotypes are all missing, so their mask is set)."""
    if name == "sample_id":
        return NULL_SAMPLE
    if is_mask(name, array):
        return True
    return missing_value(array.dtype)


def absent_call(name: str, array: zarr.Array):
    """What a sample holds at a site it has no record of (a site a batch lacks, a field it lacks),
    as bcftools merge writes it and bio2zarr reads it back: a missing genotype at every ploidy
    (-1, masked), and for other fields VCF's single "." — one missing value, the rest of the
    row fill (vcztools prints [-1, -1] as ".,." but [-1, -2] as ".")."""
    missing = null_value(name, array)
    axis = sample_axis(array)
    trailing = tuple(array.shape[axis + 1:]) if axis is not None else ()
    if not trailing or name.startswith("call_genotype") or not np.prod(trailing):
        return missing
    dtype = np.dtype(object) if np.dtype(array.dtype).kind in "OTUS" else np.dtype(array.dtype)
    row = np.full(trailing, fill_like(dtype), dtype=dtype)
    row[(0,) * len(trailing)] = missing
    return row


def fill_reads_as_null(name: str, array: zarr.Array) -> bool:
    """Does the array's fill value already pass as a null column's value (as `check` judges it)?

    Then columns that only ever held the fill value need not be written to become null
    (a mask whose fill is False must be written: null columns are masked)."""
    fill = np.asarray(array.fill_value).reshape(1)
    if name == "sample_id":
        return bool(as_str(fill)[0] == NULL_SAMPLE)
    if is_mask(name, array):
        return bool(fill[0])
    return bool(is_missing_or_fill(fill)[0])


def mask_of(values: np.ndarray) -> np.ndarray:
    """The mask bio2zarr stores for an array's values: True where missing (negative ints,
    NaN floats, "." or "" strings): call_genotype_mask == (call_genotype < 0)."""
    values = np.asarray(values)
    if values.dtype.kind == "i":
        return values < 0
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "ub":
        return np.zeros(values.shape, dtype=bool)
    return np.isin(as_str(values), [STR_MISSING, ""])


def is_null_column_value(name: str, array: zarr.Array, values: np.ndarray) -> np.ndarray:
    """Elementwise: may a null column hold this (missing or fill; True in a mask)?"""
    if is_mask(name, array):
        return np.asarray(values, dtype=bool)
    return is_missing_or_fill(values)


def is_missing_or_fill(values: np.ndarray) -> np.ndarray:
    """Elementwise: does this hold a missing or fill value (as written over withdrawn samples)?"""
    kind = values.dtype.kind
    if kind == "b":
        return ~values
    if kind == "i":
        return values < 0
    if kind == "u":
        return values == 0
    if kind == "f":
        return np.isnan(values)
    return np.isin(as_str(values), [STR_MISSING, ""])


def as_str(values) -> np.ndarray:
    """A fixed-width str array from zarr string data (StringDType, object or bytes)."""
    values = np.asarray(values)
    return np.array(values.tolist(), dtype=str).reshape(values.shape)


def sample_ids(group: zarr.Group) -> np.ndarray:
    return as_str(array(group, "sample_id")[:])


def live_samples(group: zarr.Group) -> list[str]:
    """Sample ids in order, without withdrawn (null) samples."""
    return [s for s in sample_ids(group).tolist() if s != NULL_SAMPLE]


def variant_blocks(group: zarr.Group, size: int | None = None) -> Iterator[slice]:
    """Slices covering the variants axis, one variant chunk (or `size`) at a time."""
    n = int(array(group, "variant_position").shape[0])
    step = size or int(array(group, "variant_position").chunks[0])
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


MISSING_ALLELES = ("", ".")  # bio2zarr pads with "", vcztools also reads "." as no allele


def alleles_present(row) -> list[str]:
    """A variant's alleles without missing/padding entries ("" or ".")."""
    return [a for a in row if a not in MISSING_ALLELES]


def variant_fields(group: zarr.Group) -> set[str]:
    """Per-variant fields (INFO and site columns): variant_* arrays without a samples axis."""
    return {name for name, a in arrays(group).items()
            if name.startswith("variant_") and dims(a)[:1] == (VARIANTS,) and SAMPLES not in dims(a)}


def _v3_compressors(array: zarr.Array):
    """Format 3 compressors equivalent to a format 2 array's compressor."""
    import numcodecs
    from zarr.codecs import BloscCodec

    out = []
    for c in array.compressors:
        if isinstance(c, numcodecs.Blosc):
            shuffles: dict[int, Literal["noshuffle", "shuffle", "bitshuffle"]] = {
                0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}
            shuffle = shuffles[c.shuffle]
            out.append(BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=shuffle, blocksize=c.blocksize))
        else:
            return "auto"
    return out


def create_like(group: zarr.Group, name: str, src: zarr.Array, shape: tuple[int, ...] | None = None,
                chunks: tuple[int, ...] | None = None) -> zarr.Array:
    """Create a zarr format 3 array in `group` with src's dtype, chunks, codecs and attributes,
    its codec chain ending with the crc32c checksum (vczrepo.checksums)."""
    from zarr.codecs import VLenUTF8Codec, ZstdCodec

    from .checksums import with_checksum_codec

    attrs = {k: v for k, v in src.attrs.items() if k != "_ARRAY_DIMENSIONS"}
    shape = src.shape if shape is None else shape
    chunks = src.chunks if chunks is None else chunks
    if np.dtype(src.dtype).kind in "USO":  # fixed-width strings would truncate later, longer ids
        return group.create_array(
            name, shape=shape, dtype=str, chunks=chunks, dimension_names=dims(src),
            attributes=attrs, fill_value="", serializer=VLenUTF8Codec(),
            compressors=with_checksum_codec([ZstdCodec(level=0)]),
        )
    if src.metadata.zarr_format == 3:
        kwargs = {"serializer": src.serializer, "compressors": with_checksum_codec(src.compressors),
                  "filters": src.filters, "fill_value": src.fill_value}
    else:
        compressors = _v3_compressors(src)
        kwargs = {"compressors": with_checksum_codec([ZstdCodec(level=0)] if compressors == "auto" else compressors),
                  "fill_value": src.fill_value}
    return group.create_array(
        name, shape=shape, dtype=src.dtype, chunks=chunks, dimension_names=dims(src),
        attributes=attrs, **kwargs,
    )


def region_rows(contig: np.ndarray, pos: np.ndarray, length: np.ndarray, chunk: int,
                first_chunk: int) -> np.ndarray:
    """vcztools' region index rows (chunk, contig, first position, last position, max end,
    count) for variants starting at variant chunk `first_chunk`."""
    rows = []
    for c0 in range(0, len(pos), chunk):
        sl = slice(c0, c0 + chunk)
        for k in dict.fromkeys(contig[sl].tolist()):
            m = contig[sl] == k
            p, end = pos[sl][m], pos[sl][m] + length[sl][m] - 1
            rows.append([first_chunk + c0 // chunk, k, p.min(), p.max(), end.max(), m.sum()])
    return np.array(rows, dtype=np.int64).reshape(-1, 6)
