"""append: add a batch's samples to every sample-dimensioned array.

Variant-dimensioned arrays are kept as they are, after checking that the batch has
exactly the same contigs, positions and alleles.
"""

from __future__ import annotations

import dataclasses
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import icechunk
import zarr

from .. import chunks, journal, schema, validate, widen
from ..errors import SourceError
from ..settings import Settings
from ..sources import Source, open_vcz
from ..storage import Location
from ..summaries import journal_entry, planned_count_widening, update_summaries
from .normalise import Variants, add_alleles, map_variants, normalise

if TYPE_CHECKING:
    from .grow import GrowthCost


def grow_and_copy(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group, offset: int, total: int,
                  share: chunks.Share = chunks.WHOLE, fields: dict[str, zarr.Array] | None = None) -> None:
    """Resize every sample array to `total` samples and copy (a share of) the batch in at `offset`.

    A repository field the batch lacks gets missing values in the new columns. `fields`: the
    repository's sample arrays, when already listed (listing a session's arrays while another
    thread writes to it can deadlock in icechunk).
    """
    batch_fields = schema.sample_arrays(batch)
    for name, dst in (schema.sample_arrays(root) if fields is None else fields).items():
        schema.resize_samples(dst, total)
        if name in batch_fields:
            pipe.copy_samples(batch_fields[name], dst, offset, share=share)
        else:
            pipe.fill_samples(dst, list(range(offset, total)), schema.absent_call(name, dst), share)


def add_batch_only_fields(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group, offset: int) -> list[str]:
    """Create the batch's call fields the repository lacks, missing for the samples already there,
    chunked as the repository chunks variants and samples."""
    fields = schema.sample_arrays(root)
    variants_chunk = int(schema.array(root, "variant_position").chunks[0])
    samples_chunk = schema.samples_chunk_size(root)
    added = []
    for name, src in schema.sample_arrays(batch).items():
        if name in fields:
            continue
        axis = schema.sample_axis(src)
        shape = tuple(offset if i == axis else n for i, n in enumerate(src.shape))
        dim_names = schema.dims(src)
        chunk_shape = tuple(
            samples_chunk if i == axis else variants_chunk if d == schema.VARIANTS else c
            for i, (d, c) in enumerate(zip(dim_names, src.chunks, strict=True)))
        dst = schema.create_like(root, name, src, shape=shape, chunks=chunk_shape)
        if offset:
            pipe.fill_samples(dst, list(range(offset)), schema.absent_call(name, dst))
        added.append(name)
    return added


def copy_share(fork: icechunk.ForkSession, settings: Settings, batch_path: str, options: dict, offset: int,
               total: int, share: chunks.Share) -> icechunk.ForkSession:
    """A distributed worker's part of an append (runs on the worker)."""
    grow_and_copy(chunks.Pipeline(settings), zarr.open_group(fork.store, mode="r+"), open_vcz(batch_path, options),
                  offset, total, share)
    return fork


def null_padding(pipe: chunks.Pipeline, fields: dict[str, zarr.Array], columns: list[int]) -> None:
    """Make padding columns null in arrays already grown over them.

    Beyond an array's last sample its chunks hold the fill value (zarr writers pad edge
    chunks with it, and vczrepo never shrinks the samples axis), so only arrays whose fill
    value does not pass as null (call_genotype's 0) have the chunk column rewritten; the
    others are not even read.
    """
    for name, array in fields.items():
        if not schema.fill_reads_as_null(name, array):
            pipe.fill_samples(array, columns, schema.null_value(name, array))


def pads_for_bytes(fields: dict[str, zarr.Array], batch_fields: dict[str, zarr.Array], pad: int, n_new: int) -> bool:
    """Is padding with `pad` null columns worth it? Only when it lets every call array
    (variants x samples) of the batch be copied as encoded bytes instead of recomposed, and
    the null columns are fewer than the samples the batch brings (so at most half of any
    append is padding)."""
    return 0 < pad < n_new and all(
        name in fields and chunks.same_encoding(src, fields[name])
        for name, src in batch_fields.items() if schema.VARIANTS in schema.dims(src))


