"""init: the first commit holds a batch's samples and variants, stored as zarr format 3."""

from __future__ import annotations

import zarr

from .. import chunks, schema, validate  # integrity: validate
from ..sources import Source


def import_batch(root: zarr.Group, source: Source) -> dict:
    """Copy every array and the group attributes of a VCZ into an empty root group."""
    batch = source.group
    validate.check_batch(batch)  # integrity: was schema.check_unique_samples
    root.attrs.update(dict(batch.attrs))
    for name, src in schema.arrays(batch).items():
        chunks.copy_array(src, schema.create_like(root, name, src))
    samples = schema.live_samples(batch)
    return {
        **schema.journal_added(samples, 0),
        "n_samples": len(samples),
        "n_variants": int(batch["variant_position"].shape[0]),
        "source": source.provenance(),
    }
