"""extend: concatenate a batch with the repository's samples along the variants axis.

The batch carries the same samples (the repository's null columns may be absent from it)
and variants that all sort after the repository's last variant, in the order of the
repository's contigs followed by the contigs it lacks. Every variant-dimensioned array
grows; contigs the repository lacks are added; the region index gets rows for the new
variant chunks. Chunks are copied as encoded bytes when the repository's variant count sits
on a variant-chunk boundary and the encodings match, recomposed otherwise.
"""

from __future__ import annotations

import itertools

import numpy as np
import zarr
from zarr.core.sync import sync

from .. import chunks, schema, validate, widen
from ..errors import IncompatibleBatchError, SampleError
from ..sources import Source

# Arrays extend rebuilds or checks itself rather than concatenating.
TABLES = ("contig_id", "contig_length", "filter_id", "filter_description", "region_index", "sample_id")


def variant_arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Arrays whose first dimension is variants (variant_*, call_*)."""
    return {k: a for k, a in schema.arrays(group).items()
            if k not in TABLES and schema.dims(a)[:1] == (schema.VARIANTS,)}


def sample_columns(root: zarr.Group, batch_ids: list[str]) -> list[int] | None:
    """Where a batch's sample columns (ids `batch_ids`) go in the repository: None when they
    are the repository's columns one for one; else the repository's live columns."""
    ids = schema.sample_ids(root).tolist()
    if batch_ids == ids:
        return None
    live = [i for i, s in enumerate(ids) if s != schema.NULL_SAMPLE]
    if batch_ids == [ids[i] for i in live]:
        return live
    extra = sorted(set(batch_ids) - set(ids))
    lacking = sorted({ids[i] for i in live} - set(batch_ids))
    if extra or lacking:
        detail = "; ".join(p for p in (f"not in repository: {', '.join(extra[:5])}" if extra else "",
                                       f"missing from batch: {', '.join(lacking[:5])}" if lacking else "") if p)
        raise SampleError(f"extend needs the repository's samples: {detail}")
    raise SampleError("extend needs the repository's samples in the repository's order")


def _contig_map(root: zarr.Group, batch: zarr.Group) -> tuple[np.ndarray, list[str]]:
    """The repository index of each batch contig, and the contigs to add (repository's
    contigs first, then the batch's new ones in the batch's order)."""
    contigs = schema.as_str(schema.array(root, "contig_id")[:]).tolist()
    batch_contigs = schema.as_str(schema.array(batch, "contig_id")[:]).tolist()
    new = [c for c in batch_contigs if c not in contigs]
    order = contigs + new
    return np.array([order.index(c) for c in batch_contigs], dtype=np.int64), new


def _check_fields(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group) -> list[widen.Need]:
    """Same filters, same variant and call fields (names, dimensions); returns the repository
    arrays to widen for the batch (wider values, longer rows: ploidy, alleles, FORMAT_*_dim).
    A batch's shorter rows are padded as it lands."""
    if "filter_id" in root or "filter_id" in batch:
        f_ours = schema.as_str(schema.array(root, "filter_id")[:]).tolist() if "filter_id" in root else None
        f_theirs = schema.as_str(schema.array(batch, "filter_id")[:]).tolist() if "filter_id" in batch else None
        if f_ours != f_theirs:
            raise IncompatibleBatchError(f"filters differ: repository has {f_ours}, batch has {f_theirs}")
    ours, theirs = variant_arrays(root), variant_arrays(batch)
    only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if only_ours or only_theirs:
        parts = ([f"missing from batch: {', '.join(only_ours)}"] if only_ours else []) + (
            [f"not in repository: {', '.join(only_theirs)}"] if only_theirs else [])
        raise IncompatibleBatchError(f"fields differ ({'; '.join(parts)})")
    for name, dst in ours.items():
        if schema.dims(theirs[name]) != schema.dims(dst):
            raise IncompatibleBatchError(
                f"field {name}: dimensions differ ({schema.dims(dst)} vs {schema.dims(theirs[name])})")
    return widen.needs(pipe, ours, theirs)


