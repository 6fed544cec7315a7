"""audit: find every stored object of a repository that still holds a sample id.

Where an id can live in an icechunk (spec 2) repository, as measured on icechunk 2.3:

- `repo`: the repository info document: branches, tags, repository metadata, the list of
  *retained* snapshots with their commit message and metadata (vczrepo's journal), and
  the latest operations (`latest_updates`: kind, ref names, snapshot ids — no messages).
- `overwritten/repo.<n>.<id>`: icechunk keeps a full copy of the previous repository
  document at every update of it (commit, ref move, metadata change, expiry, gc), named
  in `latest_updates[*].backup_path`. Nothing in icechunk expires them (open upstream
  issue earth-mover/icechunk#1852): they hold every commit message and journal entry the
  repository ever had, including those of purged and expired snapshots.
- `snapshots/<id>`: each snapshot's node tree, commit message and metadata (and array
  metadata documents, so attributes).
- `transactions/<id>`: the change log of a commit (node paths, chunk coordinates; no
  messages, no chunk data).
- `manifests/<id>`: chunk references — and inline chunks (small chunks, e.g. sample_id
  of a small repository, are stored inside the manifest).
- `chunks/<id>`: chunk data, encoded by the array's codecs (blosc/zstd for VCZ).
- `vczrepo-digests/…`: vczrepo's own digest records (vczrepo.digests): ids, sizes and
  checksums only, so not scanned.

Every icechunk file starts with a 39-byte header (magic, writer version, spec version,
file type, compression) followed by a zstd frame of a flatbuffer. `scan_bytes` therefore
looks in the raw bytes, in every zstd frame it can find, and in every blosc frame found in
either (blosc headers are located by their fields and checked by decoding), recursively,
so inline and stored chunks are decoded through the codecs VCZ uses. A sample id is
searched as its UTF-8 bytes.

`erase_overwritten` deletes the superseded repository documents. Measured effect: icechunk
reads none of them to open, read, commit, move refs, expire or collect garbage; `ops_log()`
reads only the current document's `latest_updates` (backup paths are listed, not read), so
`log --all` and the ops log are unchanged. It runs under the write lock on local storage
(no vczrepo writer is mid-update, and a document being overwritten by icechunk is always
the current `repo`, never under `overwritten/`). On object stores a concurrent writer's
backup copy may be written at any time; erasing is then best effort (run again after
writers finish).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import digests, storage

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ICECHUNK_MAGIC = b"ICE\xf0\x9f\xa7\x8aCHUNK"
MAX_DEPTH = 4


@dataclass(frozen=True)
class Finding:
    """One place where `audit` found an id: the stored object and the layer inside it."""

    key: str  # object key under the repository root, e.g. "overwritten/repo.30707….", "chunks/ABC…"
    name: str  # the sample id found
    layer: str  # where in the object: "raw", "zstd", "zstd/blosc", …

    @property
    def kind(self) -> str:
        return self.key.split("/", 1)[0] if "/" in self.key else self.key

    def to_json(self) -> dict:
        return {"key": self.key, "kind": self.kind, "name": self.name, "layer": self.layer}


def _zstd_frames(data: bytes) -> Iterator[bytes]:
    from numcodecs import Zstd

    codec = Zstd()
    start = data.find(ZSTD_MAGIC)
    while start >= 0:
        try:
            yield bytes(codec.decode(data[start:]))
        except Exception:  # not a frame after all (magic inside other data)
            pass
        start = data.find(ZSTD_MAGIC, start + 1)


def _blosc_frames(data: bytes) -> Iterator[bytes]:
    """Blosc (1.x frame format, as numcodecs/zarr write) frames at any offset of `data`."""
    from numcodecs import blosc

    n = len(data)
    i = data.find(b"\x02")
    while 0 <= i <= n - 16:
        version, typesize = data[i + 1], data[i + 3]
        nbytes = int.from_bytes(data[i + 4:i + 8], "little")
        cbytes = int.from_bytes(data[i + 12:i + 16], "little")
        if 1 <= version <= 5 and 1 <= typesize <= 255 and 16 <= cbytes <= n - i and 0 < nbytes <= (1 << 31):
            try:
                yield bytes(blosc.decompress(data[i:i + cbytes]))
            except Exception:
                pass
        i = data.find(b"\x02", i + 1)


def scan_bytes(data: bytes, names: Sequence[str], layer: str = "raw", depth: int = 0) -> set[tuple[str, str]]:
    """(name, layer) for each name found in `data` or in the zstd/blosc frames inside it."""
    found = {(n, layer) for n in names if n.encode() in data}
    if depth >= MAX_DEPTH or layer.endswith("blosc"):  # decoded chunk data: values, no nested frames
        return found
    whole = _whole_blosc(data)
    if whole is not None:  # a chunk object: one blosc frame
        return found | {(n, _join(layer, "blosc")) for n in names if n.encode() in whole}
    for kind, frames in (("zstd", _zstd_frames(data)), ("blosc", _blosc_frames(data))):
        for frame in frames:
            found |= scan_bytes(frame, names, _join(layer, kind), depth + 1)
    return found


def _join(layer: str, kind: str) -> str:
    return kind if layer == "raw" else f"{layer}/{kind}"


def _whole_blosc(data: bytes) -> bytes | None:
    """The decoded chunk when `data` is exactly one blosc frame (a chunk object), else None."""
    from numcodecs import blosc

    if len(data) < 16 or data[0] != 2 or int.from_bytes(data[12:16], "little") != len(data):
        return None
    try:
        return bytes(blosc.decompress(data))
    except Exception:
        return None


def iter_objects(loc: storage.Location) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of every object stored under the repository, except vczrepo's digest
    records: object ids, sizes and checksums by construction, never a sample id, and short
    random bytes in which a short id could appear by chance."""
    store = storage.RawObjects(loc)
    for key in store.keys():
        if key.startswith(digests.PREFIX):
            continue
        data = store.get(key)
        if data is not None:
            yield key, data


def audit(location, names: Iterable[str], storage_options: dict | None = None) -> list[Finding]:
    """Every object of the repository (a path/URL, a Location or a Repository) holding one of `names`."""
    loc = _location(location, storage_options)
    names = [n for n in dict.fromkeys(names) if n]
    findings = []
    for key, data in iter_objects(loc):
        for name, layer in sorted(scan_bytes(data, names)):
            findings.append(Finding(key, name, layer))
    return findings


def _location(location, storage_options=None) -> storage.Location:
    if isinstance(location, storage.Location):
        return location
    if hasattr(location, "location"):  # a vczrepo Repository
        return location.location
    return storage.parse_location(location, storage_options)


def superseded_documents(loc: storage.Location) -> list[str]:
    """Keys of icechunk's superseded repository documents (`overwritten/…`)."""
    if loc.is_local:
        folder = Path(loc.path) / "overwritten"
        return sorted(f"overwritten/{p.name}" for p in folder.iterdir()) if folder.is_dir() else []
    return sorted(o.key for o in storage.make_storage(loc).list_objects_metadata()
                  if o.key.startswith("overwritten/"))


def erase_overwritten(location, storage_options: dict | None = None, *, dry_run: bool = False) -> list[str]:
    """Delete icechunk's superseded repository documents; returns the keys deleted.

    Local repositories: under the write lock, so no vczrepo writer is mid-update. Object
    stores: best effort (a writer running now may add a new copy; run again afterwards).
    """
    loc = _location(location, storage_options)
    with storage.write_lock(loc):
        keys = superseded_documents(loc)
        if not dry_run:
            storage.RawObjects(loc).delete(keys)
        return keys
