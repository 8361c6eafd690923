"""Random image augmentation and normalisation like Keras' ``ImageDataGenerator``.

One generator describes what to do to an image; its :meth:`~ImageDataGenerator.flow`
and :meth:`~ImageDataGenerator.flow_from_directory` make batch iterators
(:mod:`convnet.data.iterators`).  Every step runs on a whole batch at once:

1. the geometric transform -- rotation, shift, shear, zoom and flips compose
   into one affine matrix per image, resampled by
   :func:`~convnet.data.affine.affine_sample`;
2. the channel shift and the brightness change;
3. :meth:`~ImageDataGenerator.standardize`: ``preprocessing_function``,
   ``rescale``, the samplewise and then the featurewise normalisation.

That is Keras' order (``apply_transform`` then ``standardize``), so ``rescale``
applies after augmentation and ``cval`` is in input units.

Coordinates: ``x`` is the column, ``y`` the row (pointing down), both measured
from the image centre ``((W-1)/2, (H-1)/2)`` so that flips map pixel ``c`` to
``W-1-c`` exactly and rotations turn the image about its middle.
"""

import numbers
import warnings

import numpy as np

from .._checks import check_real
from .affine import FILL_MODES, INTERPOLATIONS, affine_sample
from .batching import _entropy

__all__ = ["ImageDataGenerator", "affine_sample"]

# Keras adds this to standard deviations before dividing by them.
_STD_EPSILON = 1e-6
# Images per step of ImageDataGenerator.fit (bounds its float64 temporaries).
_FIT_CHUNK = 256


