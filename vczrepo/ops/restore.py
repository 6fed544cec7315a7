"""restore: bring withdrawn samples' columns back from an earlier snapshot (undoes a remove)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from .. import chunks, schema
from ..errors import SampleError
from ..summaries import journal_entry, update_summaries
from .normalise import Variants


def row_map(now: zarr.Group, earlier: zarr.Group) -> np.ndarray | None:
    """Per variant of `now`, its row in `earlier` (-1: a site added since, by a growth or an
    extend); None when the variants are the same rows. vczrepo only appends ALT alleles to a
    site and inserts new sites after the existing ones at their position, so a site's row is
    the first unmatched earlier row at its contig, position and REF whose ALTs begin its own."""
    def column(group: zarr.Group, name: str) -> np.ndarray:
        values = np.asarray(schema.array(group, name)[:])
        return schema.as_str(values) if values.dtype.kind in "OTU" else values

    names = ("contig_id", "variant_contig", "variant_position", "variant_allele")
    if all(np.array_equal(column(now, n), column(earlier, n)) for n in names):
        return None
    ours, theirs = Variants.read(now), Variants.read(earlier)
    by_site: dict[tuple, list[int]] = {}
    for j, site in enumerate(theirs.sites):
        by_site.setdefault(site, []).append(j)
    rows = np.full(len(ours.sites), -1, dtype=np.int64)
    for i, (site, alts) in enumerate(zip(ours.sites, ours.alts, strict=True)):
        candidates = by_site.get(site, [])
        for k, j in enumerate(candidates):
            if alts[:len(theirs.alts[j])] == theirs.alts[j]:
                rows[i] = j
                del candidates[k]
                break
    return rows


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
    rows = row_map(root, earlier)
    for name, array in schema.sample_arrays(root).items():
        moved = rows if schema.dims(array)[:1] == (schema.VARIANTS,) else None  # sample_id: no variants axis
        pipe.copy_columns(schema.array(earlier, name), array, list(indexes), moved, schema.null_value(name, array))
    summaries = update_summaries(root, added=list(indexes), pipe=pipe)  # after the columns are back
    return {
        "samples_restored": list(names),
        "n_samples_restored": len(names),
        "sample_indexes_restored": list(indexes),
        "n_samples": int((ids != schema.NULL_SAMPLE).sum()) + len(names),
        **journal_entry(summaries),
    }
