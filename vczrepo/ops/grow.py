"""grow: make a repository's variants the sorted union with a batch's, before appending it.

`append --grow-variants` inserts the batch's sites the repository lacks (the identity of
`init --variants-from`: contig, position, REF and the set of ALT alleles) and then appends
the batch normalised onto the grown variant set, in one commit. The repository's variants
keep their order; an inserted site goes after the repository's variants at its contig and
position (contigs the repository lacks go after its own, as `extend` adds them). Every
variant-dimensioned array is rewritten from the chunk row holding the first inserted site
on, one chunk at a time through the chunk pipeline (bounded memory), reading the
repository's rows from the snapshot the commit starts from; `cost` says how many chunks
and stored bytes that is before anything is written. At an inserted site:

- the call fields of the samples already there are missing (null columns stay null);
- ID, QUAL, FILTER, END, alleles and INFO are the batch's, as `bcftools merge` keeps a site
  only one input has (INFO fields the batch lacks are missing; its filters the repository
  lacks are added; its INFO fields the repository lacks are not added);
- INFO fields that are functions of the genotypes (summaries.MAINTAINED) hold the values of
  the samples already there, who have no call (AC 0, AN 0, F_MISSING 1), so that appending
  the batch adds its own counts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import icechunk
import numpy as np
import zarr

from .. import chunks, schema, summaries, widen
from ..errors import IncompatibleBatchError
from ..internals import SessionStore, stored_chunk_sizes
from ..settings import Settings
from ..storage import Location
from .extend import add_contigs, rebuild_region_index, variant_arrays
from .normalise import Variants

POSITION_BITS = 32  # (contig, position) packed into one sortable int64


@dataclass(frozen=True)
class Growth:
    """Where the grown variant set's rows come from."""

    contigs: list[str]  # the grown contig table: the repository's, then the batch's new ones
    new_contigs: list[str]
    rows: np.ndarray  # per grown variant: its repository row, or -1 at an inserted site
    batch_rows: np.ndarray  # per inserted site, in grown order: its batch row
    inserted_contigs: np.ndarray  # per inserted site: its index in `contigs`
    inserted_alleles: np.ndarray  # per inserted site: its number of alleles (REF included)
    labels: list[str]  # per inserted site: "contig:pos REF>ALT"

    @property
    def n_inserted(self) -> int:
        return len(self.batch_rows)

    @property
    def first(self) -> int:
        """The grown index of the first inserted site."""
        return int(np.flatnonzero(self.rows < 0)[0])


