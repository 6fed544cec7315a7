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
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import icechunk

from . import shutdown
from .errors import RepositoryError, UsageError, short_message
from .logs import local_storage

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, S3Config

SAMPLES_PER_MANIFEST_SPLIT = 1  # sample chunks per manifest split: appends touch new splits only
# variant chunks per manifest split: a region read loads (and an extend rewrites) the splits it
# touches, not a sample chunk column's whole manifest; 1,000 references (~30 KB) per object keep
# a split's load well below one object-storage request's latency
VARIANTS_PER_MANIFEST_SPLIT = 1_000

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
    raise UsageError(f"unsupported storage URL scheme {scheme!r} in {text!r}")


def _no_options(loc: Location) -> None:
    """Local and in-memory repositories take no options: silently ignoring one would hide a typo."""
    if loc.options:
        names = ", ".join(sorted(loc.options))
        raise UsageError(f"{loc.scheme} repositories take no storage options: {names}")


@dataclass(frozen=True)
class Option:
    """One storage option: how its value is checked, whether it is a secret, what it means."""

    kind: str  # "text", "flag", "url" (http or https), "path" (an existing file)
    meaning: str
    secret: bool = False


_ALLOW_HTTP = Option("flag", "allow plain http:// endpoints (local or emulated servers)")

# Per storage kind, the options vczrepo accepts, named as obstore (and so vcztools) users
# spell them for that cloud. One table for repositories (icechunk) and batches (obstore).
STORAGE_OPTIONS: dict[str, dict[str, Option]] = {
    "s3": {
        "region": Option("text", "bucket region (default: from the environment)"),
        "endpoint_url": Option("url", "S3-compatible server, e.g. http://127.0.0.1:9000"),
        "allow_http": _ALLOW_HTTP,
        "force_path_style": Option("flag", "path-style requests (bucket in the path, not the host name)"),
        "anonymous": Option("flag", "unsigned requests (public buckets)"),
        "access_key_id": Option("text", "access key id (default: from the environment)"),
        "secret_access_key": Option("text", "secret access key, with access_key_id", secret=True),
        "session_token": Option("text", "session token for temporary credentials", secret=True),
    },
    "gs": {
        "service_account_path": Option("path", "service account JSON file"),
        "service_account_key": Option("text", "service account JSON, inline", secret=True),
        "application_credentials": Option("path", "application default credentials JSON file"),
        "bearer_token": Option("text", "OAuth bearer token", secret=True),
        "anonymous": Option("flag", "unsigned requests (public buckets)"),
        "base_url": Option("url", "GCS-compatible server instead of https://storage.googleapis.com"),
        "allow_http": _ALLOW_HTTP,
    },
    "az": {
        "account_key": Option("text", "storage account key (default: from the environment)", secret=True),
        "sas_token": Option("text", "shared access signature (query string)", secret=True),
        "bearer_token": Option("text", "OAuth bearer token", secret=True),
        "anonymous": Option("flag", "unsigned requests (public containers)"),
        "endpoint": Option("url", "blob service URL including the account, e.g. "
                                  "http://127.0.0.1:10000/devstoreaccount1"),
        "use_emulator": Option("flag", "Azurite at $AZURITE_BLOB_STORAGE_URL or http://127.0.0.1:10000, "
                                       "account devstoreaccount1 and its well-known key"),
        "allow_http": _ALLOW_HTTP,
    },
}
# Credential options of which at most one may be given (the rest of the kind's options combine).
_ALTERNATIVES = {
    "gs": ("service_account_path", "service_account_key", "application_credentials", "bearer_token",
           "anonymous"),
    "az": ("account_key", "sas_token", "bearer_token", "anonymous"),
}
_KIND_NAMES = {"s3": "S3", "gs": "GCS", "az": "Azure"}
FLAGS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def _shown(option: Option, value: str) -> str:
    return "<hidden>" if option.secret else repr(value)


