"""The `convnet` command: train, evaluate, predict, gradcheck, inspect.

    convnet train fashion_mnist --model fmnist-cnn --epochs 10
    convnet train path/to/class_folders --model galaxy --image-size 128 128 --augment
    convnet evaluate runs/<run>/model.npz fashion_mnist
    convnet predict runs/<run>/model.npz shirt.png boot.png
    convnet gradcheck
    convnet profile --model cifar-vgg --batch-size 128
    convnet inspect runs/<run>/model.npz image.png --output-dir maps/

Every training run writes a run directory with the model file (model.npz), the
history (history.json, history.csv), the final metrics (metrics.json), the model
summary, and, where matplotlib is installed, the training curves and confusion
matrix as PNG files.
"""

import argparse
import csv
import datetime
import io
import json
import os
import sys
import time

import numpy as np

from .callbacks import LearningRateScheduler
from .metrics import classification_report

NAMED_DATASETS = ("fashion_mnist", "mnist", "synthetic")


# ----------------------------------------------------------------------- data
def _named(name):
    return name.replace("-", "_").lower()


def load_arrays(source, split, limit=None, seed=0):
    """(x uint8 (N, 28, 28, 1), y int (N,), class names) of a named dataset split."""
    name = _named(source)
    if name == "synthetic":
        from .synthetic import CLASS_NAMES, make_shapes
        n = limit or (3000 if split == "train" else 600)
        x, y = make_shapes(n, size=28, seed=seed if split == "train" else seed + 1)
        return (x * 255).astype(np.uint8), y, list(CLASS_NAMES)
    import importlib
    module = importlib.import_module(f"convnet.datasets.{name}")
    (x_train, y_train), (x_test, y_test) = module.load_data()
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    if limit:
        x, y = x[:limit], y[:limit]
    class_names = list(getattr(module, "CLASS_NAMES", [str(i) for i in range(10)]))
    return x[..., None], y.astype(np.int64), class_names


def is_named_dataset(source):
    return _named(source) in NAMED_DATASETS and not os.path.isdir(source)


def folder_datasets(directory, image_size, color_mode, batch_size, validation_split, seed):
    """(train_ds, val_ds or None, class names) from a folder of class sub-folders."""
    from .data import image_dataset_from_directory
    kwargs = dict(image_size=tuple(image_size), color_mode=color_mode, batch_size=batch_size,
                  seed=seed, label_mode="int")
    if validation_split:
        train, val = image_dataset_from_directory(directory, validation_split=validation_split,
                                                  subset="both", **kwargs)
    else:
        train, val = image_dataset_from_directory(directory, **kwargs), None
    return train, val, list(train.class_names)


# ---------------------------------------------------------------------- train
def make_run_dir(output_dir, label):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(output_dir, f"{stamp}-{label}")
    suffix = 1
    while os.path.exists(path):
        path = os.path.join(output_dir, f"{stamp}-{label}-{suffix}")
        suffix += 1
    os.makedirs(path)
    return path


def write_history(run_dir, history, epochs=None):
    """history.json and history.csv; the CSV is the one CSVLogger writes (0-based
    epochs, columns sorted), so both files of a run read the same way.
    epochs: the epoch numbers of the rows (History.epoch; default 0, 1, ...)."""
    from ._files import atomic_write
    from .callbacks import csv_header, csv_row

    with atomic_write(os.path.join(run_dir, "history.json")) as f:
        f.write(json.dumps(history, indent=2).encode())
    keys = sorted(history)
    count = len(history[keys[0]]) if keys else 0
    epochs = list(range(count)) if epochs is None else list(epochs)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(csv_header(keys))
    for i, epoch in enumerate(epochs[:count]):
        writer.writerow(csv_row(epoch, {k: history[k][i] for k in keys}, keys))
    with atomic_write(os.path.join(run_dir, "history.csv")) as f:
        f.write(text.getvalue().encode())


