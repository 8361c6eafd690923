"""The `convnet` command: train, evaluate, predict, gradcheck, inspect.

    convnet train fashion_mnist --model fmnist-cnn --epochs 10
    convnet train path/to/class_folders --model galaxy --image-size 128 128 --augment
    convnet train xray/train --test-dir xray/test --color-mode grayscale --metrics accuracy,auc \
        --early-stopping 3 --monitor val_auc --class-weight balanced \
        --augment rotation=25,zoom=0.1,shift=0.05,flip=none
    convnet evaluate runs/<run>/model.npz fashion_mnist
    convnet predict runs/<run>/model.npz shirt.png boot.png
    convnet gradcheck
    convnet profile --model cifar-vgg --batch-size 128
    convnet inspect runs/<run>/model.npz image.png [more.png | folder/ ...] --output-dir maps/

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
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from ._files import atomic_write
from .callbacks import Callback, EarlyStopping, LearningRateScheduler
from .metrics import classification_report, confusion_matrix

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


# what a bare --augment means: small rotations, shifts and zoom and a horizontal flip
# (right for photos and clothes; for X-rays say flip=none)
DEFAULT_AUGMENT = "rotation=15,shift=0.1,zoom=0.1,flip=horizontal"
_AUGMENT_KEYS = {"rotation": "rotation_range", "zoom": "zoom_range", "shear": "shear_range",
                 "channel_shift": "channel_shift_range"}
_SHIFT_KEYS = {"shift": ("width_shift_range", "height_shift_range"), "width_shift": ("width_shift_range",),
               "height_shift": ("height_shift_range",)}
_FLIPS = {"none": (False, False), "horizontal": (True, False), "vertical": (False, True),
          "both": (True, True)}


def parse_augment(spec, seed=None):
    """ImageDataGenerator keyword arguments of an --augment spec such as
    "rotation=25,zoom=0.1,shift=0.05,flip=none" (keys: rotation, zoom, shear, shift
    (both axes), width_shift, height_shift, channel_shift, brightness=LOW:HIGH,
    fill=nearest|constant|reflect|wrap, flip=none|horizontal|vertical|both; a key
    left out is off). "default" is DEFAULT_AUGMENT.

    A shift is passed on as Keras reads its width_shift_range: a fraction of the
    size (shift=0.1), a float of pixels (shift=2.5: any shift in [-2.5, 2.5]), or,
    written as an integer, whole pixels from the open interval (shift=3: -2..2)."""
    spec = DEFAULT_AUGMENT if spec in (None, "", "default") else spec
    kwargs = {"seed": seed}
    for item in spec.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value:
            raise ValueError(f"--augment: expected key=value items separated by commas, got {item!r} "
                             f"in {spec!r}")
        key = key.lower()
        try:
            if key == "flip":
                if value.lower() not in _FLIPS:
                    raise ValueError(f"--augment: flip must be one of {sorted(_FLIPS)}, got {value!r}")
                kwargs["horizontal_flip"], kwargs["vertical_flip"] = _FLIPS[value.lower()]
            elif key in _SHIFT_KEYS:
                whole_pixels = value.lstrip("+-").isdigit()
                for name in _SHIFT_KEYS[key]:
                    kwargs[name] = int(value) if whole_pixels else float(value)
            elif key == "brightness":
                low, _, high = value.partition(":")
                kwargs["brightness_range"] = (float(low), float(high))
            elif key == "fill":
                kwargs["fill_mode"] = value
            elif key in _AUGMENT_KEYS:
                kwargs[_AUGMENT_KEYS[key]] = float(value)
            else:
                raise ValueError(f"--augment: unknown key {key!r}; expected one of "
                                 f"{sorted([*_AUGMENT_KEYS, *_SHIFT_KEYS, 'flip', 'brightness', 'fill'])}")
        except ValueError as exc:
            if str(exc).startswith("--augment"):
                raise
            raise ValueError(f"--augment: {key}={value!r} is not a number") from None
    return kwargs


def balanced_class_weight(labels, num_classes):
    """{class: N / (K * count of class)}, sklearn's and the course's "balanced" weights:
    every class then contributes the same total weight to the loss."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    counts = np.bincount(labels, minlength=num_classes)
    return {int(c): float(len(labels) / (num_classes * n)) for c, n in enumerate(counts) if n}


