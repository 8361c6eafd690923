"""Ready-made datasets with a Keras-like ``load_data()``.

    from convnet.datasets import fashion_mnist
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
"""

from . import fashion_mnist, mnist
from ._common import ChecksumError, DownloadError, cache_dir

__all__ = ["ChecksumError", "DownloadError", "cache_dir", "fashion_mnist", "mnist"]
