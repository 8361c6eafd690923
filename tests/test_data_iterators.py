"""Keras-style iterators: flow_from_directory and flow, with Keras' documented rules."""

import os

import numpy as np
import pytest
from PIL import Image

import convnet as cn
from convnet.data import DirectoryIterator, ImageDataGenerator, NumpyArrayIterator


def png(path, value, size=(6, 5)):
    """A solid grey PNG (height, width) = size whose pixel value identifies it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8), mode="L").save(path)


@pytest.fixture
def tree(tmp_path):
    """Two classes; 'cat' has nested folders whose names test Keras' root ordering."""
    root = tmp_path / "train"
    # created out of order on purpose; values encode the expected position
    png(root / "dog" / "z.png", 60)
    png(root / "dog" / "m.png", 50)
    png(root / "cat" / "sub" / "deep" / "e.png", 40)
    png(root / "cat" / "sub-x" / "d.png", 30)
    png(root / "cat" / "sub" / "c.png", 20)
    png(root / "cat" / "b.png", 11)
    png(root / "cat" / "a.png", 10)
    (root / "cat" / "notes.txt").write_text("ignored")
    return root


# Keras sorts os.walk's folders by their path string ("sub-x" < "sub/deep"
# because "-" < "/"), then files by name within each folder.
KERAS_ORDER = [os.path.join("cat", "a.png"), os.path.join("cat", "b.png"),
               os.path.join("cat", "sub", "c.png"), os.path.join("cat", "sub-x", "d.png"),
               os.path.join("cat", "sub", "deep", "e.png"),
               os.path.join("dog", "m.png"), os.path.join("dog", "z.png")]


def flow(root, gen=None, **kwargs):
    kwargs.setdefault("target_size", (6, 5))
    kwargs.setdefault("color_mode", "grayscale")
    return (gen or ImageDataGenerator()).flow_from_directory(root, **kwargs)


def test_classes_filenames_and_attributes_in_keras_order(tree, capsys):
    it = flow(tree, batch_size=3, shuffle=False)
    assert capsys.readouterr().out.strip() == "Found 7 images belonging to 2 classes."
    assert it.filenames == KERAS_ORDER
    assert it.filepaths == [os.path.join(str(tree), f) for f in KERAS_ORDER]
    assert it.class_indices == {"cat": 0, "dog": 1}
    np.testing.assert_array_equal(it.classes, [0, 0, 0, 0, 0, 1, 1])
    assert it.classes.dtype == np.int32
    assert (it.samples, it.n, it.batch_size, it.num_classes, len(it)) == (7, 7, 3, 2, 3)
    assert it.image_shape == (6, 5, 1) and it.shuffle is False
    x, y = it[0]
    assert x.shape == (3, 6, 5, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 11, 20])
    np.testing.assert_array_equal(y, [[1, 0], [1, 0], [1, 0]])  # categorical by default


def test_explicit_classes_set_the_label_order(tree):
    it = flow(tree, classes=["dog", "cat"], shuffle=False)
    assert it.class_indices == {"dog": 0, "cat": 1}
    np.testing.assert_array_equal(it.classes, [0, 0, 1, 1, 1, 1, 1])
    assert it.filenames[:2] == [os.path.join("dog", "m.png"), os.path.join("dog", "z.png")]
    with pytest.raises(ValueError, match=r"classes \['cat', 'bird'\] must name"):
        flow(tree, classes=["cat", "bird"])


@pytest.mark.parametrize("class_mode, check", [
    ("binary", lambda x, y: y.dtype == np.float32 and y.shape == (7,)
     and list(y) == [0, 0, 0, 0, 0, 1, 1]),
    ("sparse", lambda x, y: y.dtype == np.float32 and list(y) == [0, 0, 0, 0, 0, 1, 1]),
    ("input", lambda x, y: np.array_equal(x, y) and x is not y),
])
def test_class_modes(tree, class_mode, check):
    x, y = flow(tree, class_mode=class_mode, batch_size=7, shuffle=False)[0]
    assert check(x, y)


