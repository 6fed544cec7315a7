"""init: the first commit holds a batch's samples and variants, stored as zarr format 3."""

from __future__ import annotations

import zarr

from .. import chunks, journal, schema, validate
from ..sources import Source


def import_batch(pipe: chunks.Pipeline, root: zarr.Group, source: Source) -> dict:
    """Copy every array and the group attributes of a VCZ into an empty root group."""
    batch = source.group
    validate.check_batch(batch)
    root.attrs.update(dict(batch.attrs))
    for name, src in schema.arrays(batch).items():
        pipe.copy_array(src, schema.create_like(root, name, src))
    samples = schema.live_samples(batch)
    return {
        **journal.added(samples, 0),
        "n_samples": len(samples),
        "n_variants": int(schema.array(batch, "variant_position").shape[0]),
        "source": source.provenance(),
    }
