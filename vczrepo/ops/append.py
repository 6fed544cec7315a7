"""append: add a batch's samples to every sample-dimensioned array.

Variant-dimensioned arrays are kept as they are, after checking that the batch has
exactly the same contigs, positions and alleles.
"""

from __future__ import annotations

import zarr

from .. import chunks, schema
from ..sources import Source


def append_batch(root: zarr.Group, source: Source) -> dict:
    batch = source.group
    fields, batch_fields = schema.sample_arrays(root), schema.sample_arrays(batch)
    ids = schema.check_appendable(root, batch, fields, batch_fields)
    offset = int(fields["sample_id"].shape[0])
    for name, dst in fields.items():
        axis = schema.sample_axis(dst)
        shape = list(dst.shape)
        shape[axis] = offset + len(ids)
        dst.resize(tuple(shape))
        chunks.copy_samples(batch_fields[name], dst, offset)
    return {
        "samples_added": ids,
        "n_samples_added": len(ids),
        "n_samples": len(schema.live_samples(root)),  # sample_id now includes the batch
        "source": source.provenance(),
    }
