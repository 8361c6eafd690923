"""Image classification data from a folder of class sub-folders, like Keras'
``image_dataset_from_directory``::

    galaxies/
        elliptical/  img001.jpg img002.jpg ...
        spiral/      ...
        irregular/   ...

Each sub-folder is a class; classes are numbered in alphabetical order of the
folder names (``class_names``).  Images are decoded by Pillow one batch at a
time, so a folder far larger than memory can be trained on.

What counts as an image, and what happens to other files:

- Files ending in .png, .jpg, .jpeg, .bmp or .gif (any case) are images; class
  folders are searched recursively (a folder's own files, sorted by name, come
  before those of its sub-folders).  Names starting with "." (``.DS_Store``,
  ``.ipynb_checkpoints/``) are ignored silently.
- Any other file, and any image file whose header Pillow cannot read, is
  **skipped with one warning** listing the skipped files.  (Only the header is
  checked while indexing, which is fast.  An image whose header is fine but
  whose pixel data is damaged raises a ValueError naming the file when its
  batch is decoded.)
- A class folder left without images is a ValueError naming the folder, and
  so is a directory with fewer than two class folders.
"""

import math
import os
import warnings

import numpy as np

from .batching import BatchDataset, _check_batch_size, _entropy, epoch_rng

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "image_dataset_from_directory"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

# color_mode -> (Pillow mode, channels)
_COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}
_LABEL_MODES = ("int", "categorical", "binary")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos", "hamming")
_SUBSETS = ("training", "validation", "both")
_MAX_LISTED = 10  # skipped files named in the warning


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a dependency
        raise ImportError("convnet.data.image_folder needs Pillow: pip install pillow") from exc
    return Image


def _resample(interpolation):
    image = _pil()
    return {
        "nearest": image.Resampling.NEAREST,
        "bilinear": image.Resampling.BILINEAR,
        "bicubic": image.Resampling.BICUBIC,
        "area": image.Resampling.BOX,
        "lanczos": image.Resampling.LANCZOS,
        "hamming": image.Resampling.HAMMING,
    }[interpolation]


def load_image(path, image_size, color_mode="rgb", interpolation="bilinear"):
    """Decode one image file to a uint8 array ``(H, W, C)``, resized to ``image_size``.

    Args:
        path: image file.
        image_size: ``(height, width)``.  (Pillow's own sizes are (width, height).)
        color_mode: ``"grayscale"`` (C=1), ``"rgb"`` (C=3) or ``"rgba"`` (C=4).
        interpolation: resampling filter name (see image_dataset_from_directory).

    Raises:
        ValueError: naming the file, if Pillow cannot decode it.
    """
    image_mod = _pil()
    mode, channels = _COLOR_MODES[color_mode]
    height, width = image_size
    try:
        with image_mod.open(path) as im:
            im = im.convert(mode)  # also forces the full decode (GIF: first frame)
            if im.size != (width, height):
                im = im.resize((width, height), resample=_resample(interpolation))
            array = np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports damaged data as OSError ("image file is truncated"),
        # SyntaxError (some broken headers) or ValueError.
        raise ValueError(f"cannot decode image {os.fspath(path)}: {exc}") from exc
    return array.reshape(height, width, channels)


def _readable_header(path):
    """None if Pillow recognises the file's header, else the reason it does not."""
    image_mod = _pil()
    try:
        with image_mod.open(path):
            return None
    except (OSError, SyntaxError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def _class_folders(directory, follow_links):
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=follow_links):
                names.append(entry.name)
    return sorted(names)


def _index_class(folder, follow_links, skipped):
    """Sorted image paths under ``folder`` (recursively); others go to ``skipped``."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=follow_links):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                skipped.append((path, "not an image file extension"))
                continue
            reason = _readable_header(path)
            if reason is not None:
                skipped.append((path, reason))
                continue
            found.append(path)
    return found


def index_directory(directory, class_names=None, follow_links=False):
    """List the images of a class-folder tree.

    Returns:
        ``(file_paths, labels, class_names)``: a list of N paths grouped by
        class (sorted within each class), int64 labels ``(N,)`` indexing
        ``class_names``.

    Raises:
        ValueError: not a directory; fewer than 2 classes; ``class_names``
            not matching the folders; a class folder without images.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"image_dataset_from_directory: {directory!r} is not a directory")
    folders = _class_folders(directory, follow_links)
    if class_names is None:
        class_names = folders
    else:
        class_names = [str(name) for name in class_names]
        if sorted(class_names) != folders:
            raise ValueError(
                f"image_dataset_from_directory: class_names {class_names} do not match the "
                f"sub-folders of {directory}: {folders}"
            )
    if len(class_names) < 2:
        found = f"only {class_names[0]!r}" if class_names else "none"
        raise ValueError(
            f"image_dataset_from_directory: {directory} must contain one sub-folder per "
            f"class and at least 2 classes; found {found}"
        )

    file_paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        skipped_before = len(skipped)
        paths = _index_class(folder, follow_links, skipped)
        if not paths:
            also = ""
            if len(skipped) > skipped_before:
                also = f" ({len(skipped) - skipped_before} unreadable or non-image files skipped)"
            raise ValueError(
                f"image_dataset_from_directory: class folder {folder} holds no images "
                f"with extensions {', '.join(IMAGE_EXTENSIONS)}{also}"
            )
        file_paths.extend(paths)
        labels.extend([label] * len(paths))

    if skipped:
        listed = "\n  ".join(f"{path}: {why}" for path, why in skipped[:_MAX_LISTED])
        more = f"\n  ... and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
        warnings.warn(
            f"image_dataset_from_directory: skipped {len(skipped)} file(s) in {directory} "
            f"that are not readable images:\n  {listed}{more}",
            stacklevel=3,
        )
    return file_paths, np.asarray(labels, dtype=np.int64), list(class_names)


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
                 interpolation="bilinear", stream=0):
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
        """Decode ``indices`` into float32 ``(len, H, W, C)`` plus their labels."""
        height, width = self.image_size
        x = np.empty((len(indices), height, width, self.channels), dtype=np.float32)
        for row, i in enumerate(indices):
            x[row] = load_image(self.file_paths[i], self.image_size, self.color_mode,
                                self.interpolation)
        return x, self._labels_out(self.labels[indices])

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
                                 interpolation="bilinear", follow_links=False):
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

    The split follows Keras: shuffle the whole file list once with ``seed``,
    then the last ``int(validation_split * N)`` files are the validation set
    and the rest the training set, so the two never overlap.

    Returns:
        an :class:`ImageFolderDataset` (or a pair of them for ``subset="both"``).

    Raises:
        ValueError: bad arguments, not a directory, fewer than 2 classes,
            an empty class folder.  Non-image files are skipped with a warning.
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

    file_paths, label_ids, class_names = index_directory(directory, class_names, follow_links)
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
                                  label_mode, batch_size, shuffle, seed, interpolation, stream)

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
