"""Look inside a CNN: its first-layer filters and the feature maps of every conv layer.

    python examples/feature_maps.py                         # trains a small CNN on shapes first
    python examples/feature_maps.py --model runs/fashion_mnist/best.npz --image shirt.png

Without --model, a small CNN is trained for a few epochs on generated pictures of
bars, crosses and rings (convnet.synthetic), so you can watch what its filters
learned to respond to: edges of a given direction, line ends, curves. Without
--image, one picture of each class is shown. Writes to --out:

    filters.png                  the first Conv2D layer's kernels
    feature_maps_<name>.png      every conv layer's output for that picture
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

from convnet import viz
from convnet.synthetic import CLASS_NAMES, make_shapes


def train_shapes_model(n, epochs, seed=0, verbose=1):
    x, y = make_shapes(n, size=28, seed=seed)
    L = cn.layers
    model = cn.Sequential([
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(3),
    ], input_shape=(28, 28, 1), seed=seed, name="shapes_cnn")
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=3e-3), metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=verbose, validation_split=0.2)
    return model, x, y


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a saved model (.npz); default: train one on synthetic shapes")
    p.add_argument("--image", help="an image file; default: one generated picture per class")
    p.add_argument("--limit", type=int, default=1200, help="training pictures for the shapes model")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-maps", type=int, default=16, help="feature maps drawn per layer")
    p.add_argument("--out", default="runs/feature_maps")
    p.add_argument("--backend", default=None, help="numpy, numba or cupy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        cn.set_backend(args.backend)
    os.makedirs(args.out, exist_ok=True)
    if args.model:
        model = cn.load_model(args.model)
        images = {}
    else:
        model, x, y = train_shapes_model(args.limit, args.epochs, args.seed, args.verbose)
        images = {CLASS_NAMES[c]: x[int(np.argmax(y == c))] for c in range(len(CLASS_NAMES))}
    if args.image:
        images = {os.path.splitext(os.path.basename(args.image))[0]:
                  viz.load_image(args.image, model.input_shape, model=model)}
    if not images:
        raise SystemExit("feature_maps.py: give --image when using --model")

    written = {"filters": os.path.join(args.out, "filters.png")}
    viz.plot_filters(model, written["filters"])
    for name, image in images.items():
        probs = model.predict(image[None])[0]
        maps = viz.feature_maps(model, image)
        print(f"{name}: predicted class {int(probs.argmax())} (p = {probs.max():.3f})")
        for layer_name, m in maps.items():
            active = (m > 0).mean()
            print(f"  {layer_name}: maps {m.shape}, {active:.0%} of the activations are > 0, "
                  f"strongest channel {int(m.max(axis=(0, 1)).argmax())}")
        path = os.path.join(args.out, f"feature_maps_{name}.png")
        viz.plot_feature_maps(model, image, path, max_maps=args.max_maps)
        written[name] = path
    print("wrote", ", ".join(written.values()))
    return {"model": model, "pictures": written}


if __name__ == "__main__":
    main()
