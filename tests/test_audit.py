"""Erasure: after purge + gc + erasing superseded repository documents, no object holds the id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from vcfgen import make_vcz

import vczrepo
from vczrepo import audit
from vczrepo.ops.gc import gc as collect

SECRET = "ZQX9WITHDRAWN"


def raw_scan(root: Path, name: str) -> list[str]:
    """Independent of audit's frame search: raw bytes of every file, each icechunk file's
    payload decompressed whole after its 39-byte header, each chunk file decoded as blosc."""
    from numcodecs import Zstd, blosc

    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        layers = [data]
        if data.startswith(audit.ICECHUNK_MAGIC) and data[38] == 1:  # compression byte: zstd
            layers.append(bytes(Zstd().decode(data[39:])))
        if path.parent.name == "chunks":
            try:
                layers.append(bytes(blosc.decompress(data)))
            except Exception:
                pass
        if any(name.encode() in layer for layer in layers):
            hits.append(path.relative_to(root).as_posix())
    return hits


@pytest.fixture
def withdrawn(tmp_path) -> Path:
    a = make_vcz(tmp_path, "a", ["NA1", SECRET, "NA3"], samples_chunk_size=2)
    b = make_vcz(tmp_path, "b", ["NB1", "NB2"], seed=1, samples_chunk_size=2)
    path = tmp_path / "cohort.vczrepo"
    repo, _ = vczrepo.Repository.init(path, a, message="wave 1")
    repo.append(b, message="wave 2")
    repo.create_tag("release-1")
    repo.remove([SECRET], message="consent withdrawn")
    return path


def test_audit_finds_id_before_and_nothing_after_erasure(withdrawn):
    repo = vczrepo.Repository.open(withdrawn)
    before = audit.audit(repo, [SECRET])
    kinds = {f.kind for f in before}
    assert {"manifests", "snapshots", "repo"} <= kinds, before  # inline chunks, journal, repo document
    assert any(f.layer.endswith("blosc") for f in before)  # decoded through the chunk codec
    assert raw_scan(withdrawn, SECRET)

    repo.purge([SECRET])
    collect(repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
    left = audit.audit(repo, [SECRET])
    assert left
    assert {f.kind for f in left} <= {"overwritten"}, left  # only icechunk's superseded documents

    erased = audit.erase_overwritten(repo)
    assert erased
    assert all(k.startswith("overwritten/") for k in erased)
    assert audit.audit(repo, [SECRET]) == []
    assert raw_scan(withdrawn, SECRET) == []
    # the other samples are still found (the scan sees them), and the repository still works
    assert {f.name for f in audit.audit(repo, ["NA3"])} == {"NA3"}
    repo = vczrepo.Repository.open(withdrawn)
    assert SECRET not in repo.samples()
    assert "NA3" in repo.samples()
    assert len(repo.log()) >= 3
    repo.remove(["NA3"], message="second withdrawal")  # commits still work


def test_erasing_superseded_documents_keeps_icechunk_working(withdrawn):
    import icechunk

    repo = vczrepo.Repository.open(withdrawn)
    ops_before = [str(u.kind) for u in repo.icechunk.ops_log()]
    history = [c.id for c in repo.log()]
    assert audit.erase_overwritten(withdrawn, dry_run=True)
    audit.erase_overwritten(withdrawn)
    assert not list((withdrawn / "overwritten").iterdir())
    repo = vczrepo.Repository.open(withdrawn)
    # ops_log reads the current document's latest updates (up to 1000): unchanged
    assert [str(u.kind) for u in repo.icechunk.ops_log()] == ops_before
    assert [c.id for c in repo.log()] == history
    assert repo.tags()
    assert repo.branches()
    repo.icechunk.expire_snapshots(dt.datetime.now(dt.UTC))
    repo.icechunk.garbage_collect(dt.datetime.now(dt.UTC))
    assert isinstance(repo.icechunk, icechunk.Repository)
    assert len(repo.samples("release-1")) == 5


def test_audit_and_erasure_on_object_storage(tmp_path):
    """The same on S3 (moto): objects listed and read through the object store."""
    import uuid

    from servers import ENV, UNSET_ENV, moto_server

    with pytest.MonkeyPatch.context() as mp:
        for key in UNSET_ENV["s3"]:
            mp.delenv(key, raising=False)
        for key, value in ENV["s3"].items():
            mp.setenv(key, value)
        with moto_server() as s3:
            url, opts = s3.url(f"t-{uuid.uuid4().hex[:12]}/cohort"), s3.options
            a = make_vcz(tmp_path, "a", ["NA1", SECRET, "NA3"], samples_chunk_size=2)
            repo, _ = vczrepo.Repository.init(url, a, message="wave 1", storage_options=opts)
            repo.remove([SECRET], message="consent withdrawn")
            assert {f.kind for f in audit.audit(repo, [SECRET])} >= {"repo", "snapshots", "manifests"}
            repo.purge([SECRET])
            collect(repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
            assert {f.kind for f in audit.audit(repo, [SECRET])} == {"overwritten"}
            assert audit.erase_overwritten(repo)
            assert audit.audit(url, [SECRET], storage_options=opts) == []
            keys = s3.objects(url.split("/", 3)[3])
            assert keys
            assert not any(k.startswith("overwritten/") or "/overwritten/" in k for k in keys)


def test_audit_command(cli, withdrawn):
    import json

    found = cli("audit", withdrawn, SECRET, "--json", ok=False)
    assert found.exit_code == 9
    assert json.loads(found.output)["findings"]
    assert cli("audit", withdrawn, "NOBODY-SUCH").exit_code == 0


def test_audit_decodes_chunk_files(tmp_path):
    """Chunks larger than icechunk's inline limit are separate objects under chunks/: found
    only by decoding them (blosc), and gone after purge + gc."""
    import random

    rng = random.Random(0)
    names = ["".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(40)) for _ in range(60)]
    secret = names[17]
    a = make_vcz(tmp_path, "big", names, samples_chunk_size=60, n_variants=4)
    path = tmp_path / "big.vczrepo"
    repo, _ = vczrepo.Repository.init(path, a, message="wave 1")
    before = audit.audit(repo, [secret])
    assert any(f.kind == "chunks" and "blosc" in f.layer for f in before), before
    assert not any(f.kind == "chunks" and f.layer == "raw" for f in before)  # compressed: raw grep misses it
    repo.remove([secret], message="consent withdrawn")
    repo.purge([secret])
    repo.gc(now=True)  # collects and erases the superseded repository documents
    assert audit.audit(repo, [secret]) == []
    assert raw_scan(path, secret) == []


def test_purge_then_gc_now_leaves_no_trace_of_a_vcf_sample(cli, tmp_path, data):
    """A batch converted from VCF carries its header (root attributes), which names the samples
    (e.g. a `##bcftools_viewCommand=view -s A,B` line): purge scrubs it too."""
    path = tmp_path / "r"
    cli("init", path, data / "sample-part1.vcf.gz")
    cli("append", path, data / "sample-part2.vcf.gz")
    cli("remove", path, "NA00002")
    assert cli("audit", path, "NA00002", ok=False).exit_code == 9
    cli("purge", path, "NA00002")
    cli("gc", path, "--now")
    assert cli("audit", path, "NA00002").exit_code == 0
    assert raw_scan(path, "NA00002") == []
    assert cli("samples", path).output.split() == ["NA00001", "NA00003"]
