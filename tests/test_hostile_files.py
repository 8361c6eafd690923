"""Hostile model files: load_model refuses each with a ValueError naming the file
and never runs anything from it (docs/reliability.md, "Hostile model files").

Every pickle here carries a payload that would create a marker directory when
unpickled; each test checks that the marker never appears.
"""

import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import convnet as cn
from convnet import saving


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    yield


class Payload:
    """Unpickling this calls os.mkdir(marker): proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def good_file(tmp_path):
    model = cn.Sequential([cn.layers.Conv2D(2, 3), cn.layers.Flatten(), cn.layers.Dense(3)],
                          input_shape=(5, 5, 1), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((8, 5, 5, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "good.npz"
    model.save(path)
    return path


def members(path):
    """{name: raw bytes} of every zip member of a model file."""
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def write_zip(path, named_bytes, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in named_bytes.items():
            z.writestr(name, data)
    return path


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(shape, descr="<f4", version=(1, 0)):
    """The bytes of a .npy header declaring `shape` (no data follows)."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        cn.load_model(path)
    assert str(path) in str(info.value)           # every message names the file
    return info.value


# ------------------------------------------------------------------ pickles
def test_an_object_array_member_is_refused_unread(tmp_path):
    path = good_file(tmp_path)
    marker = tmp_path / "ran"
    parts = members(path)
    parts["param/0/W.npy"] = npy_bytes(np.array([Payload(marker)], dtype=object), allow_pickle=True)
    refused(write_zip(tmp_path / "objects.npz", parts), r"member 'param/0/W.npy' holds Python objects")
    assert not marker.exists()


def test_a_pickled_meta_entry_is_refused_unread(tmp_path):
    path = good_file(tmp_path)
    marker = tmp_path / "ran"
    parts = members(path)
    parts["__meta__.npy"] = npy_bytes(np.array([Payload(marker), {"format": "convnet-model"}], dtype=object),
                                      allow_pickle=True)
    refused(write_zip(tmp_path / "meta.npz", parts), r"member '__meta__.npy' holds Python objects")
    assert not marker.exists()


def test_a_raw_pickle_inside_the_npz_is_refused_unread(tmp_path):
    path = good_file(tmp_path)
    marker = tmp_path / "ran"
    parts = members(path)
    parts["param/2/W.npy"] = pickle.dumps(Payload(marker))
    refused(write_zip(tmp_path / "raw.npz", parts), r"not a readable convnet model file .*magic")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_file_that_is_a_pickle_is_refused_unread(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps({"model": Payload(marker)}, protocol=protocol))
    refused(path, r"not a readable convnet model file \(BadZipFile")
    assert not marker.exists()


def test_a_npy_file_instead_of_an_npz_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(npy_bytes(np.zeros(4, np.float32)))
    refused(path, r"not a readable convnet model file \(BadZipFile")


# ------------------------------------------------------------------ versions and dtypes
@pytest.mark.parametrize("version", [0, 3, 99, "2", None, 2.5, [2]])
def test_unknown_format_versions_are_refused(tmp_path, version):
    path = good_file(tmp_path)
    parts = members(path)
    meta = json.loads(str(np.load(io.BytesIO(parts["__meta__.npy"]))))
    meta["version"] = version
    parts["__meta__.npy"] = npy_bytes(np.array(json.dumps(meta)))
    refused(write_zip(tmp_path / "v.npz", parts), r"has format version .*; this convnet reads versions \[1, 2\]")


def test_an_npy_version_other_than_1_or_2_is_refused(tmp_path):
    parts = members(good_file(tmp_path))
    raw = bytearray(parts["param/0/b.npy"])
    raw[6] = 3                                     # the .npy major version byte
    parts["param/0/b.npy"] = bytes(raw)
    refused(write_zip(tmp_path / "npy3.npz", parts), r"member 'param/0/b.npy' is a .npy file of version \(3, 0\)")


@pytest.mark.parametrize("array", [np.zeros(3, np.complex64), np.array(["a", "b"]),
                                   np.zeros(2, dtype=[("a", "<f4")]), np.zeros(2, "M8[s]")],
                         ids=["complex", "str", "structured", "datetime"])
