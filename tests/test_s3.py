"""Repositories on S3 for real: moto's server over HTTP, driven through the CLI's --storage-option.

The same operations on a local repository give the reference: an S3 repository must read
back identically, take concurrent writers without losing one, refuse a prefix that holds
someone else's objects, and reject storage options it does not know in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import vcf_body, vcztools_samples
from s3server import ENV, UNSET_ENV, MotoS3, moto_server
from vcfgen import make_vcz

import vczrepo
from vczrepo import storage

WRITERS = 5


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoS3]:
    """One moto server for the session, with fake credentials in this process's environment."""
    with pytest.MonkeyPatch.context() as mp:
        for key in UNSET_ENV:
            mp.delenv(key, raising=False)
        for key, value in ENV.items():
            mp.setenv(key, value)
        with moto_server() as server:
            yield server


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


def test_round_trip_matches_a_local_repository(cli, s3, prefix, tmp_path):
    url, opts = s3.url(prefix), s3.cli_options
    base = make_vcz(tmp_path, "base", ["A1", "A2", "A3"], samples_chunk_size=2)
    extra = make_vcz(tmp_path, "extra", ["B1", "B2"], samples_chunk_size=2)
    local = tmp_path / "local"
    for repo, repo_opts in ((url, opts), (local, [])):
        cli("init", repo, base, *repo_opts)
        cli("append", repo, extra, *repo_opts)
        cli("tag", repo, "v1", *repo_opts)
        cli("remove", repo, "A2", *repo_opts)

    log = cli("log", url, *opts).output
    assert [line.split()[3] for line in log.splitlines()] == ["remove", "append", "init", "root"]
    assert "tag:v1" in log
    assert cli("samples", url, *opts).output.split() == ["A1", "A3", "B1", "B2"]

    for ref in ("v1", "main"):
        s3_out, local_out = tmp_path / f"s3-{ref}.vcz", tmp_path / f"local-{ref}.vcz"
        cli("checkout", url, ref, s3_out, *opts)
        cli("checkout", local, ref, local_out)
        assert vcf_body(s3_out) == vcf_body(local_out)
    assert vcztools_samples(tmp_path / "s3-main.vcz") == ["A1", "A3", "B1", "B2"]

    views = {}
    for repo, repo_opts in ((url, opts), (local, [])):
        out = tmp_path / f"view-{len(views)}.vcf"
        cli("view", repo, "--at", "v1", "-s", "A2,B1", "--no-version", "-o", out, *repo_opts)
        views[repo] = out.read_text()
    assert views[url] == views[local]
    assert "\tA2\tB1\n" in views[url]
    cli("check", url, *opts)


def test_python_api_with_storage_options(s3, prefix, tmp_path):
    url = s3.url(prefix)
    vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["P1"]), storage_options=s3.options)
    repo = vczrepo.Repository.open(url, s3.options)
    repo.append(make_vcz(tmp_path, "more", ["P2"]))
    repo.create_tag("t")
    assert repo.samples("t") == ["P1", "P2"]
    assert [c.op for c in repo.log()] == ["append", "init", "root"]


def test_explicit_keys_instead_of_the_environment(s3, prefix, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    opts = {**s3.options, "access_key_id": "k", "secret_access_key": "s", "region": "us-east-1"}
    url = s3.url(prefix)
    vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["K1"]), storage_options=opts)
    assert vczrepo.Repository.open(url, opts).samples() == ["K1"]


def test_anonymous_reads_a_public_bucket(cli, s3, tmp_path, batch):
    public = MotoS3(s3.endpoint, f"public-{uuid.uuid4().hex[:8]}")
    client = public.client()
    client.create_bucket(Bucket=public.bucket)
    vczrepo.Repository.init(public.url("r"), batch, storage_options=public.options)
    arn = f"arn:aws:s3:::{public.bucket}"
    client.put_bucket_policy(Bucket=public.bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [arn, f"{arn}/*"],
    }]}))
    anonymous = [*public.cli_options, "--storage-option", "anonymous=true"]
    assert cli("samples", public.url("r"), *anonymous).output.split() == ["O1"]


