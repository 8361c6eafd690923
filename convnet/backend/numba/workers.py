"""One job per core: the worker pool that runs convolutions and large matrix
products as jobs on separate cores, each with a one-thread BLAS.

A wide convolution alternates Numba kernels (im2col, col2im) with matrix products.
Run as one job, every step wants both cores and the cores hand the work back and
forth between Numba's pool and OpenBLAS's after every step. Run as one job per
core instead, each job unfolds and multiplies its own share of the batch with the
serial kernels while OpenBLAS runs on one thread, and each job's im2col chunk
stays in its own core's L2 cache until its GEMM reads it. Measured on W2's
32->32-channel convolution at batch 128 (2 cores): forward 17-20 ms as one job
with both cores in every kernel, 13 ms as two jobs.

Needs numpy's BLAS to be OpenBLAS, whose thread count convnet can set at run time
(convnet/backend/blas.py); `CoreJobs.get()` is None without it or with one thread.
"""

import os
import threading

from .. import blas
from . import threads


class CoreJobs:
    """One worker thread per Numba thread; `map` runs one job on each."""

    _instance = None
    _tried = False

    def __init__(self, size, blas_threads):
        from concurrent.futures import ThreadPoolExecutor
        self.size = size
        self._get_blas_threads, self._set_blas_threads = blas_threads
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="convnet-job")
        # one batch of jobs at a time: two Python threads each running convolutions
        # would otherwise restore each other's BLAS thread count
        self._lock = threading.Lock()

    @classmethod
    def get(cls):
        """The process's pool, or None where jobs cannot run one per core."""
        if not cls._tried:
            cls._tried = True
            count = threads.num_threads()
            blas_threads = blas.thread_count_functions()
            if count > 1 and blas_threads is not None:
                cls._instance = cls(count, blas_threads)
        return cls._instance

    def map(self, work, ranges):
        """[work(s0, e0, True) for (s0, e0) in ranges], one range per worker, run
        while OpenBLAS uses one thread (its count is process-wide; it is restored
        afterwards, also when a job fails)."""
        with self._lock:
            before = self._get_blas_threads()
            self._set_blas_threads(1)
            try:
                jobs = [self._pool.submit(work, s0, e0, True) for s0, e0 in ranges]
                return [job.result() for job in jobs]
            finally:
                self._set_blas_threads(before)

    @classmethod
    def forget(cls):
        """Drop the pool: a forked child has none of the parent's worker threads."""
        cls._instance = None
        cls._tried = False


def over_batch(n, work, jobs_per_core=True):
    """[work(s0, e0, serial)] over a batch of n: one job per worker on consecutive
    ranges (serial kernels, one-core BLAS) when there are workers and at least one
    item each, else one job [work(0, n, False)] with the parallel kernels and the
    multi-threaded BLAS."""
    pool = CoreJobs.get() if jobs_per_core else None
    if pool is None or n < pool.size:
        return [work(0, n, False)]
    bounds = [n * t // pool.size for t in range(pool.size + 1)]
    return pool.map(work, list(zip(bounds[:-1], bounds[1:])))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CoreJobs.forget)
