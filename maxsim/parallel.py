"""Work split between threads on a machine that may be busy: parts handed out one at a time.

Used by search (its stages) and by compression (nearest-centroid search in the build). Both run
numpy/numba kernels that release the GIL, so threads of one process share the cores.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

#: Work split between threads is cut into up to this many parts per thread, handed out one at a time.
PARTS_PER_THREAD = 4

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by ``OMP_NUM_THREADS`` when set.

    Ray sets ``OMP_NUM_THREADS`` to the CPUs an actor or task reserved (1 when it reserved none),
    so a worker on a big node does not run a thread per core of the node."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        cpus = min(cpus, int(omp))
    return max(cpus, 1)


def _pool(threads: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="maxsim-parts")
        return _POOLS[threads]


def run_parts(fn, parts: list, threads: int) -> list:
    """[fn(p) for p in parts], on the calling thread and ``threads - 1`` pool threads.

    Parts are handed out one at a time to whichever thread asks next, the calling thread
    included. On a busy machine, where a pool thread may not be scheduled for milliseconds, the
    calling thread simply takes more parts: the work degrades to one thread instead of waiting
    for work nobody is doing.
    """
    n = len(parts)
    if n <= 1 or threads <= 1:
        return [fn(p) for p in parts]
    results: list = [None] * n
    errors: list = [None] * n
    counter = itertools.count()  # next() is atomic under the GIL
    left = [n]
    left_lock = threading.Lock()
    finished = threading.Event()

    def loop() -> None:
        while (i := next(counter)) < n:
            try:
                results[i] = fn(parts[i])
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
                errors[i] = e
            finally:
                with left_lock:
                    left[0] -= 1
                    if left[0] == 0:
                        finished.set()

    pool = _pool(threads - 1)
    for _ in range(min(threads - 1, n - 1)):
        pool.submit(loop)
    loop()
    finished.wait()
    for e in errors:
        if e is not None:
            raise e
    return results


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = [0]
_BLAS_LIMIT: list = [None]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS (numpy's OpenBLAS) on one thread per call while inside, for work that
    :func:`run_parts` spreads over threads itself. BLAS's own thread pool waits for all its
    threads at every call: on a busy machine one unscheduled thread stalls the product (the
    nearest-centroid search of a build ran some 3x slower with 2 BLAS threads than with 1 while
    another process held a core). The limit is process-wide, so it is held until the last user
    leaves."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - only builds need it

    with _BLAS_LOCK:
        if _BLAS_USERS[0] == 0:
            _BLAS_LIMIT[0] = threadpool_limits(limits=1, user_api="blas")
        _BLAS_USERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS[0] -= 1
            if _BLAS_USERS[0] == 0:
                _BLAS_LIMIT[0].restore_original_limits()
                _BLAS_LIMIT[0] = None
