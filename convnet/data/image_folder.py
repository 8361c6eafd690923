"""Image classification data from a folder of class sub-folders, like Keras'
``image_dataset_from_directory``::

    galaxies/
        elliptical/  img001.jpg img002.jpg ...
        spiral/      ...
        irregular/   ...

Each sub-folder is a class; classes are numbered in alphabetical order of the
folder names (``class_names``).  Images are decoded by Pillow one batch at a
time, so a folder far larger than memory can be trained on.

What counts as an image, and what happens to other files
(:mod:`convnet.data.directory` has the details):

- Files ending in .bmp, .gif, .jpeg, .jpg or .png (any case) are images;
  class folders are searched recursively, in Keras' file order.  Other files
  (``readme.txt``) and names starting with "." (``.DS_Store``,
  ``.ipynb_checkpoints/``) are ignored.
- An image file whose header Pillow cannot read, or that declares more pixels
  than Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb), is an error
  naming it while the folder is indexed -- or, with ``on_error="skip"``, left
  out with one warning that counts such files.
- Pixel data damaged after a good header (a truncated file) is found when its
  batch is decoded: an error naming the file, or with ``on_error="skip"`` the
  image is left out of that batch (which is then smaller) with a warning
  counting the files skipped so far.
- A class folder left without images is a ValueError naming the folder, and
  so is a directory with fewer than two class folders; a symbolic-link loop
  (with ``follow_links=True``) is a ValueError naming the link.
"""

import math

import numpy as np

from .batching import BatchDataset, _check_batch_size, _entropy, epoch_rng
from .decode import COLOR_MODES, PIL_FILTERS, decode_batch, load_image
from .directory import DATASET_FORMATS, check_on_error, class_folders, index_directory, warn_skipped

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "image_dataset_from_directory", "load_image"]

IMAGE_EXTENSIONS = DATASET_FORMATS
_COLOR_MODES = COLOR_MODES
_LABEL_MODES = ("int", "categorical", "binary")
_INTERPOLATIONS = tuple(f for f in PIL_FILTERS if f != "box")  # TensorFlow's names
_SUBSETS = ("training", "validation", "both")
_OWNER = "image_dataset_from_directory"


