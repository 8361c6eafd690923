"""Pictures of a network: training curves, confusion matrix, filters, feature maps.

Needs matplotlib (the optional extra: pip install "convnet[plots]"); it is imported
only when a plot is drawn. Figures are made with matplotlib's object API and the
Agg renderer, so nothing here needs a display or changes pyplot's global state.
Every plot function returns the matplotlib Figure and, given `path`, also writes
it as a PNG of figsize * dpi pixels.

    plot_history(history)                 loss and each metric per epoch, train vs val
    plot_confusion_matrix(cm)             counts (or row fractions) with class names
    plot_filters(model)                   the first Conv2D layer's kernels
    feature_maps(model, image)            {layer name: (OH, OW, F)} for every Conv2D
    plot_feature_maps(model, image)       those maps, one row of pictures per layer
    plot_activations(model, images, ...)  per image: the picture, predicted and true class,
                                          every conv layer's maps (the galaxy project's tool)
    inspect(model_path, images, dir)      filters.png + feature maps of each image, or of
                                          every image in a folder (convnet inspect)
"""

import os

import numpy as np

from ._files import atomic_write

DPI = 100


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "convnet.viz needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (or the extra: pip install 'convnet[plots]')."
        ) from exc
    return Figure, FigureCanvasAgg


def _figure(width, height):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path):
    """Write fig to path as PNG (atomically) when a path is given; return fig."""
    if path is not None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # temp file + fsync + rename: a crash mid-plot leaves the old picture whole
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=DPI)
    return fig


def _host(a):
    get = getattr(a, "get", None)
    return get() if get is not None else np.asarray(a)


