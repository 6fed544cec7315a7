"""Benchmark vczrepo on object storage: bench.py's writes and reads against moto's S3 server on
127.0.0.1, with the requests each operation makes counted at the server.

A counting reverse proxy (threaded HTTP/1.1, keep-alive, bodies forwarded verbatim) sits in
front of moto on another 127.0.0.1 port; every command reaches moto through it, so each
operation's PUT/GET/LIST/HEAD/DELETE requests and the bytes moved up and down are exact. Its
own overhead is reported: the aligned append is also timed straight against moto. Commit cost
against the repository's shape compares a small operation on stores of 1 and many sample-chunk
columns, and on branches of 1 and many commits.

Setting up (branches, tags, uploads) goes straight to moto from this process, never through the
proxy: some icechunk calls block holding the GIL (Storage.list_objects_metadata, as vczrepo's
init calls it), which would starve the proxy's threads in the same process.

    uv run python scripts/bench_storage.py --size tiny|small|medium [--json [PATH]]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.client
import http.server
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bench
import make_data
import numpy as np

import vczrepo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import Server, running  # noqa: E402  (the test suite's moto server, reused as is)

KINDS = ("PUT", "GET", "LIST", "HEAD", "DELETE", "POST")
# what an object is, from a path segment of its key (else its name: repo, config.yaml); icechunk
# keeps the copy of `repo` it replaces as repo.<time>.<id>
OBJECT_CLASSES = ("vczrepo-digests", "chunks", "manifests", "snapshots", "transactions", "refs")
BLOCK = 1 << 20  # bytes per read when a response body is streamed through the proxy
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer",
              "upgrade", "proxy-authenticate", "proxy-authorization"}
COLUMNS = 100  # sample-chunk columns of the wide store (chunks of 1 sample)
SHAPE_VARIANTS = (2_000, 500)  # variants and variant chunk size of the shape experiments
HISTORY_COMMITS = {"tiny": 200, "small": 1_000, "medium": 1_000}
# imported before the clock starts: vczrepo imports these on first use, which would count ~1.5 s
# of imports as every operation's work
PRELOAD = ("numpy", "zarr", "icechunk", "vczrepo.repository")
Log = Callable[[str], None]


@dataclass
class Counts:
    """Requests seen by the proxy: per kind, failed ones (status >= 400), bytes each way, the
    time the server took to answer (summed over requests, which overlap), and GETs of an object
    (and byte range) already read in the same window."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    failed: dict[str, int] = field(default_factory=dict)  # "METHOD key" -> status
    up: int = 0
    down: int = 0
    server_seconds: float = 0.0
    gets: collections.Counter = field(default_factory=collections.Counter)
    repeated_down: int = 0
    objects: collections.Counter = field(default_factory=collections.Counter)  # "KIND class"

    def add(self, kind: str, status: int, up: int, down: int, key: str, seconds: float) -> None:
        self.requests[kind] += 1
        self.objects[f"{kind} {object_class(key)}"] += 1
        if status >= 400:
            self.failed[f"{kind} {key}"] = status
        self.up += up
        self.down += down
        self.server_seconds += seconds
        if kind == "GET":
            self.repeated_down += down if self.gets[key] else 0
            self.gets[key] += 1

    def summary(self) -> dict:
        repeated = {k: n for k, n in self.gets.items() if n > 1}
        return {
            **{k: self.requests[k] for k in KINDS},
            "total": sum(self.requests.values()),
            "failed": len(self.failed),
            "failed_requests": self.failed,
            "mib_up": self.up / 2**20,
            "mib_down": self.down / 2**20,
            "server_seconds": self.server_seconds,
            "repeated_gets": sum(repeated.values()) - len(repeated),
            "repeated_mib_down": self.repeated_down / 2**20,
            "most_repeated": dict(collections.Counter(repeated).most_common(5)),
            "by_object": dict(sorted(self.objects.items())),
        }


def object_class(key: str) -> str:
    """chunks, manifests, snapshots… or the object's own name (repo, config.yaml)."""
    segments = key.split(" ")[0].strip("/").split("/")
    name = "repo.*" if segments[-1].startswith("repo.") else segments[-1]
    return next((c for c in OBJECT_CLASSES if c in segments), name)


