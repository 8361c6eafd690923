"""The speed mechanisms the CPU backend relies on are switched on where this
platform should have them. These tests FAIL (they do not skip) when a mechanism
expected here silently turned off, e.g. a numpy update renamed the OpenBLAS
symbols, or the tbb library stopped loading; they skip only on platforms where
the mechanism is not expected at all (another BLAS, another OS or CPU).

They check that the mechanism is present, not how fast it is: speed is measured
in benchmarks/ (threads.py, compare.py), never with a clock in tests/.
"""

import importlib.metadata
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

LINUX_X86_64 = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def numpy_blas_name():
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"].lower()
    except (KeyError, TypeError, AttributeError):      # a numpy without build info
        return ""


def test_openblas_thread_count_is_reachable_on_numpys_openblas():
    """One job per core needs OpenBLAS's get/set thread-count symbols. numpy's
    x86-64 Linux wheels ship OpenBLAS, so not finding them here is a regression."""
    if not (LINUX_X86_64 and "openblas" in numpy_blas_name()):
        pytest.skip(f"not x86-64 Linux with numpy's OpenBLAS (BLAS: {numpy_blas_name() or 'unknown'})")
    from convnet.backend import blas
    functions = blas.thread_count_functions()
    assert functions is not None, ("numpy is built with OpenBLAS but convnet.backend.blas found none of "
                                   f"its thread-count symbols {blas._NAME_PAIRS}; one-job-per-core is off")
    get_threads, set_threads = functions
    before = get_threads()
    assert before >= 1
    set_threads(1)
    try:
        assert get_threads() == 1
    finally:
        set_threads(before)
    assert get_threads() == before


def test_numba_gets_a_parallel_threading_layer():
    """With numba installed on x86-64 Linux, the `numba` extra brings the tbb wheel
    and convnet loads it: a parallel kernel must run on TBB (not fall back)."""
    pytest.importorskip("numba")
    if not LINUX_X86_64:
        pytest.skip("the tbb wheel is expected on x86-64 Linux only")
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("numba is installed but the tbb wheel is not: install convnet[numba], which pins it")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "CONVNET_THREADING_LAYER",
                        "LD_LIBRARY_PATH", "NUMBA_NUM_THREADS")}
    code = ("import numpy as np, convnet, numba\n"
            "convnet.get_ops('numba').relu(np.ones((512, 512), np.float32))\n"
            "print(numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tbb", out.stdout + out.stderr


def test_a_cold_numba_cache_says_it_compiles(tmp_path):
    """A clean install's first run compiles every kernel: the numba backend says so
    once, before the wait; with the kernels cached it says nothing."""
    pytest.importorskip("numba")
    code = ("import numpy as np, convnet as cn; ops = cn.get_ops('numba'); "
            "ops.relu(np.ones((4, 4), np.float32))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiling the numba kernels") == 1
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert second.returncode == 0 and "compiling" not in second.stderr


def test_batchnorm_kernels_load_from_the_disk_cache(tmp_path):
    """A second process loads the batch-norm kernels, parallel and serial, from
    Numba's disk cache instead of compiling them again (they once were closures
    made twice from one factory, which missed the cache in every new process and
    cost about 3.6 s at the first BatchNormalization call)."""
    pytest.importorskip("numba")
    code = ("import numpy as np, convnet as cn\n"
            "from convnet.backend.numba import batchnorm\n"
            "ops = cn.get_ops('numba')\n"
            "x = np.random.default_rng(0).random((64, 16, 16, 16), dtype=np.float32)\n"
            "for rows in (x, x[:1, :2, :2]):       # the parallel kernels, then the serial ones\n"
            "    mean, var = ops.batchnorm_statistics(rows)\n"
            "    y, saved, inv = ops.batchnorm_normalize(rows, mean, var, np.ones(16, np.float32),\n"
            "                                            np.zeros(16, np.float32), 1e-3)\n"
            "    ops.batchnorm_backward(y, saved, inv, np.ones(16, np.float32), True)\n"
            "kernels = [*batchnorm._PARALLEL.values(), *batchnorm._SERIAL.values()]\n"
            "print(sum(len(k.stats.cache_hits) for k in kernels), sum(len(k.stats.cache_misses) for k in kernels))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    # every kernel the calls used compiled: eight, or six where one vector kernel
    # takes both kinds of sums (float32, 16 channels, AVX-512 or AVX2 with FMA)
    from convnet.backend.numba import simd
    compiled = 6 if simd.has_512bit_vectors() or simd.has_256bit_fma() else 8
    assert first.stdout.split() == ["0", str(compiled)], first.stdout
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == [str(compiled), "0"], second.stdout     # and all of them loaded
