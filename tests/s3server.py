"""A real S3 endpoint for tests: moto's server on 127.0.0.1, spoken to over HTTP.

icechunk talks to it exactly as to AWS (its own Rust S3 client, conditional writes
included), so these tests exercise the code path object-store users get.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

REGION = "us-east-1"
# Fake credentials for moto, set in the environment so icechunk (from_env) and every
# subprocess pick them up; they also keep real AWS credentials on the machine out of reach.
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups for region or credentials
}
UNSET_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE",
             "AWS_SHARED_CREDENTIALS_FILE")


@dataclass(frozen=True)
class MotoS3:
    """A running moto server and one bucket on it."""

    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, str]:
        """Storage options for a local S3-compatible server (region comes from the environment).

        force_path_style is only needed for host names (virtual-host style would look up
        bucket.localhost); it is given here as users of MinIO/moto should give it.
        """
        return {"endpoint_url": self.endpoint, "allow_http": "true", "force_path_style": "true"}

    @property
    def cli_options(self) -> list[str]:
        """The same options as `--storage-option KEY=VALUE` arguments."""
        return [arg for k, v in self.options.items() for arg in ("--storage-option", f"{k}={v}")]

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION)

    def objects(self, prefix: str) -> dict[str, str]:
        """Key → ETag of every object under a prefix."""
        pager = self.client().get_paginator("list_objects_v2")
        pages = pager.paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, endpoint: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer at {endpoint} within {timeout:.0f}s")


@contextlib.contextmanager
def moto_server(bucket: str = "vczrepo-test") -> Iterator[MotoS3]:
    """Start moto_server (from this venv) on a free port, create a bucket; stop it afterwards.

    The caller must have set ENV first: boto3 reads credentials from the environment.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(proc, endpoint)
        s3 = MotoS3(endpoint, bucket)
        s3.client().create_bucket(Bucket=bucket)
        yield s3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
