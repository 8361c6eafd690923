"""ArrayBatches and the batch protocol (len, one epoch per iter(), map, as_arrays)."""

import numpy as np
import pytest

from convnet.data import ArrayBatches


def data(n=10):
    x = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2)
    return x, np.arange(n)


def test_len_and_batch_sizes():
    x, y = data(10)
    ds = ArrayBatches(x, y, batch_size=4, shuffle=False)
    assert len(ds) == 3 and ds.num_samples == 10
    assert [len(xb) for xb, _ in ds] == [4, 4, 2]
    dropped = ArrayBatches(x, y, batch_size=4, drop_remainder=True)
    assert len(dropped) == 2 and [len(xb) for xb, _ in dropped] == [4, 4]


def test_keeps_dtype_unless_asked_and_scales_per_batch():
    x, y = data()
    (xb, _), *_ = ArrayBatches(x, y, batch_size=4, shuffle=False)
    assert xb.dtype == np.uint8
    (xb, _yb), *_ = ArrayBatches(x, y, batch_size=4, shuffle=False, scale=1 / 255)
    assert xb.dtype == np.float32
    np.testing.assert_allclose(xb, x[:4] / 255, rtol=1e-6)
    assert x.dtype == np.uint8 and x[1, 0, 0] == 4  # source untouched
    (xb, _), *_ = ArrayBatches(x, y, batch_size=4, shuffle=False, dtype="float64")
    assert xb.dtype == np.float64


def test_shuffled_epochs_cover_everything_and_keep_pairs():
    x, y = data(10)
    ds = ArrayBatches(x, y, batch_size=3, seed=0)
    orders = []
    for _ in range(3):
        xs, ys = zip(*ds)
        ys = np.concatenate(ys)
        assert sorted(ys) == list(range(10))
        np.testing.assert_array_equal(np.concatenate(xs), x[ys])  # pairs intact
        orders.append(tuple(ys))
    assert len(set(orders)) == 3  # reshuffled every epoch


def test_seeded_epochs_replay():
    x, y = data(20)
    a = ArrayBatches(x, y, batch_size=5, seed=1)
    b = ArrayBatches(x, y, batch_size=5, seed=1)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate([yb for _, yb in a]),
                                      np.concatenate([yb for _, yb in b]))
    c = ArrayBatches(x, y, batch_size=5, seed=2)
    assert not np.array_equal(next(iter(a))[1], next(iter(c))[1])


def test_iter_call_starts_the_epoch():
    x, y = data()
    ds = ArrayBatches(x, y, batch_size=4, seed=0)
    iter(ds)  # an abandoned iterator still counts as an epoch
    assert ds.epoch == 1


def test_transform_and_map():
    x, y = data()
    ds = ArrayBatches(x, y, batch_size=5, shuffle=False, scale=0.5,
                      transform=lambda xb: xb + 1)
    xb, _ = next(iter(ds))
    np.testing.assert_allclose(xb, x[:5] * 0.5 + 1)
    mapped = ds.map(lambda xb, yb: (xb[:, None], yb * 10))
    assert len(mapped) == 2 and mapped.batch_size == 5
    xb, yb = next(iter(mapped))
    assert xb.shape == (5, 1, 2, 2)
    np.testing.assert_array_equal(yb, np.arange(5) * 10)


def test_as_arrays_and_unlabelled():
    x, y = data(7)
    xa, ya = ArrayBatches(x, y, batch_size=3, shuffle=False).as_arrays()
    np.testing.assert_array_equal(xa, x)
    np.testing.assert_array_equal(ya, y)
    only_x = ArrayBatches(x, batch_size=3, shuffle=False)
    assert all(isinstance(b, np.ndarray) for b in only_x)
    np.testing.assert_array_equal(only_x.as_arrays(), x)


def test_errors():
    x, y = data()
    with pytest.raises(ValueError, match="x has 10 rows but y has 9"):
        ArrayBatches(x, y[:9])
    with pytest.raises(ValueError, match="batch_size"):
        ArrayBatches(x, y, batch_size=0)
    with pytest.raises(TypeError, match="seed"):
        ArrayBatches(x, y, seed=1.5)
