"""Where runs execute: the one seam between a sweep and the machines it runs on.

Both choices are a ``concurrent.futures.Executor``: local processes
(``ProcessPoolExecutor``), or a Dask distributed cluster through its Client's
``get_executor()``. The runner sees nothing else, so a sweep gives the same
table on one core, on two, or on a cluster.
"""

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from couponsim.errors import InvalidInput, SchedulerUnavailable


@contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None,
                  ) -> Iterator[Executor]:
    """Local worker processes (``workers``, default: one per core), or the Dask cluster
    whose scheduler listens at ``scheduler`` (its workers are its own)."""
    if scheduler is not None:
        if workers is not None:
            raise InvalidInput("--workers counts local processes; a Dask cluster brings "
                               "its own workers")
        with _dask(scheduler) as executor:
            yield executor
        return
    if workers is not None and workers < 1:
        raise InvalidInput(f"--workers must be at least 1, got {workers}")
    # spawn, not fork: a forked worker would inherit the parent's threads and open
    # connections (a notebook's, a progress bar's) in whatever state they were in.
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@contextmanager
def _dask(address: str) -> Iterator[Executor]:
    """Imported here: Dask takes a second to import, and local sweeps do not need it."""
    from distributed import Client

    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnavailable(address, str(exc) or type(exc).__name__) from None
    with client:
        yield client.get_executor()  # type: ignore[no-untyped-call]