def _range_pair(value, name, around=0.0):
    """``v`` -> ``(around - v, around + v)``; a pair is taken as given."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"ImageDataGenerator: {name} must be >= 0, got {value}")
        return (around - float(value), around + float(value))
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"ImageDataGenerator: {name} must be a number or (low, high), "
                         f"got {value!r}") from None
    if lo > hi:
        raise ValueError(f"ImageDataGenerator: {name} must be (low, high), got {value}")
    return (lo, hi)


def _non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"ImageDataGenerator: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _per_image(values, n):
    """``(n, 1, 1, 1)`` view of per-image parameters for broadcasting over a batch."""
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)).reshape(n, 1, 1, 1)


def _image_range(x):
    """Per-image minimum and maximum, each ``(N, 1, 1, 1)``."""
    return x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)


class ImageDataGenerator:
    """Random augmentation and normalisation of image batches, with Keras' arguments.

    Args (Keras' names, order and defaults):
        featurewise_center: subtract the per-channel mean found by :meth:`fit`.
        samplewise_center: subtract each image's own mean (over H, W and C).
        featurewise_std_normalization: divide by the per-channel standard
            deviation found by :meth:`fit` (switches ``featurewise_center`` on,
            with a warning, as Keras does).
        samplewise_std_normalization: divide each image by its own standard
            deviation (switches ``samplewise_center`` on, with a warning).
        zca_whitening, zca_epsilon: accepted for Keras' signature; ZCA is not
            implemented, so ``zca_whitening=True`` is a ValueError.
        rotation_range: degrees; each image turns by ``U(-r, r)``
            (positive = counter-clockwise as displayed).
        width_shift_range, height_shift_range: float < 1 is a fraction of the
            width/height (shift ``U(-f, f) * W``); float >= 1 is pixels
            (``U(-p, p)``); int ``k`` is whole pixels from the open interval
            ``(-k, k)``; a list of values gives one of them with a random sign
            (fractions if all are < 1).  Positive shifts move the content
            right / down.
        brightness_range: ``(low, high)``: each image is multiplied by a factor
            ``U(low, high)`` as Pillow's ``ImageEnhance.Brightness`` does in
            Keras: pixels are truncated to whole numbers, scaled and clipped to
            0..255 (images outside 0..255 are mapped there and back first).
        shear_range: shear angle in degrees, ``U(-s, s)``.
        zoom_range: float ``z`` -> ``[1-z, 1+z]``, or ``(low, high)``; width
            and height factors are drawn independently.  As in Keras a factor
            below 1 zooms *in* (the source is sampled over a smaller area).
        channel_shift_range: add ``U(-s, s)`` to every pixel of an image (one
            value for all its channels), clipped to that image's own min..max.
        fill_mode: ``"nearest"``, ``"constant"``, ``"reflect"``, ``"wrap"``:
            how pixels that come from outside the image are filled.
        cval: the fill value for ``"constant"`` (in input units, before rescale).
        horizontal_flip, vertical_flip: flip each image with probability 1/2.
        rescale: multiply pixels by this after augmentation (e.g. ``1/255``);
            None or 0 means no rescaling.
        preprocessing_function: called on each image ``(H, W, C)`` after
            augmentation and before ``rescale``; must return the same shape.
        data_format: only ``"channels_last"`` (or None).
        validation_split: fraction in [0, 1) held out when a flow asks for
            ``subset="validation"`` (see :meth:`flow` and
            :meth:`flow_from_directory` for which images go where).
        interpolation_order: 0 (nearest) or 1 (bilinear, Keras' default);
            Keras' higher spline orders are not implemented.
        dtype: output dtype (float32).
    Extra arguments (not in Keras):
        interpolation: ``"nearest"`` or ``"bilinear"``, another way to say
            ``interpolation_order``.
        seed: seeds the generator's own ``numpy.random.Generator`` (used by
            :meth:`apply`, and by flows created without a seed).

    Attributes:
        mean, std: ``(1, 1, C)`` float32 statistics from :meth:`fit`, or None.

    Use it on a batch (``gen.apply(x)``, or ``gen(x, y)`` -> ``(x', y)`` so it
    can be passed to ``dataset.map``) or make a batch iterator with
    :meth:`flow` (arrays) or :meth:`flow_from_directory` (class folders).
    Batches are ``(N, H, W, C)``; output has the same shape.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, zca_epsilon=1e-6, rotation_range=0.0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None,
                 shear_range=0.0, zoom_range=0.0, channel_shift_range=0.0, fill_mode="nearest",
                 cval=0.0, horizontal_flip=False, vertical_flip=False, rescale=None,
                 preprocessing_function=None, data_format=None, validation_split=0.0,
                 interpolation_order=1, dtype=None, *, interpolation=None, seed=None):
        if fill_mode not in FILL_MODES:
            raise ValueError(f"ImageDataGenerator: fill_mode must be one of {FILL_MODES}, "
                             f"got {fill_mode!r}")
        if interpolation is None:
            if interpolation_order not in (0, 1):
                raise ValueError(f"ImageDataGenerator: interpolation_order must be 0 (nearest) "
                                 f"or 1 (bilinear), got {interpolation_order!r}")
            interpolation = INTERPOLATIONS[int(interpolation_order)]
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"ImageDataGenerator: interpolation must be one of "
                             f"{INTERPOLATIONS}, got {interpolation!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"ImageDataGenerator: data_format must be 'channels_last' "
                             f"(convnet images are (N, H, W, C)), got {data_format!r}")
        if zca_whitening:
            raise ValueError("ImageDataGenerator: zca_whitening is not implemented")
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
                or not 0 <= validation_split < 1:
            raise ValueError(f"ImageDataGenerator: validation_split must be in [0, 1), "
                             f"got {validation_split!r}")
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise TypeError(f"ImageDataGenerator: preprocessing_function must be callable, "
                            f"got {preprocessing_function!r}")
        if brightness_range is not None:
            if not isinstance(brightness_range, (tuple, list)) or len(brightness_range) != 2:
                raise ValueError(f"ImageDataGenerator: brightness_range must be a tuple or list "
                                 f"of two floats, got {brightness_range!r}")
            brightness_range = _range_pair(brightness_range, "brightness_range")
            if brightness_range[0] < 0:
                raise ValueError(f"ImageDataGenerator: brightness factors must be >= 0, "
                                 f"got {brightness_range}")
        if featurewise_std_normalization and not featurewise_center:
            featurewise_center = True
            warnings.warn("ImageDataGenerator: featurewise_std_normalization switches on "
                          "featurewise_center", stacklevel=2)
        if samplewise_std_normalization and not samplewise_center:
            samplewise_center = True
            warnings.warn("ImageDataGenerator: samplewise_std_normalization switches on "
                          "samplewise_center", stacklevel=2)

        self.featurewise_center = bool(featurewise_center)
        self.samplewise_center = bool(samplewise_center)
        self.featurewise_std_normalization = bool(featurewise_std_normalization)
        self.samplewise_std_normalization = bool(samplewise_std_normalization)
        self.zca_whitening = False
        self.zca_epsilon = zca_epsilon
        self.rotation_range = _non_negative(rotation_range, "rotation_range")
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.brightness_range = brightness_range
        self.shear_range = _non_negative(shear_range, "shear_range")
        self.zoom_range = _range_pair(zoom_range, "zoom_range", around=1.0)
        if self.zoom_range[0] <= 0:
            raise ValueError(f"ImageDataGenerator: zoom factors must be > 0, got {zoom_range}")
        self.channel_shift_range = _non_negative(channel_shift_range, "channel_shift_range")
        self.fill_mode = fill_mode
        self.cval = check_real(cval, "cval", "ImageDataGenerator")
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.data_format = "channels_last"
        self.validation_split = float(validation_split)
        self._validation_split = self.validation_split  # Keras' attribute name
        self.interpolation = interpolation
        self.interpolation_order = INTERPOLATIONS.index(interpolation)
        self.dtype = np.dtype("float32" if dtype is None else dtype)
        self.seed = seed
        _entropy(seed)  # a bad seed is an error now, not at the first batch
        self._rng = np.random.default_rng(seed)
        self.mean = None
        self.std = None
        for name in ("width_shift_range", "height_shift_range"):
            self._draw_shift(getattr(self, name), 10, 1, np.random.default_rng(0), name)

    # -- random parameters ------------------------------------------------------------

    @property
    def is_geometric(self):
        """True when some geometric augmentation is switched on."""
        shifts = (self.width_shift_range, self.height_shift_range)
        return bool(
            self.rotation_range or self.shear_range or self.zoom_range != (1.0, 1.0)
            or self.horizontal_flip or self.vertical_flip
            or any(np.any(np.asarray(s) != 0) for s in shifts)
        )

    @property
    def is_random(self):
        """True when :meth:`random_transform_batch` changes images at all."""
        return self.is_geometric or bool(self.channel_shift_range) \
            or self.brightness_range is not None

    @staticmethod
    def _draw_shift(spec, size, n, rng, name="shift range"):
        """``n`` shifts in pixels for an axis of ``size`` pixels (see the class doc).

        Keras' rule: a float is a uniform range; an int ``k`` or a list gives a
        magnitude (``0..k-1`` or one of the listed values) times a random sign;
        the result is a fraction of ``size`` when every value is below 1.
        """
        if isinstance(spec, (bool, np.bool_)):
            raise TypeError(f"ImageDataGenerator: {name} must be a number or a list, got {spec!r}")
        if isinstance(spec, (int, np.integer)):
            if spec < 0:
                raise ValueError(f"ImageDataGenerator: {name} must be >= 0, got {spec}")
            if spec == 0:
                return np.zeros(n)
            magnitude = rng.integers(0, spec, size=n).astype(np.float64)
            return magnitude * rng.choice([-1.0, 1.0], size=n)
        if isinstance(spec, numbers.Real):
            if spec < 0:
                raise ValueError(f"ImageDataGenerator: {name} must be >= 0, got {spec}")
            shifts = rng.uniform(-spec, spec, size=n) if spec else np.zeros(n)
            return shifts * size if spec < 1 else shifts
        try:
            choices = np.asarray(spec, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"ImageDataGenerator: {name} must be a number or a list of numbers, "
                            f"got {spec!r}") from None
        if choices.size == 0:
            raise ValueError(f"ImageDataGenerator: {name} list is empty")
        shifts = rng.choice(choices, size=n) * rng.choice([-1.0, 1.0], size=n)
        return shifts * size if np.max(choices) < 1 else shifts

    def get_random_transform(self, n, height, width, rng=None):
        """Draw augmentation parameters for ``n`` images of ``height x width``.

        Returns a dict of ``(n,)`` arrays: ``theta`` (degrees), ``shift_x``,
        ``shift_y`` (pixels), ``shear`` (degrees), ``zoom_x``, ``zoom_y``,
        ``flip_horizontal``, ``flip_vertical`` (bool), and, when switched on,
        ``channel_shift_intensity`` and ``brightness``.  Uses ``rng`` or the
        generator's own.
        """
        rng = self._rng if rng is None else rng
        zero = np.zeros(n)
        r = self.rotation_range
        lo, hi = self.zoom_range
        params = {
            "theta": rng.uniform(-r, r, size=n) if r else zero,
            "shift_x": self._draw_shift(self.width_shift_range, width, n, rng),
            "shift_y": self._draw_shift(self.height_shift_range, height, n, rng),
            "shear": rng.uniform(-self.shear_range, self.shear_range, size=n)
            if self.shear_range else zero,
            "zoom_x": rng.uniform(lo, hi, size=n) if (lo, hi) != (1.0, 1.0) else zero + 1,
            "zoom_y": rng.uniform(lo, hi, size=n) if (lo, hi) != (1.0, 1.0) else zero + 1,
            "flip_horizontal": rng.random(n) < 0.5 if self.horizontal_flip
            else np.zeros(n, bool),
            "flip_vertical": rng.random(n) < 0.5 if self.vertical_flip else np.zeros(n, bool),
        }
        if self.channel_shift_range:
            s = self.channel_shift_range
            params["channel_shift_intensity"] = rng.uniform(-s, s, size=n)
        if self.brightness_range is not None:
            params["brightness"] = rng.uniform(*self.brightness_range, size=n)
        return params

    # -- deterministic transform ---------------------------------------------------------

    @staticmethod
    def transform_matrices(params, n, height, width):
        """``(n, 2, 3)`` matrices mapping output pixel (col, row) to its source.

        ``params`` as from :meth:`get_random_transform`; missing keys mean identity
        and scalars apply to every image.

        With ``q`` the output point relative to the centre ``c``, the source is
        ``c + A (q - s)``, where ``s`` is the shift and
        ``A = Flip @ Zoom @ Shear @ Rotation^-1``: undo the shift, undo the
        rotation, then apply the (already source-side) shear, zoom and flip.
        """
        def get(key, default):
            return np.broadcast_to(np.asarray(params.get(key, default), dtype=np.float64), (n,))

        theta = np.deg2rad(get("theta", 0.0))
        shear = np.deg2rad(get("shear", 0.0))
        zx, zy = get("zoom_x", 1.0), get("zoom_y", 1.0)
        fx = np.where(get("flip_horizontal", 0.0) != 0, -1.0, 1.0)
        fy = np.where(get("flip_vertical", 0.0) != 0, -1.0, 1.0)
        sx, sy = get("shift_x", 0.0), get("shift_y", 0.0)

        cos, sin = np.cos(theta), np.sin(theta)
        # Counter-clockwise on screen (y down) turns (x, y) into
        # (cos x + sin y, -sin x + cos y); its inverse is below.
        rot_inv = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shear_m = np.stack([np.stack([np.cos(shear), np.zeros(n)], -1),
                            np.stack([-np.sin(shear), np.ones(n)], -1)], -2)
        flip_zoom = np.zeros((n, 2, 2))
        flip_zoom[:, 0, 0] = fx * zx
        flip_zoom[:, 1, 1] = fy * zy
        a = flip_zoom @ shear_m @ rot_inv  # (n, 2, 2)

        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        shift = np.stack([sx, sy], -1)  # (n, 2)
        offset = centre - np.einsum("nij,nj->ni", a, centre + shift)
        return np.concatenate([a, offset[:, :, None]], axis=2)

    _GEOMETRIC_KEYS = ("theta", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y",
                       "flip_horizontal", "flip_vertical")
    _IDENTITY = {"theta": 0.0, "shift_x": 0.0, "shift_y": 0.0, "shear": 0.0, "zoom_x": 1.0, "zoom_y": 1.0}

    @classmethod
    def _only_flips(cls, params, n):
        """True when the geometric parameters flip some images and do nothing else."""
        if not any(k in params for k in ("flip_horizontal", "flip_vertical")):
            return False
        return all(np.all(np.broadcast_to(np.asarray(params[k], dtype=np.float64), (n,)) == v)
                   for k, v in cls._IDENTITY.items() if k in params)

    def apply_transform(self, x, params):
        """Apply explicit parameters (see :meth:`get_random_transform`) to a batch.

        Keras' order: the affine transform, then the channel shift, then the
        brightness.

        Args:
            x: ``(N, H, W, C)``.
            params: dict of per-image arrays ``(N,)`` or scalars.

        Returns:
            ``(N, H, W, C)`` in ``self.dtype`` (not standardised).
        """
        x = self._check_batch(x)
        n, h, w, _ = x.shape
        if self._only_flips(params, n):
            # flips alone move whole pixels: the affine resampling would give the very
            # same values (source column w-1-c exactly), at many times the cost
            out = x.astype(self.dtype)  # always a new array
            for key, axis in (("flip_horizontal", 2), ("flip_vertical", 1)):
                rows = np.flatnonzero(np.broadcast_to(np.asarray(params.get(key, False)) != 0, (n,)))
                if rows.size:
                    out[rows] = np.flip(out[rows], axis=axis)
        elif any(key in params for key in self._GEOMETRIC_KEYS):
            matrices = self.transform_matrices(params, n, h, w)
            out = affine_sample(x, matrices, self.interpolation, self.fill_mode, self.cval,
                                self.dtype)
        else:
            out = x.astype(self.dtype)  # always a new array
        if params.get("channel_shift_intensity") is not None:
            out = self.apply_channel_shift(out, params["channel_shift_intensity"])
        if params.get("brightness") is not None:
            out = self.apply_brightness_shift(out, params["brightness"])
        return out

    @staticmethod
    def apply_channel_shift(x, intensity):
        """Add ``intensity`` (one value per image) to every pixel of each image of
        ``x`` ``(N, H, W, C)``, clipped to that image's min..max (Keras' rule)."""
        lo, hi = _image_range(x)
        shifted = x + _per_image(intensity, len(x)).astype(x.dtype)
        return np.clip(shifted, lo, hi, out=shifted)

    @staticmethod
    def apply_brightness_shift(x, brightness):
        """Multiply each image of ``x`` ``(N, H, W, C)`` by its brightness factor.

        As Keras does with Pillow's ``ImageEnhance.Brightness``: the image is
        converted to 8 bits (values truncated; an image outside 0..255 is first
        mapped onto 0..255 by its own min and max), each value becomes
        ``min(trunc(v * factor), 255)``, and the result is mapped back.
        """
        lo, hi = _image_range(x)
        outside = (lo < 0) | (hi > 255)
        span = hi - lo
        to_255 = np.where(outside, 255.0 / np.where(span > 0, span, 1.0), 1.0)
        offset = np.where(outside, lo, 0.0)
        v = np.floor(np.clip((x - offset) * to_255, 0, 255))
        v = np.floor(np.minimum(v * _per_image(brightness, len(x)), 255))
        return (v / to_255 + offset).astype(x.dtype)

    # -- batch API ------------------------------------------------------------------

    @staticmethod
    def _check_batch(x, owner="ImageDataGenerator"):
        x = np.asarray(x)
        if x.ndim != 4:
            hint = " (for grayscale add a channel axis: x[..., None])" if x.ndim == 3 else ""
            raise ValueError(f"{owner}: expected a batch (N, H, W, C), "
                             f"got shape {x.shape}{hint}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{owner}: expected numbers, got an array of dtype {x.dtype}")
        return x

    def random_transform_batch(self, x, rng=None):
        """Randomly augment every image of ``x`` ``(N, H, W, C)``; not standardised.

        Each image gets its own random parameters.  Returns a new
        ``(N, H, W, C)`` array in ``self.dtype``.
        """
        x = self._check_batch(x)
        if not self.is_random:
            return x.astype(self.dtype)
        n, h, w, _ = x.shape
        params = self.get_random_transform(n, h, w, rng)
        if not self.is_geometric:
            params = {k: v for k, v in params.items() if k not in self._GEOMETRIC_KEYS}
        return self.apply_transform(x, params)

    def random_transform(self, x, seed=None):
        """Keras' single-image form: ``x`` ``(H, W, C)`` -> augmented ``(H, W, C)``.

        ``seed`` seeds this one draw; None uses the generator's own generator.
        """
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"ImageDataGenerator.random_transform: expected one image "
                             f"(H, W, C), got shape {x.shape}")
        rng = None if seed is None else np.random.default_rng(seed)
        return self.random_transform_batch(x[None], rng)[0]

    def standardize(self, x):
        """Keras' normalisation steps, in Keras' order, on a new array of ``self.dtype``.

        ``x``: a batch ``(N, H, W, C)`` or one image ``(H, W, C)``.  Steps:
        ``preprocessing_function`` (per image), ``rescale``, samplewise centre
        and std (each image's own mean/std over H, W, C; ``+1e-6``), featurewise
        centre and std (the :meth:`fit` statistics; ``+1e-6``).  A featurewise
        option used before :meth:`fit` warns and is skipped, as in Keras.
        """
        single = np.ndim(x) == 3
        x = np.array(x, dtype=self.dtype)  # a copy: the caller's array is never changed
        if single:
            x = x[None]
        x = self._check_batch(x)
        if self.preprocessing_function is not None:
            for i in range(len(x)):
                out = np.asarray(self.preprocessing_function(x[i]))
                if out.shape != x.shape[1:]:
                    raise ValueError(f"ImageDataGenerator: preprocessing_function must return "
                                     f"an image of shape {x.shape[1:]}, got {out.shape}")
                x[i] = out
        if self.rescale:
            x *= self.dtype.type(self.rescale)
        if self.samplewise_center:
            x -= x.mean(axis=(1, 2, 3), keepdims=True)
        if self.samplewise_std_normalization:
            x /= x.std(axis=(1, 2, 3), keepdims=True) + self.dtype.type(_STD_EPSILON)
        for flag, stat, name in ((self.featurewise_center, self.mean, "featurewise_center"),
                                 (self.featurewise_std_normalization, self.std,
                                  "featurewise_std_normalization")):
            if not flag:
                continue
            if stat is None:
                warnings.warn(f"ImageDataGenerator specifies {name}, but it has not been fit "
                              "on any training data; call .fit(x_train) first", stacklevel=3)
            elif stat.shape[-1] != x.shape[-1]:
                raise ValueError(f"ImageDataGenerator: fit() saw {stat.shape[-1]} channels but "
                                 f"these images have {x.shape[-1]}")
            elif name == "featurewise_center":
                x -= stat
            else:
                x /= stat + self.dtype.type(_STD_EPSILON)
        return x[0] if single else x

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Compute the featurewise statistics (per-channel mean and std) of ``x``.

        As Keras: ``x`` ``(N, H, W, C)`` is rescaled first (``rescale``), then,
        with ``augment=True``, replaced by ``rounds`` randomly augmented copies;
        ``mean`` and ``std`` are taken per channel over N, H and W.  Sums are
        accumulated in float64 chunk by chunk, so a large uint8 set is never
        converted whole.
        """
        x = self._check_batch(x, "ImageDataGenerator.fit")
        if len(x) == 0:
            raise ValueError("ImageDataGenerator.fit: x holds no images")
        if x.shape[-1] not in (1, 3, 4):
            warnings.warn(f"ImageDataGenerator.fit: expected 1, 3 or 4 channels on the last "
                          f"axis, got an array of shape {x.shape}", stacklevel=2)
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
            raise ValueError(f"ImageDataGenerator.fit: rounds must be a positive int, "
                             f"got {rounds!r}")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        channels = x.shape[-1]
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        count = 0
        for _ in range(rounds if augment else 1):
            for start in range(0, len(x), _FIT_CHUNK):
                chunk = x[start:start + _FIT_CHUNK].astype(np.float64)
                if self.rescale:
                    chunk *= self.rescale
                if augment:
                    chunk = self.random_transform_batch(chunk, rng).astype(np.float64)
                flat = chunk.reshape(-1, channels)
                total += flat.sum(axis=0)
                total_sq += np.square(flat).sum(axis=0)
                count += len(flat)
        mean = total / count
        # E[x^2] - E[x]^2 in float64: pixel values are small enough that the
        # cancellation costs nothing visible in float32 results.
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        if self.featurewise_center:
            self.mean = mean.reshape(1, 1, channels).astype(self.dtype)
        if self.featurewise_std_normalization:
            self.std = std.reshape(1, 1, channels).astype(self.dtype)
        return self

    def apply(self, x, rng=None):
        """Random augmentation then :meth:`standardize`: what every flow does to a batch.

        ``(N, H, W, C)`` in, ``(N, H, W, C)`` of ``self.dtype`` out; ``x`` itself
        is never modified.
        """
        out = self.random_transform_batch(x, rng)
        if self.preprocessing_function is None and not (
                self.samplewise_center or self.featurewise_center):
            # Only rescaling: in place on the new array (standardize copies).
            if self.rescale:
                out *= self.dtype.type(self.rescale)
            return out
        return self.standardize(out)

    def __call__(self, x, y=None):
        """``gen(x)`` -> augmented x; ``gen(x, y)`` -> ``(augmented x, y)``.

        The two-argument form fits ``dataset.map(gen)``.
        """
        out = self.apply(x)
        return out if y is None else (out, y)

    # -- iterators ------------------------------------------------------------------

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None, *,
             ignore_class_split=False, subset=None):
        """Batches of augmented in-memory arrays, like Keras' ``flow``.

        Args:
            x: ``(N, H, W, C)`` images (uint8 is fine: converted per batch).
            y: ``(N, ...)`` labels, or None (batches are then ``x`` only).
            batch_size: images per batch (the last batch may be smaller).
            shuffle: a new order every epoch.
            sample_weight: ``(N,)`` weights; batches are then ``(x, y, w)``.
            seed: seeds the order and the augmentation; None falls back to the
                generator's ``seed``, then to fresh entropy.
            subset: ``"training"`` or ``"validation"`` with ``validation_split``:
                as Keras, the *first* ``int(N * validation_split)`` rows are the
                validation subset and the rest the training subset (no
                shuffling first: shuffle arrays sorted by label yourself).
            ignore_class_split: allow a split where the two subsets hold
                different sets of classes (otherwise a ValueError, as in Keras).

        Returns:
            a :class:`~convnet.data.iterators.NumpyArrayIterator`.
        """
        from .iterators import NumpyArrayIterator
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle,
                                  sample_weight=sample_weight,
                                  seed=self.seed if seed is None else seed,
                                  subset=subset, ignore_class_split=ignore_class_split,
                                  dtype=self.dtype)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, *, follow_links=False, subset=None,
                            interpolation="nearest", keep_aspect_ratio=False,
                            on_error="raise"):
        """Batches of augmented images decoded from class folders, like Keras.

        Args:
            directory: a folder with one sub-folder per class.
            target_size: ``(height, width)`` every image is resized to.
            color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"`` (1, 3, 4 channels).
            classes: class folder names in label order; None: sorted sub-folders.
            class_mode: ``"categorical"`` (one-hot float32 ``(B, K)``),
                ``"binary"`` / ``"sparse"`` (float32 class indices ``(B,)``),
                ``"input"`` (the images themselves) or None (images only).
            batch_size, shuffle: as for :meth:`flow`.
            seed: seeds the order and the augmentation (None: the generator's).
            follow_links: descend into symbolic links to folders.
            subset: ``"training"`` or ``"validation"`` with ``validation_split``:
                as Keras, **per class**, the first ``int(n_c * validation_split)``
                files of each class (in file order) are the validation subset
                and the rest the training subset.
            interpolation: Pillow filter for resizing (Keras' default "nearest").
            keep_aspect_ratio: centre-crop to the target aspect ratio first.
            on_error: ``"raise"`` (a file that is not a readable image is a
                ValueError naming it) or ``"skip"`` (left out, with a warning
                that counts them).

        Returns:
            a :class:`~convnet.data.iterators.DirectoryIterator`.
        """
        from .iterators import DirectoryIterator
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode,
                                 classes=classes, class_mode=class_mode, batch_size=batch_size,
                                 shuffle=shuffle, seed=self.seed if seed is None else seed,
                                 follow_links=follow_links, subset=subset,
                                 interpolation=interpolation,
                                 keep_aspect_ratio=keep_aspect_ratio, dtype=self.dtype,
                                 on_error=on_error)