@dataclass(frozen=True)
class Decided:
    """What an append of one batch does, decided before anything is written."""

    ids: list[str]
    offset: int  # the repository's sample columns before it
    padding: int  # null columns added first
    fields_added: list[str]  # batch call fields the repository lacks (--fill-missing-fields)
    widen: list[widen.Need]  # repository arrays rewritten wider first

    @property
    def start(self) -> int:
        return self.offset + self.padding

    @property
    def total(self) -> int:
        return self.start + len(self.ids)


def decide(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group, *, fill_missing_fields: bool = False,
           align: bool | None = None, same_variants: bool = True) -> Decided:
    """Validate a batch against the repository and decide its columns, padding and widenings.
    `same_variants=False` skips the variant checks (a batch still to be normalised)."""
    fields, batch_fields = schema.sample_arrays(root), schema.sample_arrays(batch)
    ids = validate.check_appendable(root, batch, fields, batch_fields, fill_missing_fields, same_variants)
    wanted = widen.needs(pipe, fields, batch_fields)
    offset = int(fields["sample_id"].shape[0])
    distributed = pipe.settings.distributed
    pad = -offset % schema.samples_chunk_size(root)  # null columns up to the next sample-chunk boundary
    if align is None:  # judged on the arrays as widened: a batch of the widened type may copy as bytes
        widened = {**fields, **{n.name: widen.view(fields[n.name], n) for n in wanted}}
        align = not distributed and pads_for_bytes(widened, batch_fields, pad, len(ids))
    padding = pad if align else 0
    added = sorted(set(batch_fields) - set(fields)) if fill_missing_fields else []
    if distributed and (padding or added):
        raise SourceError("a distributed append cannot pad or add fields; append once without --workers")
    return Decided(ids, offset, padding, added, wanted)


def append_batch(pipe: chunks.Pipeline, root: zarr.Group, source: Source, *, fill_missing_fields: bool = False,
                 align: bool | None = None) -> dict:
    """Append a batch; with `fill_missing_fields`, call fields on one side only get missing values
    where the other side has no data, and per-variant fields the repository lacks are ignored.
    With `align`, null columns pad the repository to a sample-chunk boundary first; by default
    (None) only when `pads_for_bytes` says it pays, and never in a distributed append. Repository
    arrays the batch's values or rows do not fit are widened first (vczrepo.widen)."""
    batch = source.group
    plan = decide(pipe, root, batch, fill_missing_fields=fill_missing_fields, align=align)
    widened = widen.retype_all(pipe, root, plan.widen)
    offset, padding, start, total = plan.offset, plan.padding, plan.start, plan.total
    added_fields = add_batch_only_fields(pipe, root, batch, start) if fill_missing_fields else []
    if pipe.settings.distributed:
        from ..distributed import run_forked

        if source.vcz_path is None:
            raise SourceError("a distributed append needs a batch on disk or object storage, not in memory")
        # resized here, once: forks that all change the definition of an array the session had
        # already changed (a growth of the variants) cannot be merged
        for array in schema.sample_arrays(root).values():
            schema.resize_samples(array, total)
        run_forked(root.store, pipe.settings, copy_share, (source.vcz_path, source.options, start, total))
    elif padding:
        # the padding's chunk column is rewritten (CPU) while the batch is copied in (mostly I/O);
        # the arrays are listed (fields just added included) before the two threads write
        fields = schema.sample_arrays(root)
        for array in fields.values():
            schema.resize_samples(array, total)
        with ThreadPoolExecutor(max_workers=1) as background:
            nulled = background.submit(null_padding, pipe, fields, list(range(offset, start)))
            grow_and_copy(pipe, root, batch, start, total, fields=fields)
            nulled.result()
    else:
        grow_and_copy(pipe, root, batch, start, total)
    summaries = update_summaries(root, added=range(start, total), pipe=pipe)  # after the columns are written
    return {
        **journal.added(plan.ids, start),
        "n_samples": len(schema.live_samples(root)),  # sample_id now includes the batch
        "source": source.provenance(),
        **({"fields_added": added_fields} if added_fields else {}),
        **({"n_padding": padding} if padding else {}),
        **({"widened": [w.to_json() for w in widened]} if widened else {}),
        **journal_entry(summaries),
    }