def learning_rate(args, train):
    """--learning-rate as a number, or with --lr-schedule cosine the schedule that
    ends at the last step of the last epoch."""
    if getattr(args, "lr_schedule", None) is None:
        return args.learning_rate
    steps_per_epoch = math.ceil(len(train[0]) / args.batch_size) if isinstance(train, tuple) else len(train)
    from .schedules import CosineDecay
    return CosineDecay(args.learning_rate, decay_steps=max(args.epochs * steps_per_epoch, 1))


def training_callbacks(args):
    """The callbacks the train options ask for: --lr-decay, --early-stopping."""
    cbs = []
    if args.lr_decay:   # lr of epoch e = learning_rate * lr_decay**e
        cbs.append(LearningRateScheduler(lambda epoch, lr: lr * args.lr_decay if epoch else lr))
    if args.early_stopping is not None:
        cbs.append(EarlyStopping(monitor=args.monitor, patience=args.early_stopping,
                                 restore_best_weights=True, verbose=1 if args.verbose else 0))
    return cbs


def flip_tta_probabilities(model, source, y_prob):
    """Test-time augmentation by a horizontal flip: the mean of the model's
    probabilities for each image and its mirror image (for data whose classes do
    not change when mirrored, e.g. clothes; never for X-rays). Arrays only."""
    if not isinstance(source, tuple):
        raise ValueError("--tta-flip needs array data (a named dataset), not a folder")
    mirrored = model.predict(source[0][:, :, ::-1], batch_size=256)
    return (y_prob + mirrored) / 2


def print_report(y_true, y_prob, class_names, title=None):
    """The classification report and the confusion matrix (rows: true class,
    columns: predicted), as the course prints them."""
    if title:
        print(title)
    print(classification_report(y_true, y_prob, class_names=class_names, num_classes=len(class_names)))
    cm = confusion_matrix(y_true, y_prob, num_classes=len(class_names))
    width = max(6, *(len(n) for n in class_names)) + 1
    print("confusion matrix (rows: true class, columns: predicted)")
    print(" " * width + "".join(n[:width - 1].rjust(width) for n in class_names))
    for name, row in zip(class_names, cm):
        print(name.rjust(width) + "".join(f"{v:>{width}d}" for v in row))


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
                          rescale=True, dropout=args.dropout, seed=args.seed,
                          batchnorm=getattr(args, "batchnorm", False),
                          conv_dropout=getattr(args, "conv_dropout", 0.0))
    return model


class _RunRecord(Callback):
    """Keeps a run directory resumable: after every epoch, history.json/.csv (the
    epochs so far, earlier runs' included) and then checkpoint.npz (the model with
    its optimizer, random generators and callback state), both written atomically.
    Runs last of the callbacks given to fit, so the logs are complete."""

    def __init__(self, run_dir, history=None, epochs=None):
        super().__init__()
        self.run_dir = run_dir
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.epochs = list(epochs or [])

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.epochs.append(epoch)
        write_history(self.run_dir, self.history, self.epochs)
        self.model.save(os.path.join(self.run_dir, CHECKPOINT))


