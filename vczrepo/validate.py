"""Batch validation: everything checked before a batch's data is written to a repository.

Each refusal is a typed one-line error (errors.SourceError, IncompatibleBatchError or
SampleError) raised before anything is written, so the repository is left unchanged.
VCZ facts (dimensions, fill and missing values) come from `schema`.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import zarr

from . import schema
from .errors import IncompatibleBatchError, SampleError, SourceError, listing

# Arrays whose fill value never occurs in valid data (positions >= 1, non-empty REF, ids and
# contigs never empty; a missing variant id is "."), so every chunk must be stored.
# Others may legitimately omit chunks that hold only the fill value (a chunk never written
# reads as the fill value its metadata gives): bio2zarr omits call_genotype chunks of all 0/0
# calls (a whole batch of them when every call is 0/0), call_genotype_mask chunks with nothing
# missing, variant_contig chunks on the first contig, call_DP chunks of depth 0 (see
# tests/test_validate.py).
COMPLETE_ARRAYS = ("sample_id", "contig_id", "variant_position", "variant_allele", "variant_id")
# bio2zarr encodes into this directory of the output and moves each array out of it whole,
# deleting it when the conversion finishes: if it is there, the conversion was cut short.
BIO2ZARR_WORK_DIR = "wip"


def _trim_alleles(rows: np.ndarray) -> list[tuple[str, ...]]:
    return [tuple(schema.alleles_present(row)) for row in schema.as_str(rows).tolist()]


def _blank_missing(alleles: np.ndarray) -> np.ndarray:
    """Alleles with "." (missing, as vcztools reads it) written as bio2zarr's padding ""."""
    return np.where(np.isin(alleles, schema.MISSING_ALLELES), "", alleles)


def sample_id_problem(name: str) -> str | None:
    """Why VCF cannot carry this sample id (None if it can): the #CHROM line is tab-separated
    and one line, so no tabs, newlines or other control characters; no empty ids; no
    leading or trailing whitespace (lost by tools that split on whitespace)."""
    if name == "":
        return "is empty"
    if name != name.strip():
        return "has leading or trailing whitespace"
    if name.isprintable():  # no character of categories C* or Z* but spaces: the usual id, quickly
        return None
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return f"contains control character {ch!r}"
    return None


def check_unique_samples(batch: zarr.Group) -> list[str]:
    """The batch's sample ids, after checking they are unique and VCF can carry each."""
    return check_sample_ids(schema.sample_ids(batch).tolist())


def check_sample_ids(ids: list[str]) -> list[str]:
    """`ids` (a batch's, in column order), after checking they are unique and VCF can carry each."""
    for i, name in enumerate(ids):
        problem = sample_id_problem(name)
        if problem:
            raise SampleError(f"batch sample {i} ({name!r}) {problem}: VCF cannot carry this id")
    seen: set[str] = set()
    dups = []
    for s in ids:
        if s in seen:
            dups.append(s)
        seen.add(s)
    if dups:
        raise SampleError(f"duplicate sample id(s) in batch: {listing(sorted(set(dups)))}")
    return ids


def check_batch_samples(store: zarr.Group, batch: zarr.Group) -> list[str]:
    """The batch's sample ids, after checking there are some, unique, and new to the store."""
    return check_new_samples(store, check_unique_samples(batch))


def check_new_samples(store: zarr.Group, ids: list[str]) -> list[str]:
    """`ids` (a batch's), after checking there are some and none is live in the store."""
    if not ids:
        raise SampleError("batch has no samples")
    present = sorted(set(ids) & set(schema.live_samples(store)))
    if present:
        raise SampleError(f"sample(s) already in the repository: {listing(present)}")
    return ids


def check_dimensions(batch: zarr.Group) -> None:
    """call_* arrays run along (variants, samples, …): anything else would be left untouched
    by remove and padding, and misread by vcztools."""
    for name, array in schema.arrays(batch).items():
        if name.startswith("call_") and schema.dims(array)[:2] != (schema.VARIANTS, schema.SAMPLES):
            raise IncompatibleBatchError(
                f"field {name}: dimensions {schema.dims(array)} are not (variants, samples, …)")


