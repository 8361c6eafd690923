import numpy as np
import pytest

import convnet as cn
from convnet import initializers as init


@pytest.mark.parametrize("name,expected_std", [
    ("he_normal", np.sqrt(2 / 288)),
    ("he_uniform", np.sqrt(6 / 288) / np.sqrt(3)),
    ("glorot_normal", np.sqrt(2 / (288 + 576))),
    ("glorot_uniform", np.sqrt(6 / (288 + 576)) / np.sqrt(3)),
])
def test_variance_follows_the_fan_formula(name, expected_std):
    # a Conv2D kernel (3, 3, 32, 64): fan_in = 9*32 = 288, fan_out = 9*64 = 576
    w = init.get(name)((3, 3, 32, 64), np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (3, 3, 32, 64)
    assert abs(w.mean()) < 0.05 * expected_std
    assert w.std() == pytest.approx(expected_std, rel=0.03)
    if name.endswith("uniform"):
        assert np.abs(w).max() <= expected_std * np.sqrt(3) * (1 + 1e-6)


def test_zeros_ones_and_fans():
    assert not init.zeros((3, 2)).any()
    assert (init.ones((4,)) == 1).all()
    assert init.fans((10, 5)) == (10, 5)
    assert init.fans((3, 3, 2, 8)) == (18, 72)


def test_seeded_layers_reproduce_their_weights():
    a = cn.layers.Conv2D(4, 3, kernel_initializer="he_normal", seed=7).build((8, 8, 2))
    b = cn.layers.Conv2D(4, 3, kernel_initializer="he_normal", seed=7).build((8, 8, 2))
    c = cn.layers.Conv2D(4, 3, kernel_initializer="he_normal", seed=8).build((8, 8, 2))
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert not np.array_equal(a.params["W"], c.params["W"])
    assert not a.params["b"].any()


def test_unknown_initializer():
    with pytest.raises(ValueError, match="unknown initializer 'lecun_magic'"):
        cn.layers.Dense(3, kernel_initializer="lecun_magic")
