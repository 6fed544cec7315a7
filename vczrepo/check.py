"""`check`: an integrity check of the VCZ at a ref that a user can run at any time.

Every chunk of every array is read; shapes must agree along samples and variants; sample
ids must be unique apart from nulls; null samples must hold only missing/fill values; and
the commit journal replayed from the first commit must give the stored sample list.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import zarr

from . import journal, schema
from .chunks import chunk_ranges

if TYPE_CHECKING:
    from .repository import Repository


@dataclass
class CheckReport:
    ref: str
    snapshot: str
    problems: list[str] = field(default_factory=list)
    arrays_read: int = 0
    chunks_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ref": self.ref, "snapshot": self.snapshot, "ok": self.ok, "problems": self.problems,
                "arrays_read": self.arrays_read, "chunks_read": self.chunks_read}


def _regions(array: zarr.Array):
    return itertools.product(*(list(chunk_ranges(n, c)) for n, c in zip(array.shape, array.chunks, strict=True)))


def _check_array(repo: Repository, name: str, array: zarr.Array, nulls: np.ndarray, report: CheckReport,
                 lock: threading.Lock):
    axis = schema.sample_axis(array)

    def one(region):
        try:
            values = np.asarray(array[region])
        except Exception as e:  # noqa: BLE001 - any decode or storage failure is a problem to report
            with lock:
                report.problems.append(f"{name}: chunk at {[s.start for s in region]} unreadable ({type(e).__name__}: {e})")
            return
        with lock:
            report.chunks_read += 1
        if axis is None or name == "sample_id":
            return
        s = region[axis]
        local = np.flatnonzero(nulls[s.start:s.stop])
        if local.size == 0:
            return
        held = np.take(values, local, axis=axis)
        bad = ~schema.is_missing_or_fill(held)
        if bad.any():
            cols = sorted({int(s.start + local[i]) for i in np.nonzero(bad)[axis]})
            with lock:
                report.problems.append(f"{name}: null sample(s) at index {cols} hold data")

    repo.pipe.run_bounded(one, _regions(array), None)


def _journal_problems(repo: Repository, sid: str, ids: list[str]) -> list[str]:
    """Where sample_id disagrees with the commit journal (nothing if a commit is not vczrepo's).

    Appends journal their columns and a fingerprint of their ids: an appended id is read
    from `ids`, or from the journal of the remove that nulled it (purge nulls the name in both),
    and checked against it."""
    commits = [c for c in repo.log(sid) if c.op != "root"][::-1]
    if any("vczrepo" not in c.metadata for c in commits):
        return []
    removed = {}
    for c in commits:
        for i, name in zip(c.metadata.get("sample_indexes_removed", []), c.metadata.get("samples_removed", []),
                           strict=True):
            removed.setdefault(i, name)
    samples: list[str] = []
    for c in commits:
        m = c.metadata
        samples.extend([schema.NULL_SAMPLE] * m.get("n_padding", 0))
        if "sample_range" in m:
            start, stop = m["sample_range"]
            names = [removed.get(i, ids[i]) if ids[i] == schema.NULL_SAMPLE else ids[i]  # purged: null
                     for i in range(start, min(stop, len(ids)))]
            if start != len(samples) or journal.names_digest(names) != m["samples_sha256"]:
                return [(f"sample_id disagrees with the commit journal: the ids of columns {start}-{stop - 1} "
                         f"are not those {c.op} {c.id} added")]
            samples.extend(names)
        for i in m.get("sample_indexes_removed", []):
            samples[i] = schema.NULL_SAMPLE
        for i, name in zip(m.get("sample_indexes_restored", []), m.get("samples_restored", []), strict=True):
            samples[i] = name
    if samples != ids:
        return [f"sample_id disagrees with the commit journal ({len(ids)} stored, {len(samples)} expected)"]
    return []


def check(repo: Repository, ref: str = "main") -> CheckReport:
    sid = repo.resolve(ref)
    report = CheckReport(ref, sid)
    root = repo.group(sid)
    arrays = schema.arrays(root)
    for required in ("sample_id", "variant_position", "contig_id", "variant_contig", "variant_allele"):
        if required not in arrays:
            report.problems.append(f"missing array {required}")
    if report.problems:
        return report
    try:
        ids = schema.sample_ids(root)
    except Exception as e:  # noqa: BLE001 - any storage or decode failure is a problem to report
        report.problems.append(f"sample_id unreadable ({type(e).__name__}: {e})")
        return report
    n_samples, n_variants = len(ids), arrays["variant_position"].shape[0]
    for name, a in arrays.items():
        d = schema.dims(a)
        if schema.VARIANTS in d and a.shape[d.index(schema.VARIANTS)] != n_variants:
            report.problems.append(f"{name}: {a.shape[d.index(schema.VARIANTS)]} variants, expected {n_variants}")
        if schema.SAMPLES in d and a.shape[d.index(schema.SAMPLES)] != n_samples:
            report.problems.append(f"{name}: {a.shape[d.index(schema.SAMPLES)]} samples, expected {n_samples}")
    counts = Counter(s for s in ids.tolist() if s != schema.NULL_SAMPLE)
    dups = sorted(s for s, n in counts.items() if n > 1)
    if dups:
        report.problems.append(f"duplicate sample ids: {', '.join(dups)}")
    nulls = ids == schema.NULL_SAMPLE
    lock = threading.Lock()
    for name, a in arrays.items():
        _check_array(repo, name, a, nulls, report, lock)
        report.arrays_read += 1
    report.problems.extend(_journal_problems(repo, sid, ids.tolist()))
    return report
