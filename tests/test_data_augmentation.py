"""ImageDataGenerator: geometry checked on known images, seeding, shapes, flow()."""

import numpy as np
import pytest

from convnet.data import ImageDataGenerator
from convnet.data.augmentation import affine_sample


def batch(n=6, h=9, w=11, c=3, seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c)).astype(dtype)


def dot(h=7, w=7, row=1, col=5, value=200.0):
    """One image ``(1, h, w, 1)``, zero but for one pixel."""
    x = np.zeros((1, h, w, 1), np.float32)
    x[0, row, col, 0] = value
    return x


FULL = {"rotation_range": 30, "width_shift_range": 0.2, "height_shift_range": 0.2, "shear_range": 10,
            "zoom_range": 0.2, "horizontal_flip": True, "vertical_flip": True}


# -- exact geometry --------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_horizontal_flip_really_flips(interpolation):
    x = batch()
    gen = ImageDataGenerator(interpolation=interpolation)
    out = gen.apply_transform(x, {"flip_horizontal": np.array([True, False] * 3)})
    np.testing.assert_array_equal(out[0::2], x[0::2, :, ::-1, :])
    np.testing.assert_array_equal(out[1::2], x[1::2])


def test_vertical_flip():
    x = batch()
    out = ImageDataGenerator().apply_transform(x, {"flip_vertical": True})
    np.testing.assert_array_equal(out, x[:, ::-1])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_shift_moves_a_pixel_by_the_known_amount(interpolation):
    gen = ImageDataGenerator(interpolation=interpolation, fill_mode="constant")
    out = gen.apply_transform(dot(row=1, col=5), {"shift_x": -3, "shift_y": 2})
    expected = dot(row=3, col=2)  # right is +x, down is +y
    np.testing.assert_array_equal(out, expected)


def test_random_horizontal_flip_flips_about_half_and_only_flips():
    x = batch(n=200, w=5, c=1)
    out = ImageDataGenerator(horizontal_flip=True, seed=0).random_transform_batch(x)
    flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    same = np.all(out == x, axis=(1, 2, 3))
    assert np.all(flipped | same)
    assert 70 < flipped.sum() < 130


def test_rotation_by_90_degrees_is_counter_clockwise():
    x = batch(n=2, h=5, w=5, c=2).astype(np.float32)
    out = ImageDataGenerator(interpolation="bilinear").apply_transform(x, {"theta": 90})
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(1, 2)), atol=1e-3)


def test_zoom_factor_below_one_magnifies():
    # A centred 3x3 square: zoom 0.5 samples half the area, so the square doubles.
    x = np.zeros((1, 13, 13, 1), np.float32)
    x[0, 5:8, 5:8] = 1
    out = ImageDataGenerator(interpolation="nearest").apply_transform(
        x, {"zoom_x": 0.5, "zoom_y": 0.5})
    assert out.sum() > 4 * x.sum() - 10
    assert out[0, 6, 6, 0] == 1 and out[0, 0, 0, 0] == 0


def test_bilinear_half_pixel_shift_averages_neighbours():
    x = np.zeros((1, 1, 4, 1), np.float32)
    x[0, 0, :, 0] = [0, 10, 20, 30]
    out = ImageDataGenerator().apply_transform(x, {"shift_x": 0.5})
    np.testing.assert_allclose(out[0, 0, :, 0], [0, 5, 15, 25])  # nearest fill at the edge


@pytest.mark.parametrize("mode, expected", [
    ("nearest", [1, 1, 1, 2, 3]),  # aaa|abc
    ("constant", [-1, -1, 1, 2, 3]),
    ("wrap", [4, 5, 1, 2, 3]),
    ("reflect", [2, 1, 1, 2, 3]),  # ba|abc: edge repeated
])
def test_fill_modes(mode, expected):
    x = np.array([1, 2, 3, 4, 5], np.float32).reshape(1, 1, 5, 1)
    gen = ImageDataGenerator(fill_mode=mode, cval=-1, interpolation="nearest")
    out = gen.apply_transform(x, {"shift_x": 2})
    np.testing.assert_array_equal(out[0, 0, :, 0], expected)


def test_affine_sample_identity_is_exact_for_uint8():
    x = batch()
    eye = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (len(x), 1, 1))
    np.testing.assert_array_equal(affine_sample(x, eye), x.astype(np.float32))


# numpy's pad modes that match each fill mode's picture of the outside (see affine._fix_indices)
PAD_MODES = {"nearest": "edge", "reflect": "symmetric", "wrap": "wrap", "constant": "constant"}


