"""Ref names and ref expressions, as a git user writes them.

A ref expression is a branch, a tag, a snapshot id or a unique prefix of one (at least
`MIN_PREFIX` characters), optionally followed by `~N` (the N-th ancestor). Tags that a
purge replaced keep resolving to their new name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from .errors import RefError

SNAPSHOT_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{20}$")  # icechunk ids: 20 Crockford base32 chars
SNAPSHOT_PREFIX = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4,20}$")
MIN_PREFIX = 4
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-/]*$")
ANCESTOR = re.compile(r"^(?P<base>.+?)~(?P<n>\d*)$")


def validate_name(name: str, kind: str) -> None:
    """Branch and tag names: git-like, never a ref expression or mistakable for a snapshot id."""
    if (
        not NAME.match(name) or ".." in name or name.endswith(("/", ".", ".lock"))
        or "//" in name or "~" in name or SNAPSHOT_ID.match(name)
    ):
        raise RefError(f"invalid {kind} name: {name!r}")


def split_ancestor(expression: str) -> tuple[str, int]:
    """'main~2' -> ('main', 2); 'main~' -> ('main', 1); 'main' -> ('main', 0)."""
    match = ANCESTOR.match(expression)
    if not match:
        return expression, 0
    return match["base"], int(match["n"] or 1)


def by_prefix(prefix: str, snapshot_ids: Iterable[str]) -> str | None:
    """The one snapshot id starting with `prefix` (None if none; RefError if several)."""
    found = sorted({s for s in snapshot_ids if s.startswith(prefix.upper())})
    if len(found) > 1:
        raise RefError(f"ambiguous snapshot prefix {prefix!r}: {', '.join(found[:5])}"
                       + (f", … ({len(found)} in all)" if len(found) > 5 else ""))
    return found[0] if found else None


def unknown(ref: str, names: Iterable[str]) -> RefError:
    """The error for a ref that is nothing known, with the nearest names."""
    names = sorted(names)
    near = difflib.get_close_matches(ref, names, n=3, cutoff=0.3) or names[:5]
    return RefError(f"unknown ref {ref!r}; nearest: {', '.join(near) or '(none)'}")