def _stored_chunks(array: zarr.Array) -> set[tuple[int, ...]]:
    """The grid coordinates of the chunks actually stored (listing, no reads)."""
    from zarr.core.sync import sync

    prefix = f"{array.path}/" if array.path else ""

    async def listed() -> set[str]:
        return {k async for k in array.store.list_prefix(prefix)}

    keys = sync(listed())
    grid = [tuple(c) for c in np.ndindex(*array.cdata_shape)]
    return {c for c in grid if prefix + array.metadata.encode_chunk_key(c) in keys}


def _members(group: zarr.Group) -> set[str]:
    """The names directly under a group in its store (arrays, groups, and other directories)."""
    from zarr.core.sync import sync

    prefix = f"{group.path}/" if group.path else ""

    async def listed() -> set[str]:
        return {k async for k in group.store.list_dir(prefix)}

    return sync(listed())


def check_chunks(batch: zarr.Group, path) -> None:
    """Refuse a truncated batch: a bio2zarr conversion that did not finish (its work directory
    is still there: arrays may be missing or still in it), or chunks missing where none can be
    omitted (any chunk of the COMPLETE_ARRAYS; a chunk of an array whose mask has that chunk: a
    mask chunk holds some True, so the array holds missing values there, never its fill).
    Any other chunk not stored reads as its array's fill value, as in every zarr reader: an
    all-0/0 batch stores no call_genotype chunk at all. (A lost call_genotype chunk with no
    missing call in it cannot be told from 0/0 calls by anything a VCZ holds.)"""
    if BIO2ZARR_WORK_DIR in _members(batch):
        raise SourceError(f"incomplete VCZ: {path}: its bio2zarr conversion did not finish "
                          f"({BIO2ZARR_WORK_DIR}/ is still there); convert it again")
    arrays = schema.arrays(batch)
    for name in COMPLETE_ARRAYS:
        array = arrays.get(name)
        if array is not None and array.size and array.nchunks_initialized < array.nchunks:
            lost = array.nchunks - array.nchunks_initialized
            raise SourceError(f"incomplete VCZ: {path}: {name} is missing {lost} of {array.nchunks} chunks")
    stored: dict[str, set] = {}
    for name, mask in arrays.items():
        target = schema.masked_by(name, arrays)
        if target is None or not schema.is_mask(name, mask) or arrays[target].chunks != mask.chunks:
            continue
        if arrays[target].shape != mask.shape:
            raise IncompatibleBatchError(
                f"field {name}: shape {mask.shape} differs from {target}'s {arrays[target].shape}")
        stored[name] = _stored_chunks(mask)
        stored[target] = _stored_chunks(arrays[target])
        gone = sorted(stored[name] - stored[target])
        if gone:
            raise SourceError(f"incomplete VCZ: {path}: {target} is missing chunk(s) "
                              f"{', '.join('/'.join(map(str, c)) for c in gone[:5])} where {name} marks missing calls")


def check_batch(batch: zarr.Group, path="batch") -> None:
    """What any batch must satisfy on its own (init and append)."""
    check_dimensions(batch)
    check_unique_samples(batch)


VARIANT_BLOCK = 1 << 16  # variants compared per read: a few MB of alleles at most