def test_concurrent_appends_from_processes_each_land_once(s3, prefix, tmp_path):
    """No lock on object stores: icechunk's conditional writes alone must prevent lost updates."""
    url = s3.url(prefix)
    vczrepo.Repository.init(url, make_vcz(tmp_path, "base", ["B0", "B1"], samples_chunk_size=2),
                            storage_options=s3.options)
    batches = {f"W{k}": [f"W{k}s{i}" for i in range(1 + k % 3)] for k in range(WRITERS)}
    procs = [
        _spawn("append", url, make_vcz(tmp_path, name, names, samples_chunk_size=2), "-m", name,
               *s3.cli_options)
        for name, names in batches.items()
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results

    repo = vczrepo.Repository.open(url, s3.options)
    samples = repo.samples()
    appended = [s for names in batches.values() for s in names]
    assert Counter(samples) == Counter(["B0", "B1", *appended])  # every batch exactly once
    appends = [c for c in repo.log() if c.op == "append"]
    assert sorted(c.message for c in appends) == sorted(batches)
    for c in appends:  # each batch contiguous and in its own order
        start = samples.index(batches[c.message][0])
        assert samples[start:start + len(batches[c.message])] == batches[c.message]


def test_init_refuses_a_non_empty_prefix(cli, s3, prefix, tmp_path):
    """Refused before the batch is read (icechunk's own check comes later, in several lines)."""
    url = s3.url(prefix)
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/notes.txt", Body=b"not ours")
    before = s3.objects(prefix)
    result = cli("init", url, make_vcz(tmp_path, "base", ["N1"]), *s3.cli_options, ok=False)
    assert result.exit_code == 3, result.output + result.stderr
    message = f"refusing to create a repository at non-empty location: {url} (holds notes.txt)"
    assert result.stderr.strip().splitlines() == [f"vczrepo: error: {message}"]
    assert s3.objects(prefix) == before


def test_ensure_empty_sees_only_its_own_prefix(s3, prefix):
    client = s3.client()
    for sibling in (f"{prefix}0/x", f"{prefix}x"):  # share the string prefix, not the "directory"
        client.put_object(Bucket=s3.bucket, Key=sibling, Body=b"sibling")
    storage.ensure_empty(storage.parse_location(s3.url(prefix), s3.options))
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/deep/down/y", Body=b"inside")
    with pytest.raises(vczrepo.RepositoryError, match="non-empty location.*holds deep/down/y"):
        storage.ensure_empty(storage.parse_location(s3.url(prefix), s3.options))


@pytest.mark.parametrize("command", ["init", "append", "log", "samples"])
@pytest.mark.parametrize("option, message", [
    ("bogus=1", "unknown S3 storage option(s): bogus"),
    ("allow_http=maybe", "storage option allow_http: expected true or false, got 'maybe'"),
    ("access_key_id=k", "storage options access_key_id and secret_access_key go together"),
])
def test_bad_storage_option_is_one_line_exit_2(cli, s3, prefix, batch, command, option, message):
    args = {"init": [batch], "append": [batch], "log": [], "samples": []}[command]
    bad = ["--storage-option", option]
    result = cli(command, s3.url(prefix), *args, *s3.cli_options, *bad, ok=False)
    assert result.exit_code == 2, result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("vczrepo: error: ") and message in result.stderr
    assert s3.objects(prefix) == {}


def test_options_on_a_local_repository_are_refused(cli, tmp_path, batch):
    repo = tmp_path / "r"
    cli("init", repo, batch)
    result = cli("log", repo, "--storage-option", "region=x", ok=False)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "vczrepo: error: file repositories take no storage options: region"
    ]


def test_missing_bucket_is_one_line_exit_3(cli, s3):
    result = cli("log", "s3://no-such-bucket/p", *s3.cli_options, ok=False)
    assert result.exit_code == 3, result.output + result.stderr
    assert result.stderr.strip().splitlines() == [
        "vczrepo: error: not a vczrepo repository: s3://no-such-bucket/p"
    ]


def _upload(s3: MotoS3, directory: Path, prefix: str) -> str:
    client = s3.client()
    for path in directory.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), s3.bucket, f"{prefix}/{path.relative_to(directory).as_posix()}")
    return s3.url(prefix)


def test_batches_read_from_object_storage(cli, s3, prefix, tmp_path):
    base = make_vcz(tmp_path, "base", ["A1", "A2"], samples_chunk_size=2)
    extra = make_vcz(tmp_path, "extra", ["B1", "B2"], samples_chunk_size=2)
    base_url = _upload(s3, base, f"{prefix}-batches/base.vcz")
    extra_url = _upload(s3, extra, f"{prefix}-batches/extra.vcz")
    url = s3.url(prefix)
    cli("init", url, base_url, *s3.cli_options)
    cli("append", url, extra_url, *s3.cli_options)
    repo = vczrepo.Repository.open(url, s3.options)
    assert repo.samples() == ["A1", "A2", "B1", "B2"]
    local = tmp_path / "local"
    vczrepo.Repository.init(local, base)[0].append(extra)
    assert vcf_body(repo.group()) == vcf_body(vczrepo.open_group(local))
    source = repo.log()[0].metadata["source"]
    assert source["path"] == extra_url and source["size"] > 0 and len(source["sha256"]) == 64
    missing = cli("append", url, s3.url(f"{prefix}-batches/nope.vcz"), *s3.cli_options, ok=False)
    assert missing.exit_code == 4 and len(missing.stderr.strip().splitlines()) == 1


def test_concurrent_inits_at_one_prefix_leave_one_intact_repository(s3, prefix, tmp_path):
    """No lock on object stores: icechunk's conditional creation alone must pick one winner."""
    url = s3.url(prefix)
    batches = [make_vcz(tmp_path, f"i{k}", [f"I{k}a", f"I{k}b"]) for k in range(WRITERS)]
    procs = [_spawn("init", url, batch, *s3.cli_options) for batch in batches]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    winners = [k for k, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    assert all(code != 0 and len(err.strip().splitlines()) == 1 for k, (code, err) in enumerate(results)
               if k != winners[0]), results
    repo = vczrepo.Repository.open(url, s3.options)
    assert repo.samples() == [f"I{winners[0]}a", f"I{winners[0]}b"]
    assert [c.op for c in repo.log()] == ["init", "root"]
    assert vczrepo.check(repo).ok