def test_non_real_arrays_are_refused(tmp_path, array):
    parts = members(good_file(tmp_path))
    parts["optimizer/0/W|m.npy"] = npy_bytes(array)
    refused(write_zip(tmp_path / "dtype.npz", parts), r"array 'optimizer/0/W\|m' has dtype .*, expected real numbers")


@pytest.mark.parametrize("text", ["[" * 100_000, "{" + '"a":' * 10, "null", "[1, 2]", "\ud800"],
                         ids=["deep", "truncated", "null", "list", "surrogate"])
def test_corrupt_or_hostile_metadata_is_refused(tmp_path, text):
    parts = members(good_file(tmp_path))
    parts["__meta__.npy"] = npy_bytes(np.array(text))
    refused(write_zip(tmp_path / "meta.npz", parts), r"corrupt metadata|malformed metadata|not a convnet")


# ------------------------------------------------------------------ the architecture
def test_a_weight_whose_shape_disagrees_with_the_architecture_is_refused(tmp_path):
    parts = members(good_file(tmp_path))
    parts["param/2/W.npy"] = npy_bytes(np.zeros((5, 3), np.float32))
    refused(write_zip(tmp_path / "shape.npz", parts),
            r"array 'param/2/W' has shape \(5, 3\), expected \(18, 3\) for Dense")


def test_an_architecture_that_disagrees_with_the_weights_is_refused(tmp_path):
    parts = members(good_file(tmp_path))
    meta = json.loads(str(np.load(io.BytesIO(parts["__meta__.npy"]))))
    conv = next(s for s in meta["model"]["layers"] if s["class_name"] == "Conv2D")
    conv["config"]["filters"] = 4                  # the file's kernel has 2 filters
    parts["__meta__.npy"] = npy_bytes(np.array(json.dumps(meta)))
    refused(write_zip(tmp_path / "arch.npz", parts), r"array 'param/0/W' has shape \(3, 3, 1, 2\), expected "
                                                     r"\(3, 3, 1, 4\)")


@pytest.mark.parametrize("edit", [
    lambda m: m["model"]["layers"][1].update(class_name="os.system"),
    lambda m: m["model"]["layers"][1]["config"].update(filters=-3),
    lambda m: m["model"]["layers"][1]["config"].update(__class__="x"),
    lambda m: m["state"]["rng"].update(model={"bit_generator": "MT19937", "state": "x"}),
    lambda m: m["state"].update(shuffle_entropy="9" * 5000),
    lambda m: m["state"]["compile"].update(optimizer={"class_name": "builtins.eval", "config": {}}),
    lambda m: m["state"]["compile"].update(loss={"class_name": "__import__", "config": {}}),
], ids=["layer-class", "negative-filters", "extra-config", "rng-state", "huge-int", "optimizer", "loss"])
def test_hostile_configs_are_refused_and_name_the_file(tmp_path, edit):
    parts = members(good_file(tmp_path))
    meta = json.loads(str(np.load(io.BytesIO(parts["__meta__.npy"]))))
    edit(meta)
    parts["__meta__.npy"] = npy_bytes(np.array(json.dumps(meta)))
    refused(write_zip(tmp_path / "config.npz", parts), r"load_model: ")


# ------------------------------------------------------------------ sizes
def test_an_npy_header_declaring_terabytes_is_refused_before_allocating(tmp_path):
    parts = members(good_file(tmp_path))
    parts["param/2/W.npy"] = npy_header((10**12, 3)) + b"\0" * 64
    error = refused(write_zip(tmp_path / "tera.npz", parts),
                    r"member 'param/2/W.npy' declares shape \(1000000000000, 3\) \(12,000,000,000,000 bytes\)")
    assert "but holds 192 bytes" in str(error)


def test_a_version_2_header_declaring_terabytes_is_refused(tmp_path):
    parts = members(good_file(tmp_path))
    parts["param/2/b.npy"] = npy_header((2**40,), descr="<f8", version=(2, 0))
    refused(write_zip(tmp_path / "tera2.npz", parts), r"declares shape \(1099511627776,\)")