def labels_and_probabilities(model, source, batch_size=256):
    """(y_true (N,), y_prob (N, K)) from arrays (x, y) or a batch dataset, in one pass:
    a dataset may reshuffle on every pass, so its labels must come from the same
    pass as the predictions."""
    if isinstance(source, tuple):
        return source[1], model.predict(source[0], batch_size=batch_size)
    labels, probs = [], []
    for bx, by in source:
        labels.append(by)
        probs.append(model.predict(bx, batch_size=len(bx)))
    return np.concatenate(labels), np.concatenate(probs)


def save_plots(run_dir, history, y_true, y_prob, class_names):
    """Training curves and confusion matrix as PNG; skipped without matplotlib."""
    try:
        from . import viz
        viz.plot_history(history, path=os.path.join(run_dir, "curves.png"))
        viz.plot_confusion_matrix(y_true, y_prob, class_names=class_names,
                                  path=os.path.join(run_dir, "confusion_matrix.png"))
        return True
    except ImportError as exc:
        print(f"(plots skipped: {exc})", file=sys.stderr)
        return False


def build_model(args, input_shape, num_classes):
    import convnet as cn

    from . import presets
    if args.model.endswith(".npz"):
        model = cn.load_model(args.model)
        if tuple(model.input_shape) != tuple(input_shape):
            raise ValueError(f"model {args.model} takes inputs {model.input_shape}, "
                             f"but the data has {input_shape}")
        if model.output_shape[-1] != num_classes:
            raise ValueError(f"model {args.model} has {model.output_shape[-1]} outputs, "
                             f"but the data has {num_classes} classes")
        return model
    model = presets.build(args.model, input_shape=input_shape, num_classes=num_classes,
                          rescale=True, dropout=args.dropout, seed=args.seed)
    return model