# ------------------------------------------------------------------- history
def plot_history(history, path=None, metrics=None, title=None):
    """Curves of the loss and every metric per epoch, training vs validation.

    history: a History (what fit returns), or its .history dict of lists.
    metrics: names to draw (default: every key without the val_ prefix, loss first).
    One panel per name; "val_<name>" is drawn dashed in the same panel.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("plot_history: expected a History or a non-empty dict of lists, "
                         f"got {type(history).__name__}")
    if metrics is None:
        names = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
        names += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
        names.sort(key=lambda k: (k != "loss", list(logs).index(k) if k in logs else 0))
    else:
        names = list(metrics)
        missing = [n for n in names if n not in logs and f"val_{n}" not in logs]
        if missing:
            raise ValueError(f"plot_history: no {missing} in the history; it has {sorted(logs)}")
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4.0 * len(names), 3.2)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for key, style, label in ((name, "-o", "train"), (f"val_{name}", "--s", "validation")):
            if key in logs:
                values = [float(v) for v in logs[key]]
                ax.plot(range(1, len(values) + 1), values, style, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


# ---------------------------------------------------------- confusion matrix
def plot_confusion_matrix(cm, y_pred=None, class_names=None, path=None, normalize=False,
                          title="Confusion matrix"):
    """Draw a confusion matrix (rows: true class, columns: predicted class).

    plot_confusion_matrix(cm, class_names=..., path=...) with a (K, K) matrix from
    metrics.confusion_matrix, or plot_confusion_matrix(y_true, y_pred, ...) with
    labels and predicted labels or probabilities, to compute it here.
    normalize=True shows each row as fractions of that class (the diagonal is then
    the per-class recall).
    """
    from .metrics import confusion_matrix

    if y_pred is not None:
        cm = confusion_matrix(cm, y_pred, None if class_names is None else len(class_names))
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for {k} classes")
    shown = cm.astype(np.float64)
    if normalize:
        rows = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, rows, out=np.zeros_like(shown), where=rows > 0)
    side = max(4.0, 0.55 * k + 2.0)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    fig.tight_layout()
    return _finish(fig, path)


# ------------------------------------------------------------------- filters
def _conv_layers(model):
    from .layers import Conv2D
    return [layer for layer in model.layers if isinstance(layer, Conv2D)]


def _grid(n, columns):
    columns = max(1, min(columns, n))
    return -(-n // columns), columns


def _unit(a):
    """Scale to [0, 1] for display (a constant picture becomes mid-grey)."""
    lo, hi = float(a.min()), float(a.max())
    return np.full_like(a, 0.5) if hi - lo < 1e-12 else (a - lo) / (hi - lo)


def plot_filters(model, path=None, layer=None, max_filters=64, columns=8):
    """The kernels of a Conv2D layer (default: the model's first), one tile each.

    W has shape (kh, kw, C, F). With C == 3 each filter is shown in colour (its
    three input-channel slices as R, G, B, scaled to [0, 1] per filter); otherwise
    each filter's mean over its input channels, in grey (C == 1: the kernel itself).
    """
    from .layers import Conv2D

    if isinstance(layer, Conv2D):
        conv = layer
    else:
        convs = _conv_layers(model)
        if not convs:
            raise ValueError("plot_filters: the model has no Conv2D layer")
        if layer is None:
            conv = convs[0]
        else:
            by_name = {c.name: c for c in convs}
            if layer not in by_name:
                raise ValueError(f"plot_filters: no Conv2D layer named {layer!r}; "
                                 f"Conv2D layers: {sorted(by_name)}")
            conv = by_name[layer]
    W = np.asarray(_host(conv.params["W"]), dtype=np.float64)
    kh, kw, c, f = W.shape
    n = min(f, max_filters)
    rows, cols = _grid(n, columns)
    fig = _figure(1.1 * cols + 0.4, 1.1 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if idx >= n:
            continue
        if c == 3:
            ax.imshow(_unit(W[:, :, :, idx]), interpolation="nearest")
        else:
            ax.imshow(W[:, :, :, idx].mean(axis=2), cmap="gray", interpolation="nearest")
        ax.set_title(str(idx), fontsize=7)
    shown = "RGB" if c == 3 else ("grey" if c == 1 else f"mean of {c} input channels")
    fig.suptitle(f"{conv.name}: {f} filters {kh}x{kw} ({shown})", fontsize=9)
    return _finish(fig, path)


# -------------------------------------------------------------- feature maps
def _one_image(model, image):
    """(1, H, W, C) from one image given as (H, W, C), (1, H, W, C) or, grey, (H, W)."""
    x = np.asarray(_host(image))
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"feature maps: expected one image (H, W, C) or (1, H, W, C), got shape "
                         f"{x.shape}")
    if model.input_shape is not None and tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"feature maps: the model takes images of shape {tuple(model.input_shape)}, "
                         f"got {tuple(x.shape[1:])}")
    return x


def feature_maps(model, image, layers="conv"):
    """Outputs of the model's layers for one image, in inference mode.

    image: (H, W, C) or (1, H, W, C). layers: "conv" (every Conv2D, after its
    activation, as Keras shows a layer's output), "all" (every layer with an image
    output), or a list of layer names. Returns {layer name: array (OH, OW, F)}, in
    layer order.
    """
    from .backend import get_ops

    x = _one_image(model, image)
    convs = {id(layer) for layer in _conv_layers(model)}
    if layers not in ("conv", "all"):
        wanted = list(layers)
        unknown = set(wanted) - {layer.name for layer in model.layers}
        if unknown:
            raise ValueError(f"feature_maps: no layer named {sorted(unknown)}; layers: "
                             f"{[layer.name for layer in model.layers]}")
    if not model.built:
        model.build(x.shape[1:])
    out = {}
    ops = get_ops()
    for layer in model.layers:
        x = layer.forward(x, training=False)
        keep = (id(layer) in convs if layers == "conv"
                else (x.ndim == 4 if layers == "all" else layer.name in wanted))
        if keep:
            if x.ndim != 4:
                raise ValueError(f"feature_maps: layer {layer.name!r} has output shape "
                                 f"{tuple(x.shape[1:])}, not an image (OH, OW, F)")
            out[layer.name] = np.array(ops.to_numpy(x)[0])
    if not out:
        raise ValueError("feature_maps: the model has no Conv2D layer to show")
    return out


def plot_feature_maps(model, image, path=None, layers="conv", max_maps=16, columns=8):
    """Feature maps of every Conv2D layer for one image (the Keras course's
    visualize_activations): the input picture, then for each layer a block of its
    first `max_maps` channels, `columns` per row, each scaled to its own range.
    """
    maps = feature_maps(model, image, layers)
    x = _one_image(model, image)[0]
    blocks = []
    for name, m in maps.items():
        n = min(m.shape[2], max_maps)
        blocks.append((name, m, n, _grid(n, columns)))
    cols = max(c for _, _, _, (_, c) in blocks)
    rows = 1 + sum(r for _, _, _, (r, _) in blocks)
    fig = _figure(1.3 * cols + 0.4, 1.35 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    picture = x[:, :, 0] if x.shape[2] == 1 else _unit(x[:, :, :3].astype(np.float64))
    axes[0, 0].imshow(picture, cmap="gray" if x.shape[2] == 1 else None)
    axes[0, 0].set_title("input", fontsize=8)
    row = 1
    for name, m, n, (r, _) in blocks:
        for idx in range(n):
            ax = axes[row + idx // cols, idx % cols]
            ax.imshow(m[:, :, idx], cmap="viridis", interpolation="nearest")
            ax.set_title(f"{name}[{idx}]" if idx == 0 else str(idx), fontsize=7)
        row += r
    fig.suptitle("feature maps: " + ", ".join(f"{n} {m.shape[0]}x{m.shape[1]}x{m.shape[2]}"
                                              for n, m in maps.items()), fontsize=9)
    return _finish(fig, path)


# --------------------------------------------------------------- activations
def _class_name(k, class_names):
    return str(class_names[k]) if class_names is not None and 0 <= k < len(class_names) else str(k)


def _activation_paths(path, count):
    """Where plot_activations writes picture i: path may be a folder, a file name
    ending in .png (numbered <stem>_<i>.png when there are several images), or
    contain "{i}"."""
    path = os.fspath(path)
    if "{i}" in path:
        return [path.format(i=i) for i in range(count)]
    if path.lower().endswith(".png"):
        if count == 1:
            return [path]
        stem = path[:-4]
        return [f"{stem}_{i}.png" for i in range(count)]
    return [os.path.join(path, f"activations_{i}.png") for i in range(count)]


def plot_activations(model, images, labels=None, class_names=None, path=None, max_maps=8,
                     columns=8):
    """For each image: the picture, the predicted and (given labels) the true class,
    and the first `max_maps` feature maps of every Conv2D layer, one PNG per image.

    images: (N, H, W, C) (or one (H, W, C)); labels: (N,) class indices or (N, K)
    one-hot, or None. The maps come from a feature extractor built the Keras way,
    cn.Model(inputs=model.inputs, outputs=[layer.output for each Conv2D]), which
    shares the model's layers and weights. path: a folder, a .png name or a pattern
    with "{i}" (see _activation_paths); None writes nothing. Returns the paths
    written (the figures when path is None).
    """
    from .models import Model

    x = np.asarray(_host(images))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"plot_activations: expected images of shape (N, H, W, C), got {x.shape}")
    if model.input_shape is not None and tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"plot_activations: the model takes images of shape {tuple(model.input_shape)}, "
                         f"got {tuple(x.shape[1:])}")
    convs = _conv_layers(model)
    if not convs:
        raise ValueError("plot_activations: the model has no Conv2D layer to show")
    if labels is not None:
        labels = np.asarray(_host(labels))
        labels = labels.argmax(axis=1) if labels.ndim == 2 and labels.shape[1] > 1 else labels.reshape(-1)
        if len(labels) != len(x):
            raise ValueError(f"plot_activations: {len(x)} images but {len(labels)} labels")
        labels = labels.astype(np.int64)
    extractor = Model(inputs=model.inputs, outputs=[layer.output for layer in convs])
    maps = extractor(x)
    maps = maps if isinstance(maps, list) else [maps]
    probs = model.predict(x)
    probs = probs[0] if isinstance(probs, list) else probs
    predicted = probs.argmax(axis=1)
    figures = []
    for i in range(len(x)):
        blocks = [(layer.name, m[i], min(m.shape[-1], max_maps)) for layer, m in zip(convs, maps)]
        cols = max(1, min(columns, max(n for _, _, n in blocks)))
        rows = 1 + sum(-(-n // cols) for _, _, n in blocks)
        fig = _figure(1.3 * cols + 0.4, 1.35 * rows + 0.6)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        img = x[i]
        picture = img[:, :, 0] if img.shape[2] == 1 else _unit(img[:, :, :3].astype(np.float64))
        axes[0, 0].imshow(picture, cmap="gray" if img.shape[2] == 1 else None)
        title = f"predicted {_class_name(int(predicted[i]), class_names)} ({probs[i, predicted[i]]:.2f})"
        if labels is not None:
            title += f"\ntrue {_class_name(int(labels[i]), class_names)}"
        axes[0, 0].set_title(title, fontsize=7, loc="left")
        row = 1
        for name, m, n in blocks:
            for idx in range(n):
                ax = axes[row + idx // cols, idx % cols]
                ax.imshow(m[:, :, idx], cmap="viridis", interpolation="nearest")
                ax.set_title(f"{name}[{idx}]" if idx == 0 else str(idx), fontsize=7)
            row += -(-n // cols)
        fig.suptitle(f"image {i}: " + ", ".join(f"{n} {m.shape[0]}x{m.shape[1]}x{m.shape[2]}"
                                                for n, m, _ in blocks), fontsize=9)
        figures.append(fig)
    if path is None:
        return figures
    written = _activation_paths(path, len(figures))
    for fig, p in zip(figures, written):
        _finish(fig, p)
    return written


# ------------------------------------------------------------------ inspect
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(paths):
    """The image files named by `paths` (files, or folders searched recursively, in
    sorted order); ValueError when a path does not exist or a folder holds no image."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p):
            inside = sorted(os.path.join(root, f) for root, _, files in os.walk(p) for f in files
                            if f.lower().endswith(_IMAGE_SUFFIXES))
            if not inside:
                raise ValueError(f"inspect: the folder {p} holds no image files ({', '.join(_IMAGE_SUFFIXES)})")
            found.extend(inside)
        elif os.path.exists(p):
            found.append(p)
        else:
            raise ValueError(f"inspect: no such file or folder: {p}")
    if not found:
        raise ValueError("inspect: no images given")
    return found


def load_image(path, input_shape, rescale="auto", model=None):
    """Read an image file into the (H, W, C) float32 array a model takes.

    Decoded by convnet.data.load_image: grey (C == 1) or RGB (C == 3), resized to
    (H, W). rescale: a factor, or "auto": 1/255 unless the model's first layer is
    a Rescaling layer (which then sees raw 0..255 values, as in training).
    """
    from .data import load_image as decode
    from .layers import Rescaling

    h, w, c = (int(d) for d in input_shape)
    if c not in (1, 3):
        raise ValueError(f"load_image: models with {c} input channels cannot read an image file "
                         "(1 or 3 channels expected)")
    x = decode(path, (h, w), "grayscale" if c == 1 else "rgb").astype(np.float32)
    if rescale == "auto":
        starts_rescaled = model is not None and model.layers and isinstance(model.layers[0], Rescaling)
        rescale = 1.0 if starts_rescaled else 1 / 255.0
    return x * np.float32(rescale)


def inspect(model_path, image_path, out_dir, max_filters=64, max_maps=16):
    """Draw a saved model's first-layer filters and its feature maps for images.

    model_path: a convnet model file (.npz) or an ONNX file (.onnx, via cn.onnx.load).
    image_path: one image file, a folder (every image in it, recursively), or a
    list of those. Writes <out_dir>/filters.png and, for one image,
    <out_dir>/feature_maps.png; for several, feature_maps_<i>_<file stem>.png each.
    Returns the paths [filters, maps...]. Images are read by load_image (grey or
    RGB, resized to the model's input). This is what `convnet inspect` runs.
    """
    from .models import load_model

    if os.fspath(model_path).lower().endswith(".onnx"):
        from . import onnx as cn_onnx  # needs the optional onnx package
        model = cn_onnx.load(model_path)
    else:
        model = load_model(model_path)
    files = image_files(image_path)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    filters = os.path.join(out_dir, "filters.png")
    plot_filters(model, filters, max_filters=max_filters)
    written = [filters]
    for i, f in enumerate(files):
        x = load_image(f, model.input_shape, model=model)
        stem = os.path.splitext(os.path.basename(f))[0]
        maps = os.path.join(out_dir, "feature_maps.png" if len(files) == 1 else f"feature_maps_{i}_{stem}.png")
        plot_feature_maps(model, x, maps, max_maps=max_maps)
        written.append(maps)
    return written


__all__ = ["plot_history", "plot_confusion_matrix", "plot_filters", "feature_maps",
           "plot_feature_maps", "plot_activations", "image_files", "load_image", "inspect"]