def kind_of(method: str, target: str) -> str:
    """PUT/GET/LIST/HEAD/DELETE/POST of an S3 request (path-style: /BUCKET/KEY?QUERY)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    if method == "GET" and ("list-type" in query or parts.path.strip("/").count("/") == 0):
        return "LIST"
    if method == "POST" and "delete" in query:
        return "DELETE"  # DeleteObjects: one request for many keys
    return method if method in KINDS else "POST"


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards each request to the upstream server over one keep-alive connection per client
    connection, and counts it once its response is sent."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stall
    server: CountingProxy

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _upstream(self) -> http.client.HTTPConnection:
        if getattr(self, "connection_up", None) is None:
            self.connection_up = http.client.HTTPConnection(*self.server.upstream, timeout=600)
        return self.connection_up

    def _exchange(self, body: bytes) -> http.client.HTTPResponse:
        """Send the request upstream; once more on a fresh connection if the kept-alive one died."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            try:
                connection = self._upstream()
                connection.request(self.command, self.path, body=body, headers=headers)
                return connection.getresponse()
            except (ConnectionError, http.client.HTTPException):
                self.connection_up.close()
                self.connection_up = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _forward(self) -> None:
        body = self._body()
        start = time.perf_counter()
        response = self._exchange(body)
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        down = 0
        if self.command == "HEAD" or response.status in (204, 304):
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            response.read()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while block := response.read(BLOCK):
                self.wfile.write(block)
                down += len(block)
        else:
            data = response.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            down = len(data)
        key = f"{urlsplit(self.path).path} {self.headers.get('Range', '')}".strip()
        self.server.record(kind_of(self.command, self.path), response.status, len(body), down, key,
                           time.perf_counter() - start)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815 (http.server's names)


class CountingProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A reverse proxy on 127.0.0.1 that counts what passes through it."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.counts = Counts()
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, kind: str, status: int, up: int, down: int, key: str, seconds: float) -> None:
        with self.lock:
            self.counts.add(kind, status, up, down, key, seconds)

    def take(self) -> Counts:
        """The counts since the last take, starting a new window."""
        with self.lock:
            counts, self.counts = self.counts, Counts()
        return counts


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@dataclass(frozen=True)
class S3:
    """The bucket as reached through the proxy (counted) and straight at moto (not counted)."""

    server: Server
    proxy: CountingProxy

    def options(self, counted: bool = True) -> dict[str, str]:
        return {**self.server.options, **({"endpoint_url": self.proxy.endpoint} if counted else {})}

    def cli(self, counted: bool = True) -> list[str]:
        return [a for k, v in self.options(counted).items() for a in ("--storage-option", f"{k}={v}")]

    def repo(self, url: str) -> vczrepo.Repository:
        """The repository for setting up a measurement (branches, tags): not counted."""
        return vczrepo.Repository.open(url, self.options(counted=False))


class StorageBench:
    """Runs each operation through the CLI (measure.py), best of `repeats` by op time, with the
    requests of that run."""

    def __init__(self, s3: S3, work: Path, repeats: int, log: Log):
        self.s3, self.work, self.repeats, self.log = s3, work, repeats, log
        self.runs: dict[str, dict] = {}
        self.overhead: float | None = None

    def measure(self, key: str, label: str, prepare: bench.Prepare, preload: tuple[str, ...] = ()) -> dict:
        best: dict | None = None
        for i in range(self.repeats):
            argv = [str(a) for a in prepare(i)] + self.s3.cli()
            self.s3.proxy.take()
            m = bench.spawn(argv, self.work, bench.VCZREPO, PRELOAD + preload)
            run = {"label": label, "wall": m["wall"], "op": m["op"], "startup": m["startup"],
                   "rss_mib": m["rss_mib"], "requests": self.s3.proxy.take().summary()}
            if best is None or run["op"] < best["op"]:
                best = run
        assert best is not None
        self.runs[key] = best
        r = best["requests"]
        self.log(f"  {label:<50} op {best['op']:7.3f} s  requests {r['total']:6d} "
                 f"(PUT {r['PUT']}, GET {r['GET']}, LIST {r['LIST']}, HEAD {r['HEAD']}, "
                 f"DELETE {r['DELETE']})  up {r['mib_up']:.2f} MiB  down {r['mib_down']:.2f} MiB")
        return best

    def on_branch(self, url: str, name: str, ref: str, argv: list) -> bench.Prepare:
        """Repeat i runs `argv -b NAME-i` on a new branch NAME-i made at `ref` (not counted)."""

        def prepare(i: int) -> list:
            self.s3.repo(url).create_branch(f"{name}-{i}", ref)
            return [*argv, "-b", f"{name}-{i}"]

        return prepare


def proxy_overhead(b: StorageBench, url: str, batch: Path, repeats: int) -> float:
    """The aligned append's op time through the proxy / straight at moto, best of `repeats` each,
    alternating so both see the same load."""
    runs: dict[bool, list[float]] = {True: [], False: []}
    for i in range(repeats):
        for counted in (False, True):
            name = f"overhead-{counted}-{i}"
            b.s3.repo(url).create_branch(name, "base")
            argv = ["append", url, batch, "-b", name, *b.s3.cli(counted)]
            runs[counted].append(bench.spawn([str(a) for a in argv], b.work, bench.VCZREPO, PRELOAD)["op"])
    ratio = min(runs[True]) / min(runs[False])
    b.log(f"  proxy overhead on the aligned append: {min(runs[True]):.3f} / {min(runs[False]):.3f} s "
          f"= {ratio:.2f}x (best of {repeats} each)")
    b.overhead = ratio
    return ratio