class _StopOnSigint(Callback):
    """Ctrl-C during fit: the first SIGINT asks training to stop at the end of the
    batch in progress (so the weights are those of a whole step), by raising
    KeyboardInterrupt from on_batch_end; a second one interrupts at once."""

    def __init__(self):
        super().__init__()
        self.requested = False
        self.where = None
        self._epoch = 0

    def request(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this batch (Ctrl-C again to stop at once, unsaved)",
              file=sys.stderr, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._stop_if_requested(epoch, None)

    def on_batch_end(self, batch, logs=None):
        self._stop_if_requested(self._epoch, batch)

    def _stop_if_requested(self, epoch, batch):
        if self.requested:
            self.where = (epoch, batch)
            raise KeyboardInterrupt


CHECKPOINT = "checkpoint.npz"


def _resume_args(run_dir):
    """The arguments a run was started with (RUN_DIR/args.json), to resume it."""
    path = os.path.join(run_dir, "args.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run_dir, CHECKPOINT)):
        raise ValueError(f"--resume {run_dir}: not a resumable run directory (it needs args.json and "
                         f"{CHECKPOINT}, written by convnet train after its first epoch)")
    with open(path) as f:
        saved = json.load(f)
    return argparse.Namespace(**{**saved, "resume": run_dir, "func": cmd_train})


def _previous_history(run_dir, epochs_done):
    """history.json of a run, cut to the epochs its checkpoint holds."""
    try:
        with open(os.path.join(run_dir, "history.json")) as f:
            history = json.load(f)
    except FileNotFoundError:
        return {}, []
    return {k: v[:epochs_done] for k, v in history.items()}, list(range(epochs_done))


def named_dataset_augmentation(name, seed):
    """Shifts of up to 2 pixels each way and, for Fashion-MNIST (a shirt mirrored is
    still a shirt; a mirrored digit is not a digit), horizontal flips."""
    from .data import ImageDataGenerator
    return ImageDataGenerator(width_shift_range=3, height_shift_range=3, fill_mode="constant",
                              horizontal_flip=(name == "fashion_mnist"), seed=seed)


def training_data(args):
    """(train, val, test, class names, input shape, training labels) for cmd_train.

    A named dataset: the last --validation-split of its training split validates
    (default 0.1), its test split is the test data; a bare --augment there means
    named_dataset_augmentation. A folder: --validation-split of
    its files validate (default 0.2), --test-dir (a folder with the same classes) is
    the test data. --augment applies to the training batches only."""
    from .data import ImageDataGenerator
    augment = None if args.augment is None else ImageDataGenerator(**parse_augment(args.augment, args.seed))
    if is_named_dataset(args.data):
        if args.augment == "default":       # a bare --augment: whole-pixel shifts (and flips for clothes)
            augment = named_dataset_augmentation(args.data, args.seed)
        x, y, class_names = load_arrays(args.data, "train", args.limit, args.seed)
        x_test, y_test, _ = load_arrays(args.data, "test", args.limit and max(args.limit // 5, 1), args.seed)
        split = 0.1 if args.validation_split is None else args.validation_split
        n_train = len(x) - int(len(x) * split) if split else len(x)
        if n_train < 1 or (split and n_train == len(x)):
            raise ValueError(f"--validation-split {split} leaves no training or no validation data "
                             f"from {len(x)} images")
        val = (x[n_train:], y[n_train:]) if split else None
        x, y = x[:n_train], y[:n_train]
        train = (x, y) if augment is None else augment.flow(x, y, batch_size=args.batch_size, seed=args.seed)
        return train, val, (x_test, y_test), class_names, x.shape[1:], y
    from . import presets
    size = args.image_size or presets.DEFAULT_INPUT.get(args.model, (128, 128, 3))[:2]
    split = 0.2 if args.validation_split is None else args.validation_split
    train_ds, val_ds, class_names = folder_datasets(
        args.data, size, args.color_mode, args.batch_size, split, args.seed)
    labels = train_ds.labels
    if augment is not None:
        train_ds = train_ds.map(augment)
    test = None
    if args.test_dir:
        from .data import image_dataset_from_directory
        test = image_dataset_from_directory(args.test_dir, image_size=tuple(size), color_mode=args.color_mode,
                                            batch_size=args.batch_size, shuffle=False, label_mode="int",
                                            class_names=class_names)
    input_shape = (*size, 1 if args.color_mode == "grayscale" else 3)
    return train_ds, val_ds, test, class_names, input_shape, labels


def cmd_train(args):
    import convnet as cn

    from . import losses, optimizers
    if getattr(args, "resume", None):
        args = _resume_args(args.resume)
    elif args.data is None:
        raise ValueError("train: give the data (a dataset name or a folder), or --resume RUN_DIR")
    else:
        args.resume = None
    if args.lr_decay and getattr(args, "lr_schedule", None):
        raise ValueError("train: give --lr-decay or --lr-schedule, not both")
    if args.backend:
        cn.set_backend(args.backend)
    start_load = time.perf_counter()
    train, val, test, class_names, input_shape, train_labels = training_data(args)
    load_seconds = time.perf_counter() - start_load
    metric_names = [m.strip() for m in args.metrics.split(",") if m.strip()]

    if args.resume:
        run_dir = args.resume
        model = cn.load_model(os.path.join(run_dir, CHECKPOINT))
        initial_epoch = int(model.get_state()[0]["epochs_seen"])
        earlier, earlier_epochs = _previous_history(run_dir, initial_epoch)
        print(f"resuming {run_dir} after epoch {initial_epoch}")
    else:
        model = build_model(args, input_shape, len(class_names))
        if not args.model.endswith(".npz"):
            model.compile(optimizer=optimizers.Adam(learning_rate(args, train)),
                          # the presets end in a linear Dense: the loss reads logits
                          loss=losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                    label_smoothing=args.label_smoothing),
                          metrics=metric_names)
        run_dir = make_run_dir(args.output_dir, os.path.basename(args.model).replace(".npz", ""))
        with atomic_write(os.path.join(run_dir, "args.json"), mode="w") as f:
            json.dump({k: v for k, v in vars(args).items() if k not in ("func", "resume")}, f, indent=2)
        initial_epoch, earlier, earlier_epochs = 0, {}, []
    model.class_names = class_names
    if args.verbose:
        model.summary()
    cbs = training_callbacks(args)
    class_weight = None
    if args.class_weight == "balanced":
        class_weight = balanced_class_weight(train_labels, len(class_names))
        print("class weights: " + ", ".join(f"{class_names[c]} {w:.3f}" for c, w in class_weight.items()))
    record, sigint = _RunRecord(run_dir, earlier, earlier_epochs), _StopOnSigint()
    cbs += [record, sigint]
    fit_args = dict(epochs=args.epochs, validation_data=val, verbose=args.verbose, callbacks=cbs,
                    initial_epoch=initial_epoch, class_weight=class_weight)
    start = time.perf_counter()
    in_main_thread = threading.current_thread() is threading.main_thread()   # signal.signal needs it
    previous_handler = signal.signal(signal.SIGINT, sigint.request) if in_main_thread else None
    try:
        if isinstance(train, tuple):
            model.fit(train[0], train[1], batch_size=args.batch_size, **fit_args)
        else:
            model.fit(train, **fit_args)
    except KeyboardInterrupt:
        return _interrupted(model, run_dir, sigint)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
    train_seconds = time.perf_counter() - start

    model.save(os.path.join(run_dir, "model.npz"))
    write_history(run_dir, record.history, record.epochs)
    metrics = {"data": args.data, "model": args.model, "backend": cn.get_backend(),
               "epochs_run": len(record.epochs), "batch_size": args.batch_size,
               "learning_rate": args.learning_rate, "lr_decay": args.lr_decay,
               "lr_schedule": getattr(args, "lr_schedule", None),
               "dropout": args.dropout, "seed": args.seed,
               "train_seconds": round(train_seconds, 2), "load_seconds": round(load_seconds, 2)}
    # the validation data steered training; the test data is evaluated once, here
    for split, source in (("validation", val), ("test", test)):
        if source is None:
            continue
        final = model.evaluate(source[0], source[1], batch_size=256, return_dict=True) \
            if isinstance(source, tuple) else model.evaluate(source, return_dict=True)
        metrics.update({f"{split}_{k}": v for k, v in final.items()})
    report_on = test if test is not None else val
    if report_on is not None:
        y_true, y_prob = labels_and_probabilities(model, report_on)
        if args.tta_flip:
            y_prob = flip_tta_probabilities(model, report_on, y_prob)
            split = "test" if test is not None else "validation"
            metrics[f"{split}_accuracy_flip_tta"] = float((y_prob.argmax(axis=1) == y_true).mean())
        if args.verbose:
            print_report(y_true, y_prob, class_names,
                         f"on the {'test' if test is not None else 'validation'} data:")
        save_plots(run_dir, record.history, y_true, y_prob, class_names)
    with atomic_write(os.path.join(run_dir, "metrics.json"), mode="w") as f:
        json.dump(metrics, f, indent=2)
    with atomic_write(os.path.join(run_dir, "summary.txt"), mode="w") as f:
        model.summary(print_fn=lambda s: f.write(s + "\n"))
    names = metric_names + (["accuracy_flip_tta"] if args.tta_flip else [])
    for key in [f"{split}_{name}" for split in ("validation", "test") for name in names]:
        if key in metrics:
            print(f"{key.replace('_', ' ', 1)}: {metrics[key]:.4f}")
    print(f"trained {metrics['epochs_run']} epochs in {train_seconds:.1f} s "
          f"on the {metrics['backend']} backend")
    print(f"run saved in {run_dir}")
    return 0


def _interrupted(model, run_dir, sigint):
    """After Ctrl-C: save the model as trained so far, say where, exit status 130."""
    if sigint.where is None:     # a second Ctrl-C: the step in progress may be half applied
        print(f"\ninterrupted; nothing more saved. The last complete epoch is in "
              f"{os.path.join(run_dir, CHECKPOINT)} (if one ended)", file=sys.stderr)
        return 130
    epoch, batch = sigint.where
    path = os.path.join(run_dir, "interrupted.npz")
    model.save(path)
    at = f"epoch {epoch + 1}" + (f", step {batch + 1}" if batch is not None else " (before its first step)")
    print(f"interrupted at {at}: the model as trained so far is saved in {path}")
    if os.path.isfile(os.path.join(run_dir, CHECKPOINT)):
        print(f"the last complete epoch is in {os.path.join(run_dir, CHECKPOINT)}; continue it with: "
              f"convnet train --resume {run_dir}")
    return 130


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
        result = model.evaluate(x, y, batch_size=args.batch_size, return_dict=True)
        y, y_prob = labels_and_probabilities(model, (x, y), args.batch_size)
    else:
        h, w, c = model.input_shape
        from .data import image_dataset_from_directory
        ds = image_dataset_from_directory(args.data, image_size=(h, w), shuffle=False,
                                          color_mode="grayscale" if c == 1 else "rgb",
                                          batch_size=args.batch_size,
                                          class_names=class_names)
        names = list(ds.class_names)
        result = model.evaluate(ds, return_dict=True)
        y, y_prob = labels_and_probabilities(model, ds)
    for key, value in result.items():
        print(f"{key}: {value:.4f}")
    print_report(y, y_prob, list(class_names or names))
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
    written = viz.inspect(args.model, args.images, args.output_dir)
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
    p.add_argument("data", nargs="?", default=None,
                   help="fashion_mnist, mnist, synthetic, or a folder with one sub-folder per class")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue an interrupted run from its last complete epoch (RUN_DIR/checkpoint.npz), "
                        "with the arguments it was started with (RUN_DIR/args.json; other options are ignored)")
    p.add_argument("--model", default="fmnist-cnn",
                   help="preset fmnist-cnn | cifar-vgg | galaxy | resnet-small, or a model file (.npz) to continue")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this after every epoch (e.g. 0.8)")
    p.add_argument("--lr-schedule", choices=["cosine"], default=None,
                   help="cosine: decay the learning rate along half a cosine, at every step, from "
                        "--learning-rate to 0 at the end of the last epoch (Keras' CosineDecay)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="train on one-hot targets moved toward uniform: (1 - s) onehot + s / classes")
    p.add_argument("--tta-flip", action="store_true",
                   help="also report the test accuracy of the mean prediction for each image and its "
                        "mirror image (test-time augmentation; not for X-rays)")
    p.add_argument("--conv-dropout", type=float, default=0.0,
                   help="fmnist-cnn with Dropout of this rate after each pooling")
    p.add_argument("--batchnorm", action="store_true",
                   help="fmnist-cnn with BatchNormalization after each convolution")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--color-mode", choices=["rgb", "grayscale"], default="rgb")
    p.add_argument("--validation-split", type=float, default=None,
                   help="fraction of the training data held out for validation (0 for none; "
                        "default 0.2 of a folder's files, 0.1 of a named dataset's training split)")
    p.add_argument("--test-dir", default=None,
                   help="a folder with the same class folders, evaluated once after training")
    p.add_argument("--metrics", default="accuracy",
                   help="comma-separated metrics, e.g. accuracy,auc (Keras names)")
    p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without improvement of --monitor "
                        "(the best epoch's weights are kept)")
    p.add_argument("--monitor", default="val_loss", help="what --early-stopping watches, e.g. val_auc")
    p.add_argument("--class-weight", choices=["balanced"], default=None,
                   help="balanced: weight each class by N / (classes * its count)")
    p.add_argument("--augment", nargs="?", const="default", default=None, metavar="SPEC",
                   help="augment the training images; SPEC such as rotation=25,zoom=0.1,shift=0.05,"
                        "flip=none (shift=3, an integer: whole pixels, -2..2; bare --augment: "
                        f"{DEFAULT_AUGMENT} for a folder, whole-pixel shifts (and flips for "
                        "fashion_mnist) for a named dataset)")
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
    p.add_argument("--model", default="fmnist-cnn",
                   help="preset fmnist-cnn | cifar-vgg | galaxy | resnet-small, or a model file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inference", action="store_true", help="time the forward pass only")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("inspect", help="draw first-layer filters and every conv layer's feature maps")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("images", nargs="+", help="image files, or folders of images")
    p.add_argument("--output-dir", default="inspect")
    p.set_defaults(func=cmd_inspect)

    add_export_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as exc:   # FPE: training diverged
        print(f"convnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