@dataclass(frozen=True)
class AppendPlan:
    """What an append would do, nothing written (`append --dry-run`, Repository.plan_append)."""

    sample_range: tuple[int, int]  # the columns the batch's samples go to
    n_samples_added: int
    n_padding: int  # null columns added before them
    fields_added: list[str]
    widened: list[widen.Widening]  # repository arrays rewritten wider (bytes_written: None)
    summaries_widened: list[widen.Widening]  # INFO counts rewritten in a type the cohort's size needs
    variants_grown: GrowthCost | None  # with grow_variants: the sites inserted and what moves
    normalised: bool

    @property
    def chunks_rewritten(self) -> int:
        return (sum(w.chunks for w in [*self.widened, *self.summaries_widened])
                + (self.variants_grown.chunks if self.variants_grown else 0))

    def to_json(self) -> dict:
        return {"sample_range": list(self.sample_range), "n_samples_added": self.n_samples_added,
                "n_padding": self.n_padding, "fields_added": self.fields_added,
                "widened": [w.to_json() for w in self.widened],
                "summaries_widened": [w.to_json() for w in self.summaries_widened], "normalised": self.normalised,
                "variants_grown": self.variants_grown.to_json() if self.variants_grown else None,
                "chunks_rewritten": self.chunks_rewritten}


def plan_append(pipe: chunks.Pipeline, root: zarr.Group, batch: zarr.Group, *, fill_missing_fields: bool = False,
                align: bool | None = None, normalise: bool = False, allow_new_alleles: bool = False,
                grow_variants: bool = False) -> AppendPlan:
    """What appending `batch` to `root` (a committed state, read only) would do, checked as the
    append checks it. A batch to normalise (or grow onto) is judged with its own call fields,
    which normalising maps onto the repository's variants without changing their types."""
    from .grow import cost, inserted_needs, plan

    validate.check_batch(batch)
    growth, needs = None, []
    if grow_variants:
        grown = plan(root, batch)
        growth = cost(root, grown)
        needs = inserted_needs(pipe, root, batch, grown) if grown.n_inserted else []
    elif normalise:
        map_variants(Variants.read(root), Variants.read(batch), allow_new_alleles)  # refuses what normalise would
    decided = decide(pipe, root, batch, fill_missing_fields=fill_missing_fields, align=align,
                     same_variants=not (normalise or grow_variants))
    return AppendPlan((decided.start, decided.total), len(decided.ids), decided.padding, decided.fields_added,
                      widen.plan_all(root, needs + decided.widen), planned_count_widening(root, decided.total),
                      growth, normalise or grow_variants)


def append_normalised(pipe: chunks.Pipeline, root: zarr.Group, source: Source, *, allow_new_alleles: bool = False,
                      **options) -> dict:
    """Map the batch onto the repository's variants first (see ops.normalise), then append it.

    New ALT alleles (when allowed) are added to the repository's sites in the same commit.
    """
    with tempfile.TemporaryDirectory(prefix="vczrepo-normalise-") as tmp:
        out = Path(tmp) / "normalised.vcz"
        summary = normalise(source.group, root, out, allow_new_alleles=allow_new_alleles, pipe=pipe)
        add_alleles(root, summary["new_alleles"])
        mapped = dataclasses.replace(source, group=open_vcz(out), vcz_path=str(out))
        return {**append_batch(pipe, root, mapped, **options), "normalised": summary}


def append_grown(pipe: chunks.Pipeline, root: zarr.Group, before: zarr.Group, location: Location, source: Source,
                 **options) -> dict:
    """Make the repository's variants the union with the batch's (ops.grow; `before` is the
    committed state the session started from, in the repository at `location`), then append
    the batch normalised onto them."""
    from .grow import grow_variants

    validate.check_batch(source.group)
    validate.check_batch_samples(root, source.group)  # before the rewrite, not after it
    grown = grow_variants(pipe, root, before, source.group, location)
    return {**append_normalised(pipe, root, source, **options), "variants_grown": grown}
