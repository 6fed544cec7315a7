"""remove: withdraw samples the way vcztools understands.

A withdrawn sample's id becomes the null sample "" and all its call data is overwritten
with missing values, so vcztools neither lists nor emits it. Only the sample-chunk
column holding each sample is rewritten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import icechunk
import zarr

from .. import chunks, schema
from ..errors import SampleError, listing
from ..settings import Settings
from ..summaries import journal_entry, update_summaries


def null_columns(pipe: chunks.Pipeline, root: zarr.Group, indexes: list[int],
                 share: chunks.Share = chunks.WHOLE) -> None:
    """Overwrite (a share of) the given sample columns of every sample array with missing values."""
    for name, array in schema.sample_arrays(root).items():
        pipe.fill_samples(array, indexes, schema.null_value(name, array), share)


def null_share(fork: icechunk.ForkSession, settings: Settings, indexes: list[int],
               share: chunks.Share) -> icechunk.ForkSession:
    """A distributed worker's part of a remove (runs on the worker)."""
    null_columns(chunks.Pipeline(settings), zarr.open_group(fork.store, mode="r+"), indexes, share)
    return fork


def remove_samples(pipe: chunks.Pipeline, root: zarr.Group, names: Sequence[str],
                   was_removed: Callable[[str], bool]) -> dict:
    """Null the named samples; `was_removed` tells an already-removed name from an unknown one."""
    if not names:
        raise SampleError("no samples given to remove")
    dups = sorted(n for n, k in Counter(names).items() if k > 1)
    if dups:
        raise SampleError(f"sample(s) listed more than once: {listing(dups)}")
    ids = schema.sample_ids(root).tolist()
    position = {s: i for i, s in enumerate(ids) if s != schema.NULL_SAMPLE}
    absent = [n for n in names if n not in position]
    if len(absent) == 1:
        state = "already removed" if was_removed(absent[0]) else "unknown sample"
        raise SampleError(f"cannot remove {absent[0]}: {state}")
    if absent:
        raise SampleError(f"cannot remove {len(absent)} samples not in the repository: {listing(absent)}")
    indexes = [position[n] for n in names]
    summaries = update_summaries(root, removed=indexes, pipe=pipe)  # before the columns are nulled
    if pipe.settings.distributed:
        from ..distributed import run_forked

        run_forked(root.store, pipe.settings, null_share, (indexes,))
    else:
        null_columns(pipe, root, indexes)
    return {
        "samples_removed": list(names),
        "n_samples_removed": len(names),
        "sample_indexes_removed": indexes,
        "n_samples": len(position) - len(names),
        **journal_entry(summaries),
    }
