"""vczrepo: versioned VCF Zarr (VCZ) repositories on icechunk."""

from .errors import (
    ConcurrentUpdateError,
    IncompatibleBatchError,
    OutputExistsError,
    RefError,
    RepositoryError,
    SampleError,
    SourceError,
    VczRepoError,
)
from .read import checkout, export_group, open_group
from .repository import Commit, CommitResult, Repository

__all__ = [
    "Commit",
    "CommitResult",
    "ConcurrentUpdateError",
    "IncompatibleBatchError",
    "OutputExistsError",
    "RefError",
    "Repository",
    "RepositoryError",
    "SampleError",
    "SourceError",
    "VczRepoError",
    "checkout",
    "export_group",
    "open_group",
]
