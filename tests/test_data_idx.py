"""IDX reading/writing: round trips, the on-disk format, and clear errors for bad files."""

import gzip
import os
import struct

import numpy as np
import pytest

from convnet.data import read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        values = rng.standard_normal(shape) * 1e3
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, endpoint=True)
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip(tmp_path, dtype, suffix):
    array = _sample(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    back[0] = 0  # a usable array, not a read-only view of a buffer


@pytest.mark.parametrize("shape", [(7,), (2, 3, 4, 5), (0, 28, 28), ()])
def test_round_trip_shapes(tmp_path, shape):
    array = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    write_idx(tmp_path / "x.gz", array)
    back = read_idx(tmp_path / "x.gz")
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_on_disk_format_is_big_endian_idx(tmp_path):
    """The bytes are exactly what the IDX spec says (so other readers agree)."""
    array = np.array([[1, 256], [-2, 70000]], dtype=np.int32)
    write_idx(tmp_path / "x", array)
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == b"\x00\x00\x0c\x02"
    assert struct.unpack(">2I", raw[4:12]) == (2, 2)
    assert struct.unpack(">4i", raw[12:]) == (1, 256, -2, 70000)


def test_gzip_decided_by_suffix_and_read_by_content(tmp_path):
    array = _sample(np.uint8)
    write_idx(tmp_path / "x.gz", array)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    write_idx(tmp_path / "y", array)
    assert (tmp_path / "y").read_bytes()[:2] == b"\x00\x00"
    # a gzip file without .gz and a raw file named .gz both read correctly
    os.replace(tmp_path / "x.gz", tmp_path / "x-no-suffix")
    os.replace(tmp_path / "y", tmp_path / "y-raw.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "x-no-suffix"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "y-raw.gz"), array)


def test_compressed_output_is_reproducible(tmp_path):
    """No timestamp or temp-file name leaks into the gzip header."""
    array = _sample(np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    a = (tmp_path / "a.gz").read_bytes()
    b = (tmp_path / "b.gz").read_bytes()
    assert b"a\x00" in a[:20] and b"b\x00" in b[:20]  # each records its own name
    assert a.replace(b"a\x00", b"b\x00", 1) == b


def test_reads_mnist_style_header(tmp_path):
    """A file written by hand the way MNIST's are (0x00000803, then 3 dims)."""
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    header = b"\x00\x00\x08\x03" + struct.pack(">3I", 5, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)


def test_write_is_atomic_and_leaves_no_temp_on_error(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros(3, np.uint8))
    before = path.read_bytes()
    with pytest.raises(TypeError, match="int64"):
        write_idx(path, np.zeros(3, np.int64))
    assert path.read_bytes() == before  # untouched
    assert sorted(os.listdir(tmp_path)) == ["x.gz"]  # no temp file left behind


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="IDX has no code for dtype bool"):
        write_idx(tmp_path / "x", np.zeros(3, bool))
    assert not (tmp_path / "x").exists()


# -- bad files ---------------------------------------------------------------------------


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "not-idx.bin"
    path.write_bytes(b"\x00\x01\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match=r"not-idx\.bin.*magic number 0x00010801"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc")  # unknown dtype code
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04 a zip, not IDX")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.*shorter than the 4-byte magic"):
        read_idx(tmp_path / "empty")


def test_truncated_data_names_the_file(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + bytes(100))
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated IDX data.*7840 bytes.*100"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 10))  # 1 of 3 dims
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)


def test_truncated_data_inside_valid_gzip(tmp_path):
    """Well-formed gzip whose payload is shorter than its IDX header promises."""
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x02" + struct.pack(">2I", 4, 4) + bytes(10))
    with pytest.raises(ValueError, match=r"short\.gz.*truncated IDX data"):
        read_idx(path)


def test_trailing_data_is_rejected(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc")
    with pytest.raises(ValueError, match="long.*unexpected data after"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz.*(truncated|corrupt) gzip"):
        read_idx(path)


def test_corrupt_gzip_payload_names_the_file(tmp_path):
    """Flipped bits inside the deflate stream or the CRC trailer."""
    path = tmp_path / "bad.gz"
    array = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_idx(path, array)
    good = path.read_bytes()
    flipped_crc = bytearray(good)
    flipped_crc[-6] ^= 0xFF  # inside the CRC-32 trailer: only the CRC check can notice
    path.write_bytes(bytes(flipped_crc))
    with pytest.raises(ValueError, match=r"bad\.gz.*corrupt gzip.*CRC"):
        read_idx(path)
    garbage = bytearray(good)
    garbage[30:60] = bytes(range(30))
    path.write_bytes(bytes(garbage))
    with pytest.raises(ValueError, match=r"bad\.gz.*gzip|bad\.gz"):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


# -- header disagrees with the length: the error names the file and both numbers -----------


def test_raw_header_longer_than_file_gives_both_sizes(tmp_path):
    path = tmp_path / "lying-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 28, 28) + bytes(784 * 3))
    expected = (r"lying-idx3-ubyte: truncated IDX data: the header declares shape \(60000, 28, 28\) of uint8 "
                r"\(47040000 bytes of data\) but the file holds 2352 bytes after its 16-byte header \(2368 bytes")
    with pytest.raises(ValueError, match=expected):
        read_idx(path)


def test_raw_header_shorter_than_file_gives_both_sizes(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + bytes(20))   # int32: 12 bytes promised
    with pytest.raises(ValueError, match=r"long-idx1-ubyte: unexpected data after the IDX array: .*"
                                         r"\(12 bytes of data\) but the file holds 20 bytes"):
        read_idx(path)


def test_absurd_declared_size_is_refused_before_allocating(tmp_path):
    """A header claiming ~10**21 bytes: refused from the file length (raw) or by the
    allocation (gzip), never a MemoryError."""
    header = b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**16)
    raw = tmp_path / "bomb-idx3"
    raw.write_bytes(header + bytes(64))
    with pytest.raises(ValueError, match=r"bomb-idx3: truncated IDX data: .*\(9671406552413433770803200 bytes"):
        read_idx(raw)
    packed = tmp_path / "bomb-idx3.gz"
    with gzip.open(packed, "wb") as f:
        f.write(header + bytes(64))
    with pytest.raises(ValueError, match=r"bomb-idx3\.gz: IDX header claims shape .* \(96714065524134337708032"):
        read_idx(packed)


def test_gzip_trailing_data_is_counted(tmp_path):
    path = tmp_path / "extra.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + bytes(5 + 3_000_000))
    with pytest.raises(ValueError, match=r"extra\.gz: unexpected data after the 5 bytes .*"
                                         r"3000000 more bytes follow \(3000005 bytes of data in all\)"):
        read_idx(path)