class ImageFolderDataset(BatchDataset):
    """Batches of images decoded from files, one batch at a time.

    Iterating yields ``(x, y)``:

    - ``x``: float32 ``(B, H, W, C)`` with values in 0..255 (as Keras; rescale
      in the model or with ``map``), C = 1 (grayscale), 3 (rgb) or 4 (rgba);
    - ``y``: int64 ``(B,)`` for ``label_mode="int"``, float32 one-hot
      ``(B, K)`` for ``"categorical"``, float32 ``(B, 1)`` for ``"binary"``.

    ``len(ds)`` is the number of batches; each ``iter(ds)`` is a new epoch,
    reshuffled (when ``shuffle``) deterministically from the seed.

    Attributes:
        file_paths: the N files, in dataset order (before per-epoch shuffling).
        labels: int64 ``(N,)`` class indices of ``file_paths``.
        class_names: list of K names; label i is ``class_names[i]``.
        image_size, color_mode, label_mode, batch_size, shuffle, interpolation.
    """

    def __init__(self, file_paths, labels, class_names, image_size=(256, 256),
                 color_mode="rgb", label_mode="int", batch_size=32, shuffle=True, seed=None,
                 interpolation="bilinear", stream=0, on_error="raise"):
        self.file_paths = list(file_paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.file_paths):
            raise ValueError("ImageFolderDataset: file_paths and labels differ in length")
        self.class_names = list(class_names)
        self.image_size = tuple(int(v) for v in image_size)
        self.color_mode = color_mode
        self.label_mode = label_mode
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.interpolation = interpolation
        self._entropy = _entropy(seed)
        self._stream = stream  # keeps training/validation epoch orders independent
        self.on_error = check_on_error(on_error, "ImageFolderDataset")
        self.skipped_files = {}  # path -> reason, for files left out while decoding

    @property
    def num_samples(self):
        return len(self.file_paths)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def channels(self):
        return _COLOR_MODES[self.color_mode][1]

    def __len__(self):
        return math.ceil(len(self.file_paths) / self.batch_size)

    def _labels_out(self, labels):
        if self.label_mode == "int":
            return labels.copy()
        if self.label_mode == "binary":
            return labels.astype(np.float32)[:, None]
        return np.eye(self.num_classes, dtype=np.float32)[labels]

    def _decode(self, indices):
        """Decode ``indices`` into float32 ``(len, H, W, C)`` plus their labels.

        With ``on_error="skip"`` undecodable files are left out (the batch is
        smaller) and a warning counts the files skipped so far.
        """
        before = len(self.skipped_files)
        x, kept = decode_batch([self.file_paths[i] for i in indices], self.image_size,
                               self.color_mode, self.interpolation, on_error=self.on_error,
                               skipped=self.skipped_files)
        if len(self.skipped_files) > before:
            new = list(self.skipped_files.items())[before:]
            warn_skipped(_OWNER, new, f"while decoding a batch ({len(self.skipped_files)} so far)")
        return x, self._labels_out(self.labels[np.asarray(indices)[kept]])

    def _iter_epoch(self, epoch):
        n = len(self.file_paths)
        if self.shuffle:
            order = epoch_rng(self._entropy, epoch, self._stream).permutation(n)
        else:
            order = np.arange(n)
        for start in range(0, n, self.batch_size):
            yield self._decode(order[start:start + self.batch_size])

    def as_arrays(self):
        """All images and labels in ``file_paths`` order, without shuffling.

        Returns ``(x, y)`` as for one batch, with B = N.  Holds everything in
        memory (N*H*W*C*4 bytes); does not count as an epoch.
        """
        return self._decode(np.arange(len(self.file_paths)))

    def __repr__(self):
        h, w = self.image_size
        return (f"ImageFolderDataset({self.num_samples} images, {self.num_classes} classes "
                f"{self.class_names}, {len(self)} batches of {self.batch_size}, "
                f"x ({h}, {w}, {self.channels}) float32, labels {self.label_mode!r})")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None,
                                 interpolation="bilinear", follow_links=False, on_error="raise"):
    """A batch dataset of the images in ``directory``'s class sub-folders.

    Args mirror ``keras.utils.image_dataset_from_directory``:
        directory: folder with one sub-folder per class.
        labels: only ``"inferred"`` (labels come from the folder structure).
        label_mode: ``"int"`` -> int64 ``(B,)``; ``"categorical"`` -> float32
            one-hot ``(B, K)``; ``"binary"`` -> float32 ``(B, 1)`` (2 classes).
        class_names: explicit class order; must name exactly the sub-folders.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``.
        batch_size: images per batch.
        image_size: ``(height, width)`` every image is resized to.
        shuffle: shuffle the file list before splitting, and each epoch.
        seed: makes the split and the shuffles reproducible.  Required when
            ``validation_split`` is used with shuffling, since a training and
            a validation dataset made by two calls must split identically.
        validation_split: fraction in (0, 1) held out for validation.
        subset: ``"training"``, ``"validation"`` or ``"both"`` (returns the
            pair ``(train_ds, val_ds)``); required with ``validation_split``.
        interpolation: ``"bilinear"``, ``"nearest"``, ``"bicubic"``, ``"area"``,
            ``"lanczos"`` or ``"hamming"`` (Pillow filters).
        follow_links: follow symbolic links to sub-folders.
        on_error: ``"raise"`` (default): a file that is not a readable image is
            a ValueError naming it; ``"skip"``: such files are left out with a
            warning that counts them (see the module doc for when each check runs).

    The split follows Keras: shuffle the whole file list once with ``seed``,
    then the last ``int(validation_split * N)`` files are the validation set
    and the rest the training set, so the two never overlap.

    Returns:
        an :class:`ImageFolderDataset` (or a pair of them for ``subset="both"``).

    Raises:
        ValueError: bad arguments, not a directory, fewer than 2 classes,
            an empty class folder, an unreadable image (unless
            ``on_error="skip"``), a symbolic-link loop.
    """
    if labels != "inferred":
        raise ValueError(f"image_dataset_from_directory: only labels='inferred' is "
                         f"supported, got {labels!r}")
    if label_mode not in _LABEL_MODES:
        raise ValueError(f"image_dataset_from_directory: label_mode must be one of "
                         f"{_LABEL_MODES}, got {label_mode!r}")
    if color_mode not in _COLOR_MODES:
        raise ValueError(f"image_dataset_from_directory: color_mode must be one of "
                         f"{tuple(_COLOR_MODES)}, got {color_mode!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"image_dataset_from_directory: interpolation must be one of "
                         f"{_INTERPOLATIONS}, got {interpolation!r}")
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError(f"image_dataset_from_directory: image_size must be (height, width) "
                         f"positive ints, got {image_size!r}")
    batch_size = _check_batch_size(batch_size)
    if (validation_split is None) != (subset is None):
        raise ValueError("image_dataset_from_directory: validation_split and subset go "
                         f"together; got validation_split={validation_split!r}, "
                         f"subset={subset!r}")
    if validation_split is not None:
        if not 0 < validation_split < 1:
            raise ValueError(f"image_dataset_from_directory: validation_split must be in "
                             f"(0, 1), got {validation_split!r}")
        if subset not in _SUBSETS:
            raise ValueError(f"image_dataset_from_directory: subset must be one of "
                             f"{_SUBSETS}, got {subset!r}")
        if shuffle and seed is None:
            raise ValueError("image_dataset_from_directory: pass a seed when using "
                             "validation_split with shuffle=True, so that the training and "
                             "validation subsets are split the same way")

    check_on_error(on_error, _OWNER)
    folders = None if class_names is None else list(class_names)
    if folders is not None:
        actual = class_folders(directory, _OWNER)
        if sorted(str(c) for c in folders) != actual:
            raise ValueError(f"{_OWNER}: class_names {folders} do not match the sub-folders of "
                             f"{directory}: {actual}")
    file_paths, label_ids, class_names = index_directory(
        directory, folders, IMAGE_EXTENSIONS, follow_links, on_error, _OWNER)
    if len(class_names) < 2:
        raise ValueError(f"{_OWNER}: {directory} must contain one sub-folder per class and at "
                         f"least 2 classes; found only {class_names[0]!r}")
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f"image_dataset_from_directory: label_mode='binary' needs exactly 2 "
                         f"classes, found {len(class_names)}: {class_names}")

    if shuffle:
        # Shuffle once before splitting so that both subsets mix all classes
        # (the index lists the files class by class).
        order = np.random.default_rng(seed).permutation(len(file_paths))
        file_paths = [file_paths[i] for i in order]
        label_ids = label_ids[order]

    def make(paths, ids, stream):
        return ImageFolderDataset(paths, ids, class_names, (height, width), color_mode,
                                  label_mode, batch_size, shuffle, seed, interpolation, stream,
                                  on_error)

    if validation_split is None:
        return make(file_paths, label_ids, 0)

    n_val = int(validation_split * len(file_paths))
    n_train = len(file_paths) - n_val
    if n_val == 0 or n_train == 0:
        raise ValueError(f"image_dataset_from_directory: validation_split={validation_split} "
                         f"of {len(file_paths)} images leaves {n_train} for training and "
                         f"{n_val} for validation; both need at least one")
    train = make(file_paths[:n_train], label_ids[:n_train], 0)
    val = make(file_paths[n_train:], label_ids[n_train:], 1)
    return {"training": train, "validation": val, "both": (train, val)}[subset]
