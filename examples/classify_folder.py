"""Classify a folder of images sorted into class sub-folders (galaxies, chest X-rays...).

    data/
        elliptical/  a.png b.jpg ...
        spiral/      ...
    python examples/classify_folder.py data --image-size 64 --epochs 30

The course's workflow, step by step:
  1. image_dataset_from_directory: a training and a validation subset (80/20, seeded)
  2. augmentation on the training batches only: flips, small rotations, zoom, shift
  3. a small CNN with a Rescaling(1/255) input layer (it takes raw 0..255 pixels)
  4. fit with EarlyStopping on val_auc (restoring the best weights) and a checkpoint
  5. AUC, a classification report and a confusion matrix on the validation images

No pictures at hand?  --make-demo draws a small folder of synthetic "galaxies"
(round blobs, elongated blobs and rings, randomly placed, sized and tinted) first:

    python examples/classify_folder.py /tmp/galaxies --make-demo --epochs 20

Writes to --out: best.npz, log.csv, history.png, confusion.png.
"""

import argparse
import os
import sys

import numpy as np

try:
    import convnet as cn
except ImportError:      # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import convnet as cn

DEMO_CLASSES = ("elongated", "ring", "round")


def make_demo_folder(directory, per_class=40, size=48, seed=0):
    """Write per_class PNG pictures for each of DEMO_CLASSES into directory/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    for name in DEMO_CLASSES:
        folder = os.path.join(directory, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            cy, cx = rng.uniform(0.35, 0.65, 2) * size
            r = rng.uniform(0.12, 0.22) * size
            angle = rng.uniform(0, np.pi)
            dy, dx = rows - cy, cols - cx
            u = dx * np.cos(angle) + dy * np.sin(angle)       # along the major axis
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            if name == "round":
                light = np.exp(-(u ** 2 + v ** 2) / (2 * (0.6 * r) ** 2))
            elif name == "elongated":
                light = np.exp(-(u ** 2 / (2 * r ** 2) + v ** 2 / (2 * (0.25 * r) ** 2)))
            else:
                light = np.exp(-((np.hypot(u, v) - r) ** 2) / (2 * (0.15 * r) ** 2))
            tint = rng.uniform(0.6, 1.0, 3)
            img = light[:, :, None] * tint + 0.08 * rng.standard_normal((size, size, 3))
            pixels = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{name}_{i:03d}.png"))
    return directory


def build_model(input_shape, num_classes, seed=0):
    L = cn.layers
    model = cn.Sequential([
        L.Rescaling(1 / 255),
        L.Conv2D(8, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(32, activation="relu"),
        L.Dropout(0.2),
        L.Dense(num_classes),
    ], input_shape=input_shape, seed=seed, name="folder_cnn")
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy", "auc"])
    return model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", help="folder with one sub-folder per class")
    p.add_argument("--make-demo", action="store_true",
                   help="first draw a synthetic 3-class folder of pictures into DIRECTORY")
    p.add_argument("--demo-per-class", type=int, default=40)
    p.add_argument("--image-size", type=int, default=32, help="images are resized to SIZE x SIZE")
    p.add_argument("--grayscale", action="store_true", help="read images as one grey channel")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    p.add_argument("--validation-split", type=float, default=0.2)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--out", default="runs/folder", help="folder for model, log and plots")
    p.add_argument("--backend", default=None, help="numpy, numba or cupy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        cn.set_backend(args.backend)
    if args.make_demo:
        make_demo_folder(args.directory, args.demo_per_class, seed=args.seed)

    # 1. the two subsets, split the same way thanks to the seed
    size = (args.image_size, args.image_size)
    train_ds, val_ds = cn.data.image_dataset_from_directory(
        args.directory, image_size=size, batch_size=args.batch_size,
        color_mode="grayscale" if args.grayscale else "rgb",
        validation_split=args.validation_split, subset="both", seed=args.seed)
    class_names = train_ds.class_names
    print(f"{train_ds.num_samples} training and {val_ds.num_samples} validation images, "
          f"classes {class_names}")

    # 2. augmentation of the training batches only (pixels stay 0..255: the model rescales)
    if not args.no_augment:
        augment = cn.data.ImageDataGenerator(horizontal_flip=True, vertical_flip=True,
                                             rotation_range=20, zoom_range=0.1,
                                             width_shift_range=0.1, height_shift_range=0.1,
                                             fill_mode="constant", seed=args.seed)
        train_ds = train_ds.map(augment)
    x_val, y_val = val_ds.as_arrays()       # decoded once, reused every epoch

    # 3. and 4. the model, trained with early stopping on the validation AUC
    model = build_model((*size, 1 if args.grayscale else 3), len(class_names), args.seed)
    model.summary()
    os.makedirs(args.out, exist_ok=True)
    best_path = os.path.join(args.out, "best.npz")
    stop = cn.callbacks.EarlyStopping(monitor="val_auc", patience=args.patience,
                                      restore_best_weights=True)
    history = model.fit(train_ds, epochs=args.epochs, validation_data=(x_val, y_val),
                        verbose=args.verbose, callbacks=[
                            stop,
                            cn.callbacks.ModelCheckpoint(best_path, monitor="val_auc",
                                                         save_best_only=True),
                            cn.callbacks.CSVLogger(os.path.join(args.out, "log.csv"))])
    if stop.stopped_epoch is not None:
        print(f"early stopping after epoch {stop.stopped_epoch + 1}; best val_auc "
              f"{stop.best:.4f} at epoch {stop.best_epoch + 1}")

    # 5. how good is it, class by class?
    probs = model.predict(x_val)
    auc = cn.metrics.roc_auc(y_val, probs)
    print(f"validation AUC (one-vs-rest, macro): {auc:.4f}")
    report = cn.metrics.classification_report(y_val, probs, class_names=class_names)
    print(report)
    cm = cn.metrics.confusion_matrix(y_val, probs, len(class_names))
    pictures = {}
    try:
        from convnet import viz
        pictures = {"history": os.path.join(args.out, "history.png"),
                    "confusion": os.path.join(args.out, "confusion.png")}
        viz.plot_history(history, pictures["history"])
        viz.plot_confusion_matrix(cm, class_names=class_names, path=pictures["confusion"])
        print("wrote", ", ".join(pictures.values()))
    except ImportError as exc:
        pictures = {}
        print(f"(no plots: {exc})")
    return {"history": history.history, "auc": auc, "report": report, "confusion": cm,
            "class_names": class_names, "best_model": best_path, "pictures": pictures,
            "model": model}


if __name__ == "__main__":
    main()