def _contig_need(pipe: chunks.Pipeline, root: zarr.Group, n_contigs: int) -> list[widen.Need]:
    """variant_contig must hold the index of every contig, the ones the batch adds included."""
    dtype = np.dtype(schema.array(root, "variant_contig").dtype)
    if dtype.kind != "i" or n_contigs - 1 <= np.iinfo(dtype).max:
        return []
    want = widen.narrowest_int(0, n_contigs - 1, dtype)
    return widen.allowed(pipe, [widen.Need("variant_contig", want, None, f"{n_contigs} contigs do not fit {dtype}")])


def _label(contigs: list[str], contig: int, pos: int) -> str:
    return f"{contigs[contig]}:{pos}"


def _check_order(root: zarr.Group, batch: zarr.Group, contig_map: np.ndarray, order: list[str]) -> None:
    """The batch's variants, in repository contig indexes, sort strictly after the repository's
    last variant and among themselves (by contig, then position)."""
    n_old = int(schema.array(root, "variant_position").shape[0])
    last = None
    if n_old:
        last = (int(np.asarray(schema.array(root, "variant_contig")[n_old - 1])),
                int(np.asarray(schema.array(root, "variant_position")[n_old - 1])))
    for block in schema.variant_blocks(batch, validate.VARIANT_BLOCK):
        contig = contig_map[np.asarray(schema.array(batch, "variant_contig")[block], dtype=np.int64)]
        pos = np.asarray(schema.array(batch, "variant_position")[block], dtype=np.int64)
        if last is not None:
            contig, pos = np.concatenate([[last[0]], contig]), np.concatenate([[last[1]], pos])
        step_ok = (contig[1:] > contig[:-1]) | ((contig[1:] == contig[:-1]) & (pos[1:] > pos[:-1]))
        bad = np.flatnonzero(~step_ok)
        if bad.size:
            i = int(bad[0])
            before, after = _label(order, contig[i], pos[i]), _label(order, contig[i + 1], pos[i + 1])
            if last is not None and i == 0 and block.start == 0:
                raise IncompatibleBatchError(
                    f"batch overlaps the repository: its first variant {after} does not sort after the "
                    f"repository's last {before}")
            raise IncompatibleBatchError(f"batch variants are not sorted: {after} follows {before}")
        last = (int(contig[-1]), int(pos[-1]))


def _grow(array: zarr.Array, n: int) -> None:
    array.resize((n, *array.shape[1:]))