def zeros_member(z, name, nbytes, chunk=2**20, zip64=True):
    """Stream a deflated .npy member of nbytes zero bytes (a thousand-to-one ratio)."""
    with z.open(name, "w", force_zip64=zip64) as f:
        f.write(npy_header((nbytes // 4,)))
        for _ in range(nbytes // chunk):
            f.write(bytes(chunk))


def test_a_zip_bomb_member_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    # 64 MiB of zeros deflate to 64 KiB; the limit is lowered to 16 MiB so the test
    # stays small (the default is saving.MAX_ARRAY_BYTES = 8 GiB)
    monkeypatch.setattr(saving, "MAX_ARRAY_BYTES", 16 * 2**20)
    path = good_file(tmp_path)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members(path).items():
            z.writestr(name, data)
        zeros_member(z, "param/2/W.npy", 64 * 2**20)
    assert bomb.stat().st_size < 200_000
    refused(bomb, r"member 'param/2/W.npy' unpacks to 67,108,\d+ bytes, over the limit of 16,777,216 "
                  r"\(a zip bomb\?\)")


def test_many_members_over_the_total_limit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(saving, "MAX_TOTAL_BYTES", 32 * 2**20)
    path = good_file(tmp_path)
    bomb = tmp_path / "many.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members(path).items():
            z.writestr(name, data)
        for i in range(5):
            zeros_member(z, f"callback/0/x{i}.npy", 8 * 2**20)
    refused(bomb, r"members unpack to 4\d,\d+,\d+ bytes, over the limit of 33,554,432")


def test_a_member_that_lies_about_its_unpacked_size_is_refused(tmp_path):
    """The zip directory says 1,000 bytes, the deflate stream holds 8 MiB: zipfile
    stops at the declared size and checks the CRC of what it read, so nothing
    beyond 1,000 bytes is ever unpacked."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members(good_file(tmp_path)).items():
            z.writestr(name, data)
        zeros_member(z, "param/2/W.npy", 8 * 2**20, zip64=False)
    raw = bytearray(buf.getvalue())
    central = raw.rfind(b"PK\x01\x02")            # the last member's central directory entry
    assert struct.unpack("<I", raw[central + 24:central + 28])[0] == 8 * 2**20 + 128
    raw[central + 24:central + 28] = struct.pack("<I", 1000)             # its uncompressed size
    (tmp_path / "liar.npz").write_bytes(bytes(raw))
    # zipfile unpacks no more than the 1,000 declared bytes, then the CRC of those fails
    refused(tmp_path / "liar.npz", r"not a readable convnet model file \(BadZipFile: Bad CRC-32 for file "
                                   r"'param/2/W.npy'\)")


# ------------------------------------------------------------------ values
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    path = good_file(tmp_path)
    parts = members(path)
    b = np.load(io.BytesIO(parts["param/2/b.npy"]))
    b[1] = np.nan
    parts["param/2/b.npy"] = npy_bytes(b)
    bad = write_zip(tmp_path / "nan.npz", parts)
    refused(bad, r"array 'param/2/b' holds NaN or inf values \(a diverged model\?\); pass allow_nonfinite=True")
    model = cn.load_model(bad, allow_nonfinite=True)
    assert np.isnan(model.layers[2].params["b"][1])


def test_nonfinite_optimizer_slots_are_refused_too(tmp_path):
    parts = members(good_file(tmp_path))
    name = next(n for n in parts if n.startswith("optimizer/") and n.endswith("|v.npy"))
    v = np.load(io.BytesIO(parts[name]))
    v.flat[0] = np.inf
    parts[name] = npy_bytes(v)
    refused(write_zip(tmp_path / "inf.npz", parts), r"holds NaN or inf values")


def test_the_untouched_file_still_loads(tmp_path):
    """The rewriting helpers themselves produce a loadable file (so the refusals above are the edits')."""
    path = good_file(tmp_path)
    copy = write_zip(tmp_path / "copy.npz", members(path))
    a, b = cn.load_model(path), cn.load_model(copy)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