def shifted_by_padding(image, dx, dy, fill_mode, cval):
    """An (H, W, C) image moved right by dx and down by dy whole pixels, cut from a
    padded copy: the expectation, built without any affine arithmetic."""
    h, w, _ = image.shape
    p = max(abs(dx), abs(dy))
    extra = {"constant_values": cval} if fill_mode == "constant" else {}
    padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode=PAD_MODES[fill_mode], **extra)
    return padded[p - dy:p - dy + h, p - dx:p - dx + w]


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap", "constant"])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_whole_pixel_shifts_and_flips_match_a_padded_crop(fill_mode, interpolation):
    rng = np.random.default_rng(5)
    x = batch(n=8, h=6, w=7)
    dx, dy = rng.integers(-4, 5, 8), rng.integers(-4, 5, 8)
    flip = np.arange(8) % 2 == 1
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=9, interpolation=interpolation)
    out = gen.apply_transform(x, {"shift_x": dx, "shift_y": dy, "flip_horizontal": flip})
    for i in range(8):
        # the shift applies to the mirrored image
        image = x[i, :, ::-1] if flip[i] else x[i]
        expected = shifted_by_padding(image.astype(np.float32), dx[i], dy[i], fill_mode, 9.0)
        np.testing.assert_array_equal(out[i], expected, err_msg=f"image {i}: dx {dx[i]}, dy {dy[i]}")


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap", "constant"])
def test_whole_line_maps_give_what_per_pixel_resampling_gives(fill_mode, monkeypatch):
    # shifts (whole and fractional, nearest rounding) and mirrors, through the fast path
    # and then through the per-pixel path: the very same pixels
    from convnet.data import affine
    rng = np.random.default_rng(6)
    x = batch(n=12, h=5, w=8)
    m = np.zeros((12, 2, 3))
    m[:, 0, 0], m[:, 1, 1] = rng.choice([-1.0, 1.0], 12), rng.choice([-1.0, 1.0], 12)
    m[:, :, 2] = rng.integers(-9, 9, (12, 2)) + rng.choice([0.0, 0.5, -0.5, 0.3], (12, 2))
    assert affine._moves_whole_lines(m.astype(np.float32), "nearest")
    fast = affine_sample(x, m, "nearest", fill_mode, cval=3.0)
    monkeypatch.setattr(affine, "_moves_whole_lines", lambda *args: False)
    np.testing.assert_array_equal(fast, affine_sample(x, m, "nearest", fill_mode, cval=3.0))


def test_only_axis_aligned_whole_pixel_maps_take_the_whole_line_path():
    from convnet.data.affine import _moves_whole_lines
    shift = np.array([[[1.0, 0, 2], [0, -1, 5]]], np.float32)
    half = np.array([[[1.0, 0, 2.5], [0, 1, 0]]], np.float32)
    zoom = np.array([[[1.1, 0, 0], [0, 1, 0]]], np.float32)
    turn = np.array([[[0.0, 1, 0], [-1, 0, 0]]], np.float32)
    assert _moves_whole_lines(shift, "bilinear") and _moves_whole_lines(half, "nearest")
    assert not _moves_whole_lines(half, "bilinear")   # bilinear blends two columns there
    assert not _moves_whole_lines(zoom, "nearest") and not _moves_whole_lines(turn, "nearest")


# -- shapes, dtypes, seeds -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 28, 28, 1), (3, 16, 24, 3), (1, 5, 7, 4)])
def test_keeps_shape_and_gives_float32(shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = ImageDataGenerator(**FULL, seed=1).apply(x)
    assert out.shape == shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255


def test_input_is_not_modified():
    x = batch().astype(np.float32)
    copy = x.copy()
    ImageDataGenerator(**FULL, rescale=0.5, seed=0).apply(x)
    ImageDataGenerator(rescale=0.5).apply(x)  # no geometry: only the rescale path
    np.testing.assert_array_equal(x, copy)


def test_rescale_after_transform():
    x = batch()
    out = ImageDataGenerator(rescale=1 / 255.0).apply(x)
    np.testing.assert_allclose(out, x / 255.0, rtol=1e-6)


def test_reproducible_under_seed_and_different_across_seeds():
    x = batch()
    a = ImageDataGenerator(**FULL, seed=3).apply(x)
    b = ImageDataGenerator(**FULL, seed=3).apply(x)
    c = ImageDataGenerator(**FULL, seed=4).apply(x)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, x)  # it really transformed something


def test_each_image_gets_its_own_transform():
    x = np.repeat(batch(n=1), 8, axis=0)  # 8 copies of one image
    out = ImageDataGenerator(rotation_range=40, seed=0).apply(x)
    assert len({out[i].tobytes() for i in range(8)}) == 8


