"""The course's galaxy project, written for convnet in the course's Keras style.

    python examples/course/galaxies.py                      # generated stand-in galaxies
    python examples/course/galaxies.py --data galaxydata.npz  # the course's arrays

The data are arrays, as the course's load_galaxy_data() returns them: images
(N, 128, 128, 3) and one-hot labels (N, 4) for the classes "Normal", "Ringed",
"Merger" and "Other" (an .npz with arrays "data" and "labels"). They are split
80/20 with the classes stratified, fed by ImageDataGenerator(rescale=1/255).flow,
and classified by the course's small CNN (two 3x3 stride-2 convolutions with
pooling, Dense 16, softmax). Then the feature maps of every conv layer are drawn
for a few validation images through a feature extractor built the Keras way:

    feature_extractor = Model(inputs=model.inputs,
                              outputs=[layer.output for layer in model.layers if ...Conv2D])

Only the imports differ from the Keras project (README.md, "Coming from Keras");
sklearn's train_test_split is replaced by the few lines of `stratified_split`.
Prints the per-epoch logs, the final validation loss, categorical accuracy and
AUC, and writes --out/activations_<i>.png.
"""

import argparse
import os
import sys

import numpy as np

try:
    import convnet as keras
except ImportError:      # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    import convnet as keras

from convnet import layers
from convnet.data import ImageDataGenerator
from convnet.synthetic import make_galaxies

CLASS_NAMES = ("Normal", "Ringed", "Merger", "Other")


def load_galaxy_data(path=None, n=1400, size=128, seed=0):
    """(input_data (N, H, W, 3), labels (N, 4) one-hot) from the course's .npz
    ("data" and "labels"), or generated stand-ins (convnet.synthetic.make_galaxies,
    as 0..255 pixels like the course's file) when path is None."""
    if path is None:
        x, y = make_galaxies(n, size=size, seed=seed)
        return (x * 255).round().astype(np.uint8), y
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        data_key = "data" if "data" in keys else "input_data"
        if data_key not in keys or "labels" not in keys:
            raise ValueError(f"galaxies: {path} must hold arrays 'data' (N, H, W, 3) and 'labels' (N, 4); "
                             f"it has {sorted(keys)}")
        x, y = f[data_key], f["labels"]
    if x.ndim != 4 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"galaxies: expected data (N, H, W, 3) and labels (N, K), got {x.shape} and {y.shape}")
    return x, y


def stratified_split(x, y, test_size=0.2, seed=222):
    """train_test_split(x, y, test_size=..., stratify=y, shuffle=True): each class
    split in the same proportion, rows shuffled."""
    rng = np.random.default_rng(seed)
    classes = y.argmax(axis=1)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(classes):
        rows = rng.permutation(np.flatnonzero(classes == c))
        test[rows[:int(round(len(rows) * test_size))]] = True
    train_rows, test_rows = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
    return x[train_rows], x[test_rows], y[train_rows], y[test_rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the course's galaxydata.npz (default: stand-in galaxies)")
    parser.add_argument("--n", type=int, default=1400, help="stand-in images to generate")
    parser.add_argument("--size", type=int, default=128, help="stand-in image size")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--show", type=int, default=3, help="validation images to draw feature maps of")
    parser.add_argument("--out", default="galaxies_out")
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    # ---- the project's code from here on, imports aside ----
    input_data, labels = load_galaxy_data(args.data, args.n, args.size, args.seed)
    print(input_data.shape, labels.shape)
    x_train, x_valid, y_train, y_valid = stratified_split(input_data, labels, test_size=0.20, seed=222)
    data_generator = ImageDataGenerator(rescale=1.0 / 255)
    BATCH_SIZE = args.batch_size
    training_iterator = data_generator.flow(x_train, y_train, batch_size=BATCH_SIZE, seed=args.seed)
    validation_iterator = data_generator.flow(x_valid, y_valid, batch_size=BATCH_SIZE, shuffle=False)

    model = keras.Sequential(seed=args.seed)
    model.add(keras.Input(shape=input_data.shape[1:]))
    model.add(layers.Conv2D(8, 3, strides=2, activation="relu"))
    model.add(layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)))
    model.add(layers.Conv2D(8, 3, strides=2, activation="relu"))
    model.add(layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(16, activation="relu"))
    model.add(layers.Dense(labels.shape[1], activation="softmax"))
    if args.verbose:
        model.summary()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(), keras.metrics.AUC()])
    history = model.fit(training_iterator, steps_per_epoch=len(x_train) / BATCH_SIZE, epochs=args.epochs,
                        validation_data=validation_iterator, validation_steps=len(x_valid) / BATCH_SIZE,
                        verbose=args.verbose)

    # the course's visualize_activations: one feature extractor for every conv layer
    conv_layers = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    feature_extractor = keras.Model(inputs=model.inputs, outputs=[layer.output for layer in conv_layers])
    sample_x, sample_y = validation_iterator[0]
    sample_x, sample_y = sample_x[:args.show], sample_y[:args.show]
    feature_maps = feature_extractor(sample_x)
    # ---- end of the project's code ----

    loss, accuracy, auc = model.evaluate(validation_iterator)
    print(f"validation loss {loss:.4f} - categorical_accuracy {accuracy:.4f} - auc {auc:.4f} "
          f"({len(x_valid)} images; chance accuracy 0.25)")
    for layer, maps in zip(conv_layers, feature_maps):
        print(f"feature maps of {layer.name}: {maps.shape} (images, height, width, filters)")
    pictures = []
    try:
        from convnet import viz
        pictures = viz.plot_activations(model, sample_x, labels=sample_y, class_names=CLASS_NAMES,
                                        path=os.path.join(args.out, "activations_{i}.png"))
        print("feature-map pictures: " + ", ".join(pictures))
    except ImportError as exc:
        print(f"(plots skipped: {exc})")
    return {"history": history.history, "validation": {"loss": loss, "categorical_accuracy": accuracy,
                                                       "auc": auc},
            "feature_maps": [m.shape for m in feature_maps], "pictures": pictures,
            "split": (len(x_train), len(x_valid))}


if __name__ == "__main__":
    main()
