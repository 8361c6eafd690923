"""Data: IDX files, image folders, augmentation and batching.

- :func:`read_idx` / :func:`write_idx`: the IDX format of MNIST and Fashion-MNIST.
- :func:`image_dataset_from_directory`: class-folder trees, decoded per batch.
- :class:`ImageDataGenerator`: Keras-style random augmentation and
  normalisation, vectorised; ``.flow(x, y)`` and ``.flow_from_directory(dir)``
  give Keras-style iterators (:class:`NumpyArrayIterator`,
  :class:`DirectoryIterator`).
- :class:`ArrayBatches`: mini-batches of in-memory arrays, converted per batch.

Every batch source follows one protocol (see :mod:`convnet.data.batching`):
``len(ds)`` batches per epoch, each ``iter(ds)`` a new epoch of ``(x, y)``.
The Keras iterators also give Keras' endless ``next(it)`` stream
(see :mod:`convnet.data.iterators`).

Ready-made datasets live in :mod:`convnet.datasets`.
"""

from .augmentation import ImageDataGenerator
from .batching import ArrayBatches, BatchDataset, MappedDataset
from .decode import ImageDecodeError, load_image
from .idx import read_idx, write_idx
from .image_folder import ImageFolderDataset, image_dataset_from_directory
from .iterators import DirectoryIterator, Iterator, NumpyArrayIterator

__all__ = [
    "ArrayBatches",
    "BatchDataset",
    "DirectoryIterator",
    "ImageDataGenerator",
    "ImageDecodeError",
    "ImageFolderDataset",
    "Iterator",
    "MappedDataset",
    "NumpyArrayIterator",
    "image_dataset_from_directory",
    "load_image",
    "read_idx",
    "write_idx",
]
