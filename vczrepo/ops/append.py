"""append: add a batch's samples to every sample-dimensioned array.

Variant-dimensioned arrays are kept as they are, after checking that the batch has
exactly the same contigs, positions and alleles.
"""

from __future__ import annotations

import icechunk
import zarr

from .. import chunks, schema
from ..errors import SourceError
from ..sources import Source, open_vcz


def grow_and_copy(root: zarr.Group, batch: zarr.Group, offset: int, total: int,
                  share: chunks.Share = chunks.WHOLE) -> None:
    """Resize every sample array to `total` samples and copy (a share of) the batch in at `offset`."""
    batch_fields = schema.sample_arrays(batch)
    for name, dst in schema.sample_arrays(root).items():
        axis = schema.sample_axis(dst)
        dst.resize(tuple(total if i == axis else n for i, n in enumerate(dst.shape)))
        chunks.copy_samples(batch_fields[name], dst, offset, share=share)


def copy_share(fork: icechunk.ForkSession, batch_path: str, offset: int, total: int,
               share: chunks.Share) -> icechunk.ForkSession:
    """A distributed worker's part of an append (runs on the worker)."""
    grow_and_copy(zarr.open_group(fork.store, mode="r+"), open_vcz(batch_path), offset, total, share)
    return fork


def append_batch(root: zarr.Group, source: Source, *, workers: int = 1, scheduler: str | None = None) -> dict:
    batch = source.group
    fields, batch_fields = schema.sample_arrays(root), schema.sample_arrays(batch)
    ids = schema.check_appendable(root, batch, fields, batch_fields)
    offset = int(fields["sample_id"].shape[0])
    total = offset + len(ids)
    if workers > 1 or scheduler:
        from ..distributed import run_forked

        if source.vcz_path is None:
            raise SourceError("a distributed append needs a batch on disk or object storage, not in memory")
        run_forked(root.store.session, copy_share, (source.vcz_path, offset, total), workers, scheduler)
    else:
        grow_and_copy(root, batch, offset, total)
    return {
        "samples_added": ids,
        "n_samples_added": len(ids),
        "n_samples": len(schema.live_samples(root)),  # sample_id now includes the batch
        "source": source.provenance(),
    }
