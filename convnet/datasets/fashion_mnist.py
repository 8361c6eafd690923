"""Fashion-MNIST: 70,000 28x28 grayscale pictures of clothing in 10 classes.

Zalando Research, https://github.com/zalandoresearch/fashion-mnist (MIT licence).
Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot (see :data:`CLASS_NAMES`).

Where the files are looked for, in order (see :mod:`convnet.datasets._common`):
``path=``, ``$CONVNET_DATA`` (or its ``fashion-mnist/`` sub-folder), the user
cache ``~/.cache/convnet/fashion-mnist``, Debian's ``dataset-fashion-mnist``
package (:data:`SYSTEM_DIRS`), then a verified download into the cache.
"""

from . import _common
from ._common import DatasetSpec, RemoteFile

__all__ = ["CLASS_NAMES", "SPEC", "SYSTEM_DIRS", "find_files", "load_data"]

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: ``apt-get install dataset-fashion-mnist`` installs the four ``*-ubyte.gz``
#: files here.  Debian recompressed them (the gzip header lost the embedded
#: file name), so their SHA-256 differs from the published archives while the
#: decompressed content is identical -- which is why RemoteFile also records
#: ``raw_sha256``.
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)

# sha256: the archives as published by Zalando (GitHub repository and the S3
# bucket serve the same bytes; their MD5s are in the project's README).
# raw_sha256: the decompressed IDX files, checked against Debian's package.
SPEC = DatasetSpec(
    name="fashion-mnist",
    aliases=("fashion_mnist",),
    files={
        "x_train": RemoteFile(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "y_train": RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "x_test": RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "y_test": RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
    mirrors=(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        # The address the official README links; plain HTTP is acceptable
        # because every file is checked against the SHA-256 above.
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
)


def find_files(path=None, base_url=None, download=True):
    """Locate (or download) the four files; returns ``(role -> Path, source)``.

    ``source`` is one of ``"path"``, ``"$CONVNET_DATA"``, ``"cache"``,
    ``"system"``, ``"download"``.  Arguments as for :func:`load_data`.
    """
    return _common.find_files(SPEC, path, SYSTEM_DIRS, base_url, download)


def load_data(path=None, base_url=None, download=True):
    """Load Fashion-MNIST like ``keras.datasets.fashion_mnist.load_data()``.

    Args:
        path: a directory holding the four files (``train-images-idx3-ubyte.gz``
            etc., gzipped or not), or its ``fashion-mnist/`` sub-folder.  When
            given, nothing else is searched.
        base_url: download from here instead of the official mirrors (also
            settable with ``$CONVNET_DATASET_URL``).
        download: False to fail rather than download.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``, all uint8: x_train
        ``(60000, 28, 28)``, y_train ``(60000,)``, x_test ``(10000, 28, 28)``,
        y_test ``(10000,)``.  Pixels stay uint8 (47 MB for x_train); convert
        per batch, e.g. with :class:`convnet.data.ArrayBatches`.
    """
    return _common.load(SPEC, path, SYSTEM_DIRS, base_url, download)
