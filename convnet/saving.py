"""Model files: one .npz holding JSON (architecture, compile settings, random
states) and the arrays (weights, BatchNorm state, optimizer slots).

Loaded with allow_pickle=False, so opening a model file never runs code. Saving
writes a temporary file beside the target and renames it over the target only when
complete, so a failed save leaves the previous file intact.
"""

import json
import os
import warnings

import numpy as np

from ._files import atomic_write

FORMAT_NAME = "convnet-model"
FORMAT_VERSION = 1


def _rng_state(rng):
    return None if rng is None else rng.bit_generator.state


def _set_rng_state(rng, state):
    if rng is not None and state is not None:
        rng.bit_generator.state = state


def _known_metrics(names, path):
    """Metric names that convnet.metrics knows; a custom function's name is dropped
    with a warning (its code is not in the file: pass it to compile() again)."""
    from . import metrics

    known = []
    for name in names:
        try:
            metrics.get(name)
        except ValueError:
            warnings.warn(f"load_model: {path}: metric {name!r} is not a built-in metric and "
                          "was left out; compile the model again to use it", stacklevel=3)
            continue
        known.append(name)
    return known


def save_model(model, path):
    """Write `model` to `path` (.npz) atomically."""
    from . import optimizers
    from .arrays import to_host

    if not model.built:
        raise ValueError(f"{model.describe()}: cannot save a model that is not built yet")
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": model.get_config()}
    arrays = {}
    for i, layer in enumerate(model.layers):
        for kind, store in (("param", layer.params), ("state", layer.state)):
            for key, value in store.items():
                arrays[f"{kind}/{i}/{key}"] = to_host(value)
    meta["rng"] = {"model": _rng_state(model._rng), "shuffle": _rng_state(model._shuffle_rng),
                   "layers": [_rng_state(layer.rng) for layer in model.layers]}
    if model.compiled:
        iterations, slots = model.optimizer.get_state()
        meta["compile"] = {
            "optimizer": optimizers.serialize(model.optimizer),
            "iterations": iterations,
            "loss": {"class_name": type(model.loss).__name__, "config": model.loss.get_config(),
                     "given_as_name": model._loss_given_as_name,
                     "name": model.loss.name},
            "metrics": [name for name, _ in model.metric_fns],
        }
        for key, value in slots.items():
            arrays[f"optimizer/{key}"] = value
    arrays["__meta__"] = np.array(json.dumps(meta))

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_model(path, compile=True):
    """Rebuild a Sequential model (and its optimizer state) from a .npz file."""
    from . import losses, optimizers
    from .layers import deserialize
    from .models import Sequential

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_model: no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # noqa: BLE001 - zipfile/npy/tokenize raise many kinds on bad bytes
        # a truncated or damaged file fails in zipfile (BadZipFile, CRC, NotImplementedError
        # for garbled headers), in numpy's .npy header parser, or as EOFError
        raise ValueError(f"load_model: {path} is not a readable convnet model file "
                         f"({type(exc).__name__}: {exc})") from exc
    if "__meta__" not in arrays:
        raise ValueError(f"load_model: {path} has no '__meta__' entry; not a convnet model file")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"load_model: {path} has corrupt metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"load_model: {path} has malformed metadata (a JSON "
                         f"{type(meta).__name__}, expected an object)")
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"load_model: {path} is not a convnet model file (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"load_model: {path} has format version {meta.get('version')!r}; this "
                         f"convnet reads version {FORMAT_VERSION}")
    try:
        config = meta["model"]
        layers = [deserialize(spec) for spec in config["layers"]]
        model = Sequential(layers, input_shape=config["input_shape"], name=config["name"],
                           seed=config.get("seed"))
        model.class_names = config.get("class_names")
        for i, layer in enumerate(model.layers):
            for kind, store in (("param", layer.params), ("state", layer.state)):
                for key in store:
                    name = f"{kind}/{i}/{key}"
                    if name not in arrays:
                        raise ValueError(f"load_model: {path} is missing array {name!r}")
                    value = arrays[name]
                    if value.shape != tuple(store[key].shape):
                        raise ValueError(f"load_model: {path}: array {name!r} has shape {value.shape}, "
                                         f"expected {tuple(store[key].shape)}")
                    store[key][...] = value
        rng = meta.get("rng") or {}
        _set_rng_state(model._rng, rng.get("model"))
        _set_rng_state(model._shuffle_rng, rng.get("shuffle"))
        for layer, state in zip(model.layers, rng.get("layers") or []):
            _set_rng_state(layer.rng, state)
        if compile and "compile" in meta:
            comp = meta["compile"]
            loss_spec = comp["loss"]
            if loss_spec.get("given_as_name"):
                loss = loss_spec["name"]
            else:
                loss_cls = {cls.__name__: cls for cls in losses.LOSSES.values()}.get(
                    loss_spec["class_name"])
                if loss_cls is None:
                    raise ValueError(f"load_model: {path} names an unknown loss class "
                                     f"{loss_spec['class_name']!r}")
                loss = loss_cls(**loss_spec["config"])
            model.compile(optimizer=optimizers.get(comp["optimizer"]), loss=loss,
                          metrics=_known_metrics(comp["metrics"], path))
            slots = {key[len("optimizer/"):]: value for key, value in arrays.items()
                     if key.startswith("optimizer/")}
            model.optimizer.set_state(comp["iterations"], slots)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"load_model: {path} has missing or malformed metadata ({exc!r})") from exc
    return model
