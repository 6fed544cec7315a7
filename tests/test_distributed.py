"""Append and remove spread over dask.distributed workers: one commit, or nothing on failure."""

from __future__ import annotations

import os
import signal
import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from helpers import state
from vcfgen import write_vcz_direct

import vczrepo
from vczrepo import storage

N_VARIANTS = 1500


def _batch(path, names, seed, samples_chunk=3):
    rng = np.random.default_rng(seed)
    gts = rng.integers(0, 2, size=(N_VARIANTS, len(names), 2)).astype(np.int8)
    return write_vcz_direct(path, names, gts, n_variants=N_VARIANTS, samples_chunk_size=samples_chunk,
                            variants_chunk_size=100)


@pytest.fixture(scope="module")
def cluster():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


@pytest.mark.parametrize("base_chunk", [4, 3], ids=["aligned", "unaligned"])
def test_distributed_append_and_remove_equal_local_ones(cli, tmp_path, cluster, base_chunk, monkeypatch):
    # unaligned: the workers rewrite chunks the coordinator has already read (sample_id);
    # no inline chunks, so that the coordinator reads them from their files
    config = storage.repository_config()
    config.inline_chunk_threshold_bytes = 0
    monkeypatch.setattr(storage, "repository_config", lambda: config)
    base = _batch(tmp_path / "a.vcz", ["A0", "A1", "A2", "A3"], 1, samples_chunk=base_chunk)
    batch = _batch(tmp_path / "b.vcz", [f"B{i}" for i in range(7)], 2)
    local, dist = tmp_path / "local", tmp_path / "dist"
    for path in (local, dist):
        vczrepo.Repository.init(path, base)
    cli("append", local, batch, "--no-align")  # a distributed append never pads
    cli("append", dist, batch, "--scheduler", cluster.scheduler_address)
    cli("remove", local, "A1", "B5")
    cli("remove", dist, "A1", "B5", "--scheduler", cluster.scheduler_address)
    a, b = vczrepo.open_group(local), vczrepo.open_group(dist)
    for name, array in a.arrays():
        np.testing.assert_array_equal(array[...], b[name][...])
    repo = vczrepo.Repository.open(dist)
    assert [c.op for c in repo.log()] == ["remove", "append", "init", "root"]
    assert repo.log()[1].metadata["n_samples"] == 11
    assert repo.check().ok


def test_workers_option_starts_a_local_cluster(cli, tmp_path):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, _batch(tmp_path / "a.vcz", ["A0", "A1"], 1))
    cli("append", path, _batch(tmp_path / "b.vcz", ["B0", "B1", "B2"], 2), "--workers", "2")
    assert vczrepo.Repository.open(path).samples() == ["A0", "A1", "B0", "B1", "B2"]


def test_killed_worker_aborts_with_nothing_committed(tmp_path, cluster):
    path = tmp_path / "r"
    vczrepo.Repository.init(path, _batch(tmp_path / "a.vcz", ["A0"], 1))
    repo = vczrepo.Repository.open(path, settings=vczrepo.Settings(scheduler=cluster.scheduler_address))
    big = _batch(tmp_path / "big.vcz", [f"B{i}" for i in range(200)], 2, samples_chunk=7)
    before = state(path)
    errors = []

    def run():
        try:
            repo.append(big)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    with Client(cluster, set_as_default=False) as client:
        deadline = time.monotonic() + 60
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            busy = [addr for addr, tasks in client.processing().items() if tasks]
            for nanny in cluster.workers.values():
                if nanny.worker_address in busy:
                    os.kill(nanny.process.process.pid, signal.SIGKILL)  # mid-copy
                    killed = nanny.worker_address
                    break
            time.sleep(0.01)
    thread.join(timeout=120)
    assert killed, "no worker was seen copying"
    assert errors, "the append should have failed when its worker died"
    assert state(path) == before


