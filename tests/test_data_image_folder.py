"""image_dataset_from_directory on folders of generated PNGs."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from convnet.data import ImageDataGenerator, image_dataset_from_directory, load_image

CLASSES = ["cat", "ant", "bee"]  # created out of order: class_names must come out sorted


def solid(path, value, size=(12, 10), mode="RGB"):
    """A PNG filled with one colour; ``size`` is (height, width)."""
    h, w = size
    channels = {"RGB": 3, "L": 1}[mode]
    array = np.full((h, w, channels), value, dtype=np.uint8)
    Image.fromarray(array if channels > 1 else array[..., 0], mode=mode).save(path)


def class_value(cls, i):
    """Pixel value that identifies the class and the image index."""
    return 10 * CLASSES.index(cls) + i + 1


@pytest.fixture
def folder(tmp_path):
    """3 classes x 5 images of mixed sizes; pixel value encodes (class, index)."""
    root = tmp_path / "images"
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(5):
            solid(root / cls / f"img{i}.png", class_value(cls, i), size=(8 + 3 * i, 20 - 2 * i))
    return root


def labels_from_pixels(x, class_names):
    """Recover the class of each image from its pixel value (see class_value)."""
    values = x[:, 0, 0, 0].astype(int)
    return np.array([class_names.index(CLASSES[(v - 1) // 10]) for v in values])


def test_basic_rgb_batches(folder):
    ds = image_dataset_from_directory(folder, image_size=(6, 4), batch_size=4, seed=0)
    assert ds.class_names == ["ant", "bee", "cat"]
    assert len(ds) == 4  # ceil(15 / 4)
    batches = list(ds)
    assert [len(x) for x, _ in batches] == [4, 4, 4, 3]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (6, 4, 3)  # (H, W) honoured
        assert y.dtype == np.int64 and y.shape == (len(x),)
        # images are solid, so resizing keeps the value: labels match pixels
        np.testing.assert_array_equal(labels_from_pixels(x, ds.class_names), y)
        assert (x == x[:, :1, :1, :]).all()
    x_all = np.concatenate([x for x, _ in batches])
    assert sorted(x_all[:, 0, 0, 0]) == sorted(
        float(class_value(c, i)) for c in CLASSES for i in range(5))


def test_grayscale(folder):
    ds = image_dataset_from_directory(folder, color_mode="grayscale", image_size=(5, 5),
                                      batch_size=32, shuffle=False)
    (x, y), = list(ds)
    assert x.shape == (15, 5, 5, 1)
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 5))  # shuffle=False: class order
    np.testing.assert_array_equal(labels_from_pixels(x, ds.class_names), y)


def test_grayscale_file_read_as_rgb_repeats_channels(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        solid(tmp_path / cls / "g.png", 77, mode="L")
    x, _ = image_dataset_from_directory(tmp_path, image_size=(3, 3), shuffle=False).as_arrays()
    assert x.shape == (2, 3, 3, 3) and (x == 77).all()


def test_resize_really_resamples(tmp_path):
    """A left-black/right-white image keeps that layout after resizing (W and H not swapped)."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        array = np.zeros((10, 40, 3), np.uint8)
        array[:, 20:] = 255
        Image.fromarray(array).save(tmp_path / cls / "half.png")
    x, _ = image_dataset_from_directory(tmp_path, image_size=(4, 8), shuffle=False).as_arrays()
    assert x.shape == (2, 4, 8, 3)
    assert (x[:, :, :3] < 10).all() and (x[:, :, 5:] > 245).all()


def test_categorical_labels(folder):
    ds = image_dataset_from_directory(folder, label_mode="categorical", image_size=(4, 4),
                                      batch_size=6, seed=3)
    for x, y in ds:
        assert y.dtype == np.float32 and y.shape == (len(x), 3)
        np.testing.assert_array_equal(y.sum(axis=1), 1)
        np.testing.assert_array_equal(y.argmax(axis=1), labels_from_pixels(x, ds.class_names))