def bench_writes(b: StorageBench, data: make_data.Dataset, url: str, overhead_repeats: int) -> None:
    """init; aligned, small and into-unaligned appends; remove 1 at two store sizes; and the
    proxy's overhead (the aligned append straight against moto)."""
    n, u = data.spec.samples_per_batch, data.spec.unaligned_samples
    full, small = data.batches[1], data.unaligned
    b.measure("init", f"init from a {n}-sample batch",
              lambda i: ["init", url if i == 0 else f"{url}-again-{i}", data.batches[0]])
    b.s3.repo(url).create_tag("base")
    appends = (
        ("append_aligned", f"append {n} samples, store {n} (aligned)", "aligned", "base", full),
        ("append_small", f"append {u} samples, store {n}", "small", "base", small),
        ("append_unaligned", f"append {n} samples, store {n + u} (padded)", "unaligned", "small-0", full),
    )
    for key, label, branch, ref, batch in appends:
        b.measure(key, label, b.on_branch(url, branch, ref, ["append", url, batch]))
    proxy_overhead(b, url, full, overhead_repeats)
    name = bench.sample_names(data.batches[0])[n // 2]
    for store, ref, count in (("N", "base", n), ("L", "unaligned-0", 2 * n + u)):
        b.measure(f"remove_1_at_{store}", f"remove 1 sample, store {count}",
                  b.on_branch(url, f"rm-{store}", ref, ["remove", url, name]))


def bench_reads(b: StorageBench, data: make_data.Dataset, url: str) -> None:
    """checkout (every chunk), a region-restricted view and a query at a tag of two full batches
    (a full view formats every genotype: minutes at `medium`, and the checkout's requests already
    show a whole read)."""
    n = 2 * data.spec.samples_per_batch
    b.s3.repo(url).create_tag("release", "aligned-0")
    plain = b.work / "release.vcz"
    b.measure("checkout", f"checkout {n} samples to local disk",
              lambda i: ["checkout", url, bench.fresh(plain), "--at", "release"])
    samples = ",".join(bench.sample_names(data.batches[0])[:bench.QUERY_SAMPLES])
    where, _ = bench.region(data.batches[0], data.spec.variants_chunk_size)
    b.measure("view_region", f"view -r {where} at tag ({bench.REGION_CHUNKS} variant chunks, {n} samples)",
              lambda i: ["view", url, "--at", "release", "-r", where], preload=("vcztools.cli",))
    b.measure("query", f"query at tag (GT of {bench.QUERY_SAMPLES} samples)",
              lambda i: ["query", url, "--at", "release", "-s", samples, "-f", bench.QUERY_FORMAT],
              preload=("vcztools.cli",))


def shape_batches(work: Path, columns: int) -> dict[str, Path]:
    """Batches of one simulation chunked 1 sample wide: `columns` samples (the wide store), 1
    sample (the narrow one), and 1 more to append."""
    variants, chunk = SHAPE_VARIANTS
    spec = make_data.Spec(columns, 1, 2, variants, chunk, 1)
    ts = make_data.simulate(spec)
    parts = {"wide": np.arange(columns), "narrow": np.array([columns]), "extra": np.array([columns + 1])}
    out = {}
    for i, (name, individuals) in enumerate(parts.items()):
        out[name] = bench.fresh(work / f"shape-{name}.vcz")
        make_data.write_batch(ts, individuals, out[name], spec, seed=spec.seed + i)
    return out


def bench_columns(b: StorageBench, columns: int) -> None:
    """append of 1 sample and remove of 1 on stores of 1 and `columns` sample-chunk columns."""
    batches = shape_batches(b.work, columns)
    for name, width in (("narrow", 1), ("wide", columns)):
        url = b.s3.server.url(f"columns-{name}")
        bench.spawn(["init", url, batches[name], *b.s3.cli(False)], b.work, bench.VCZREPO)
        sample = bench.sample_names(batches[name])[-1]
        b.measure(f"append_1_at_{width}_columns", f"append 1 sample, {width} sample-chunk column(s)",
                  b.on_branch(url, "append", "main", ["append", url, batches["extra"]]))
        b.measure(f"remove_1_at_{width}_columns", f"remove 1 sample, {width + 1} sample-chunk columns",
                  b.on_branch(url, "remove", "append-0", ["remove", url, sample]))


def bench_history(b: StorageBench, commits: int) -> None:
    """remove 1 and tag on a branch of 1 commit and of `commits` commits (built locally by
    bench.build_history, uploaded: not counted)."""
    for depth in (1, commits):
        local = bench.fresh(b.work / f"history-{depth}.vczrepo")
        start = time.perf_counter()
        bench.build_history(local, depth)
        url = b.s3.server.upload(local, f"history-{depth}")
        b.log(f"  built and uploaded a {depth}-commit history in {time.perf_counter() - start:.1f} s")
        b.measure(f"remove_1_at_{depth}_commits", f"remove 1 sample, {depth} commit(s)",
                  b.on_branch(url, "rm", "main", ["remove", url, "NA00002"]))
        b.measure(f"tag_at_{depth}_commits", f"tag, {depth} commit(s)", lambda i, u=url: ["tag", u, f"t-{i}"])
        b.measure(f"log_at_{depth}_commits", f"log, {depth} commit(s)", lambda i, u=url: ["log", u])


PARTS = ("writes", "columns", "history")  # writes include the reads, which read what they wrote


def run(data: make_data.Dataset, work: Path, log: Log, *, repeats: int = 1, commits: int | None = None,
        columns: int = COLUMNS, overhead_repeats: int = 3, parts: tuple[str, ...] = PARTS) -> dict:
    """Measure everything against a fresh moto server; returns the JSON results."""
    commits = commits or HISTORY_COMMITS.get(data.root.name, 1_000)
    with running("s3") as server, counting_proxy(server.endpoint) as proxy:
        s3 = S3(server, proxy)
        b = StorageBench(s3, work, repeats, log)
        url = server.url("cohort")
        log(f"S3: {server.version} at {server.endpoint}, counted through {proxy.endpoint}")
        if "writes" in parts:
            log("writes")
            bench_writes(b, data, url, overhead_repeats)
            log("reads")
            bench_reads(b, data, url)
        if "columns" in parts:
            log("shape: sample-chunk columns")
            bench_columns(b, columns)
        if "history" in parts:
            log("shape: history")
            bench_history(b, commits)
        moto = server.version
    return {
        "size": data.root.name,
        "spec": dataclasses.asdict(data.spec),
        "machine": {**bench.machine(), "server": moto, "obstore": version("obstore")},
        "vczrepo_revision": bench.source_revision(),
        "batch_mib": make_data.tree_size(data.batches[1]) / 2**20,
        "columns": columns,
        "history_commits": commits,
        "proxy_overhead": b.overhead,
        "runs": b.runs,
    }


def table(results: dict) -> str:
    """A markdown table: per operation, times, requests by kind and bytes moved."""
    m = results["machine"]
    overhead = f"{results['proxy_overhead']:.2f}x" if results["proxy_overhead"] else "not measured"
    lines = [
        (f"size {results['size']}: {results['spec']}, batch {results['batch_mib']:.1f} MiB, "
         f"vczrepo {results['vczrepo_revision']}, {m['server']}, icechunk {m['versions']['icechunk']}, "
         f"obstore {m['obstore']}; proxy overhead on the aligned append: {overhead}"),
        "", "| operation | op s | server s | PUT | GET | LIST | HEAD | DELETE | POST | failed "
            "| repeated GETs | MiB up | MiB down |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"].values():
        q = r["requests"]
        counts = " | ".join(str(q[k]) for k in KINDS)
        lines.append(f"| {r['label']} | {r['op']:.3f} | {q['server_seconds']:.3f} | {counts} | {q['failed']} "
                     f"| {q['repeated_gets']} | {q['mib_up']:.2f} | {q['mib_down']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(make_data.SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=1, help="runs per operation (best op time)")
    parser.add_argument("--commits", type=int, help=f"long history (default: {HISTORY_COMMITS})")
    parser.add_argument("--columns", type=int, default=COLUMNS, help="sample-chunk columns of the wide store")
    parser.add_argument("--overhead-repeats", type=int, default=3,
                        help="runs of the aligned append with and without the proxy")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to measure, of {','.join(PARTS)}")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write results as JSON to PATH (default: stdout, table to stderr)")
    parser.add_argument("--work-dir", type=Path, help="where local files go (default: a temp dir)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    data = make_data.ensure(args.size, log=log)
    work = Path(tempfile.mkdtemp(prefix="vczrepo-bench-s3-", dir=args.work_dir))
    try:
        results = run(data, work, log, repeats=args.repeats, commits=args.commits, columns=args.columns,
                      overhead_repeats=args.overhead_repeats, parts=tuple(args.parts.split(",")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bench.emit(results, table(results), args.json, log)


if __name__ == "__main__":
    main()