def check_options(scheme: str, options: dict[str, str]) -> dict[str, str | bool]:
    """Validate a kind's storage options: flags become booleans; anything wrong is a one-line
    ValueError that names the option and never shows a secret's value."""
    table = STORAGE_OPTIONS[scheme]
    unknown = sorted(set(options) - set(table))
    if unknown:
        raise UsageError(f"unknown {_KIND_NAMES[scheme]} storage option(s): {', '.join(unknown)}; "
                         f"known: {', '.join(table)}")
    out: dict[str, str | bool] = {}
    for key, value in sorted(options.items(), key=lambda kv: table[kv[0]].kind != "flag"):
        option = table[key]
        if not isinstance(value, str):
            raise UsageError(f"storage option {key}: expected a string, got {type(value).__name__}")
        if option.kind == "flag":
            if value.lower() not in FLAGS:
                raise UsageError(f"storage option {key}: expected true or false, got {_shown(option, value)}")
            out[key] = FLAGS[value.lower()]
            continue
        if not value.strip():
            raise UsageError(f"storage option {key}: empty value")
        if option.kind == "url":
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise UsageError(f"storage option {key}: expected an http:// or https:// URL, "
                                 f"got {_shown(option, value)}")
            if parsed.scheme == "http" and not out.get("allow_http") and not out.get("use_emulator"):
                raise UsageError(f"storage option {key} is a plain http:// URL: add allow_http=true")
        if option.kind == "path" and not Path(value).expanduser().is_file():
            raise UsageError(f"storage option {key}: no such file: {value!r}")
        out[key] = value
    given = [k for k in _ALTERNATIVES.get(scheme, ()) if out.get(k, False)]
    if len(given) > 1:
        raise UsageError(f"storage options {' and '.join(given)} are alternatives: give one")
    if scheme == "s3":
        keys = [out.get("access_key_id"), out.get("secret_access_key")]
        if any(keys) and not all(keys):
            raise UsageError("storage options access_key_id and secret_access_key go together")
        if out.get("anonymous") and any(keys):
            raise UsageError("storage option anonymous=true conflicts with access keys")
    return out


def _s3_storage(bucket: str, prefix: str, opts: dict) -> icechunk.Storage:
    """S3 or S3-compatible storage; credentials from the environment unless keys or anonymous."""
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=prefix or None,
        region=opts.get("region"),
        endpoint_url=opts.get("endpoint_url"),
        allow_http=opts.get("allow_http", False),
        force_path_style=opts.get("force_path_style", False),
        anonymous=opts.get("anonymous") or None,
        access_key_id=opts.get("access_key_id"),
        secret_access_key=opts.get("secret_access_key"),
        session_token=opts.get("session_token"),
    )


def _object_store_config(opts: dict, names: tuple[str, ...]) -> dict[str, str]:
    """The object_store configuration keys icechunk and obstore share (strings, as they take them)."""
    return {k: ("true" if v is True else "false" if v is False else v) for k, v in opts.items() if k in names}


def _gcs_storage(bucket: str, prefix: str, opts: dict) -> icechunk.Storage:
    """Google Cloud Storage; credentials from the environment unless given or anonymous."""
    return icechunk.gcs_storage(
        bucket=bucket,
        prefix=prefix or None,
        service_account_file=opts.get("service_account_path"),
        service_account_key=opts.get("service_account_key"),
        application_credentials=opts.get("application_credentials"),
        bearer_token=opts.get("bearer_token"),
        anonymous=opts.get("anonymous") or None,
        config=_object_store_config(opts, ("base_url", "allow_http")) or None,
    )


def _azure_storage(account: str, container: str, prefix: str, opts: dict) -> icechunk.Storage:
    """Azure Blob Storage; credentials from the environment unless given or anonymous."""
    if not container:
        raise UsageError(f"Azure locations are az://ACCOUNT/CONTAINER/PREFIX; no container in az://{account}")
    return icechunk.azure_storage(
        account=account,
        container=container,
        prefix=prefix,
        access_key=opts.get("account_key"),
        sas_token=opts.get("sas_token"),
        bearer_token=opts.get("bearer_token"),
        anonymous=opts.get("anonymous") or None,
        config=_object_store_config(opts, ("endpoint", "use_emulator", "allow_http")) or None,
    )


def object_store(loc: Location):
    """A read-only obstore store for a location on object storage, from the same options as the
    repository's: what sources.py reads batches through."""
    from obstore.store import AzureStore, GCSStore, S3Store

    opts = check_options(loc.scheme, loc.options)
    client: ClientConfig = {"allow_http": True} if opts.get("allow_http") else {}
    bucket, _, prefix = loc.path.partition("/")
    if loc.scheme == "s3":
        keys = {"endpoint_url": "endpoint", "region": "region", "access_key_id": "access_key_id",
                "secret_access_key": "secret_access_key", "session_token": "token"}
        config: dict[str, Any] = {keys[k]: v for k, v in opts.items() if k in keys}
        if opts.get("anonymous"):
            config["skip_signature"] = True
        if opts.get("endpoint_url"):  # path-style for compatible servers, as icechunk's force_path_style
            config["virtual_hosted_style_request"] = False
        return S3Store(bucket, prefix=prefix or None, config=cast("S3Config", config), client_options=client)
    if loc.scheme == "gs":
        config = _object_store_config(opts, ("service_account_path", "service_account_key",
                                             "application_credentials", "bearer_token", "base_url"))
        if opts.get("anonymous"):
            config["skip_signature"] = "true"
        return GCSStore(bucket, prefix=prefix or None, config=cast("GCSConfig", config), client_options=client)
    if loc.scheme == "az":
        container, _, prefix = prefix.partition("/")
        if not container:
            raise UsageError(f"Azure locations are az://ACCOUNT/CONTAINER/PREFIX; no container in {loc.url}")
        config = _object_store_config(opts, ("account_key", "sas_token", "bearer_token", "endpoint",
                                             "use_emulator"))
        if opts.get("anonymous"):
            config["skip_signature"] = "true"
        return AzureStore(container, prefix=prefix or None, account_name=bucket, config=cast("AzureConfig", config),
                          client_options=client)
    raise UsageError(f"{loc.scheme} locations are not object storage: {loc.url}")


