"""Train the Fashion-MNIST CNN (workload W1) the way a Keras course does.

    python examples/train_fashion_mnist.py                       # 5 epochs, all 60,000 images
    python examples/train_fashion_mnist.py --limit 6000 --epochs 3
    python examples/train_fashion_mnist.py --synthetic --limit 256 --epochs 1   # no data needed

Loads the data with convnet.datasets.fashion_mnist (local files, $CONVNET_DATA,
the cache, Debian's dataset-fashion-mnist package, or a download), trains with
early stopping, a best-model checkpoint and a CSV log, evaluates on the test set,
prints a classification report and writes, to --out:

    best.npz            the best model (lowest val_loss); reload with cn.load_model
    log.csv             loss and metrics per epoch
    history.png         training curves (needs matplotlib)
    confusion.png       the test-set confusion matrix (needs matplotlib)

--synthetic replaces Fashion-MNIST with generated 28x28 pictures of 10 classes
(each a fixed random texture plus noise), so the script runs anywhere in seconds.
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    import convnet as cn
except ImportError:      # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import convnet as cn

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def synthetic_fashion(n_train, n_test, seed=0):
    """Fashion-MNIST-shaped uint8 data: 10 classes, each a smooth random template
    (a blurred random picture) plus per-image noise and a random shift."""
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 28, 28))
    for _ in range(3):   # blur: average with the four neighbours, for blob-like shapes
        templates = (templates + np.roll(templates, 1, 1) + np.roll(templates, -1, 1)
                     + np.roll(templates, 1, 2) + np.roll(templates, -1, 2)) / 5
    templates = (templates - templates.min(axis=(1, 2), keepdims=True))
    templates /= templates.max(axis=(1, 2), keepdims=True)

    def make(n):
        y = rng.integers(0, 10, n)
        x = templates[y] + 0.25 * rng.standard_normal((n, 28, 28))
        shifts = rng.integers(-2, 3, size=(n, 2))
        for i, (dy, dx) in enumerate(shifts):
            x[i] = np.roll(x[i], (dy, dx), axis=(0, 1))
        return (np.clip(x, 0, 1) * 255).astype(np.uint8), y.astype(np.uint8)
    return make(n_train), make(n_test)


def build_model(seed=0):
    """W1 from docs/design.md, with a Rescaling layer so the model takes raw 0..255 pixels."""
    L = cn.layers
    model = cn.Sequential([
        L.Rescaling(1 / 255),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(10),
    ], input_shape=(28, 28, 1), seed=seed, name="fmnist_cnn")
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first LIMIT training images (and LIMIT/6 test images)")
    p.add_argument("--synthetic", action="store_true", help="generated data instead of Fashion-MNIST")
    p.add_argument("--data", default=None, help="folder holding the Fashion-MNIST .gz files")
    p.add_argument("--out", default="runs/fashion_mnist", help="folder for model, log and plots")
    p.add_argument("--backend", default=None, help="numpy, numba or cupy (default: numba if present)")
    p.add_argument("--patience", type=int, default=3, help="early stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        cn.set_backend(args.backend)
    if args.synthetic:
        n = args.limit or 6000
        (x_train, y_train), (x_test, y_test) = synthetic_fashion(n, max(n // 6, 20), args.seed)
    else:
        from convnet.datasets import fashion_mnist
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(path=args.data)
        if args.limit:
            x_train, y_train = x_train[:args.limit], y_train[:args.limit]
            x_test, y_test = x_test[:max(args.limit // 6, 20)], y_test[:max(args.limit // 6, 20)]
    # (N, 28, 28) uint8 -> (N, 28, 28, 1): a view; the model's Rescaling layer scales each batch
    x_train, x_test = x_train[..., None], x_test[..., None]
    print(f"backend {cn.get_backend()}: {len(x_train)} training and {len(x_test)} test images")

    model = build_model(args.seed)
    model.summary()
    os.makedirs(args.out, exist_ok=True)
    best_path = os.path.join(args.out, "best.npz")
    callbacks = [
        cn.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                   restore_best_weights=True),
        cn.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True),
        cn.callbacks.CSVLogger(os.path.join(args.out, "log.csv")),
    ]
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=0.1, callbacks=callbacks, verbose=args.verbose)
    seconds = time.perf_counter() - start
    print(f"trained {len(history.epoch)} epochs in {seconds:.1f} s")

    test = model.evaluate(x_test, y_test, batch_size=256, return_dict=True)
    print(f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    probs = model.predict(x_test, batch_size=256)
    report = cn.metrics.classification_report(y_test, probs, class_names=CLASS_NAMES, num_classes=10)
    print(report)

    pictures = {}
    try:
        from convnet import viz
        pictures["history"] = os.path.join(args.out, "history.png")
        viz.plot_history(history, pictures["history"], title="Fashion-MNIST CNN")
        pictures["confusion"] = os.path.join(args.out, "confusion.png")
        viz.plot_confusion_matrix(cn.metrics.confusion_matrix(y_test, probs, 10),
                                  class_names=CLASS_NAMES, path=pictures["confusion"])
        print("wrote", ", ".join(pictures.values()))
    except ImportError as exc:
        pictures = {}
        print(f"(no plots: {exc})")
    return {"history": history.history, "test": test, "report": report,
            "best_model": best_path, "pictures": pictures, "model": model}


if __name__ == "__main__":
    main()