def check_same_variants(store: zarr.Group, batch: zarr.Group) -> None:
    """Contigs, variant count, positions and alleles must match exactly."""
    check_same_contigs(store, schema.as_str(schema.array(batch, "contig_id")[:]).tolist())
    n_store = schema.array(store, "variant_position").shape[0]
    n_batch = schema.array(batch, "variant_position").shape[0]
    if n_store != n_batch:
        raise IncompatibleBatchError(f"variant count differs: repository has {n_store}, batch has {n_batch}")
    s_arrays = {name: schema.array(store, name) for name in ("variant_contig", "variant_position", "variant_allele")}
    b_arrays = {name: schema.array(batch, name) for name in s_arrays}
    from .chunks import encoded_equal  # chunks builds on this module

    if all(encoded_equal(s_arrays[name], b_arrays[name]) for name in s_arrays):
        return  # the same bytes under the same codecs: nothing to decode
    chunk = s_arrays["variant_position"].chunks[0]
    for block in schema.variant_blocks(store, max(chunk, VARIANT_BLOCK // chunk * chunk)):
        for name, what in (("variant_contig", "contig"), ("variant_position", "position")):
            diff = np.flatnonzero(np.asarray(s_arrays[name][block]) != np.asarray(b_arrays[name][block]))
            if diff.size:
                i = block.start + int(diff[0])
                raise IncompatibleBatchError(
                    f"variant {i}: {what} differs "
                    f"(repository {_variant_label(store, i)}, batch {_variant_label(batch, i)})"
                )
        s_alleles = _blank_missing(schema.as_str(s_arrays["variant_allele"][block]))
        b_alleles = _blank_missing(schema.as_str(b_arrays["variant_allele"][block]))
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


def check_same_contigs(store: zarr.Group, b_contigs: list[str]) -> None:
    """The batch's contigs (`b_contigs`) must be the store's, in the same order."""
    s_contigs = schema.as_str(schema.array(store, "contig_id")[:]).tolist()
    if s_contigs != b_contigs:
        raise IncompatibleBatchError(
            f"contigs differ: repository has {len(s_contigs)} ({listing(s_contigs)}), "
            f"batch has {len(b_contigs)} ({listing(b_contigs)})")


def _variant_label(group: zarr.Group, index: int) -> str:
    contigs = schema.as_str(schema.array(group, "contig_id")[:])
    contig = np.asarray(schema.array(group, "variant_contig")[index])
    position = np.asarray(schema.array(group, "variant_position")[index])
    return f"{contigs[int(contig)]}:{int(position)}"


def _one_sided(kind: str, store: set[str], batch: set[str]) -> None:
    only_store, only_batch = sorted(store - batch), sorted(batch - store)
    parts = [f"missing from batch: {listing(only_store)}"] if only_store else []
    parts += [f"not in repository: {listing(only_batch)}"] if only_batch else []
    if parts:
        raise IncompatibleBatchError(
            f"{kind} fields differ ({'; '.join(parts)}); --fill-missing-fields accepts this"
        )


def check_sample_fields(s_fields: dict[str, zarr.Array], b_fields: dict[str, zarr.Array],
                        fill_missing: bool = False) -> None:
    """Sample-dimensioned fields must match in name and dimensions (their dtypes and trailing
    shapes are reconciled by `widen.needs`: a narrower batch is padded, a wider one widens).

    With `fill_missing`, a field on one side only is accepted (append fills the gaps).
    """
    if not fill_missing:
        _one_sided("call", set(s_fields), set(b_fields))
    for name, s_arr in s_fields.items():
        if name in b_fields and schema.dims(s_arr) != schema.dims(b_fields[name]):
            raise IncompatibleBatchError(
                f"field {name}: dimensions differ ({schema.dims(s_arr)} vs {schema.dims(b_fields[name])})")


def check_appendable(
    store: zarr.Group, batch: zarr.Group, s_fields: dict[str, zarr.Array], b_fields: dict[str, zarr.Array],
    fill_missing: bool = False, same_variants: bool = True,
) -> list[str]:
    """Everything an append checks before writing; returns the batch's sample ids. Without
    `same_variants`, the variants are not compared (a batch still to be normalised onto them)."""
    check_batch(batch)
    ids = check_batch_samples(store, batch)
    if same_variants:
        check_same_variants(store, batch)
    check_sample_fields(s_fields, b_fields, fill_missing)
    if not fill_missing and same_variants:
        _one_sided("variant", schema.variant_fields(store), schema.variant_fields(batch))
    return ids


