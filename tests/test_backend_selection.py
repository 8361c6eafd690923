import os
import platform
import subprocess
import sys

import pytest

import convnet as cn


def test_set_get_and_context_manager():
    before = cn.get_backend()
    with cn.use_backend("numpy") as ops:
        assert cn.get_backend() == "numpy" and ops.name == "numpy"
    assert cn.get_backend() == before
    cn.set_backend("numpy")
    try:
        assert cn.get_backend() == "numpy"
    finally:
        cn.set_backend(before)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        cn.set_backend("tpu")


def test_cupy_without_gpu_names_what_is_missing():
    try:
        import cupy  # noqa: F401
        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU is present")
    except Exception:
        pass
    with pytest.raises(ValueError, match="backend 'cupy'.*(CuPy is not installed|no CUDA)"):
        cn.set_backend("cupy")


def run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=120)


def test_env_var_selects_backend():
    out = run_python("import convnet; print(convnet.get_backend())", CONVNET_BACKEND="numpy")
    assert out.stdout.strip() == "numpy", out.stderr


def test_default_is_numba_where_it_imports_else_numpy():
    env = {k: v for k, v in os.environ.items() if k != "CONVNET_BACKEND"}
    code = ("import importlib.util, convnet\n"
            "has = importlib.util.find_spec('numba') is not None\n"
            "print(convnet.get_backend(), has)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    name, has_numba = out.stdout.split()
    assert name == ("numba" if has_numba == "True" else "numpy"), out.stderr


def test_import_survives_without_numba():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import convnet; print(convnet.get_backend())")
    env = {k: v for k, v in os.environ.items() if k != "CONVNET_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "numpy", out.stderr


def test_openblas_thread_timeout_is_set_before_numpy_loads():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    code = "import convnet, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], convnet._openblas_env.applied)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["4", "True"], out.stderr
    late = "import numpy, convnet; print(convnet._openblas_env.applied)"
    out = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_THREAD_TIMEOUT": "20"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["20", "True"], out.stderr


# a 40 MiB array allocated, written and freed ten times: with glibc's defaults
# each round maps fresh pages, and the kernel zeroes them on first touch (page faults)
_REUSE = """
import resource, convnet, numpy as np
np.ones(10 << 20, np.float32)                      # first use maps the pages
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(10 << 20, np.float32)
print(convnet._malloc_env.applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the malloc thresholds are a glibc setting")
def test_large_arrays_reuse_mapped_memory_and_the_setting_can_be_turned_off():
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVNET_MALLOC_TUNING", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", _REUSE], env=env, capture_output=True, text=True, timeout=120)
    applied, tuned_faults = out.stdout.split()
    assert applied == "True", out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", _REUSE], env={**env, "CONVNET_MALLOC_TUNING": "0"},
                         capture_output=True, text=True, timeout=120)
    applied, default_faults = out.stdout.split()
    assert applied == "False", out.stdout + out.stderr
    assert int(default_faults) >= 100 and int(tuned_faults) * 10 < int(default_faults), (tuned_faults, default_faults)


def test_tbb_threading_layer_loads_from_a_plain_venv():
    # the tbb wheel's libtbb.so.12 lies in <venv>/lib, off the loader's path;
    # without convnet loading it by path Numba silently falls back to workqueue
    import importlib.metadata
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed")
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "CONVNET_THREADING_LAYER",
                        "LD_LIBRARY_PATH")}
    code = ("import convnet, numpy as np, numba\n"
            "convnet.get_ops('numba').relu(np.ones((512, 512), np.float32))\n"
            "print(numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "tbb", out.stdout + out.stderr
