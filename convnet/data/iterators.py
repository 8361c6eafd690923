"""Keras-style image iterators: :class:`NumpyArrayIterator` (arrays) and
:class:`DirectoryIterator` (class folders), made by ``ImageDataGenerator.flow``
and ``.flow_from_directory``.

How they are consumed -- both ways work on the same object:

- **Per epoch** (the protocol of every convnet batch source, and what
  ``model.fit(it, epochs=...)`` uses): ``len(it)`` batches per epoch; every
  ``iter(it)`` (a ``for`` loop) is a new epoch of ``len(it)`` batches, then
  stops.  ``fit(it, steps_per_epoch=k)`` with ``k < len(it)`` simply stops the
  epoch early.
- **Keras' endless stream**: ``next(it)`` / ``it.next()`` returns the next
  batch and never runs out: after the last batch of an epoch comes the first
  batch of the next epoch, reshuffled.  ``it[i]`` is batch ``i`` of the
  current epoch; ``it.reset()`` rewinds the stream to batch 0 of the current
  epoch and ``it.on_epoch_end()`` starts a new epoch (a new order).

Reproducibility: the order of epoch ``e`` and the augmentation of batch ``i``
in it are pure functions of ``(seed, e, i)``, so a seeded iterator replays
exactly, and ``it[i]`` is the same whatever was read before it.

Order and ``classes``: ``it.classes[k]`` is the class of file ``k``; batches
follow that order only when ``it.shuffle`` is False.  Predictions from a
shuffling iterator do not line up with ``classes`` (the Keras trap of
keras-team/keras #4225 and #6234): make the iterator you predict on with
``shuffle=False``.  A model can read ``it.shuffle`` to warn about it.
"""

import math
import os
import warnings

import numpy as np

from .batching import BatchDataset, _check_batch_size, _entropy, epoch_rng
from .decode import COLOR_MODES, PIL_FILTERS, decode_batch
from .directory import DIRECTORY_ITERATOR_FORMATS, check_on_error, index_directory, warn_skipped

__all__ = ["Iterator", "NumpyArrayIterator", "DirectoryIterator"]

_SUBSETS = ("training", "validation")
_CLASS_MODES = ("categorical", "binary", "sparse", "input", None)


class Iterator(BatchDataset):
    """Keras' iterator protocol over ``n`` samples in batches (see the module doc).

    Subclasses implement ``_get_batches_of_transformed_samples(index_array, rng)``.

    Attributes:
        n, samples: number of samples.  batch_size, seed.
        shuffle: True when each epoch visits the samples in a new random order
            (so batch rows do not follow ``classes``).
        batch_index: position of the ``next()`` stream within its epoch.
        total_batches_seen: batches produced so far, by any route.
    """

    def __init__(self, n, batch_size, shuffle, seed):
        self.n = int(n)
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self._entropy = _entropy(seed)
        self.batch_index = 0
        self.total_batches_seen = 0
        self._epoch = 0
        self._cached_order = (None, None)

    @property
    def samples(self):
        return self.n

    @property
    def num_samples(self):
        return self.n

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def _order(self, epoch):
        if self._cached_order[0] != epoch:
            order = epoch_rng(self._entropy, epoch).permutation(self.n) if self.shuffle \
                else np.arange(self.n)
            self._cached_order = (epoch, order)
        return self._cached_order[1]

    @property
    def index_array(self):
        """The sample order of the current epoch, ``(n,)`` (``arange(n)`` without shuffle)."""
        return self._order(self._epoch).copy()

    def _batch(self, epoch, index):
        idx = self._order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        # Its own generator per (epoch, batch): a batch's augmentation does not
        # depend on which batches were read before it.
        rng = np.random.default_rng(np.random.SeedSequence([self._entropy, 1, epoch, index]))
        self.total_batches_seen += 1
        return self._get_batches_of_transformed_samples(idx, rng)

    def __getitem__(self, idx):
        if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: batch index must be an int, got {idx!r}")
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise ValueError(f"{type(self).__name__}: asked for batch {idx}, but there are "
                             f"{len(self)} batches (0..{len(self) - 1})")
        return self._batch(self._epoch, int(idx))

    def next(self):
        """The next batch of the endless stream (Keras' ``next(it)``)."""
        batch = self._batch(self._epoch, self.batch_index)
        self.batch_index += 1
        if self.batch_index >= len(self):
            self.batch_index = 0
            self._epoch += 1
        return batch

    __next__ = next

    def __iter__(self):
        """One epoch of ``len(self)`` batches; each call starts a new epoch."""
        epoch = self._epoch
        self._epoch += 1
        self.batch_index = 0
        return (self._batch(epoch, i) for i in range(len(self)))

    def on_epoch_end(self):
        """Start a new epoch: a new order for ``it[i]`` and ``next()`` (Keras' hook)."""
        self._epoch += 1

    def reset(self):
        """Rewind ``next()`` to batch 0 of the current epoch (Keras' ``reset``)."""
        self.batch_index = 0

    def _get_batches_of_transformed_samples(self, index_array, rng):
        raise NotImplementedError