def test_binary_labels(tmp_path):
    for cls in ("neg", "pos"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            solid(tmp_path / cls / f"{i}.png", 5)
    _x, y = image_dataset_from_directory(tmp_path, label_mode="binary", image_size=(2, 2),
                                        shuffle=False).as_arrays()
    assert y.dtype == np.float32 and y.shape == (4, 1)
    np.testing.assert_array_equal(y[:, 0], [0, 0, 1, 1])


def test_explicit_class_names_set_the_label_order(folder):
    order = ["cat", "ant", "bee"]
    ds = image_dataset_from_directory(folder, class_names=order, image_size=(4, 4), seed=0)
    assert ds.class_names == order
    x, y = ds.as_arrays()
    np.testing.assert_array_equal(labels_from_pixels(x, order), y)
    with pytest.raises(ValueError, match="do not match the sub-folders"):
        image_dataset_from_directory(folder, class_names=["cat", "ant"])


def test_validation_split_is_disjoint_complete_and_stable(folder):
    kwargs = {"image_size": (4, 4), "batch_size": 4, "validation_split": 0.4, "seed": 42}
    train = image_dataset_from_directory(folder, subset="training", **kwargs)
    val = image_dataset_from_directory(folder, subset="validation", **kwargs)
    assert len(val.file_paths) == 6 and len(train.file_paths) == 9  # int(0.4 * 15)
    assert not set(train.file_paths) & set(val.file_paths)
    assert set(train.file_paths) | set(val.file_paths) == {
        os.path.join(folder, c, f"img{i}.png") for c in CLASSES for i in range(5)}

    both_train, both_val = image_dataset_from_directory(folder, subset="both", **kwargs)
    assert both_train.file_paths == train.file_paths
    assert both_val.file_paths == val.file_paths

    other = image_dataset_from_directory(folder, subset="validation",
                                         **{**kwargs, "seed": 7})
    assert other.file_paths != val.file_paths  # the seed matters

    x, y = val.as_arrays()  # labels stay attached to their files after the split
    np.testing.assert_array_equal(labels_from_pixels(x, val.class_names), y)


def test_split_requires_seed_and_subset(folder):
    with pytest.raises(ValueError, match="seed"):
        image_dataset_from_directory(folder, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="subset"):
        image_dataset_from_directory(folder, validation_split=0.2, seed=1)
    with pytest.raises(ValueError, match="validation_split"):
        image_dataset_from_directory(folder, validation_split=1.5, subset="training", seed=1)


def test_epochs_reshuffle_deterministically(folder):
    def epoch_orders(seed, n_epochs=3):
        ds = image_dataset_from_directory(folder, image_size=(2, 2), batch_size=15, seed=seed)
        return [tuple(next(iter(ds))[0][:, 0, 0, 0]) for _ in range(n_epochs)]

    first = epoch_orders(seed=5)
    assert first == epoch_orders(seed=5)  # same seed, same sequence of epochs
    assert len(set(first)) == 3  # every epoch differs
    assert epoch_orders(seed=6) != first


def test_no_shuffle_is_file_order(folder):
    ds = image_dataset_from_directory(folder, image_size=(2, 2), batch_size=4, shuffle=False)
    assert [p.split(os.sep)[-2] for p in ds.file_paths] == ["ant"] * 5 + ["bee"] * 5 + ["cat"] * 5
    first = np.concatenate([y for _, y in ds])
    second = np.concatenate([y for _, y in ds])
    np.testing.assert_array_equal(first, second)


def test_map_applies_augmentation(folder):
    ds = image_dataset_from_directory(folder, image_size=(4, 4), batch_size=5, seed=0)
    gen = ImageDataGenerator(rescale=1 / 255.0, horizontal_flip=True, seed=0)
    mapped = ds.map(gen)
    assert len(mapped) == len(ds)
    assert mapped.class_names == ds.class_names  # attributes pass through
    for x, y in mapped:
        assert x.shape == (5, 4, 4, 3) and x.dtype == np.float32
        assert x.max() <= 1.0
        np.testing.assert_array_equal(labels_from_pixels(np.rint(x * 255), ds.class_names), y)


def test_subfolders_and_other_formats(tmp_path):
    (tmp_path / "a" / "nested").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    solid(tmp_path / "a" / "nested" / "deep.png", 1)
    Image.fromarray(np.full((5, 5, 3), 2, np.uint8)).save(tmp_path / "a" / "x.BMP")
    Image.fromarray(np.full((5, 5), 3, np.uint8)).save(tmp_path / "b" / "y.gif")
    Image.fromarray(np.full((5, 5, 3), 4, np.uint8)).save(tmp_path / "b" / "z.jpg", quality=95)
    ds = image_dataset_from_directory(tmp_path, image_size=(5, 5), shuffle=False)
    names = [os.path.basename(p) for p in ds.file_paths]
    assert names == ["x.BMP", "deep.png", "y.gif", "z.jpg"]  # a folder's files, then sub-folders
    x, y = ds.as_arrays()
    np.testing.assert_allclose(x[:, 2, 2, 0], [2, 1, 3, 4], atol=2)  # jpeg may be off by a bit
    np.testing.assert_array_equal(y, [0, 0, 1, 1])


def test_load_image(tmp_path):
    solid(tmp_path / "p.png", 9, size=(7, 3))
    image = load_image(tmp_path / "p.png", (4, 6), "rgb")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8 and (image == 9).all()


# -- bad data ----------------------------------------------------------------------------


def test_unreadable_image_is_an_error_naming_it_and_other_files_are_ignored(folder):
    (folder / "ant" / "notes.txt").write_text("not an image")  # not an image name: ignored
    (folder / "bee" / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "bee" / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored silently
    (folder / ".ipynb_checkpoints").mkdir()  # hidden folder: not a class
    with pytest.raises(ValueError, match=r"1 file\(s\) .*not readable images.*on_error='skip'"
                                         r"[\s\S]*bee.broken\.png") as info:
        image_dataset_from_directory(folder, image_size=(4, 4))
    assert "notes.txt" not in str(info.value)


def test_on_error_skip_leaves_unreadable_images_out_with_one_counting_warning(folder):
    (folder / "ant" / "notes.txt").write_text("not an image")
    (folder / "bee" / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "cat" / "empty.jpg").write_bytes(b"")
    (folder / "bee" / ".DS_Store").write_bytes(b"\0\0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = image_dataset_from_directory(folder, image_size=(4, 4), on_error="skip")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "skipped 2 file(s)" in messages[0]
    assert "broken.png" in messages[0] and "empty.jpg" in messages[0]
    assert "notes.txt" not in messages[0] and ".DS_Store" not in messages[0]
    assert ds.class_names == ["ant", "bee", "cat"]
    assert len(ds.file_paths) == 15
    assert all(p.endswith(".png") for p in ds.file_paths)


def test_image_damaged_after_the_header_names_the_file_when_decoded(folder):
    noise = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "ant" / "img0.png")
    good = (folder / "ant" / "img0.png").read_bytes()
    (folder / "ant" / "img0.png").write_bytes(good[: len(good) // 2])  # header intact, data cut
    ds = image_dataset_from_directory(folder, image_size=(4, 4), shuffle=False, batch_size=15)
    with pytest.raises(ValueError, match=r"cannot decode image .*ant.img0\.png"):
        list(ds)


def test_empty_class_folder_is_an_error_naming_it(folder):
    (folder / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*dog holds no images"):
        image_dataset_from_directory(folder)


def test_class_folder_with_only_junk_is_an_error(folder):
    (folder / "dog").mkdir()
    (folder / "dog" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"dog holds no images with extensions .bmp"):
        image_dataset_from_directory(folder)


def test_one_class_is_an_error(tmp_path):
    (tmp_path / "only").mkdir()
    solid(tmp_path / "only" / "a.png", 1)
    with pytest.raises(ValueError, match=r"at least 2 classes; found only 'only'"):
        image_dataset_from_directory(tmp_path)


def test_no_class_folders_is_an_error(tmp_path):
    solid(tmp_path / "loose.png", 1)
    with pytest.raises(ValueError, match="found none"):
        image_dataset_from_directory(tmp_path)


def test_not_a_directory(tmp_path):
    solid(tmp_path / "file.png", 1)
    with pytest.raises(ValueError, match="is not a directory"):
        image_dataset_from_directory(tmp_path / "file.png")
    with pytest.raises(ValueError, match="is not a directory"):
        image_dataset_from_directory(tmp_path / "missing")


@pytest.mark.parametrize("kwargs, match", [
    ({"color_mode": "cmyk"}, "color_mode"),
    ({"label_mode": "sparse"}, "label_mode"),
    ({"image_size": (0, 4)}, "image_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"labels": [0, 1]}, "inferred"),
    ({"interpolation": "cubic-ish"}, "interpolation"),
])
def test_bad_arguments(folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_dataset_from_directory(folder, **kwargs)
