"""Where a repository lives: URL or path → icechunk storage, its config, and the write lock.

icechunk's local filesystem storage does not make concurrent commits safe, so every
mutation of a local repository holds an OS file lock (``fcntl.flock``) for its whole
duration. Object stores are safe through icechunk's conditional writes and take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import icechunk

LOCK_FILE = "vczrepo.lock"
SAMPLES_PER_MANIFEST_SPLIT = 1  # sample chunks per manifest split: appends touch new splits only

_memory_storages: dict[str, icechunk.Storage] = {}
_memory_lock = threading.Lock()


@dataclass(frozen=True)
class Location:
    """A parsed repository (or batch) location."""

    url: str
    scheme: str  # "file", "memory", "s3", "gs", "az"
    path: str  # local path, or bucket/prefix
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"


def parse_location(url: str | os.PathLike, options: dict[str, str] | None = None) -> Location:
    text = os.fspath(url)
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = parsed.path if scheme == "file" else text
        return Location(text, "file", str(Path(path).expanduser().absolute()), dict(options or {}))
    if scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss", "memory"):
        norm = {"gcs": "gs", "abfs": "az", "abfss": "az"}.get(scheme, scheme)
        return Location(text, norm, (parsed.netloc + parsed.path).strip("/"), dict(options or {}))
    raise ValueError(f"unsupported storage URL scheme {scheme!r} in {text!r}")


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def make_storage(loc: Location) -> icechunk.Storage:
    """Build the icechunk storage for a location; credentials come from the environment."""
    opts = dict(loc.options)
    if loc.scheme == "file":
        return icechunk.local_filesystem_storage(loc.path)
    if loc.scheme == "memory":
        with _memory_lock:
            if loc.path not in _memory_storages:
                _memory_storages[loc.path] = icechunk.in_memory_storage()
            return _memory_storages[loc.path]
    bucket, _, prefix = loc.path.partition("/")
    if loc.scheme == "s3":
        storage = icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix or None,
            region=opts.pop("region", None),
            endpoint_url=opts.pop("endpoint_url", None),
            allow_http=_truthy(opts.pop("allow_http", "false")),
            force_path_style=_truthy(opts.pop("force_path_style", "false")),
            anonymous=_truthy(opts.pop("anonymous", "false")) or None,
            from_env=True if not opts.get("access_key_id") else None,
            access_key_id=opts.pop("access_key_id", None),
            secret_access_key=opts.pop("secret_access_key", None),
            session_token=opts.pop("session_token", None),
        )
        if opts:
            raise ValueError(f"unknown S3 storage option(s): {', '.join(sorted(opts))}")
        return storage
    if loc.scheme == "gs":
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None, from_env=True, config=opts or None)
    if loc.scheme == "az":
        container, _, prefix = prefix.partition("/")
        return icechunk.azure_storage(
            account=bucket, container=container, prefix=prefix, from_env=True, config=opts or None
        )
    raise ValueError(f"unsupported storage scheme {loc.scheme!r}")


def repository_config() -> icechunk.RepositoryConfig:
    """Config for new repositories: manifests split along the samples dimension."""
    config = icechunk.RepositoryConfig.default()
    splitting = icechunk.ManifestSplittingConfig.from_dict(
        {
            icechunk.ManifestSplitCondition.AnyArray(): {
                icechunk.ManifestSplitDimCondition.DimensionName("samples"): SAMPLES_PER_MANIFEST_SPLIT
            }
        }
    )
    config.manifest = icechunk.ManifestConfig(splitting=splitting)
    return config


@contextlib.contextmanager
def write_lock(loc: Location) -> Iterator[None]:
    """Serialise writers of one local repository across processes; no-op on object stores."""
    if not loc.is_local:
        yield
        return
    lock_path = Path(loc.path) / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
