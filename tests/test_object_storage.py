"""Repositories on object storage for real, one suite over every kind: S3 (moto), Azure (Azurite),
GCS (no usable server here: see servers.GCS_UNAVAILABLE), driven through --storage-option.

The same operations on a local repository give the reference: a repository on object storage
must read back identically, take concurrent writers without losing one, refuse a prefix that
holds someone else's objects, and reject storage options it does not know in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import vcf_body, vcztools_samples
from servers import ENV, GCS_UNAVAILABLE, Server, UnavailableError, azurite_program, running
from vcfgen import make_vcz

import vczrepo
from vczrepo import sources, storage
from vczrepo.errors import short_message

KINDS = ["s3", "gs", "az"]
WRITERS = 4


# --- the current API's calls, in one place (adapt here when the API changes) ---------------

def _tag_args(repo, name: str, ref: str) -> list:
    """CLI arguments that tag REF of repository REPO as NAME."""
    return ["tag", repo, name, "--at", ref]


def _purge_and_gc(repo: vczrepo.Repository, samples: list[str]):
    """Purge samples from all history, then collect everything no ref reaches any more."""
    from vczrepo.ops.gc import gc

    repo.purge(samples)
    return gc(repo, older_than=dt.timedelta(0), safe_margin=dt.timedelta(0))


def _check(repo: vczrepo.Repository) -> bool:
    return repo.check().ok


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session", params=KINDS)
def server(request) -> Iterator[Server]:
    """One server per kind for the session, with its fake credentials in the environment."""
    kind = request.param
    if kind == "gs":
        pytest.skip(GCS_UNAVAILABLE)
    if kind == "az":
        try:
            azurite_program()
        except UnavailableError as e:
            if os.environ.get("CI"):
                pytest.fail(str(e))
            pytest.skip(str(e))
    with running(kind) as up:
        print(f"\n{kind}: {up.version} at {up.endpoint}")
        yield up


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_vcz(tmp_path_factory.mktemp("batch"), "b", ["O1"])


@pytest.fixture
def prefix() -> str:
    """A fresh prefix per test: tests share the bucket, never a repository."""
    return f"t-{uuid.uuid4().hex[:12]}/cohort"


def _spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vczrepo", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- the suite ------------------------------------------------------------------------------

def test_round_trip_matches_a_local_repository(cli, server, prefix, tmp_path):
    """init, a padded and an aligned append, tag, remove, checkout and view at the tag."""
    url, opts = server.url(prefix), server.cli_options
    base = make_vcz(tmp_path, "base", ["A1", "A2", "A3"], samples_chunk_size=2)
    padded = make_vcz(tmp_path, "padded", ["B1", "B2"], samples_chunk_size=2)
    aligned = make_vcz(tmp_path, "aligned", ["C1", "C2"], samples_chunk_size=2)
    local = tmp_path / "local"
    for repo, repo_opts in ((url, opts), (local, [])):
        cli("init", repo, base, *repo_opts)
        cli("append", repo, padded, *repo_opts)
        cli("append", repo, aligned, *repo_opts)
        cli(*_tag_args(repo, "v1", "main"), *repo_opts)
        cli("remove", repo, "A2", *repo_opts)

    remote = vczrepo.Repository.open(url, server.options)
    appends = [c for c in remote.log() if c.op == "append"]
    assert [c.metadata.get("n_padding", 0) for c in appends] == [0, 1]  # newest first: aligned, padded
    log = cli("log", url, *opts, "--oneline").output  # ID (REFS) OP [+N] [-N]: MESSAGE
    assert re.findall(r"^\S+(?: \([^)]*\))? (\w+)[^:]*:", log, re.M) == ["remove", "append", "append", "init", "root"]
    assert "(tag: v1)" in log
    assert cli("samples", url, *opts).output.split() == ["A1", "A3", "B1", "B2", "C1", "C2"]

    for ref in ("v1", "main"):
        remote_out, local_out = tmp_path / f"remote-{ref}.vcz", tmp_path / f"local-{ref}.vcz"
        cli("checkout", url, remote_out, "--at", ref, *opts)
        cli("checkout", local, local_out, "--at", ref)
        assert vcf_body(remote_out) == vcf_body(local_out)
    assert vcztools_samples(tmp_path / "remote-main.vcz") == ["A1", "A3", "B1", "B2", "C1", "C2"]

    views = {}
    for repo, repo_opts in ((url, opts), (local, [])):
        out = tmp_path / f"view-{len(views)}.vcf"
        cli("view", repo, "--at", "v1", "-s", "A2,B1", "--no-version", "-o", out, *repo_opts)
        views[repo] = out.read_text()
    assert views[url] == views[local]
    assert "\tA2\tB1\n" in views[url]
    cli("check", url, *opts)


def test_purge_and_gc(server, prefix, tmp_path):
    """Purge rewrites history on the store; gc then deletes the objects only the old history held."""
    url = server.url(prefix)
    repo, _ = vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["P1", "P2"], samples_chunk_size=2),
                                      storage_options=server.options)
    repo.append(make_vcz(tmp_path, "more", ["P3", "P4"], samples_chunk_size=2))
    repo.create_tag("t")
    repo.remove(["P2"])
    before = server.objects(prefix)
    result = _purge_and_gc(repo, ["P2"])
    repo = vczrepo.Repository.open(url, server.options)
    after = server.objects(prefix)
    # test chunks are small enough to be inlined in manifests: the purged data went with them
    assert result.manifests_deleted > 0
    assert result.snapshots_deleted > 0
    assert set(after) - set(before)
    assert set(before) - set(after)
    for ref in repo.tags():
        assert "P2" not in repo.samples(ref)
    assert repo.samples() == ["P1", "P3", "P4"]
    assert _check(repo)


def test_digest_records_on_object_storage(cli, server, prefix, tmp_path):
    """Each commit records its snapshot and new manifests beside them; check verifies them and
    names a flipped object; gc deletes the records of what it collects."""
    from vczrepo.storage import RawObjects

    url, opts = server.url(prefix), server.cli_options
    repo, _ = vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["D1", "D2"], samples_chunk_size=2),
                                      storage_options=server.options)
    repo.create_tag("t")
    repo.append(make_vcz(tmp_path, "more", ["D3"], samples_chunk_size=2))
    raw = RawObjects(storage.parse_location(url, server.options))

    def recorded() -> tuple[set[str], set[str]]:
        objects = {k for kind in ("snapshots/", "manifests/") for k in raw.keys(kind)}
        return objects, {k.removeprefix("vczrepo-digests/") for k in raw.keys("vczrepo-digests/")}

    objects, records = recorded()
    assert objects == records
    report = vczrepo.Repository.open(url, server.options).check()
    assert report.ok
    assert report.objects_verified == len(objects)
    victim = sorted(k for k in objects if k.startswith("manifests/"))[0]
    original = raw.get(victim)
    assert original is not None
    raw.put(victim, bytes([original[0] ^ 1]) + original[1:])
    result = cli("check", url, *opts, ok=False)
    assert result.exit_code == 8
    assert f"problem: {victim}: checksum mismatch" in result.stderr
    raw.put(victim, original)
    raw.delete([f"vczrepo-digests/{victim}"])  # as a commit made by another tool: unverified, not damage
    report = vczrepo.Repository.open(url, server.options).check()
    assert report.ok
    assert report.objects_unverified == 1
    result = _purge_and_gc(vczrepo.Repository.open(url, server.options), ["D2"])
    assert result.records_deleted > 0
    objects, records = recorded()
    assert records <= objects
    assert objects - records <= {victim}
    assert _check(vczrepo.Repository.open(url, server.options))


def test_explicit_credentials_instead_of_the_environment(server, prefix, tmp_path, monkeypatch):
    for key in ENV[server.kind]:
        if "KEY" in key or "TOKEN" in key:
            monkeypatch.delenv(key)
    keys = {"s3": {"access_key_id": "k", "secret_access_key": "s", "region": "us-east-1"},
            "az": {"account_key": ENV["az"]["AZURE_STORAGE_ACCOUNT_KEY"]}}[server.kind]
    opts = {**server.options, **keys}
    url = server.url(prefix)
    vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["K1"]), storage_options=opts)
    assert vczrepo.Repository.open(url, opts).samples() == ["K1"]


def test_azure_use_emulator(cli, server, prefix, tmp_path, monkeypatch):
    """use_emulator=true alone reaches Azurite (at $AZURITE_BLOB_STORAGE_URL), for both
    repositories and batches: the development account and its key are implied."""
    if server.kind != "az":
        pytest.skip("use_emulator is an Azure option")
    batch_url = server.upload(make_vcz(tmp_path, "base", ["E1", "E2"]), f"{prefix}-batch.vcz")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", server.endpoint.rsplit("/", 1)[0])
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")
    opts = ["--storage-option", "use_emulator=true"]
    cli("init", server.url(prefix), batch_url, *opts)
    assert cli("samples", server.url(prefix), *opts).output.split() == ["E1", "E2"]


def test_a_refused_secret_is_not_echoed(cli, server, prefix):
    """The server refuses a SAS token: a storage failure (exit 1) in one line, the token nowhere in it."""
    if server.kind != "az":
        pytest.skip("moto accepts any credentials")
    token = "sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2030-01-01&sig=S3CRETsig"
    result = cli("log", server.url(prefix), *server.cli_options, "--storage-option", f"sas_token={token}",
                 ok=False)
    assert result.exit_code == 1, result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "S3CRET" not in result.stderr, result.stderr
    assert short_message(ValueError(f"GET http://h/c?{token} failed")) == "GET http://h/c?… failed"


def test_anonymous_reads_a_public_bucket(cli, server, tmp_path, batch):
    if server.kind != "s3":
        pytest.skip("public buckets are set up through moto's S3 bucket policy only")
    import json

    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    bucket = f"public-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/r"
    vczrepo.Repository.init(url, batch, storage_options=server.options)
    arn = f"arn:aws:s3:::{bucket}"
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [arn, f"{arn}/*"],
    }]}))
    anonymous = [*server.cli_options, "--storage-option", "anonymous=true"]
    assert cli("samples", url, *anonymous).output.split() == ["O1"]


def test_concurrent_appends_from_processes_each_land_once(server, prefix, tmp_path):
    """No lock on object stores: icechunk's conditional writes alone must prevent lost updates."""
    url = server.url(prefix)
    vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["B0", "B1"], samples_chunk_size=2),
                            storage_options=server.options)
    batches = {f"W{k}": [f"W{k}s{i}" for i in range(1 + k % 3)] for k in range(WRITERS)}
    procs = [
        _spawn("append", url, make_vcz(tmp_path, name, names, samples_chunk_size=2), "-m", name,
               *server.cli_options)
        for name, names in batches.items()
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results

    repo = vczrepo.Repository.open(url, server.options)
    samples = repo.samples()
    appended = [s for names in batches.values() for s in names]
    assert Counter(samples) == Counter(["B0", "B1", *appended])  # every batch exactly once
    appends = [c for c in repo.log() if c.op == "append"]
    assert sorted(c.message for c in appends) == sorted(batches)
    for c in appends:  # each batch contiguous and in its own order
        start = samples.index(batches[c.message][0])
        assert samples[start:start + len(batches[c.message])] == batches[c.message]


def test_concurrent_inits_at_one_prefix_leave_one_intact_repository(server, prefix, tmp_path):
    """No lock on object stores: icechunk's conditional creation alone must pick one winner."""
    url = server.url(prefix)
    batches = [make_vcz(tmp_path, f"i{k}", [f"I{k}a", f"I{k}b"]) for k in range(WRITERS)]
    procs = [_spawn("init", url, batch, *server.cli_options) for batch in batches]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    winners = [k for k, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    assert all(code != 0 and len(err.strip().splitlines()) == 1 for k, (code, err) in enumerate(results)
               if k != winners[0]), results
    repo = vczrepo.Repository.open(url, server.options)
    assert repo.samples() == [f"I{winners[0]}a", f"I{winners[0]}b"]
    assert [c.op for c in repo.log()] == ["init", "root"]
    assert _check(repo)


def test_init_refuses_a_non_empty_prefix(cli, server, prefix, tmp_path):
    """Refused before the batch is read (icechunk's own check comes later, in several lines)."""
    url = server.url(prefix)
    server.put(f"{prefix}/notes.txt", b"not ours")
    before = server.objects(prefix)
    result = cli("init", url, make_vcz(tmp_path, "base", ["N1"]), *server.cli_options, ok=False)
    assert result.exit_code == 3, result.output + result.stderr
    message = f"refusing to create a repository at non-empty location: {url} (holds notes.txt)"
    assert result.stderr.strip().splitlines() == [f"vczrepo: error: {message}"]
    assert server.objects(prefix) == before


def test_ensure_empty_sees_only_its_own_prefix(server, prefix):
    for sibling in (f"{prefix}0/x", f"{prefix}x"):  # share the string prefix, not the "directory"
        server.put(sibling, b"sibling")
    storage.ensure_empty(storage.parse_location(server.url(prefix), server.options))
    server.put(f"{prefix}/deep/down/y", b"inside")
    with pytest.raises(vczrepo.RepositoryError, match="non-empty location.*holds deep/down/y"):
        storage.ensure_empty(storage.parse_location(server.url(prefix), server.options))


def test_missing_bucket_is_one_line_exit_3(cli, server):
    url = server.url("p").replace("vczrepo-test", "no-such-bucket")
    result = cli("log", url, *server.cli_options, ok=False)
    assert result.exit_code == 3, result.output + result.stderr
    assert result.stderr.strip().splitlines() == [f"vczrepo: error: not a vczrepo repository: {url}"]


def test_batches_read_from_the_same_store(cli, server, prefix, tmp_path):
    base = make_vcz(tmp_path, "base", ["A1", "A2"], samples_chunk_size=2)
    extra = make_vcz(tmp_path, "extra", ["B1", "B2"], samples_chunk_size=2)
    base_url = server.upload(base, f"{prefix}-batches/base.vcz")
    extra_url = server.upload(extra, f"{prefix}-batches/extra.vcz")
    url = server.url(prefix)
    cli("init", url, base_url, *server.cli_options)
    cli("append", url, extra_url, *server.cli_options)
    repo = vczrepo.Repository.open(url, server.options)
    assert repo.samples() == ["A1", "A2", "B1", "B2"]
    local = tmp_path / "local"
    vczrepo.Repository.init(local, base)[0].append(extra)
    assert vcf_body(repo.group()) == vcf_body(vczrepo.open_group(local))
    source = repo.log()[0].metadata["source"]
    assert source["path"] == extra_url
    assert source["size"] > 0
    assert len(source["sha256"]) == 64
    missing = cli("append", url, server.url(f"{prefix}-batches/nope.vcz"), *server.cli_options, ok=False)
    assert missing.exit_code == 4
    assert len(missing.stderr.strip().splitlines()) == 1


# --- options: checked before any request, so every kind runs without a server ----------------

SECRET = "S3CRET-d0-not-echo"
# Valid options per kind, pointing at a port nothing listens on: refusals must come first.
VALID = {
    "s3": {"endpoint_url": "http://127.0.0.1:9", "allow_http": "true"},
    "gs": {"base_url": "http://127.0.0.1:9", "allow_http": "true", "anonymous": "true"},
    "az": {"endpoint": "http://127.0.0.1:9/devstoreaccount1", "allow_http": "true"},
}
URLS = {"s3": "s3://vczrepo-test/p", "gs": "gs://vczrepo-test/p", "az": "az://devstoreaccount1/vczrepo-test/p"}
BAD = [
    ("s3", {"bogus": SECRET}, "unknown S3 storage option(s): bogus; known: region, endpoint_url"),
    ("s3", {"allow_http": "maybe"}, "storage option allow_http: expected true or false, got 'maybe'"),
    ("s3", {"endpoint_url": "127.0.0.1:9000"}, "storage option endpoint_url: expected an http:// or https:// URL"),
    ("s3", {"allow_http": "false"}, "storage option endpoint_url is a plain http:// URL: add allow_http=true"),
    ("s3", {"secret_access_key": SECRET}, "storage options access_key_id and secret_access_key go together"),
    ("s3", {"region": ""}, "storage option region: empty value"),
    ("gs", {"service_account": SECRET}, "unknown GCS storage option(s): service_account; known: "
                                        "service_account_path, service_account_key"),
    ("gs", {"anonymous": "si"}, "storage option anonymous: expected true or false, got 'si'"),
    ("gs", {"base_url": "storage.local"}, "storage option base_url: expected an http:// or https:// URL"),
    ("gs", {"service_account_path": "/no/such/key.json"}, "storage option service_account_path: no such file"),
    ("gs", {"bearer_token": SECRET}, "storage options bearer_token and anonymous are alternatives: give one"),
    ("az", {"access_key": SECRET}, "unknown Azure storage option(s): access_key; known: account_key, sas_token"),
    ("az", {"use_emulator": "2"}, "storage option use_emulator: expected true or false, got '2'"),
    ("az", {"endpoint": "ftp://x"}, "storage option endpoint: expected an http:// or https:// URL, got 'ftp://x'"),
    ("az", {"account_key": SECRET, "sas_token": SECRET},
     "storage options account_key and sas_token are alternatives: give one"),
]


@pytest.mark.parametrize("command", ["init", "append", "log"])
@pytest.mark.parametrize(("kind", "bad", "message"), BAD, ids=[f"{k}-{'-'.join(b)}" for k, b, _ in BAD])
def test_bad_storage_option_is_one_line_exit_2(cli, batch, command, kind, bad, message):
    args = {"init": [batch], "append": [batch], "log": []}[command]
    opts = {**VALID[kind], **bad}
    flags = [arg for k, v in opts.items() for arg in ("--storage-option", f"{k}={v}")]
    result = cli(command, URLS[kind], *args, *flags, ok=False)
    assert result.exit_code == 2, result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("vczrepo: error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert SECRET not in result.output + result.stderr


@pytest.mark.parametrize(("kind", "bad", "message"), BAD, ids=[f"{k}-{'-'.join(b)}" for k, b, _ in BAD])
def test_batches_check_options_the_same_way(kind, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        sources.open_vcz(URLS[kind] + ".vcz", {**VALID[kind], **bad})
    assert message in str(info.value)
    assert SECRET not in str(info.value)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_option_is_documented(kind):
    doc = (Path(__file__).parents[1] / "docs" / "storage.md").read_text()
    for name in storage.STORAGE_OPTIONS[kind]:
        assert f"`{name}`" in doc, name


def test_options_on_a_local_repository_are_refused(cli, tmp_path, batch):
    repo = tmp_path / "r"
    cli("init", repo, batch)
    result = cli("log", repo, "--storage-option", "region=x", ok=False)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "vczrepo: error: file repositories take no storage options: region"
    ]