def test_class_mode_none_yields_images_only(tree):
    batch = flow(tree, class_mode=None, batch_size=4, shuffle=False)[1]
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 6, 5, 1)


def test_validation_split_takes_the_first_files_of_each_class(tree):
    gen = ImageDataGenerator(validation_split=0.4)
    val = flow(tree, gen, subset="validation", shuffle=False)
    train = flow(tree, gen, subset="training", shuffle=False)
    # cat: 5 files, int(0.4 * 5) = 2 validate; dog: 2 files, int(0.4 * 2) = 0
    assert val.filenames == KERAS_ORDER[:2]
    assert train.filenames == KERAS_ORDER[2:]
    np.testing.assert_array_equal(train.classes, [0, 0, 0, 1, 1])
    assert val.num_classes == train.num_classes == 2
    with pytest.raises(ValueError, match="validation_split"):
        flow(tree, subset="validation")  # generator without a split
    with pytest.raises(ValueError, match="subset must be one of"):
        flow(tree, gen, subset="test")


def test_next_streams_forever_and_reshuffles_each_epoch(tree):
    it = flow(tree, batch_size=3, shuffle=True, seed=1, class_mode="sparse")
    seen = [it.next() for _ in range(6)]  # two epochs of 3 batches
    assert [len(y) for _, y in seen] == [3, 3, 1, 3, 3, 1]
    values = [np.concatenate([x[:, 0, 0, 0] for x, _ in seen[e * 3:(e + 1) * 3]]) for e in (0, 1)]
    assert sorted(values[0]) == sorted(values[1]) == [10, 11, 20, 30, 40, 50, 60]
    assert list(values[0]) != list(values[1])
    for x, y in seen:  # labels follow their images through the shuffle
        np.testing.assert_array_equal(y, (x[:, 0, 0, 0] >= 50).astype(np.float32))


def test_iteration_is_one_epoch_and_replays_under_a_seed(tree):
    def epochs(seed):
        it = flow(tree, ImageDataGenerator(brightness_range=(0.5, 1.5)), batch_size=3, seed=seed)
        return [np.concatenate([x for x, _ in it]) for _ in range(2)]

    a, b = epochs(3), epochs(3)
    assert all(len(e) == 7 for e in a)
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(epochs(4)[0], a[0])


def test_getitem_does_not_depend_on_what_was_read_before(tree):
    gen = ImageDataGenerator(rotation_range=30, channel_shift_range=20)
    it1, it2 = flow(tree, gen, batch_size=2, seed=0), flow(tree, gen, batch_size=2, seed=0)
    it1[0], it1[3]
    np.testing.assert_array_equal(it1[2][0], it2[2][0])
    np.testing.assert_array_equal(it1[-1][0], it2[3][0])
    with pytest.raises(ValueError, match="asked for batch 4, but there are 4 batches"):
        it1[4]


def test_reset_and_on_epoch_end(tree):
    it = flow(tree, batch_size=3, shuffle=True, seed=0)
    first = it.next()
    it.next()
    it.reset()
    assert it.batch_index == 0
    np.testing.assert_array_equal(it.next()[0], first[0])  # same epoch, rewound
    order = it.index_array
    it.on_epoch_end()
    assert not np.array_equal(it.index_array, order)
    fixed = flow(tree, batch_size=3, shuffle=False)
    fixed.on_epoch_end()
    np.testing.assert_array_equal(fixed.index_array, np.arange(7))


def test_predict_order_matches_classes_without_shuffle(tree):
    # The Keras trap (#4225, #6234): only a non-shuffling iterator lines up with .classes.
    it = flow(tree, batch_size=2, shuffle=False, class_mode=None)
    rows = np.concatenate(list(it))[:, 0, 0, 0]
    np.testing.assert_array_equal(rows >= 50, it.classes == 1)
    assert flow(tree, batch_size=2).shuffle is True  # what a model checks before warning


