"""vczrepo: versioned VCF Zarr (VCZ) repositories on icechunk.

The front door is `Repository`: every command is one of its methods. Names are imported
on first use, so `vczrepo --help` and `import vczrepo` stay cheap. Importing vczrepo
changes no other library's global state (the `vczrepo` command sets icechunk's log
filter for itself); vczrepo.logs says how icechunk's log lines are kept from stderr.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

__version__ = _version("vczrepo")

_WHERE = {
    "BranchMove": "repository", "CommitResult": "repository", "Repository": "repository",
    "open_dataset": "repository", "open_group": "repository", "Commit": "journal", "Settings": "settings",
    "CheckReport": "check", "RefReport": "check", "DiffResult": "diff", "Finding": "audit",
    "GCResult": "ops.gc", "GrowthCost": "ops.grow", "PurgeResult": "ops.purge",
    **{name: "errors" for name in (
        "ConcurrentUpdateError", "IncompatibleBatchError", "IntegrityError", "OutputExistsError", "ReadError",
        "RefError", "RepositoryError", "SampleError", "SourceError", "StorageError", "UsageError", "VczRepoError")},
}

__all__ = sorted([*_WHERE, "__version__"])

if TYPE_CHECKING:
    from .audit import Finding
    from .check import CheckReport, RefReport
    from .diff import DiffResult
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
    from .ops.gc import GCResult
    from .ops.grow import GrowthCost
    from .ops.purge import PurgeResult
    from .repository import BranchMove, CommitResult, Repository, open_dataset, open_group
    from .settings import Settings


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        if _WHERE[name] == "repository":  # the first import of icechunk: its log lines' colour (vczrepo.logs)
            from .logs import import_icechunk

            import_icechunk()
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vczrepo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