def test_shift_ranges_fraction_pixels_and_int():
    gen = ImageDataGenerator()
    rng = np.random.default_rng(0)
    frac = gen._draw_shift(0.25, 100, 1000, rng)
    assert frac.min() >= -25 and frac.max() <= 25 and frac.max() > 20
    pixels = gen._draw_shift(3.0, 100, 1000, rng)
    assert pixels.min() >= -3 and pixels.max() <= 3
    # Keras: an int k is whole pixels from the open interval (-k, k) ...
    ints = gen._draw_shift(3, 100, 1000, rng)
    assert set(ints) == {-2, -1, 0, 1, 2}
    # ... and a list gives one of its values with a random sign (fractions if all < 1)
    listed = gen._draw_shift([0.1], 50, 100, rng)
    assert set(listed) == {-5, 5}
    listed = gen._draw_shift([2, 4], 50, 200, rng)
    assert set(listed) == {-4, -2, 2, 4}


def test_grayscale_batch_needs_channel_axis():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*x\[\.\.\., None\]"):
        ImageDataGenerator().apply(np.zeros((2, 28, 28)))


@pytest.mark.parametrize("kwargs", [{"fill_mode": "mirror"}, {"interpolation": "cubic"},
                                    {"zoom_range": -0.1}, {"width_shift_range": -1},
                                    {"zoom_range": (1.5, 0.5)}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ImageDataGenerator(**kwargs)


def test_call_form_fits_dataset_map():
    x, y = batch(), np.arange(6)
    gen = ImageDataGenerator(rescale=2.0)
    out_x, out_y = gen(x, y)
    assert out_y is y
    np.testing.assert_array_equal(out_x, x * 2.0)
    np.testing.assert_array_equal(gen(x), x * 2.0)


# -- flow ------------------------------------------------------------------------------------


def test_flow_protocol_shapes_and_labels():
    x = batch(n=10, c=1)
    y = np.arange(10)
    it = ImageDataGenerator(horizontal_flip=True, rescale=1 / 255.0).flow(
        x, y, batch_size=4, seed=0)
    assert len(it) == 3
    batches = list(it)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(10))  # each example once per epoch
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.shape[1:] == x.shape[1:]
        for img, label in zip(xb, yb):  # labels stay with their (maybe flipped) image
            original = x[label] / 255.0
            assert np.allclose(img, original) or np.allclose(img, original[:, ::-1])


def test_flow_epochs_differ_and_replay_under_seed():
    x = batch(n=12)
    y = np.arange(12)

    def run(seed):
        it = ImageDataGenerator(**FULL).flow(x, y, batch_size=5, seed=seed)
        return [np.concatenate([xb for xb, _ in it]) for _ in range(2)]

    e1, e2 = run(7)
    r1, r2 = run(7)
    np.testing.assert_array_equal(e1, r1)
    np.testing.assert_array_equal(e2, r2)
    assert not np.allclose(e1, e2)
    assert not np.allclose(run(8)[0], e1)


def test_flow_without_labels_yields_images_only():
    it = ImageDataGenerator().flow(batch(n=5), batch_size=2, shuffle=False)
    batches = list(it)
    assert all(isinstance(b, np.ndarray) for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), batch(n=5).astype(np.float32))


def test_flow_uses_generator_seed_when_none_given():
    x = batch(n=8)
    a = np.concatenate([b for b, _ in ImageDataGenerator(**FULL, seed=5).flow(x, np.arange(8))])
    b = np.concatenate([b for b, _ in ImageDataGenerator(**FULL, seed=5).flow(x, np.arange(8))])
    np.testing.assert_array_equal(a, b)


# -- Keras' other options ---------------------------------------------------------------------


def test_brightness_truncates_scales_and_clips_like_pillow():
    x = np.array([100.0, 101.7, 200.0, 0.0], np.float32).reshape(1, 2, 2, 1)
    out = ImageDataGenerator().apply_transform(x, {"brightness": 1.3})
    # 8-bit values first (101.7 -> 101), then trunc(v * 1.3), clipped at 255
    np.testing.assert_array_equal(out.ravel(), [130, 131, 255, 0])


def test_brightness_of_an_image_outside_0_255_maps_there_and_back():
    x = np.array([-1.0, 0.0, 1.0, 3.0], np.float32).reshape(1, 1, 4, 1)  # min -1, max 3
    out = ImageDataGenerator().apply_transform(x, {"brightness": 0.5})
    # onto 0..255: 0, 63.75, 127.5, 255 -> trunc 0, 63, 127, 255 -> *0.5 trunc 0, 31, 63, 127
    expected = np.array([0, 31, 63, 127]) / 255.0 * 4.0 - 1.0
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-6)


def test_channel_shift_adds_one_value_clipped_to_the_image_range():
    x = np.array([[10, 20, 30], [40, 50, 60]], np.float32).reshape(1, 1, 2, 3)
    out = ImageDataGenerator().apply_transform(x, {"channel_shift_intensity": 25.0})
    np.testing.assert_array_equal(out.ravel(), [35, 45, 55, 60, 60, 60])


