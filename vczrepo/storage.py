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

from .errors import RepositoryError

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


S3_OPTIONS = (
    "region", "endpoint_url", "allow_http", "force_path_style", "anonymous",
    "access_key_id", "secret_access_key", "session_token",
)
FLAGS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def _flag(opts: dict[str, str], key: str) -> bool:
    """A boolean storage option; anything but a clear yes/no is refused, not read as false."""
    value = opts.get(key, "false")
    if value.lower() not in FLAGS:
        raise ValueError(f"storage option {key}: expected true or false, got {value!r}")
    return FLAGS[value.lower()]


def _no_options(loc: Location) -> None:
    """Local and in-memory repositories take no options: silently ignoring one would hide a typo."""
    if loc.options:
        names = ", ".join(sorted(loc.options))
        raise ValueError(f"{loc.scheme} repositories take no storage options: {names}")


def _s3_storage(bucket: str, prefix: str, opts: dict[str, str]) -> icechunk.Storage:
    """S3 or S3-compatible storage; credentials from the environment unless keys or anonymous."""
    unknown = sorted(set(opts) - set(S3_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown S3 storage option(s): {', '.join(unknown)}; known: {', '.join(S3_OPTIONS)}"
        )
    anonymous = _flag(opts, "anonymous")
    keys = [opts.get("access_key_id"), opts.get("secret_access_key")]
    if any(keys) and not all(keys):
        raise ValueError("storage options access_key_id and secret_access_key go together")
    if anonymous and any(keys):
        raise ValueError("storage option anonymous=true conflicts with access keys")
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=prefix or None,
        region=opts.get("region"),
        endpoint_url=opts.get("endpoint_url"),
        allow_http=_flag(opts, "allow_http"),
        force_path_style=_flag(opts, "force_path_style"),
        anonymous=anonymous or None,
        access_key_id=keys[0],
        secret_access_key=keys[1],
        session_token=opts.get("session_token"),
    )


def make_storage(loc: Location) -> icechunk.Storage:
    """Build the icechunk storage for a location; credentials come from the environment."""
    if loc.scheme == "file":
        _no_options(loc)
        return icechunk.local_filesystem_storage(loc.path)
    if loc.scheme == "memory":
        _no_options(loc)
        with _memory_lock:
            if loc.path not in _memory_storages:
                _memory_storages[loc.path] = icechunk.in_memory_storage()
            return _memory_storages[loc.path]
    bucket, _, prefix = loc.path.partition("/")
    opts = loc.options
    if loc.scheme == "s3":
        return _s3_storage(bucket, prefix, opts)
    if loc.scheme == "gs":
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None, from_env=True, config=opts or None)
    if loc.scheme == "az":
        container, _, prefix = prefix.partition("/")
        return icechunk.azure_storage(
            account=bucket, container=container, prefix=prefix, from_env=True, config=opts or None
        )
    raise ValueError(f"unsupported storage scheme {loc.scheme!r}")


def stored_keys(loc: Location) -> list[str]:
    """Names already stored at a location: directory entries, or object keys under the prefix."""
    if loc.is_local:
        path = Path(loc.path)
        if not path.exists():
            return []
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
    try:
        return sorted(o.key for o in make_storage(loc).list_objects_metadata())
    except icechunk.IcechunkError as e:
        raise RepositoryError(f"cannot list {loc.url}: {str(e).splitlines()[0]}") from e


def ensure_empty(loc: Location) -> None:
    """Refuse to create a repository where anything is stored already.

    Object stores have no directories: objects already under the prefix would be mixed
    with the repository's own, and nothing would tell them apart afterwards.
    """
    found = stored_keys(loc)
    if found:
        shown = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
        raise RepositoryError(
            f"refusing to create a repository at non-empty location: {loc.url} (holds {shown})"
        )


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


@dataclass
class _Held:
    """A repository's lock in this process: threads take turns, the owner may re-enter."""

    turn: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    fd: int = -1


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


@contextlib.contextmanager
def write_lock(loc: Location) -> Iterator[None]:
    """Serialise writers of one local repository across processes and threads; no-op on
    object stores. The lock is on the repository's directory itself (no lock file: icechunk
    creates repositories only in empty directories), and re-entrant, so that init can hold
    it from its emptiness check to its first commit."""
    if not loc.is_local:
        yield
        return
    path = os.path.realpath(loc.path)
    with _held_lock:
        held = _held.setdefault(path, _Held())
    with held.turn:
        if held.depth == 0:
            held.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(held.fd, fcntl.LOCK_EX)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0:
                fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)


def short_message(error: Exception) -> str:
    """An icechunk error's own sentence, without the Rust context trace that follows it."""
    text = getattr(error, "message", None) or str(error)
    return text.split("context:")[0].strip().splitlines()[0] if text.strip() else type(error).__name__
