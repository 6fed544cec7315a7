"""Typed errors. Each carries the exit code family the CLI uses.

Families: 1 storage or OS failure, 2 usage, 3 repository/ref problems, 4 unreadable
source, 5 incompatible batch, 6 sample problems, 7 concurrent update not applied,
8 integrity (damage found); the CLI adds 9 (`audit` found an id), 130 (interrupted: a
plain KeyboardInterrupt when nothing was written, an `Interrupted` saying what stands
otherwise) and 141 (the reader of the output went away).

icechunk's own exceptions are mapped here (`from_icechunk`), by their class and `kind`,
so a storage failure is never reported as a concurrent update or a missing ref.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class VczRepoError(Exception):
    """Base class: a one-line message and an exit code."""

    exit_code = 1


class StorageError(VczRepoError):
    """The storage failed (network, permission, disk full…) reading or writing an object."""

    exit_code = 1


class UsageError(VczRepoError, ValueError):
    """Options that do not go together, a value out of range, a malformed URL or storage option."""

    exit_code = 2


class ReadError(UsageError):
    """vcztools refused a view/query (bad option, region, filter or sample list)."""


class RepositoryError(VczRepoError):
    """The repository does not exist, already exists, or cannot be opened."""

    exit_code = 3


class RefError(VczRepoError):
    """A branch, tag or snapshot that does not exist, or a name that is invalid or taken."""

    exit_code = 3


class OutputExistsError(VczRepoError):
    """An output path that would be overwritten."""

    exit_code = 3


class SourceError(VczRepoError):
    """A batch that is not a readable VCZ or VCF."""

    exit_code = 4


class IncompatibleBatchError(VczRepoError):
    """A batch whose variants or fields do not match the repository's."""

    exit_code = 5


class SampleError(VczRepoError):
    """Duplicate, unknown, already-present or already-removed samples."""

    exit_code = 6


class ConcurrentUpdateError(VczRepoError):
    """Other writers kept committing first, or a ref moved under a compare-and-swap."""

    exit_code = 7


class IntegrityError(VczRepoError):
    """Damage: a corrupt or missing object, or data that breaks the VCZ invariants."""

    exit_code = 8


class Interrupted(KeyboardInterrupt):
    """Ctrl-C reached Python once something was written: the message says what stands."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InterruptedAfterCommit(Interrupted):
    """Ctrl-C reached Python only once the commit had landed: the operation is done."""

    def __init__(self, snapshot: str):
        super().__init__(f"interrupted after the commit landed: {snapshot}")
        self.snapshot = snapshot


class PlanInterrupted(Interrupted):
    """Ctrl-C during a multi-step operation whose plan is recorded: the next write finishes it."""


def listing(items: Iterable[str], limit: int = 5) -> str:
    """Names for a one-line message: the first few and a count (errors never grow with the data)."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)} in all)"


_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")


def short_message(error: BaseException) -> str:
    """An icechunk error's own sentence, without the Rust context trace that follows it, and
    without URL query strings (they can carry a SAS token or a signature)."""
    text = getattr(error, "message", None) or str(error)
    first = text.split("context:")[0].strip().splitlines()
    line = first[0].strip() if first else type(error).__name__
    return _URL_QUERY.sub(r"\1?…", line)


def from_icechunk(error: Exception, doing: str) -> VczRepoError:
    """The vczrepo error for an icechunk exception raised while `doing` something."""
    import icechunk

    kind = str(getattr(error, "kind", ""))
    what = f"{doing}: {short_message(error)}"
    if isinstance(error, icechunk.ConflictError):
        return ConcurrentUpdateError(what)
    if kind in ("snapshot-not-found", "manifest-info-not-found", "chunk-not-found") or isinstance(
        error, icechunk.SnapshotNotFoundError
    ):
        return IntegrityError(f"damaged repository: {what}")
    if isinstance(error, icechunk.RefNotFoundError | icechunk.AlreadyExistsError):
        return RefError(what)
    if isinstance(error, icechunk.RepositoryNotFoundError):
        return RepositoryError(what)
    if isinstance(error, icechunk.FormatError):
        return IntegrityError(f"damaged repository: {what}")
    if isinstance(error, icechunk.InvalidInputError):
        return UsageError(what)
    return StorageError(f"storage: {what}")
