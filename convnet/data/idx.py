"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then
the array data in C order, big-endian::

    byte 0, 1   0x00 0x00
    byte 2      dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64)
    byte 3      number of dimensions, ndim
    4*ndim      the dimensions, each a big-endian uint32
    ...         prod(dims) items of that dtype, big-endian

MNIST's ``train-images-idx3-ubyte`` is ``0x00000803`` (uint8, 3 dims) followed by
60000, 28, 28; the labels file ``...-idx1-ubyte`` is ``0x00000801`` and 60000.
Files are usually gzip-compressed (``.gz``).
"""

import gzip
import math
import os
import struct
import sys
import zlib

import numpy as np

from .._files import atomic_write

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

#: IDX dtype code -> numpy dtype (native byte order; the file is big-endian).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_CODES = {dtype: code for code, dtype in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _read_full(stream, buf):
    """Fill the writable buffer ``buf`` from ``stream``; return how many bytes arrived.

    ``readinto`` may return fewer bytes than asked (gzip hands out one
    decompressed block at a time), so loop until the buffer is full or EOF.
    """
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _count_rest(stream):
    """Bytes left in ``stream`` (read and dropped a block at a time: no memory held)."""
    total = 0
    while True:
        block = stream.read(_CHUNK)
        if not block:
            return total
        total += len(block)


def _read_stream(stream, path, data_size=None):
    """Parse one IDX file from an open binary ``stream``; ``path`` names it in errors.

    ``data_size``: the file's length in bytes when known (a raw file), so a header
    that disagrees with it is refused before anything is allocated.
    """
    head = bytearray(4)
    if _read_full(stream, head) < 4:
        raise ValueError(f"{path}: not an IDX file: shorter than the 4-byte magic number")
    if head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{bytes(head).hex()} should be "
            f"0x0000TTNN with TT a dtype code in "
            f"{{{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}}} and NN the number of dims"
        )
    dtype = IDX_DTYPES[head[2]]
    ndim = head[3]
    raw_dims = bytearray(4 * ndim)
    if _read_full(stream, raw_dims) < len(raw_dims):
        raise ValueError(f"{path}: truncated IDX header: expected {ndim} dimension sizes")
    dims = struct.unpack(f">{ndim}I", raw_dims)

    # Python ints: 255 dims of 2**32 - 1 would overflow any fixed-width product
    nbytes = math.prod(dims) * dtype.itemsize
    header_size = 4 + 4 * ndim
    if data_size is not None and data_size - header_size != nbytes:
        have = data_size - header_size
        kind = "truncated IDX data" if have < nbytes else "unexpected data after the IDX array"
        raise ValueError(
            f"{path}: {kind}: the header declares shape {dims} of {dtype} ({nbytes} bytes of "
            f"data) but the file holds {have} bytes after its {header_size}-byte header "
            f"({data_size} bytes in all)"
        )
    try:
        # Read straight into the final array: no second copy of a 47 MB
        # payload, and the result is writable (np.frombuffer on bytes is not).
        # Untouched pages of an over-large allocation are never committed, so
        # a lying header costs nothing before the truncation check below.
        array = np.empty(dims, dtype=dtype)
    except (MemoryError, ValueError) as exc:
        raise ValueError(f"{path}: IDX header claims shape {dims} ({nbytes} bytes): {exc}") from exc
    got = _read_full(stream, array.reshape(-1).view(np.uint8))
    if got < nbytes:
        raise ValueError(
            f"{path}: truncated IDX data: the header promises shape {dims} of {dtype} "
            f"({nbytes} bytes) but only {got} bytes follow"
        )
    # Reading one more byte does double duty: it detects trailing garbage, and
    # for gzip it reaches the end of the stream, which is where the CRC-32 and
    # length trailer get checked (a corrupt payload is only noticed there).
    extra = stream.read(1)
    if extra:
        extra = 1 + _count_rest(stream)
        raise ValueError(
            f"{path}: unexpected data after the {nbytes} bytes the IDX header promises "
            f"(shape {dims} of {dtype}): {extra} more bytes follow ({nbytes + extra} bytes of data in all)"
        )
    if dtype.itemsize > 1 and sys.byteorder == "little":
        array.byteswap(inplace=True)  # file is big-endian, memory is native
    return array


def read_idx(path):
    """Read an IDX file (gzip-compressed or raw) into a numpy array.

    Compression is detected from the content (gzip magic ``1f 8b``), not the
    name, so a ``.gz`` that was decompressed in place still reads.  A raw IDX
    file always starts with ``00 00`` and can never be mistaken for gzip.

    Args:
        path: file path (str or os.PathLike).

    Returns:
        ndarray with the file's shape, e.g. ``(60000, 28, 28)`` uint8 for MNIST
        images or ``(60000,)`` uint8 for labels; native byte order, writable.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file, for a wrong magic number, a header that
            promises more data than the file holds, trailing data, or a
            corrupt/truncated gzip stream.
    """
    path = os.fspath(path)
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not is_gzip:
            return _read_stream(raw, path, data_size=os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, path)
        except EOFError as exc:
            raise ValueError(
                f"{path}: truncated gzip file: the compressed stream ends early ({exc})"
            ) from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip file: {exc}") from exc


def write_idx(path, array, compress=None):
    """Write ``array`` to ``path`` as an IDX file, atomically.

    Args:
        path: destination.  Gzip-compressed when ``compress`` is True, or when
            ``compress`` is None and the name ends in ``.gz``.
        array: array-like of dtype uint8, int8, int16, int32, float32 or
            float64 with any shape (at most 255 dims, each < 2**32).
        compress: None (decide by suffix), True or False.

    The file is written to a temporary name in the same directory and renamed
    into place, so ``path`` never holds half a file.  The gzip header stores
    no timestamp, so the same array always gives the same bytes.

    Raises:
        TypeError: dtype has no IDX code (e.g. int64, bool; convert first).
        ValueError: too many dimensions or a dimension too large for uint32.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"write_idx({path!r}): IDX has no code for dtype {array.dtype}; expected one of "
            f"{', '.join(str(d) for d in IDX_DTYPES.values())} (convert with .astype first)"
        )
    if array.ndim > 255:
        raise ValueError(f"write_idx({path!r}): IDX allows at most 255 dims, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx({path!r}): dimension sizes must be < 2**32, got {array.shape}")
    if compress is None:
        compress = path.endswith(".gz")

    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    # Big-endian, C-contiguous; a no-op view for uint8/int8 and for arrays
    # that already are big-endian.
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    payload = data.reshape(-1).view(np.uint8)

    with atomic_write(path) as f:
        if compress:
            # filename= is given explicitly: otherwise GzipFile would record
            # the temporary file's name in the gzip header.
            inner = os.path.basename(path)
            inner = inner.removesuffix(".gz")
            with gzip.GzipFile(filename=inner, mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)