def _packed(contigs: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return (contigs.astype(np.int64) << POSITION_BITS) | positions.astype(np.int64)


def plan(root: zarr.Group, batch: zarr.Group) -> Growth:
    """The union of the repository's and the batch's variants, in the repository's order with
    the batch's new sites inserted by contig and position."""
    ours, theirs = Variants.read(root), Variants.read(batch)
    new_contigs = [c for c in theirs.contigs if c not in ours.contigs]
    contigs = ours.contigs + new_contigs
    order = {c: i for i, c in enumerate(contigs)}
    known = {(*site, tuple(sorted(alts))) for site, alts in zip(ours.sites, ours.alts, strict=True)}
    new: dict[tuple, int] = {}
    for j, (site, alts) in enumerate(zip(theirs.sites, theirs.alts, strict=True)):
        key = (*site, tuple(sorted(alts)))
        if key not in known:
            new.setdefault(key, j)
    keys = sorted(new, key=lambda k: (order[k[0]], k[1], k[2], k[3]))
    old = _packed(np.array([order[s[0]] for s in ours.sites], dtype=np.int64),
                  np.array([s[1] for s in ours.sites], dtype=np.int64))
    if np.any(np.diff(old) < 0):
        raise IncompatibleBatchError("cannot grow the variants: the repository's variants are not sorted "
                                     "by contig and position")
    inserted_contigs = np.array([order[k[0]] for k in keys], dtype=np.int64)
    at = np.searchsorted(old, _packed(inserted_contigs, np.array([k[1] for k in keys], dtype=np.int64)),
                         side="right")
    rows = np.full(len(old) + len(keys), -1, dtype=np.int64)
    kept = np.ones(len(rows), dtype=bool)
    kept[at + np.arange(len(keys))] = False
    rows[kept] = np.arange(len(old))
    batch_rows = np.array([new[k] for k in keys], dtype=np.int64)
    return Growth(contigs, new_contigs, rows, batch_rows, inserted_contigs,
                  np.array([1 + len(k[3]) for k in keys], dtype=np.int64), [theirs.label(j) for j in batch_rows])


@dataclass(frozen=True)
class GrowthCost:
    """What growing the variants rewrites (`append --grow-variants --dry-run`)."""

    n_variants: int
    n_variants_inserted: int
    first_inserted: str | None  # the first inserted site and its grown index
    contigs_added: list[str]
    arrays: int
    chunks: int  # chunks written
    stored_bytes: int  # stored bytes of the repository's chunks rewritten (read, then written again)

    def to_json(self) -> dict:
        return asdict(self)


def _chunks_from(array: zarr.Array, first_chunk: int, n_rows: int) -> int:
    rows = math.ceil(n_rows / array.chunks[0]) - first_chunk
    return rows * math.prod(math.ceil(n / c) for n, c in zip(array.shape[1:], array.chunks[1:], strict=True))


def cost(root: zarr.Group, growth: Growth) -> GrowthCost:
    """Chunks and stored bytes a growth rewrites, counted on the repository before it."""
    n_old = int(schema.array(root, "variant_position").shape[0])
    n_new = n_old + growth.n_inserted
    arrays = variant_arrays(root)
    n_chunks = stored = 0
    if growth.n_inserted:
        for array in arrays.values():
            first_chunk = growth.first // array.chunks[0]
            n_chunks += _chunks_from(array, first_chunk, n_new)
            stored += sum(size for coords, size in stored_chunk_sizes(root.store, array.path).items()
                          if coords[0] >= first_chunk)
    first = f"{growth.labels[0]} (variant {growth.first})" if growth.n_inserted else None
    return GrowthCost(n_old, growth.n_inserted, first, growth.new_contigs, len(arrays), n_chunks, stored)


def _allele_axis(array: zarr.Array) -> str | None:
    d = schema.dims(array)
    return d[1] if len(d) > 1 and d[1] in schema.ALLELE_DIMS else None


def _block_dtype(array: zarr.Array) -> np.dtype:
    dtype = np.dtype(array.dtype)
    return np.dtype(object) if dtype.kind in "OTUS" else dtype


def _batch_rows(array: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """Rows of a batch array, in the order given."""
    order = np.argsort(rows)
    got = np.asarray(array.oindex[(rows[order], *([slice(None)] * (array.ndim - 1)))])
    out = np.empty_like(got)
    out[order] = got
    return out


class _Inserted:
    """Per-variant values at the inserted sites, shaped as the repository's arrays."""

    def __init__(self, root: zarr.Group, batch: zarr.Group, growth: Growth):
        self.root, self.batch, self.growth = root, batch, growth
        self.n_alt = growth.inserted_alleles - 1
        self.maintained = summaries.maintained_fields(root)
        self.without_calls = summaries.values_without_calls(root, self.n_alt) if self.maintained else {}

    def _padded(self, values: np.ndarray, array: zarr.Array, pad) -> np.ndarray:
        """Entries beyond each site's alleles hold the fill value."""
        axis = _allele_axis(array)
        if axis is None:
            return values
        width = self.n_alt + (1 if axis == "alleles" else 0)
        beyond = np.arange(values.shape[1])[None, :] >= width[:, None]
        values[beyond] = pad
        return values

    def _filters(self, array: zarr.Array) -> np.ndarray:
        out = np.zeros((self.growth.n_inserted, array.shape[1]), dtype=bool)
        if "variant_filter" not in self.batch:
            return out
        ours = schema.as_str(schema.array(self.root, "filter_id")[:]).tolist()
        theirs = schema.as_str(schema.array(self.batch, "filter_id")[:]).tolist()
        got = _batch_rows(schema.array(self.batch, "variant_filter"), self.growth.batch_rows)
        out[:, [ours.index(f) for f in theirs]] = got
        return out

    def values(self, name: str, array: zarr.Array) -> np.ndarray:
        shape, dtype = (self.growth.n_inserted, *array.shape[1:]), _block_dtype(array)
        fill, missing = schema.fill_like(dtype), schema.missing_value(dtype)
        tag = name.removeprefix("variant_")
        if name == "variant_contig":
            return schema.stored_as(self.growth.inserted_contigs, array)
        if name == summaries.HIDDEN_COUNTS:
            return np.zeros(shape, dtype=dtype)
        if name == "variant_filter":
            return self._filters(array)
        if tag in self.maintained:  # no call: counts 0, frequencies missing
            values = summaries.stored(np.asarray(self.without_calls[tag]).reshape(self.growth.n_inserted, -1), array)
            return self._padded(schema.fitted(values if len(shape) > 1 else values[:, 0], shape, fill), array, fill)
        if name in self.batch and schema.sample_axis(schema.array(self.batch, name)) is None:
            got = _batch_rows(schema.array(self.batch, name), self.growth.batch_rows)
            if got.shape[1:] != shape[1:] or got.dtype != dtype:
                got = schema.fitted(schema.stored_as(got, array), shape, fill if _allele_axis(array) else missing)
            return got
        if name == "variant_id_mask":
            return np.ones(shape, dtype=dtype)
        if name == "variant_length":
            refs = schema.as_str(_batch_rows(schema.array(self.batch, "variant_allele"), self.growth.batch_rows)[:, 0])
            return schema.stored_as(np.char.str_len(refs), array)
        return self._padded(np.full(shape, missing, dtype=dtype), array, fill)


def _widen_for(root: zarr.Group, batch: zarr.Group, growth: Growth) -> None:
    """Make room in the repository for the inserted sites: more alleles per site than it holds,
    and filters it lacks."""
    alleles = schema.array(root, "variant_allele")
    need = int(growth.inserted_alleles.max())
    if need > alleles.shape[1]:  # (call fields with an allele axis widen as the batch lands: widen.needs)
        for array in variant_arrays(root).values():
            axis = _allele_axis(array)
            if axis is not None:
                schema.widen(array, need - (1 if axis == "alt_alleles" else 0), schema.fill_like(array.dtype))
    if "filter_id" in batch and "filter_id" in root:
        ours = schema.as_str(schema.array(root, "filter_id")[:]).tolist()
        theirs = schema.as_str(schema.array(batch, "filter_id")[:]).tolist()
        new = [f for f in theirs if f not in ours]
        if not new:
            return
        ids = schema.array(root, "filter_id")
        ids.resize((len(ours) + len(new),))
        ids[...] = np.array(ours + new, dtype=object)
        if "filter_description" in root:
            desc = schema.array(root, "filter_description")
            theirs_desc = (schema.as_str(schema.array(batch, "filter_description")[:]).tolist()
                           if "filter_description" in batch else [""] * len(theirs))
            old = schema.as_str(desc[:]).tolist()
            desc.resize((len(ours) + len(new),))
            desc[...] = np.array(old + [theirs_desc[theirs.index(f)] for f in new], dtype=object)
        if "variant_filter" in root:
            schema.widen(schema.array(root, "variant_filter"), len(ours) + len(new), False)


def inserted_needs(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group, growth: Growth) -> list[widen.Need]:
    """Per-variant integer arrays whose values at the inserted sites do not fit the repository's
    dtype (a position past an int16's range, a contig index, INFO values of the batch): they are
    widened before the rewrite (vczrepo.widen), or refused when widening is off."""
    found = []
    for name, array in variant_arrays(root).items():
        dtype = np.dtype(array.dtype)
        if schema.sample_axis(array) is not None or dtype.kind != "i":
            continue
        theirs = schema.array(batch, name) if name in batch else None
        if name == "variant_contig":
            values = growth.inserted_contigs
        elif theirs is not None and np.dtype(theirs.dtype).kind in "iu" and not np.can_cast(theirs.dtype, dtype):
            values = _batch_rows(theirs, growth.batch_rows)
        else:
            continue
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        want = widen.narrowest_int(lo, hi, dtype)
        if want != dtype:
            found.append(widen.Need(name, want, None, f"the inserted sites' values {lo}..{hi} do not fit {dtype}"))
    return widen.allowed(pipe, found)


def _rewrite(pipe: chunks.Pipeline, dst: zarr.Array, old: zarr.Array, growth: Growth, inserted,
             share: chunks.Share) -> None:
    """Write every chunk of `dst` (already grown) from the chunk row holding the first inserted
    site on (the rows of this worker's share): the repository's rows read from `old`,
    `inserted` (one value, or one row per inserted site) at the inserted rows."""
    n_new, vc = len(growth.rows), dst.chunks[0]
    ordinal = np.cumsum(growth.rows < 0) - 1  # per grown row: its inserted site's number
    dtype = _block_dtype(dst)
    pad = schema.fill_like(dtype) if _allele_axis(dst) else schema.missing_value(dtype)
    out = pipe.writer(dst)
    if schema.sample_axis(dst) is None:  # per-variant chunks all padding ("" alleles) must exist too
        out = out.with_config({"write_empty_chunks": True})
    axes = [[r for r in chunks.chunk_ranges(n_new, vc, growth.first // vc * vc) if chunks.mine(r.start // vc, share)]]
    axes += [list(chunks.chunk_ranges(n, c)) for n, c in zip(dst.shape[1:], dst.chunks[1:], strict=True)]

    def one(region: tuple[slice, ...]) -> None:
        rows = growth.rows[region[0]]
        shape = tuple(r.stop - r.start for r in region)
        block = np.empty(shape, dtype=dtype)
        kept = rows >= 0
        if kept.any():
            lo, hi = int(rows[kept][0]), int(rows[kept][-1]) + 1
            within = tuple(slice(min(r.start, n), min(r.stop, n)) for r, n in zip(region[1:], old.shape[1:],
                                                                                   strict=True))
            got = chunks.read_region(old, (slice(lo, hi), *within))
            if got.shape[1:] != shape[1:]:  # old is narrower (alleles or filters added)
                got = schema.fitted(got, (hi - lo, *shape[1:]), pad)
            block[kept] = schema.stored_as(got[rows[kept] - lo], dst)
        if not kept.all():
            if np.ndim(inserted) == dst.ndim:  # a row per inserted site
                index: tuple = (ordinal[region[0]][~kept], *region[1:])
                block[~kept] = inserted[index]
            else:  # one value, or one call's row (a 0-d array keeps a float's NaN payload)
                block[~kept] = inserted
        out[region] = block

    pipe.run_bounded(one, itertools.product(*axes), "recompose", desc=dst.path)


def _rewrite_all(pipe: chunks.Pipeline, root: zarr.Group, before: zarr.Group, growth: Growth, values: dict,
                 share: chunks.Share = chunks.WHOLE) -> None:
    for name, inserted in values.items():
        _rewrite(pipe, schema.array(root, name), schema.array(before, name), growth, inserted, share)


def rewrite_share(fork: icechunk.ForkSession, settings: Settings, url: str, options: dict, base: str,
                  growth: Growth, values: dict, share: chunks.Share) -> icechunk.ForkSession:
    """A dask worker's share of a growth's rewrite (runs on the worker)."""
    from ..repository import Repository

    before = Repository.open(url, options, settings=settings).group(base)
    _rewrite_all(chunks.Pipeline(settings), zarr.open_group(fork.store, mode="r+"), before, growth, values, share)
    return fork


def grow_variants(pipe: chunks.Pipeline, root: zarr.Group, before: zarr.Group, batch: zarr.Group,
                  location: Location) -> dict:
    """Insert the batch's new sites into every variant-dimensioned array of `root` (whose
    committed state `before` is read for the rows that move); the journal summary."""
    growth = plan(root, batch)
    if not growth.n_inserted:
        return {"n_variants_inserted": 0}
    summary = cost(root, growth).to_json()
    n_new = len(growth.rows)
    add_contigs(root, batch, growth.new_contigs)
    widened = widen.retype_all(pipe, root, inserted_needs(pipe, root, batch, growth))
    _widen_for(root, batch, growth)
    inserted = _Inserted(root, batch, growth)
    values = {}
    for name, dst in variant_arrays(root).items():  # one at a time: concurrent resizes of a session's arrays deadlock
        values[name] = (schema.absent_call(name, dst) if schema.sample_axis(dst) is not None
                        else inserted.values(name, dst))
        dst.resize((n_new, *dst.shape[1:]))
    if pipe.settings.distributed:
        from ..distributed import run_forked

        assert isinstance(before.store, SessionStore)  # a repository snapshot (Repository.group)
        run_forked(root.store, pipe.settings, rewrite_share,
                   (location.url, location.options, before.store.session.snapshot_id, growth, values))
    else:
        _rewrite_all(pipe, root, before, growth, values)
    widened += rebuild_region_index(pipe, root, growth.first)
    return {**summary, "n_variants": n_new, "inserted_at": growth.first,
            **({"widened": [w.to_json() for w in widened]} if widened else {})}
