"""MNIST: 70,000 28x28 grayscale handwritten digits, labels 0-9.

Yann LeCun, Corinna Cortes and Christopher Burges.  The original address
(yann.lecun.com/exdb/mnist) often refuses automated downloads, so the files come
from the mirrors TensorFlow and PyTorch use, which serve the original archives
byte for byte (same SHA-256).

Where the files are looked for, in order: ``path=``, ``$CONVNET_DATA`` (or its
``mnist/`` sub-folder), the user cache ``~/.cache/convnet/mnist``, then a
verified download into the cache.  (Debian ships no MNIST package, so
:data:`SYSTEM_DIRS` is empty.)
"""

from . import _common
from ._common import DatasetSpec, RemoteFile

__all__ = ["SPEC", "SYSTEM_DIRS", "find_files", "load_data"]

SYSTEM_DIRS = ()

SPEC = DatasetSpec(
    name="mnist",
    aliases=(),
    files={
        "x_train": RemoteFile(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        "y_train": RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        "x_test": RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "y_test": RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
)


def find_files(path=None, base_url=None, download=True):
    """Locate (or download) the four files; returns ``(role -> Path, source)``."""
    return _common.find_files(SPEC, path, SYSTEM_DIRS, base_url, download)


def load_data(path=None, base_url=None, download=True):
    """Load MNIST like ``keras.datasets.mnist.load_data()``.

    Args:
        path: a directory holding the four ``*-ubyte(.gz)`` files, or its
            ``mnist/`` sub-folder.  When given, nothing else is searched.
        base_url: download from here instead of the mirrors (also settable
            with ``$CONVNET_DATASET_URL``).
        download: False to fail rather than download.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``, all uint8: x_train
        ``(60000, 28, 28)``, y_train ``(60000,)``, x_test ``(10000, 28, 28)``,
        y_test ``(10000,)``.
    """
    return _common.load(SPEC, path, SYSTEM_DIRS, base_url, download)