def _copy_rows(pipe: chunks.Pipeline, src: zarr.Array, dst: zarr.Array, n_old: int, columns: list[int] | None,
               transform=None) -> str:
    """Write all of src at variant row `n_old` of dst (already grown): encoded bytes when
    possible, else each destination chunk (clipped to the new rows) assembled from decoded
    values; with `columns`, src's sample columns go to those dst columns and the others are null."""
    vc = dst.chunks[0]
    if transform is None and columns is None and n_old % vc == 0 and chunks.same_encoding(src, dst) \
            and src.shape[1:] == dst.shape[1:]:
        sync(pipe.copy_encoded(src, dst, 0, n_old // vc, chunks.WHOLE))
        return "bytes"
    axis = schema.sample_axis(dst)
    null = schema.null_value(dst.path.rsplit("/", 1)[-1], dst) if columns is not None else None
    where = {c: j for j, c in enumerate(columns)} if columns is not None else {}
    out = pipe.writer(dst)
    axes = [list(chunks.chunk_ranges(dst.shape[0], vc, n_old))]
    axes += [list(chunks.chunk_ranges(n, c)) for n, c in zip(dst.shape[1:], dst.chunks[1:], strict=True)]

    pad = schema.pad_value(dst.path.rsplit("/", 1)[-1], dst)  # for the batch's shorter rows

    def one(region: tuple[slice, ...]) -> None:
        rows = slice(region[0].start - n_old, region[0].stop - n_old)
        if columns is None:
            within = tuple(slice(min(r.start, n), min(r.stop, n)) for r, n in zip(region[1:], src.shape[1:],
                                                                                   strict=True))
            block = schema.fitted(chunks.read_region(src, (rows, *within)),
                                  tuple(r.stop - r.start for r in region), pad)
        else:
            assert axis is not None  # columns are given for sample arrays only
            s = region[axis]
            targets = [c for c in range(s.start, s.stop) if c in where]
            shape = tuple(r.stop - r.start for r in region)
            block = np.full(shape, null, dtype=dst.dtype)
            if targets:
                picked = np.array([where[c] for c in targets])
                within = tuple(slice(min(r.start, n), min(r.stop, n)) for r, n in zip(region[2:], src.shape[2:],
                                                                                       strict=True))
                got = chunks.read_region(src, (rows, picked, *within), picked)
                block[(slice(None), np.array(targets) - s.start)] = schema.stored_as(schema.fitted(
                    got, (shape[0], len(targets), *shape[2:]), pad), dst)
        if transform is not None:
            block = transform(block)
        out[region] = schema.stored_as(block, dst)

    pipe.run_bounded(one, itertools.product(*axes), "recompose", desc=dst.path)
    return "recompose"


def _site_columns(root: zarr.Group, block: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """variant_contig, variant_position and variant_length (1 if absent) over a block of variants."""
    contig = np.asarray(schema.array(root, "variant_contig")[block], dtype=np.int64)
    pos = np.asarray(schema.array(root, "variant_position")[block], dtype=np.int64)
    length = (np.asarray(schema.array(root, "variant_length")[block], dtype=np.int64) if "variant_length" in root
              else np.ones_like(pos))
    return contig, pos, length


def rebuild_region_index(pipe: chunks.Pipeline, root: zarr.Group, n_old: int) -> list[widen.Widening]:
    """Keep the index rows of the chunks before the one holding variant `n_old` (the first
    variant that changed) and compute the rest from the stored variants (`_store_index`);
    returns the index's widening, if any."""
    if "region_index" not in root:
        return []
    index = schema.array(root, "region_index")
    vc = int(schema.array(root, "variant_position").chunks[0])
    first_chunk = n_old // vc
    old = np.asarray(index[:])
    kept = old[old[:, 0] < first_chunk]
    blocks = [kept]
    for block in schema.variant_blocks(root, max(vc, validate.VARIANT_BLOCK // vc * vc)):
        if block.stop <= first_chunk * vc:
            continue
        block = slice(max(block.start, first_chunk * vc), block.stop)  # both on chunk boundaries
        blocks.append(schema.region_rows(*_site_columns(root, block), vc, block.start // vc))
    return _store_index(pipe, root, np.concatenate(blocks))


def _store_index(pipe: chunks.Pipeline, root: zarr.Group, rows: np.ndarray) -> list[widen.Widening]:
    """Store the region index rows, widening the index first when positions outgrew its type
    (bio2zarr types it as the positions of its conversion were). The index is rewritten whole
    anyway, so this is never refused; returns that widening, if any."""
    index = schema.array(root, "region_index")
    held = widen.narrowest_int(int(rows.min(initial=0)), int(rows.max(initial=0)), np.dtype(index.dtype))
    done = []
    if held != np.dtype(index.dtype):
        done.append(widen.retype(pipe, root, "region_index", dtype=held))
        index = schema.array(root, "region_index")
    index.resize(rows.shape)
    if rows.size:
        index[...] = schema.stored_as(rows, index)
    return done


def add_contigs(root: zarr.Group, batch: zarr.Group, new: list[str]) -> None:
    """Append contigs to the repository's contig table, with the batch's lengths (-1 if it has none)."""
    if not new:
        return
    contigs = schema.array(root, "contig_id")
    order = schema.as_str(contigs[:]).tolist() + new
    contigs.resize((len(order),))
    contigs[...] = np.array(order, dtype=object)
    if "contig_length" in root:
        lengths = dict(zip(schema.as_str(schema.array(batch, "contig_id")[:]).tolist(),
                           np.asarray(schema.array(batch, "contig_length")[:]).tolist() if "contig_length" in batch
                           else itertools.repeat(-1), strict=False))
        array = schema.array(root, "contig_length")
        old = np.asarray(array[:]).tolist()
        array.resize((len(order),))
        array[...] = schema.stored_as(np.array(old + [lengths.get(c, -1) for c in new]), array)


def extend_variants(pipe: chunks.Pipeline, root: zarr.Group, source: Source) -> dict:
    """Concatenate the batch's variants after the repository's; the journal summary."""
    batch = source.group
    validate.check_batch(batch)
    columns = sample_columns(root, schema.sample_ids(batch).tolist())
    wanted = _check_fields(pipe, root, batch)
    contig_map, new_contigs = _contig_map(root, batch)
    order = schema.as_str(schema.array(root, "contig_id")[:]).tolist() + new_contigs
    wanted += [n for n in _contig_need(pipe, root, len(order)) if n.name not in {w.name for w in wanted}]
    _check_order(root, batch, contig_map, order)
    n_old = int(schema.array(root, "variant_position").shape[0])
    n_add = int(schema.array(batch, "variant_position").shape[0])
    total = n_old + n_add
    if n_add == 0:
        raise IncompatibleBatchError("batch has no variants")
    add_contigs(root, batch, new_contigs)  # contig tables first: the values below index them
    identity = np.array_equal(contig_map, np.arange(len(contig_map)))
    paths = {}
    batch_arrays = variant_arrays(batch)
    widened = widen.retype_all(pipe, root, wanted)  # before growing: the new entries of the old rows are written
    for name, dst in variant_arrays(root).items():
        _grow(dst, total)
        transform = None
        if name == "variant_contig" and not identity:
            transform = lambda block, m=contig_map: m[np.asarray(block, dtype=np.int64)]  # noqa: E731
        use = columns if schema.sample_axis(dst) is not None else None
        paths[name] = _copy_rows(pipe, batch_arrays[name], dst, n_old, use, transform)
    widened += rebuild_region_index(pipe, root, n_old)
    return {
        "variant_range": [n_old, total],
        "n_variants_added": n_add,
        "n_variants": total,
        "contigs_added": new_contigs,
        "copied": "bytes" if all(p == "bytes" for p in paths.values()) else
                  "recompose" if all(p == "recompose" for p in paths.values()) else "mixed",
        "source": source.provenance(),
        **({"widened": [w.to_json() for w in widened]} if widened else {}),
    }


def shrink_variants(pipe: chunks.Pipeline, root: zarr.Group, start: int, stop: int,
                    contigs_added: list[str]) -> dict:
    """Undo an extend whose variants [start, stop) are the repository's last ones: every
    variant-dimensioned array is cut back to `start` variants, the contigs it added are dropped
    and the region index rows of the chunks it touched are recomputed. The chunk row cut in the
    middle is rewritten, so nothing of the removed variants stays stored beyond the new shape."""
    n = int(schema.array(root, "variant_position").shape[0])
    if n != stop:
        raise IncompatibleBatchError(
            f"cannot revert an extend of variants {start}..{stop}: the repository now has {n} variants "
            f"(only the last extend's variants can be removed)")
    contigs = schema.as_str(schema.array(root, "contig_id")[:]).tolist()
    if contigs_added and contigs[-len(contigs_added):] != list(contigs_added):
        raise IncompatibleBatchError(
            f"cannot revert an extend: its contigs {', '.join(contigs_added)} are no longer the last ones")
    arrays = variant_arrays(root)
    vc = int(schema.array(root, "variant_position").chunks[0])
    floor = start // vc * vc

    for array in arrays.values():  # one at a time: concurrent resizes of a session's arrays deadlock
        pipe.settings.at("recompose")
        kept = array[floor:start] if start > floor else None
        _grow(array, floor)  # deletes every chunk row from the cut on
        _grow(array, start)
        if kept is not None:
            pipe.writer(array)[floor:start] = kept
    if contigs_added:
        keep = len(contigs) - len(contigs_added)
        for name in ("contig_id", "contig_length"):
            if name in root:
                contig_array = schema.array(root, name)
                old = np.asarray(contig_array[:keep])
                contig_array.resize((keep,))
                contig_array[...] = old
    if "region_index" in root:
        index = schema.array(root, "region_index")
        old = np.asarray(index[:])
        rows = old[old[:, 0] < floor // vc]
        if start > floor:
            kept = schema.region_rows(*_site_columns(root, slice(floor, start)), vc, floor // vc)
            rows = np.concatenate([rows, kept])
        _store_index(pipe, root, rows)
    return {"variant_range_removed": [start, stop], "n_variants_removed": stop - start,
            "contigs_removed": list(contigs_added), "n_variants": start}
