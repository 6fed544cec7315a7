"""vczrepo: versioned VCF Zarr (VCZ) repositories on icechunk.

The front door is `Repository`: every command is one of its methods. Importing vczrepo
changes no other library's global state (the `vczrepo` command sets icechunk's log
filter for itself).
"""

from importlib.metadata import version as _version

from .errors import (
    ConcurrentUpdateError,
    IncompatibleBatchError,
    IntegrityError,
    OutputExistsError,
    ReadError,
    RefError,
    RepositoryError,
    SampleError,
    SourceError,
    StorageError,
    UsageError,
    VczRepoError,
)
from .journal import Commit
from .repository import BranchMove, CommitResult, Repository, open_dataset, open_group
from .settings import Settings

__version__ = _version("vczrepo")

__all__ = [
    "BranchMove",
    "Commit",
    "CommitResult",
    "ConcurrentUpdateError",
    "IncompatibleBatchError",
    "IntegrityError",
    "OutputExistsError",
    "ReadError",
    "RefError",
    "Repository",
    "RepositoryError",
    "SampleError",
    "Settings",
    "SourceError",
    "StorageError",
    "UsageError",
    "VczRepoError",
    "__version__",
    "open_dataset",
    "open_group",
]
