"""One job per core: the worker pool that runs convolutions and large matrix
products as jobs on separate cores, each with a one-thread BLAS; and the rule
that every matrix product convnet runs uses a one-thread BLAS.

Why every product: OpenBLAS's worker threads busy-wait after each product it
splits over them (~0.1 s unless OPENBLAS_THREAD_TIMEOUT was exported before numpy
loaded), and in a training step a product is followed at once by a parallel Numba
kernel that needs every core. A script that imports numpy before convnet gets
OpenBLAS's default spin, so convnet cannot rely on the variable. Instead it never
hands OpenBLAS's pool any work: while its products run, OpenBLAS's thread count is
1 (set at run time, restored afterwards, so the user's own numpy code keeps its
threads), and convnet splits the large products into one job per core itself.
OpenBLAS's workers then stay asleep, whatever the import order. A split job also
survives a loaded machine better: a two-thread OpenBLAS product whose second
thread is descheduled stalls (measured here while other programs ran: a
128x3136 @ 3136x128 product took 56 ms with two OpenBLAS threads, 0.65 ms with one).

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

import contextlib
import os
import threading

import numpy as np

from .. import blas
from . import gemm, threads

#: products of at least this many FLOPs (2*m*k*n) are split into one job per core;
#: below, the hand-off to the pool (~20-40 us) costs more than the second core saves
SPLIT_FLOPS = 32_000_000

#: OpenBLAS runs a product with m*k*n at most this on the calling thread anyway
#: (its GEMM threshold: 65536 * GEMM_MULTITHREAD_THRESHOLD, 4 by default), so
#: those skip setting the thread count (a few us each, which shows at batch 1)
BLAS_SINGLE_THREAD_MNK = 65536 * 4


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
        self._lock = threading.RLock()

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

    @contextlib.contextmanager
    def one_thread_blas(self):
        """Run a block while OpenBLAS uses one thread (its count is process-wide; it
        is restored afterwards, also when the block fails)."""
        with self._lock:
            before = self._get_blas_threads()
            self._set_blas_threads(1)
            try:
                yield
            finally:
                self._set_blas_threads(before)

    def map(self, work, ranges):
        """[work(s0, e0, True) for (s0, e0) in ranges], one range per worker, run
        while OpenBLAS uses one thread."""
        with self.one_thread_blas():
            jobs = [self._pool.submit(work, s0, e0, True) for s0, e0 in ranges]
            return [job.result() for job in jobs]

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


def matmul(a, b, out=None):
    """a @ b for 2-D float arrays (a (M, K), b (K, N) -> (M, N), into `out` when
    given) on one thread each (gemm.matmul: its kernels, else a one-thread BLAS):
    large products as one job per core on row blocks of a, small ones on the
    calling thread. Where OpenBLAS's thread count cannot be
    set (another BLAS, one thread) this is plain np.matmul."""
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    pool = CoreJobs.get()
    if pool is None:
        return np.matmul(a, b, out=out)
    if m * k * n <= BLAS_SINGLE_THREAD_MNK:
        return gemm.matmul(a, b, out)
    if gemm.few_rows_applies(a, b, out):        # bound by reading b: every core reads a share
        return gemm.matmul_few_rows(a, b, out, pool.size)
    if 2 * m * k * n < SPLIT_FLOPS or m < 8 * pool.size:
        with pool.one_thread_blas():
            return gemm.matmul(a, b, out)
    bounds = [m * t // pool.size for t in range(pool.size + 1)]

    def rows(s0, e0, serial):
        gemm.matmul(a[s0:e0], b, out[s0:e0])

    pool.map(rows, list(zip(bounds[:-1], bounds[1:])))
    return out


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CoreJobs.forget)
