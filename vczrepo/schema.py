"""VCZ knowledge: which arrays run along samples or variants, missing values, compatibility.

Everything vczrepo knows about the VCF Zarr layout lives here, so operations never
guess at array names or sentinel values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import zarr

from .errors import IncompatibleBatchError, SampleError

SAMPLES = "samples"
VARIANTS = "variants"
NULL_SAMPLE = ""  # vcztools' reserved id of a withdrawn sample: never listed or emitted

# VCZ sentinels (VCF Zarr spec): ints use -1 for missing; floats a NaN with a set payload.
INT_MISSING = -1
FLOAT32_MISSING = np.array(0x7F800001, dtype=np.int32).view(np.float32)  # 0-d: keeps the NaN payload
STR_MISSING = "."


def dims(array: zarr.Array) -> tuple[str, ...]:
    """Dimension names of a zarr format 2 or 3 array."""
    names = array.attrs.get("_ARRAY_DIMENSIONS") or array.metadata.dimension_names
    return tuple(names or ())


def sample_axis(array: zarr.Array) -> int | None:
    d = dims(array)
    return d.index(SAMPLES) if SAMPLES in d else None


def arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Top-level arrays of a VCZ group, by name (sorted for deterministic work order)."""
    return dict(sorted(group.arrays()))


def sample_arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Arrays with a samples dimension (call_*, sample_id and any others)."""
    return {k: a for k, a in arrays(group).items() if sample_axis(a) is not None}


def resize_samples(array: zarr.Array, n: int) -> None:
    """Resize an array along its samples axis to `n` samples (its metadata is not rewritten
    when it already has them)."""
    axis = sample_axis(array)
    if array.shape[axis] != n:
        array.resize(tuple(n if i == axis else size for i, size in enumerate(array.shape)))


def samples_chunk_size(group: zarr.Group) -> int:
    sid = group["sample_id"]
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


def null_value(name: str, array: zarr.Array):
    """What a null (withdrawn or padding) sample column is written with."""
    return NULL_SAMPLE if name == "sample_id" else missing_value(array.dtype)


def fill_reads_as_null(name: str, array: zarr.Array) -> bool:
    """Does the array's fill value already pass as a null column's value (as `check` judges it)?

    Then columns that only ever held the fill value need not be written to become null."""
    fill = np.asarray(array.fill_value).reshape(1)
    if name == "sample_id":
        return bool(as_str(fill)[0] == NULL_SAMPLE)
    return bool(is_missing_or_fill(fill)[0])


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
    return as_str(group["sample_id"][:])


def live_samples(group: zarr.Group) -> list[str]:
    """Sample ids in order, without withdrawn (null) samples."""
    return [s for s in sample_ids(group).tolist() if s != NULL_SAMPLE]


def variant_blocks(group: zarr.Group, size: int | None = None) -> Iterator[slice]:
    """Slices covering the variants axis, one variant chunk (or `size`) at a time."""
    n = int(group["variant_position"].shape[0])
    step = size or int(group["variant_position"].chunks[0])
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _trim_alleles(rows: np.ndarray) -> list[tuple[str, ...]]:
    return [tuple(a for a in row if a != "") for row in as_str(rows).tolist()]


def check_unique_samples(batch: zarr.Group) -> list[str]:
    """The batch's sample ids, after checking they are unique and non-empty."""
    ids = sample_ids(batch).tolist()
    if NULL_SAMPLE in ids:
        raise SampleError(f"batch sample {ids.index(NULL_SAMPLE)} has an empty id")
    seen: set[str] = set()
    dups = [s for s in ids if s in seen or seen.add(s)]
    if dups:
        raise SampleError(f"duplicate sample id(s) in batch: {', '.join(sorted(set(dups)))}")
    return ids