class RawObjects:
    """The objects stored at a repository's location, read and written as bytes by key (local
    files or object storage): for what icechunk does not expose (vczrepo's digest records,
    audit's scan, erasing superseded documents)."""

    def __init__(self, loc: Location):
        if loc.scheme == "memory":
            raise UsageError("an in-memory repository's objects cannot be read as bytes")
        self.loc = loc
        self._store = None if loc.is_local else object_store(loc)

    def _path(self, key: str) -> Path:
        return Path(self.loc.path) / key

    def get(self, key: str) -> bytes | None:
        """An object's bytes (None if there is no such object)."""
        if self._store is None:
            try:
                return self._path(key).read_bytes()
            except FileNotFoundError:
                return None
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (FileNotFoundError, NotFoundError):
            return None

    def put(self, key: str, data: bytes) -> None:
        """Write an object whole (a local file appears complete or not at all)."""
        if self._store is None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return
        import obstore

        obstore.put(self._store, key, data)

    def delete(self, keys: list[str]) -> None:
        if self._store is None:
            for key in keys:
                self._path(key).unlink(missing_ok=True)
            return
        import obstore

        if keys:
            obstore.delete(self._store, keys)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys of the objects under a prefix ending in "/" (all with ""), sorted."""
        if self._store is None:
            root = Path(self.loc.path)
            top = root / prefix
            return sorted(p.relative_to(root).as_posix() for p in top.rglob("*") if p.is_file()) \
                if top.is_dir() else []
        import obstore

        return sorted(meta["path"] for batch in obstore.list(self._store, prefix=prefix or None) for meta in batch)


def make_storage(loc: Location) -> icechunk.Storage:
    """Build the icechunk storage for a location; credentials come from the environment."""
    shutdown.register()  # this process will run icechunk calls: let their threads finish at exit
    if loc.scheme == "file":
        _no_options(loc)
        return local_storage(loc.path)  # without icechunk's warning that the write lock makes moot
    if loc.scheme == "memory":
        _no_options(loc)
        with _memory_lock:
            if loc.path not in _memory_storages:
                _memory_storages[loc.path] = icechunk.in_memory_storage()
            return _memory_storages[loc.path]
    if loc.scheme not in STORAGE_OPTIONS:
        raise UsageError(f"unsupported storage scheme {loc.scheme!r}")
    opts = check_options(loc.scheme, loc.options)
    bucket, _, prefix = loc.path.partition("/")
    if loc.scheme == "s3":
        return _s3_storage(bucket, prefix, opts)
    if loc.scheme == "gs":
        return _gcs_storage(bucket, prefix, opts)
    container, _, prefix = prefix.partition("/")
    return _azure_storage(bucket, container, prefix, opts)


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
        raise RepositoryError(f"cannot list {loc.url}: {short_message(e)}") from e


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
    """Config for new repositories: call arrays' manifests split along samples and variants,
    other arrays' along variants (sample_id's few references stay one manifest: one request)."""
    config = icechunk.RepositoryConfig.default()
    dim, condition = icechunk.ManifestSplitDimCondition.DimensionName, icechunk.ManifestSplitCondition
    splitting = icechunk.ManifestSplittingConfig.from_dict(
        {
            condition.name_matches("^call_"): {
                dim("samples"): SAMPLES_PER_MANIFEST_SPLIT,
                dim("variants"): VARIANTS_PER_MANIFEST_SPLIT,
            },
            condition.AnyArray(): {dim("variants"): VARIANTS_PER_MANIFEST_SPLIT},
        }
    )
    config.manifest = icechunk.ManifestConfig(splitting=splitting)
    return config


def creation_config(loc: Location) -> icechunk.RepositoryConfig:
    """The config a repository is created with: `repository_config`, and for a local one no
    conditional create. That is the only conditional write icechunk makes on local storage
    (creating the repository document), the write lock already keeps a second init out, and
    icechunk warns about any conditional write without object metadata, which local files lack.
    (Stored in the repository's config; it changes nothing after the creation.)"""
    config = repository_config()
    if loc.is_local:
        config.storage = icechunk.StorageSettings(unsafe_use_conditional_create=False)
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


