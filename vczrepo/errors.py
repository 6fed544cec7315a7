"""Typed errors. Each carries the exit code family the CLI uses (see README).

Families: 3 repository/ref problems, 4 unreadable source, 5 incompatible batch,
6 sample problems, 7 concurrent update not applied, 8 integrity check failed,
130 interrupted.
"""

from __future__ import annotations


class VczRepoError(Exception):
    """Base class: a one-line message and an exit code."""

    exit_code = 1


class RepositoryError(VczRepoError):
    """The repository does not exist, already exists, or cannot be opened."""

    exit_code = 3


class RefError(VczRepoError):
    """A branch, tag or snapshot that does not exist, or a name that is invalid or taken."""

    exit_code = 3


class OutputExistsError(VczRepoError):
    """An output path that would be overwritten."""

    exit_code = 3


class ReadError(VczRepoError):
    """vcztools refused a view/query (bad option, region, filter or sample list)."""

    exit_code = 2


class SourceError(VczRepoError):
    """A batch that is not a readable VCZ or VCF."""

    exit_code = 4


class IncompatibleBatchError(VczRepoError):
    """A batch whose variants or fields do not match the repository's."""

    exit_code = 5


class SampleError(VczRepoError):
    """Duplicate, unknown, already-present or already-removed samples."""

    exit_code = 6


class IntegrityError(VczRepoError):
    """`check` found a problem in the VCZ at a ref."""

    exit_code = 8


class ConcurrentUpdateError(VczRepoError):
    """Other writers kept committing first; the operation was retried and gave up."""

    exit_code = 7