def cmd_train(args):
    import convnet as cn

    from . import optimizers
    if args.backend:
        cn.set_backend(args.backend)
    start_load = time.perf_counter()
    if is_named_dataset(args.data):
        x, y, class_names = load_arrays(args.data, "train", args.limit, args.seed)
        x_val, y_val, _ = load_arrays(args.data, "test", args.limit and max(args.limit // 5, 1), args.seed)
        input_shape = x.shape[1:]
        train, val = (x, y), (x_val, y_val)
    else:
        from . import presets
        size = args.image_size or presets.DEFAULT_INPUT.get(args.model, (128, 128, 3))[:2]
        train_ds, val_ds, class_names = folder_datasets(
            args.data, size, args.color_mode, args.batch_size, args.validation_split, args.seed)
        if args.augment:
            from .data import ImageDataGenerator
            gen = ImageDataGenerator(rotation_range=15, width_shift_range=0.1,
                                     height_shift_range=0.1, zoom_range=0.1,
                                     horizontal_flip=True, seed=args.seed)
            train_ds = train_ds.map(gen)
        input_shape = (*size, 1 if args.color_mode == "grayscale" else 3)
        train, val = train_ds, val_ds
    load_seconds = time.perf_counter() - start_load

    model = build_model(args, input_shape, len(class_names))
    model.class_names = class_names
    if not args.model.endswith(".npz"):
        model.compile(optimizer=optimizers.Adam(args.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary()
    run_dir = make_run_dir(args.output_dir, os.path.basename(args.model).replace(".npz", ""))
    cbs = []
    if args.lr_decay:   # lr of epoch e = learning_rate * lr_decay**e
        cbs.append(LearningRateScheduler(lambda epoch, lr: lr * args.lr_decay if epoch else lr))
    start = time.perf_counter()
    if isinstance(train, tuple):
        history = model.fit(train[0], train[1], epochs=args.epochs, batch_size=args.batch_size,
                            validation_data=val, verbose=args.verbose, callbacks=cbs)
    else:
        history = model.fit(train, epochs=args.epochs, validation_data=val,
                            verbose=args.verbose, callbacks=cbs)
    train_seconds = time.perf_counter() - start

    model.save(os.path.join(run_dir, "model.npz"))
    write_history(run_dir, history.history, history.epoch)
    metrics = {"data": args.data, "model": args.model, "backend": cn.get_backend(),
               "epochs_run": len(history.epoch), "batch_size": args.batch_size,
               "learning_rate": args.learning_rate, "lr_decay": args.lr_decay,
               "dropout": args.dropout, "seed": args.seed,
               "train_seconds": round(train_seconds, 2), "load_seconds": round(load_seconds, 2)}
    if val is not None:
        final = model.evaluate(val[0], val[1], batch_size=256) if isinstance(val, tuple) else model.evaluate(val)
        y_true, y_prob = labels_and_probabilities(model, val)
        split = "test" if isinstance(val, tuple) else "validation"
        metrics.update({f"{split}_{k}": v for k, v in final.items()})
        save_plots(run_dir, history.history, y_true, y_prob, class_names)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(run_dir, "summary.txt"), "w") as f:
        model.summary(print_fn=lambda s: f.write(s + "\n"))
    for key in ("test_accuracy", "validation_accuracy"):
        if key in metrics:
            print(f"{key.replace('_', ' ')}: {metrics[key]:.4f}")
    print(f"trained {metrics['epochs_run']} epochs in {train_seconds:.1f} s "
          f"on the {metrics['backend']} backend")
    print(f"run saved in {run_dir}")
    return 0


# ------------------------------------------------------------ evaluate/predict
def cmd_evaluate(args):
    import convnet as cn
    if args.backend:
        cn.set_backend(args.backend)
    model = cn.load_model(args.model)
    if not model.compiled:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    class_names = getattr(model, "class_names", None)
    if is_named_dataset(args.data):
        x, y, names = load_arrays(args.data, "test", args.limit)
        result = model.evaluate(x, y, batch_size=args.batch_size)
        y, y_prob = labels_and_probabilities(model, (x, y), args.batch_size)
    else:
        h, w, c = model.input_shape
        from .data import image_dataset_from_directory
        ds = image_dataset_from_directory(args.data, image_size=(h, w), shuffle=False,
                                          color_mode="grayscale" if c == 1 else "rgb",
                                          batch_size=args.batch_size,
                                          class_names=class_names)
        names = list(ds.class_names)
        result = model.evaluate(ds)
        y, y_prob = labels_and_probabilities(model, ds)
    for key, value in result.items():
        print(f"{key}: {value:.4f}")
    print(classification_report(y, y_prob, class_names=class_names or names))
    return 0


def cmd_predict(args):
    import convnet as cn

    from .data import load_image
    model = cn.load_model(args.model)
    h, w, c = model.input_shape
    names = getattr(model, "class_names", None)
    images = np.stack([load_image(p, (h, w), "grayscale" if c == 1 else "rgb") for p in args.images])
    probs = model.predict(images.astype(np.float32))
    for path, p in zip(args.images, probs):
        order = np.argsort(p)[::-1][:args.top]
        text = ", ".join(f"{names[k] if names else k} {p[k]:.3f}" for k in order)
        print(f"{path}: {text}")
    return 0


# --------------------------------------------------------- gradcheck/inspect
def cmd_gradcheck(args):
    import convnet as cn
    from convnet import layers as L
    if args.backend:
        cn.set_backend(args.backend)
    rng = np.random.default_rng(args.seed)
    cases = [
        ("Conv2D", L.Conv2D(3, 3, strides=2, padding="same", activation="relu"), (2, 7, 6, 2)),
        ("MaxPooling2D", L.MaxPooling2D(3, strides=2, padding="same"), (2, 7, 6, 2)),
        ("AveragePooling2D", L.AveragePooling2D(2, padding="valid"), (2, 6, 6, 2)),
        ("GlobalAveragePooling2D", L.GlobalAveragePooling2D(), (2, 5, 4, 3)),
        ("Dense", L.Dense(4, activation="tanh"), (3, 5)),
        ("Flatten", L.Flatten(), (2, 3, 3, 2)),
        ("Dropout", L.Dropout(0.3, seed=0), (3, 6)),
        ("BatchNormalization", L.BatchNormalization(), (4, 3, 3, 2)),
        ("Activation(sigmoid)", L.Activation("sigmoid"), (3, 4)),
        ("Activation(softmax)", L.Activation("softmax"), (3, 4)),
    ]
    failed = 0
    for label, layer, shape in cases:
        x = rng.standard_normal(shape)
        if label == "MaxPooling2D":
            x = rng.permutation(x.size).reshape(shape) / 5.0   # no ties
        report = cn.gradcheck(layer, x)
        failed += not report.passed
        print(report if args.verbose else f"{label:<24} {'PASS' if report.passed else 'FAIL'}  "
              f"max relative error {report.max_error:.2e}")
    for loss in (cn.losses.SparseCategoricalCrossentropy(from_logits=True),):
        report = cn.gradcheck(loss, rng.standard_normal((4, 5)), rng.integers(0, 5, 4))
        failed += not report.passed
        print(f"{type(loss).__name__:<24} {'PASS' if report.passed else 'FAIL'}  "
              f"max relative error {report.max_error:.2e}")
    print(f"backend {cn.get_backend()}: {'all passed' if not failed else f'{failed} FAILED'}")
    return 1 if failed else 0


def cmd_profile(args):
    import convnet as cn

    from . import presets
    from .profile import profile_model
    if args.backend:
        cn.set_backend(args.backend)
    if args.model.endswith(".npz"):
        model = cn.load_model(args.model)
    else:
        model = presets.build(args.model, seed=args.seed)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.batch_size, *model.input_shape), dtype=np.float32)
    y = None if args.inference else rng.integers(0, model.output_shape[-1], args.batch_size)
    print(f"{'inference' if args.inference else 'training step'} of {model.name}, batch "
          f"{args.batch_size}, backend {cn.get_backend()}")
    profile_model(model, x, y, repeats=args.repeats)
    return 0


def cmd_inspect(args):
    from . import viz
    written = viz.inspect(args.model, args.image, args.output_dir)
    for path in written or []:
        print(path)
    return 0


def cmd_export(args):
    """convnet export model.npz model.onnx: the model file as an ONNX graph."""
    import convnet as cn
    try:
        from . import onnx as cn_onnx
    except ImportError as exc:
        raise RuntimeError(str(exc)) from exc
    model = cn.load_model(args.model, compile=False)
    cn_onnx.export(model, args.output, opset=args.opset)
    print(f"wrote {args.output} (input {model.input_shape}, channels-last as in convnet)")
    return 0


def add_export_parser(sub):
    p = sub.add_parser("export", help="write a model file as ONNX (needs pip install 'convnet[onnx]')")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)


