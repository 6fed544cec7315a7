"""vczrepo: versioned VCF Zarr (VCZ) repositories on icechunk."""

import os as _os

import icechunk as _icechunk

# icechunk warns that local storage is unsafe for concurrent commits; vczrepo makes it
# safe with a file lock, so keep its Rust-side logs to errors unless ICECHUNK_LOG says otherwise.
if "ICECHUNK_LOG" not in _os.environ:
    _icechunk.set_logs_filter("error")

from .check import CheckReport, check
from .diff import RefDiff, diff
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
from .read import checkout, export_group, open_dataset, open_group, query, view
from .repository import Commit, CommitResult, Repository

__all__ = [
    "CheckReport",
    "Commit",
    "CommitResult",
    "ConcurrentUpdateError",
    "IncompatibleBatchError",
    "OutputExistsError",
    "RefDiff",
    "RefError",
    "Repository",
    "RepositoryError",
    "SampleError",
    "SourceError",
    "VczRepoError",
    "check",
    "checkout",
    "diff",
    "export_group",
    "open_dataset",
    "open_group",
    "query",
    "view",
]