def _augment(generator, x, rng, dtype):
    if generator is None:
        return x.astype(dtype, copy=False)
    return generator.apply(x, rng=rng)


class NumpyArrayIterator(Iterator):
    """Batches of ``x`` (and ``y``, ``sample_weight``) through an ImageDataGenerator.

    Made by :meth:`ImageDataGenerator.flow` (see it for the arguments).
    Batches are ``x`` ``(B, H, W, C)`` of ``dtype``, or ``(x, y)``, or
    ``(x, y, w)`` with sample weights.  ``x`` stays in its own dtype in memory
    and is converted one batch at a time.

    Attributes:
        x, y, sample_weight: the (subset of the) arrays.
        image_shape: ``(H, W, C)``.
        classes: int class per row for integer or one-hot ``y`` (None without y).
        num_classes: columns of a one-hot ``y``, else the largest class + 1.
    """

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False,
                 sample_weight=None, seed=None, subset=None, ignore_class_split=False,
                 dtype="float32"):
        owner = "ImageDataGenerator.flow"
        x = image_data_generator._check_batch(x, owner) if image_data_generator is not None \
            else np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{owner}: expected x of shape (N, H, W, C), got {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"{owner}: x and y must have the same length; got x.shape = "
                                 f"{x.shape}, y.shape = {y.shape}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if sample_weight.shape != (len(x),):
                raise ValueError(f"{owner}: sample_weight must have shape ({len(x)},), got "
                                 f"{sample_weight.shape}")
        if x.shape[-1] not in (1, 3, 4):
            warnings.warn(f"{owner}: expected 1, 3 or 4 channels on the last axis, got x of "
                          f"shape {x.shape}", stacklevel=3)
        if subset is not None:
            x, y, sample_weight = self._split(x, y, sample_weight, subset, image_data_generator,
                                              ignore_class_split, owner)
        if len(x) == 0:
            raise ValueError(f"{owner}: no images to iterate over (x has 0 rows)")
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.image_data_generator = image_data_generator
        self.dtype = np.dtype(dtype)
        self.subset = subset
        super().__init__(len(x), batch_size, shuffle, seed)

    @staticmethod
    def _split(x, y, sample_weight, subset, generator, ignore_class_split, owner):
        if subset not in _SUBSETS:
            raise ValueError(f"{owner}: subset must be one of {_SUBSETS} or None, got {subset!r}")
        fraction = getattr(generator, "validation_split", 0.0)
        if not fraction:
            raise ValueError(f"{owner}: subset={subset!r} needs "
                             "ImageDataGenerator(validation_split=...) above 0")
        # Keras' rule: the first int(N * validation_split) rows validate.
        cut = int(len(x) * fraction)
        if y is not None and not ignore_class_split and not np.array_equal(
                np.unique(y[:cut]), np.unique(y[cut:])):
            raise ValueError(f"{owner}: the training and validation subsets hold different "
                             "classes after the split (the validation subset is the first "
                             f"{cut} rows); if the arrays are sorted by label, shuffle them "
                             "first, or pass ignore_class_split=True")
        part = slice(None, cut) if subset == "validation" else slice(cut, None)
        return (x[part], None if y is None else y[part],
                None if sample_weight is None else sample_weight[part])

    @property
    def image_shape(self):
        return tuple(self.x.shape[1:])

    @property
    def classes(self):
        if self.y is None:
            return None
        y = self.y
        if y.ndim == 2 and y.shape[1] > 1:
            return y.argmax(axis=1)
        return y.reshape(len(y)).astype(np.int64) if y.ndim <= 2 else None

    @property
    def num_classes(self):
        if self.y is None:
            return None
        if self.y.ndim == 2 and self.y.shape[1] > 1:
            return int(self.y.shape[1])
        classes = self.classes
        return None if classes is None else int(classes.max()) + 1

    def _get_batches_of_transformed_samples(self, index_array, rng):
        xb = _augment(self.image_data_generator, self.x[index_array], rng, self.dtype)
        if self.y is None:
            return xb
        if self.sample_weight is None:
            return xb, self.y[index_array]
        return xb, self.y[index_array], self.sample_weight[index_array]


class DirectoryIterator(Iterator):
    """Batches of images decoded from a folder of class sub-folders, like Keras'.

    Made by :meth:`ImageDataGenerator.flow_from_directory` (see it for the
    arguments).  Prints "Found N images belonging to K classes." as Keras does.

    Attributes (Keras'):
        directory, target_size, color_mode, class_mode, interpolation, subset.
        image_shape: ``target_size + (channels,)``.
        classes: int32 ``(samples,)``, the class of each file, in file order.
        class_indices: dict class name -> index.
        num_classes: number of classes.
        filenames: paths relative to ``directory`` (``"cat/img1.png"``).
        filepaths: ``os.path.join(directory, filename)`` for each file.
        labels: the same as ``classes``.
    Added:
        skipped_files: dict path -> reason of files left out while decoding
            batches with ``on_error="skip"``.
    """

    def __init__(self, directory, image_data_generator, target_size=(256, 256),
                 color_mode="rgb", classes=None, class_mode="categorical", batch_size=32,
                 shuffle=True, seed=None, follow_links=False, subset=None,
                 interpolation="nearest", keep_aspect_ratio=False, dtype="float32",
                 on_error="raise"):
        owner = "flow_from_directory"
        if color_mode not in COLOR_MODES:
            raise ValueError(f"{owner}: color_mode must be one of {tuple(COLOR_MODES)}, "
                             f"got {color_mode!r}")
        if class_mode not in _CLASS_MODES:
            raise ValueError(f"{owner}: class_mode must be one of {_CLASS_MODES}, "
                             f"got {class_mode!r}")
        if interpolation not in PIL_FILTERS:
            raise ValueError(f"{owner}: interpolation must be one of {PIL_FILTERS}, "
                             f"got {interpolation!r}")
        try:
            height, width = (int(v) for v in target_size)
        except (TypeError, ValueError):
            height = width = 0
        if height < 1 or width < 1:
            raise ValueError(f"{owner}: target_size must be (height, width) positive ints, "
                             f"got {target_size!r}")
        self.on_error = check_on_error(on_error, owner)
        split = None
        if subset is not None:
            if subset not in _SUBSETS:
                raise ValueError(f"{owner}: subset must be one of {_SUBSETS} or None, "
                                 f"got {subset!r}")
            fraction = getattr(image_data_generator, "validation_split", 0.0)
            if not fraction:
                raise ValueError(f"{owner}: subset={subset!r} needs "
                                 "ImageDataGenerator(validation_split=...) above 0")
            # Keras' rule, per class: the first fraction of the files validates.
            split = (0.0, fraction) if subset == "validation" else (fraction, 1.0)

        self.directory = directory
        self.image_data_generator = image_data_generator
        self.target_size = (height, width)
        self.color_mode = color_mode
        self.class_mode = class_mode
        self.interpolation = interpolation
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.subset = subset
        self.dtype = np.dtype(dtype)
        self.image_shape = (height, width, COLOR_MODES[color_mode][1])

        paths, labels, class_names = index_directory(
            directory, classes, DIRECTORY_ITERATOR_FORMATS, follow_links, on_error, owner,
            split=split, allow_empty_classes=True)
        if class_mode == "binary" and len(class_names) != 2:
            raise ValueError(f"{owner}: class_mode='binary' needs exactly 2 classes, found "
                             f"{len(class_names)}: {class_names}")
        self.class_indices = {name: i for i, name in enumerate(class_names)}
        self.num_classes = len(class_names)
        self.classes = labels.astype(np.int32)
        root = os.fspath(directory)
        self.filenames = [os.path.relpath(p, root) for p in paths]
        self.filepaths = [os.path.join(root, name) for name in self.filenames]
        self.skipped_files = {}
        print(f"Found {len(paths)} images belonging to {self.num_classes} classes.")
        if not paths:
            raise ValueError(f"{owner}: found no images in {root}"
                             + (f" for subset={subset!r}" if subset else ""))
        super().__init__(len(paths), batch_size, shuffle, seed)

    @property
    def labels(self):
        return self.classes

    def _get_batches_of_transformed_samples(self, index_array, rng):
        before = len(self.skipped_files)
        x, kept = decode_batch([self.filepaths[i] for i in index_array], self.target_size,
                               self.color_mode, self.interpolation, self.keep_aspect_ratio,
                               self.on_error, self.skipped_files)
        if len(self.skipped_files) > before:
            new = list(self.skipped_files.items())[before:]
            warn_skipped("flow_from_directory", new,
                         f"while decoding a batch ({len(self.skipped_files)} so far)")
        index_array = index_array[kept]
        x = _augment(self.image_data_generator, x, rng, self.dtype)
        if self.class_mode is None:
            return x
        if self.class_mode == "input":
            return x, x.copy()
        classes = self.classes[index_array]
        if self.class_mode in ("binary", "sparse"):
            return x, classes.astype(self.dtype)
        y = np.zeros((len(classes), self.num_classes), dtype=self.dtype)
        y[np.arange(len(classes)), classes] = 1
        return x, y