# ---------------------------------------------------------------------- main
def build_parser():
    parser = argparse.ArgumentParser(prog="convnet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset or a folder of class folders")
    p.add_argument("data", help="fashion_mnist, mnist, synthetic, or a folder with one sub-folder per class")
    p.add_argument("--model", default="fmnist-cnn",
                   help="preset fmnist-cnn | cifar-vgg | galaxy | resnet-small, or a model file (.npz) to continue")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this after every epoch (e.g. 0.8)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--color-mode", choices=["rgb", "grayscale"], default="rgb")
    p.add_argument("--validation-split", type=float, default=0.2,
                   help="for folders: fraction held out for validation (0 for none)")
    p.add_argument("--augment", action="store_true", help="random flips, shifts, rotations, zoom")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy and a classification report of a model file")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("data", help="fashion_mnist, mnist, synthetic, or a folder of class folders")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="class and probability for each image")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    p.add_argument("--top", type=int, default=1, help="how many classes to show per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("gradcheck", help="finite-difference check of every layer type")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print the per-tensor table")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("profile", help="time and GFLOP/s of each layer's forward and backward pass")
    p.add_argument("--model", default="fmnist-cnn", help="preset fmnist-cnn | cifar-vgg | galaxy | resnet-small, or a model file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inference", action="store_true", help="time the forward pass only")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("inspect", help="draw first-layer filters and every conv layer's feature maps")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("image", help="an image file")
    p.add_argument("--output-dir", default="inspect")
    p.set_defaults(func=cmd_inspect)

    add_export_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"convnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