def test_distributed_append_leaves_dask_default_scheduler_alone(tmp_path, cluster):
    before = dask.config.get("scheduler", None)
    path = tmp_path / "r"
    vczrepo.Repository.init(path, _batch(tmp_path / "a.vcz", ["A0"], 1))
    repo = vczrepo.Repository.open(path, settings=vczrepo.Settings(scheduler=cluster.scheduler_address))
    repo.append(_batch(tmp_path / "b.vcz", ["B0"], 2))
    assert dask.config.get("scheduler", None) == before
    import dask.array as da

    assert int(da.ones(4, chunks=2).sum().compute()) == 4  # local dask still works


def test_distributed_grow_equals_local_grow(cli, tmp_path, cluster):
    """append --grow-variants with workers: the rewrite of the moved rows is shared out too."""
    import zarr

    base = _batch(tmp_path / "a.vcz", ["A0", "A1", "A2", "A3"], 1)
    wave = _batch(tmp_path / "w.vcz", [f"W{i}" for i in range(5)], 3)
    positions = zarr.open_group(wave, mode="r+")["variant_position"]
    pos = np.asarray(positions[:])
    room = np.append(pos[1:] - pos[:-1] > 1, True)
    moved = (np.arange(len(pos)) % 10 == 5) & room
    positions[:] = pos + moved  # a tenth of the wave's sites are new
    local, dist = tmp_path / "local", tmp_path / "dist"
    for path in (local, dist):
        vczrepo.Repository.init(path, base)
    cli("append", local, wave, "--grow-variants", "--no-align")
    cli("append", dist, wave, "--grow-variants", "--scheduler", cluster.scheduler_address)
    a, b = vczrepo.open_group(local), vczrepo.open_group(dist)
    assert a["variant_position"].shape[0] == N_VARIANTS + int(moved.sum())
    for name, array in a.arrays():
        np.testing.assert_array_equal(array[...], b[name][...], err_msg=name)
    assert vczrepo.Repository.open(dist).check().ok


def test_distributed_widening_equals_local_widening(cli, tmp_path, cluster):
    """A batch with a depth past int8 and a third allele per call: the workers share the
    rewrite of the repository's call_DP (dtype) and call_genotype (ploidy) chunk rows."""
    import zarr

    rng = np.random.default_rng(4)
    base = write_vcz_direct(tmp_path / "a.vcz", ["A0", "A1", "A2", "A3"],
                            rng.integers(0, 2, size=(N_VARIANTS, 4, 2)).astype(np.int8), n_variants=N_VARIANTS,
                            samples_chunk_size=3, variants_chunk_size=100, dp_dtype=np.int8)
    batch = write_vcz_direct(tmp_path / "b.vcz", ["B0", "B1", "B2"],
                             rng.integers(0, 2, size=(N_VARIANTS, 3, 3)).astype(np.int8), n_variants=N_VARIANTS,
                             samples_chunk_size=3, variants_chunk_size=100)
    zarr.open_group(str(batch), mode="r+")["call_DP"][7, 1] = 300
    local, dist = tmp_path / "local", tmp_path / "dist"
    for path in (local, dist):
        vczrepo.Repository.init(path, base)
    cli("append", local, batch, "--no-align")
    cli("append", dist, batch, "--scheduler", cluster.scheduler_address)
    a, b = vczrepo.open_group(local), vczrepo.open_group(dist)
    assert (b["call_DP"].dtype, b["call_genotype"].shape[2]) == (np.int16, 3)
    for name, array in a.arrays():
        np.testing.assert_array_equal(array[...], b[name][...])
    assert int(b["call_DP"][7, 5]) == 300
    assert (b["call_genotype"][:, :4, 2] == -2).all()
    widened = vczrepo.Repository.open(dist).log()[0].metadata["widened"]
    assert [w["name"] for w in widened] == ["call_DP", "call_genotype"]
    assert vczrepo.Repository.open(dist).check(deep=True).ok