def test_random_brightness_and_channel_shift_stay_in_their_ranges():
    x = np.full((400, 2, 2, 1), 100, np.uint8)
    gen = ImageDataGenerator(brightness_range=(0.5, 1.5), seed=0)
    factors = gen.apply(x)[:, 0, 0, 0] / 100
    assert 0.49 <= factors.min() < 0.6 and 1.4 < factors.max() <= 1.5
    flat = ImageDataGenerator(channel_shift_range=30, seed=0).apply(x)
    np.testing.assert_array_equal(flat, x)  # a flat image has min == max: nothing to shift into


def test_featurewise_fit_uses_rescaled_data_and_normalises_per_channel():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 4, 5, 3)).astype(np.uint8)
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True,
                             rescale=1 / 255.0)
    gen.fit(x)
    xs = x / 255.0
    np.testing.assert_allclose(gen.mean.ravel(), xs.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(gen.std.ravel(), xs.std(axis=(0, 1, 2)), rtol=1e-5)
    assert gen.mean.shape == (1, 1, 3)
    out = np.concatenate(list(gen.flow(x, batch_size=16, shuffle=False)))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_featurewise_std_switches_centering_on_and_warns_before_fit():
    with pytest.warns(UserWarning, match="switches on featurewise_center"):
        gen = ImageDataGenerator(featurewise_std_normalization=True)
    assert gen.featurewise_center
    with pytest.warns(UserWarning, match=r"not been fit.*\.fit\(x_train\)"):
        out = gen.standardize(np.ones((1, 2, 2, 1)))
    np.testing.assert_array_equal(out, 1)


def test_samplewise_center_and_std_per_image():
    x = np.stack([np.arange(12.0).reshape(2, 2, 3), 5 * np.arange(12.0).reshape(2, 2, 3)])
    out = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True).standardize(x)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


def test_preprocessing_function_runs_per_image_before_rescale():
    seen = []

    def fn(image):
        seen.append(image.shape)
        return image + 10
    out = ImageDataGenerator(preprocessing_function=fn, rescale=0.5).standardize(np.zeros((3, 2, 2, 1)))
    assert seen == [(2, 2, 1)] * 3
    np.testing.assert_array_equal(out, 5)  # (0 + 10) * 0.5
    with pytest.raises(ValueError, match="preprocessing_function must return an image of shape"):
        ImageDataGenerator(preprocessing_function=lambda im: im[0]).standardize(np.zeros((1, 2, 2, 1)))


def test_random_transform_is_keras_single_image_form():
    gen = ImageDataGenerator(rotation_range=40)
    image = batch(n=1)[0]
    a, b = gen.random_transform(image, seed=3), gen.random_transform(image, seed=3)
    assert a.shape == image.shape
    np.testing.assert_array_equal(a, b)


def test_interpolation_order_is_keras_name_for_interpolation():
    assert ImageDataGenerator(interpolation_order=0).interpolation == "nearest"
    assert ImageDataGenerator().interpolation == "bilinear"
    with pytest.raises(ValueError, match="interpolation_order"):
        ImageDataGenerator(interpolation_order=3)


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_split": 1.0}, "validation_split"),
    ({"brightness_range": 0.2}, "brightness_range"),
    ({"brightness_range": (1.5, 0.5)}, "brightness_range"),
    ({"zca_whitening": True}, "zca_whitening"),
    ({"data_format": "channels_first"}, "channels_last"),
    ({"channel_shift_range": -1}, "channel_shift_range"),
    ({"preprocessing_function": 3}, "preprocessing_function"),
])
def test_bad_keras_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ImageDataGenerator(**kwargs)


def test_flips_alone_take_the_exact_pixel_path_and_match_the_affine_resampling():
    from convnet.data.affine import affine_sample
    gen = ImageDataGenerator(horizontal_flip=True, vertical_flip=True)
    x = np.random.default_rng(0).random((16, 5, 7, 3)).astype(np.float32)
    params = gen.get_random_transform(16, 5, 7, np.random.default_rng(1))
    assert params["flip_horizontal"].any() and not params["flip_horizontal"].all()
    fast = gen.apply_transform(x, params)
    slow = affine_sample(x, gen.transform_matrices(params, 16, 5, 7), gen.interpolation, gen.fill_mode,
                         gen.cval, gen.dtype)
    np.testing.assert_array_equal(fast, slow)
    i = int(np.flatnonzero(params["flip_horizontal"] & ~params["flip_vertical"])[0])
    np.testing.assert_array_equal(fast[i], x[i, :, ::-1])
    # any other geometric parameter switches back to the resampling
    params["theta"] = np.full(16, 10.0)
    assert not np.array_equal(gen.apply_transform(x, params), fast)