def check_batch_samples(store: zarr.Group, batch: zarr.Group) -> list[str]:
    """The batch's sample ids, after checking there are some, unique, and new to the store."""
    ids = check_unique_samples(batch)
    if not ids:
        raise SampleError("batch has no samples")
    present = sorted(set(ids) & set(live_samples(store)))
    if present:
        raise SampleError(f"sample(s) already in the repository: {', '.join(present)}")
    return ids


VARIANT_BLOCK = 1 << 16  # variants compared per read: a few MB of alleles at most


def check_same_variants(store: zarr.Group, batch: zarr.Group) -> None:
    """Contigs, variant count, positions and alleles must match exactly."""
    s_contigs = as_str(store["contig_id"][:]).tolist()
    b_contigs = as_str(batch["contig_id"][:]).tolist()
    if s_contigs != b_contigs:
        raise IncompatibleBatchError(f"contigs differ: repository has {s_contigs}, batch has {b_contigs}")
    n_store = store["variant_position"].shape[0]
    n_batch = batch["variant_position"].shape[0]
    if n_store != n_batch:
        raise IncompatibleBatchError(f"variant count differs: repository has {n_store}, batch has {n_batch}")
    s_arrays = {name: store[name] for name in ("variant_contig", "variant_position", "variant_allele")}
    b_arrays = {name: batch[name] for name in s_arrays}
    from .chunks import encoded_equal  # chunks builds on this module

    if all(encoded_equal(s_arrays[name], b_arrays[name]) for name in s_arrays):
        return  # the same bytes under the same codecs: nothing to decode
    chunk = s_arrays["variant_position"].chunks[0]
    for block in variant_blocks(store, max(chunk, VARIANT_BLOCK // chunk * chunk)):
        for name, what in (("variant_contig", "contig"), ("variant_position", "position")):
            diff = np.flatnonzero(np.asarray(s_arrays[name][block]) != np.asarray(b_arrays[name][block]))
            if diff.size:
                i = block.start + int(diff[0])
                raise IncompatibleBatchError(
                    f"variant {i}: {what} differs "
                    f"(repository {_variant_label(store, i)}, batch {_variant_label(batch, i)})"
                )
        s_alleles = as_str(s_arrays["variant_allele"][block])
        b_alleles = as_str(b_arrays["variant_allele"][block])
        width = max(s_alleles.shape[1], b_alleles.shape[1])
        s_padded, b_padded = (np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values="")
                              for a in (s_alleles, b_alleles))
        differ = np.flatnonzero((s_padded != b_padded).any(axis=1))  # trailing "" pad shorter rows
        if differ.size:
            i = int(differ[0])
            a, b = _trim_alleles(s_alleles[i : i + 1])[0], _trim_alleles(b_alleles[i : i + 1])[0]
            raise IncompatibleBatchError(
                f"variant {block.start + i} at {_variant_label(store, block.start + i)}: "
                f"alleles differ (repository {','.join(a)}, batch {','.join(b)})"
            )


def _variant_label(group: zarr.Group, index: int) -> str:
    contigs = as_str(group["contig_id"][:])
    return f"{contigs[int(group['variant_contig'][index])]}:{int(group['variant_position'][index])}"


def variant_fields(group: zarr.Group) -> set[str]:
    """Per-variant fields (INFO and site columns): variant_* arrays without a samples axis."""
    return {name for name, a in arrays(group).items()
            if name.startswith("variant_") and dims(a)[:1] == (VARIANTS,) and SAMPLES not in dims(a)}


def _one_sided(kind: str, store: set[str], batch: set[str]) -> None:
    only_store, only_batch = sorted(store - batch), sorted(batch - store)
    parts = [f"missing from batch: {', '.join(only_store)}"] if only_store else []
    parts += [f"not in repository: {', '.join(only_batch)}"] if only_batch else []
    if parts:
        raise IncompatibleBatchError(
            f"{kind} fields differ ({'; '.join(parts)}); --fill-missing-fields accepts this"
        )


def check_sample_fields(s_fields: dict[str, zarr.Array], b_fields: dict[str, zarr.Array],
                        fill_missing: bool = False) -> None:
    """Sample-dimensioned fields must match in name, trailing shape and (widenable) dtype.

    With `fill_missing`, a field on one side only is accepted (append fills the gaps).
    """
    if "call_genotype" in s_fields and "call_genotype" in b_fields:
        s_ploidy, b_ploidy = s_fields["call_genotype"].shape[2:], b_fields["call_genotype"].shape[2:]
        if s_ploidy != b_ploidy:
            raise IncompatibleBatchError(f"ploidy differs: repository {s_ploidy[0]}, batch {b_ploidy[0]}")
    if not fill_missing:
        _one_sided("call", set(s_fields), set(b_fields))
    for name, s_arr in s_fields.items():
        if name not in b_fields:
            continue
        b_arr = b_fields[name]
        if dims(s_arr) != dims(b_arr):
            raise IncompatibleBatchError(f"field {name}: dimensions differ ({dims(s_arr)} vs {dims(b_arr)})")
        axis = sample_axis(s_arr)
        s_tail, b_tail = s_arr.shape[axis + 1 :], b_arr.shape[axis + 1 :]
        if s_tail != b_tail:
            raise IncompatibleBatchError(
                f"field {name}: trailing dimensions differ (repository {s_tail}, batch {b_tail})"
            )
        s_dt, b_dt = np.dtype(s_arr.dtype), np.dtype(b_arr.dtype)
        if s_dt.kind in "OTU" and b_dt.kind in "OTU":
            continue
        if not np.can_cast(b_dt, s_dt, casting="safe"):
            raise IncompatibleBatchError(
                f"field {name}: batch dtype {b_dt} does not fit the repository's {s_dt}"
            )


def check_appendable(
    store: zarr.Group, batch: zarr.Group, s_fields: dict[str, zarr.Array], b_fields: dict[str, zarr.Array],
    fill_missing: bool = False,
) -> list[str]:
    """Everything an append checks before writing; returns the batch's sample ids."""
    ids = check_batch_samples(store, batch)
    check_same_variants(store, batch)
    check_sample_fields(s_fields, b_fields, fill_missing)
    if not fill_missing:
        _one_sided("variant", variant_fields(store), variant_fields(batch))
    return ids


def _v3_compressors(array: zarr.Array):
    """Format 3 compressors equivalent to a format 2 array's compressor."""
    import numcodecs
    from zarr.codecs import BloscCodec

    out = []
    for c in array.compressors:
        if isinstance(c, numcodecs.Blosc):
            shuffle = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}[c.shuffle]
            out.append(BloscCodec(cname=c.cname, clevel=c.clevel, shuffle=shuffle, blocksize=c.blocksize))
        else:
            return "auto"
    return out


def create_like(group: zarr.Group, name: str, src: zarr.Array, shape: tuple[int, ...] | None = None,
                chunks: tuple[int, ...] | None = None) -> zarr.Array:
    """Create a zarr format 3 array in `group` with src's dtype, chunks, codecs and attributes."""
    attrs = {k: v for k, v in src.attrs.items() if k != "_ARRAY_DIMENSIONS"}
    shape = src.shape if shape is None else shape
    chunks = src.chunks if chunks is None else chunks
    if np.dtype(src.dtype).kind in "USO":  # fixed-width strings would truncate later, longer ids
        return group.create_array(
            name, shape=shape, dtype=str, chunks=chunks, dimension_names=dims(src),
            attributes=attrs, fill_value="",
        )
    if src.metadata.zarr_format == 3:
        kwargs = {"serializer": src.serializer, "compressors": src.compressors, "filters": src.filters,
                  "fill_value": src.fill_value}
    else:
        kwargs = {"compressors": _v3_compressors(src), "fill_value": src.fill_value}
    return group.create_array(
        name, shape=shape, dtype=src.dtype, chunks=chunks, dimension_names=dims(src),
        attributes=attrs, **kwargs,
    )
