"""Model files: one .npz holding JSON metadata (architecture, compile settings,
training state) and named arrays (weights, BatchNorm state, optimizer slots).

This module knows the container, not the models: `Model.save` hands it the JSON
and the arrays, and `load_model` (convnet/models.py) rebuilds the model from
what `read_model_file` returns.

Reading never runs code from the file: arrays load with allow_pickle=False (an
object array is refused), every member's declared size is checked against the
bytes really there before anything is allocated, and the JSON is plain data.
Writing goes to a temporary file beside the target, renamed over it only when
complete, so a failed save leaves the previous file intact.
"""

import json
import os
import zipfile

import numpy as np

from ._files import atomic_write

FORMAT_NAME = "convnet-model"
FORMAT_VERSION = 2
#: versions this convnet reads (1: Sequential files written before graphs)
READABLE_VERSIONS = (1, 2)
#: no single array in a model file may declare more bytes than this
MAX_ARRAY_BYTES = 8 * 2**30
#: nor all of them together (a zip whose members overlap can declare any total)
MAX_TOTAL_BYTES = 16 * 2**30

__all__ = ["write_model_file", "read_model_file", "upgrade_v1", "FORMAT_NAME", "FORMAT_VERSION",
           "MAX_ARRAY_BYTES", "MAX_TOTAL_BYTES"]


def write_model_file(path, meta, arrays):
    """Write `meta` (a JSON-friendly dict) and `arrays` ({name: array}) to `path`
    atomically. meta gets the format name and version added."""
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"write_model_file: array {name!r} has dtype object; model files hold "
                            "numeric arrays only")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    payload["__meta__"] = np.array(json.dumps(meta))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, **payload)


def _check_members(path, max_bytes, max_total):
    """Refuse members whose header declares more bytes than allowed or than the
    member holds (a zip bomb or a forged header), before numpy allocates them.

    A member's unpacked size comes from the zip directory (zipfile stops reading
    at it and checks the CRC, so a member cannot unpack to more than it declares);
    the .npy header inside then gives the array's shape and dtype, whose product
    must fit in that size. Object dtypes (pickles) are refused here, unread.
    """
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > max_total:
            raise ValueError(f"load_model: {path}: its {len(infos)} members unpack to {total:,} bytes, "
                             f"over the limit of {max_total:,} (a zip bomb?)")
        for info in infos:
            if info.file_size > max_bytes:
                raise ValueError(f"load_model: {path}: member {info.filename!r} unpacks to "
                                 f"{info.file_size:,} bytes, over the limit of {max_bytes:,} (a zip bomb?)")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"load_model: {path}: member {info.filename!r} is a .npy file of "
                                     f"version {version}; model files are written as 1.0 or 2.0")
                if dtype.hasobject:
                    raise ValueError(f"load_model: {path}: member {info.filename!r} holds Python objects "
                                     "(dtype object); model files hold numbers only and are never unpickled")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > min(info.file_size, max_bytes):
                    raise ValueError(f"load_model: {path}: member {info.filename!r} declares shape {shape} "
                                     f"({declared:,} bytes) but holds {info.file_size:,} bytes")


def read_model_file(path, max_array_bytes=None, allow_nonfinite=False, max_total_bytes=None):
    """(meta, arrays) from a model file, with every check of the container.

    ValueError naming the file for anything that is not a convnet model file of a
    readable version, and for NaN or inf weights unless allow_nonfinite=True.
    max_array_bytes / max_total_bytes: size limits (default MAX_ARRAY_BYTES and
    MAX_TOTAL_BYTES, read at each call).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_model: no such file: {path}")
    max_array_bytes = MAX_ARRAY_BYTES if max_array_bytes is None else max_array_bytes
    max_total_bytes = MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
    try:
        _check_members(path, max_array_bytes, max_total_bytes)
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as exc:
        if str(exc).startswith("load_model:"):
            raise
        raise ValueError(f"load_model: {path} is not a readable convnet model file "
                         f"({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # noqa: BLE001 - zipfile/npy/tokenize raise many kinds on bad bytes
        # a truncated or damaged file fails in zipfile (BadZipFile, CRC, NotImplementedError
        # for garbled headers), in numpy's .npy header parser, or as EOFError
        raise ValueError(f"load_model: {path} is not a readable convnet model file "
                         f"({type(exc).__name__}: {exc})") from exc
    if "__meta__" not in arrays:
        raise ValueError(f"load_model: {path} has no '__meta__' entry; not a convnet model file")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except (json.JSONDecodeError, RecursionError) as exc:      # RecursionError: "[[[[..." nested too deep
        raise ValueError(f"load_model: {path} has corrupt metadata ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"load_model: {path} has malformed metadata (a JSON "
                         f"{type(meta).__name__}, expected an object)")
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"load_model: {path} is not a convnet model file (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"load_model: {path} has format version {meta.get('version')!r}; this "
                         f"convnet reads versions {list(READABLE_VERSIONS)}")
    for name, value in arrays.items():
        if value.dtype.kind not in "fiu":
            raise ValueError(f"load_model: {path}: array {name!r} has dtype {value.dtype}, expected real numbers")
        if not allow_nonfinite and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ValueError(f"load_model: {path}: array {name!r} holds NaN or inf values (a diverged "
                             "model?); pass allow_nonfinite=True to load it anyway")
    return meta, arrays


def upgrade_v1(meta):
    """Version-1 metadata (Sequential files before graphs) in the version-2 form."""
    old = meta.get("compile")
    compile_config = None
    if old:
        loss = old["loss"]
        loss = loss["name"] if loss.get("given_as_name") else {"class_name": loss["class_name"],
                                                               "config": loss["config"]}
        compile_config = {"optimizer": old["optimizer"], "loss": loss, "metrics": old.get("metrics") or [],
                          "loss_weights": None}
    rng = meta.get("rng") or {}
    state = {"compile": compile_config,
             "rng": {"model": rng.get("model"), "layers": rng.get("layers") or []},
             "shuffle_entropy": None, "epochs_seen": 0,
             "optimizer": {"iterations": old["iterations"]} if old else None, "callbacks": []}
    return {"format": FORMAT_NAME, "version": 2, "class_name": "Sequential", "model": meta["model"],
            "state": state}
