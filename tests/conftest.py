import numpy as np
import pytest

import convnet as cn

CPU_BACKENDS = [name for name in cn.available_backends() if name != "cupy"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Run a test once per available CPU backend (numpy reference, numba where installed)."""
    with cn.use_backend(request.param) as ops:
        yield ops


@pytest.fixture
def numpy_backend():
    with cn.use_backend("numpy") as ops:
        yield ops


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
