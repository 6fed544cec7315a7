"""Regions and targets on contigs the repository does not have, as bcftools treats them.

`bcftools view/query -r chrZZ:1-1000` on a file without chrZZ reads no records from it and
exits 0 (1.16 says nothing; later releases warn); vcztools stops with "'chrZZ' is not in
list". vczrepo does what bcftools does, with a warning naming the contigs: they are left
out of `-r/-R/-t/-T` before vcztools sees them, and when nothing is left to select the
selection matches no record (`-t ^chrZZ`, a complement, then excludes nothing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import listing

log = logging.getLogger("vczrepo")


def _region_contig(region: str) -> str:
    from vcztools.regions import parse_region_string

    return parse_region_string(region)[0]


def _line_contig(line: str) -> str | None:
    """The contig a regions-file line names (None for a blank or comment line: vcztools judges those)."""
    name = line.strip().split("\t")[0]
    return name if name and not name.startswith("#") else None


def _without(key: str, text: str, known: set[str], tmp: str) -> tuple[str | None, list[str]]:
    """A -r/-t list or -R/-T file without the entries on unknown contigs (None: no entry left,
    or the text itself when all are known), and those contigs."""
    if not key.endswith("_file"):
        items = text.split(",")
        missing = [_region_contig(r) for r in items if _region_contig(r) not in known]
        kept = [r for r in items if _region_contig(r) in known]
        return (",".join(kept) or None) if missing else text, missing
    try:
        lines = Path(text).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # vcztools says why
        return text, []
    missing = [c for c in map(_line_contig, lines) if c is not None and c not in known]
    if not missing:
        return text, []
    if not any(_line_contig(line) in known for line in lines):
        return None, missing
    path = os.path.join(tmp, key)
    Path(path).write_text("".join(f"{line}\n" for line in lines if _line_contig(line) not in missing),
                          encoding="utf-8")
    return path, missing


@contextlib.contextmanager
def known_contigs_only(contigs: list[str], options: dict) -> Iterator[dict | None]:
    """`options` (vcztools' Python names) with the regions and targets on contigs not in
    `contigs` left out, and one warning naming those contigs; None when the selection can
    no longer match any record. A regions file that loses lines is rewritten to a temporary
    file for the duration."""
    known, unknown, out = set(contigs), [], dict(options)
    matches_nothing = False
    with tempfile.TemporaryDirectory(prefix="vczrepo-regions-") as tmp:
        for key in ("regions", "regions_file", "targets", "targets_file"):
            if not out.get(key):
                continue
            complement = key.startswith("targets") and out[key].startswith("^")
            kept, missing = _without(key, out[key][complement:], known, tmp)
            unknown += [c for c in missing if c not in unknown]
            if kept is None:
                del out[key]
                matches_nothing |= not complement  # an empty complement excludes nothing
            else:
                out[key] = "^" * complement + kept
        if unknown:
            log.warning("warning: no contig %s in the repository: no records from %s",
                        listing(unknown), "it" if len(unknown) == 1 else "them")
        yield None if matches_nothing else out