def test_augmentation_and_rescale_apply_to_directory_batches(tree):
    gen = ImageDataGenerator(rescale=1 / 255.0, horizontal_flip=True)
    x, _ = flow(tree, gen, batch_size=7, shuffle=False)[0]
    np.testing.assert_allclose(x[:, 0, 0, 0], np.array([10, 11, 20, 30, 40, 50, 60]) / 255.0,
                               rtol=1e-6)


def test_fit_accepts_the_iterator_with_fractional_steps(tree):
    it = flow(tree, ImageDataGenerator(rescale=1 / 255.0), batch_size=3, seed=0,
              class_mode="sparse")
    model = cn.Sequential([cn.layers.Flatten(), cn.layers.Dense(2)], input_shape=(6, 5, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # The course passes samples / batch_size (2.33 here): Keras runs ceil() = 3 steps.
    history = model.fit(it, steps_per_epoch=it.samples / 3, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert it.epoch == 2  # one iter() per epoch


@pytest.mark.parametrize("kwargs, match", [
    ({"color_mode": "cmyk"}, "color_mode"),
    ({"class_mode": "one-hot"}, "class_mode"),
    ({"target_size": (0, 3)}, "target_size"),
    ({"interpolation": "cubic-ish"}, "interpolation"),
    ({"batch_size": 0}, "batch_size"),
    ({"on_error": "ignore"}, "on_error"),
])
def test_bad_arguments(tree, kwargs, match):
    with pytest.raises(ValueError, match=match):
        flow(tree, **kwargs)


def test_binary_needs_two_classes(tree):
    png(tree / "owl" / "o.png", 70)
    with pytest.raises(ValueError, match="binary.*exactly 2 classes"):
        flow(tree, class_mode="binary")


def test_no_images_and_not_a_directory(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="found no images"):
        flow(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        flow(tmp_path / "missing")


# -- flow (arrays) ---------------------------------------------------------------------------


def arrays(n=10):
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 3, 3, 1), np.uint8)
    y = np.arange(n) % 2
    return x, y


def test_flow_validation_split_takes_the_first_rows():
    x, y = arrays()
    gen = ImageDataGenerator(validation_split=0.3)
    val = gen.flow(x, y, batch_size=10, shuffle=False, subset="validation")
    train = gen.flow(x, y, batch_size=10, shuffle=False, subset="training")
    assert isinstance(val, NumpyArrayIterator)
    np.testing.assert_array_equal(val[0][0][:, 0, 0, 0], [0, 1, 2])  # int(10 * 0.3) = 3 rows
    np.testing.assert_array_equal(train[0][0][:, 0, 0, 0], np.arange(3, 10))
    np.testing.assert_array_equal(train.classes, y[3:])
    assert (train.n, train.num_classes, train.image_shape) == (7, 2, (3, 3, 1))


def test_flow_split_with_different_classes_is_an_error_unless_ignored():
    x = np.zeros((10, 2, 2, 1))
    y = np.array([0] * 5 + [1] * 5)  # sorted by label: validation would hold only class 0
    gen = ImageDataGenerator(validation_split=0.2)
    with pytest.raises(ValueError, match="different classes.*shuffle them"):
        gen.flow(x, y, subset="training")
    assert gen.flow(x, y, subset="training", ignore_class_split=True).n == 8


def test_flow_sample_weights_come_as_a_third_element():
    x, y = arrays(6)
    w = np.linspace(0.5, 1.0, 6)
    xb, yb, wb = ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False, sample_weight=w)[1]
    np.testing.assert_array_equal(yb, y[4:])
    np.testing.assert_array_equal(wb, w[4:])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(6,\)"):
        ImageDataGenerator().flow(x, y, sample_weight=w[:5])


def test_flow_errors_name_the_problem():
    x, y = arrays(6)
    with pytest.raises(ValueError, match="same length"):
        ImageDataGenerator().flow(x, y[:5])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ImageDataGenerator().flow(x[..., 0])


def test_directory_iterator_is_exported():
    assert cn.data.DirectoryIterator is DirectoryIterator
