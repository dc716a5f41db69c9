"""Run a convolution tile by tile on the CPU's cores: one threading layer at a time.

A convolution pass is split into tiles of a few images each. Every tile's im2col (or col2im) buffer fits
in the cache, and its matrix product is a single-threaded sgemm of NumPy's BLAS on that buffer. The tiles
are handed out from a shared counter to one worker per core (the calling thread is one of them), so a
worker that the OS preempts (another process on the same cores) delays only its current tile: the other
worker takes the rest. A multi-threaded GEMM instead splits each product into fixed halves and waits for
the slower one; on the shared 2-core machine a weight-gradient GEMM that way ran 5x slower than the same
GEMM on one thread (bench/results/cpu-conv-versions-2026-12-02.md).

The rule for threads: while tiles run, NumPy's BLAS is held at one thread (``threadpoolctl``), so its own
pool sleeps; the jitted tile kernels are serial (``nogil``, no ``prange``), so Numba's pool sleeps too.
Everywhere else (Dense layers, the jitted elementwise kernels) BLAS and Numba use their own pools, one at
a time, as before.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["workers", "run_tiles"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas: object | None = None


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts its own pool on its first tiles."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def workers() -> int:
    """Threads a tiled pass uses: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _resources() -> tuple[ThreadPoolExecutor | None, object | None]:
    global _pool, _blas
    with _lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController

            # NumPy's BLAS (and any other loaded by now); a library loaded later is not limited.
            _blas = ThreadpoolController().select(user_api="blas")
        if _pool is None and workers() > 1:
            _pool = ThreadPoolExecutor(max_workers=workers() - 1, thread_name_prefix="tinygan-tiles")
    return _pool, _blas


def run_tiles(n_tiles: int, work: Callable[[int, int], None], n_workers: int | None = None) -> None:
    """Call ``work(tile, worker)`` for every tile in 0 .. n_tiles - 1, on ``n_workers`` threads (default: one
    per core), each with its own ``worker`` index in 0 .. n_workers - 1 for its private buffers. Tiles are
    taken in order from a shared counter; an exception in any tile is raised here after all workers stop."""
    if n_tiles <= 0:
        return
    n_workers = min(n_workers or workers(), n_tiles)
    pool, blas = _resources()
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed = threading.Event()

    def loop(worker: int) -> None:
        try:
            while not failed.is_set():
                tile = next(counter)
                if tile >= n_tiles:
                    return
                work(tile, worker)
        except BaseException:
            failed.set()
            raise

    with blas.limit(limits=1):
        futures = [pool.submit(loop, w) for w in range(1, n_workers)] if pool is not None else []
        try:
            loop(0)
        finally:
            for future in futures:
                future.exception()  # wait for every worker before re-raising
        for future in futures:
            future.result()
