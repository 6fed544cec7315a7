"""Spreading one append or remove over dask.distributed workers, still as one commit.

The coordinator forks its writable icechunk session once per worker (icechunk
``ForkSession``s are picklable); each worker writes its share of the chunk rows through
its fork and sends the fork back; the coordinator merges the forks and the transaction
commits once. Readers see nothing until that commit. If any worker fails (or dies), the
whole operation fails and nothing is committed: tasks are never retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import chunks
from .internals import SessionStore
from .settings import Settings

if TYPE_CHECKING:
    from zarr.abc.store import Store


@contextlib.contextmanager
def client(workers: int, scheduler: str | None) -> Iterator:
    """A dask client: an existing cluster at `scheduler`, or a LocalCluster of `workers` processes."""
    import dask
    from distributed import Client, LocalCluster

    # set_as_default=False: never leave dask's global scheduler pointing at a closed client
    if scheduler:
        with Client(scheduler, set_as_default=False) as c:
            yield c
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def run_forked(store: Store, settings: Settings, work: Callable, args: tuple) -> None:
    """Run `work(fork, worker_settings, *args, share)` for each worker's share and merge the
    forks into the session of `store`. The workers get the same settings (compression
    level included), without the coordinator's progress bars and test hooks."""
    from distributed import as_completed

    assert isinstance(store, SessionStore)  # the store of a group opened on a session (session_store)
    session = store.session
    workers = settings.workers
    forks = [session.fork() for _ in range(workers)]
    on_worker = settings.for_workers()
    with client(workers, settings.scheduler) as c:
        futures = [c.submit(work, fork, on_worker, *args, (k, workers), pure=False, retries=0)
                   for k, fork in enumerate(forks)]
        done = []
        with chunks.Pipeline(settings).progress(workers, "workers") as bar:
            for future in as_completed(futures, loop=c.loop):
                done.append(future.result())  # the first failure raises: nothing merged, nothing committed
                bar.update()
    session.merge(*done)
    store.forget()  # the forks rewrote chunks behind the store
