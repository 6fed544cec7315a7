"""restore: bring withdrawn samples' columns back from an earlier snapshot (undoes a remove)."""

from __future__ import annotations

from collections.abc import Sequence

import zarr

from .. import chunks, schema
from ..errors import SampleError
from ..summaries import update_summaries


def restore_samples(pipe: chunks.Pipeline, root: zarr.Group, earlier: zarr.Group, names: Sequence[str],
                    indexes: Sequence[int]) -> dict:
    """Copy columns `indexes` (holding `names` in `earlier`) back into null columns of root."""
    ids = schema.sample_ids(root)
    live = set(ids.tolist())
    for name, i in zip(names, indexes, strict=True):
        if ids[i] != schema.NULL_SAMPLE:
            raise SampleError(f"cannot restore {name}: column {i} holds {ids[i]!r}")
        if name in live:
            raise SampleError(f"cannot restore {name}: it is in the repository again (re-added)")
    for name, array in schema.sample_arrays(root).items():
        pipe.copy_columns(schema.array(earlier, name), array, list(indexes))
    update_summaries(root, added=list(indexes))  # after the columns are back
    return {
        "samples_restored": list(names),
        "n_samples_restored": len(names),
        "sample_indexes_restored": list(indexes),
        "n_samples": int((ids != schema.NULL_SAMPLE).sum()) + len(names),
    }
