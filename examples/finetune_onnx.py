"""Fine-tune an ONNX model with convnet: import it, swap its classifier, train on
another class-folder dataset, export the result to ONNX again.

    python examples/finetune_onnx.py model.onnx new_data/ --epochs 25
    python examples/finetune_onnx.py --demo /tmp/finetune      # everything made up here

The steps:
  1. cn.onnx.load(model.onnx): an ordinary convnet model, channels-last inside
     (an exported convnet model, or any ONNX CNN of the supported operators)
  2. the features: the input of its last Dense layer (the classifier); a new
     Dense(num_new_classes) on them gives cn.Model(inputs=model.inputs, outputs=...)
  3. fit on the new class folders (image_dataset_from_directory), all layers
     training, the imported ones from their ONNX weights
  4. cn.onnx.export the fine-tuned model, and check ONNX Runtime agrees with convnet

--demo first trains a small CNN on one synthetic task (bars: horizontal vs vertical)
and exports it, then fine-tunes it on another (shapes: square, cross, ring).
Needs: pip install 'convnet[onnx]'.
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

L = cn.layers
BARS = ("horizontal", "vertical")
SHAPES = ("square", "cross", "ring")


def draw(kind, size, rng):
    """One grey 0..255 picture of a bar or a shape at a random place."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(0.15, 0.25) * size
    dy, dx = np.abs(rows - cy), np.abs(cols - cx)
    shape = {"horizontal": (dy < 0.12 * r) & (dx < 1.5 * r), "vertical": (dx < 0.12 * r) & (dy < 1.5 * r),
             "square": np.maximum(dy, dx) < r, "cross": ((dy < 0.25 * r) | (dx < 0.25 * r)) & (np.maximum(dy, dx) < r),
             "ring": np.abs(np.hypot(dy, dx) - r) < 0.2 * r}[kind]
    img = shape * rng.uniform(0.6, 1.0) + 0.08 * rng.standard_normal((size, size))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_folder(directory, classes, per_class, size=32, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(os.path.join(directory, name), exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw(name, size, rng)).save(os.path.join(directory, name, f"{i:03d}.png"))
    return directory


def pretrain_and_export(directory, onnx_path, size=32, epochs=8, seed=0, verbose=0):
    """The --demo's starting point: a small CNN trained on the bars task, as ONNX."""
    train, _ = cn.data.image_dataset_from_directory(directory, image_size=(size, size), color_mode="grayscale",
                                                    batch_size=16, validation_split=0.2, subset="both",
                                                    seed=seed)
    model = cn.Sequential([
        L.Rescaling(1 / 255), L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.GlobalAveragePooling2D(), L.Dense(len(train.class_names), activation="softmax")],
        input_shape=(size, size, 1), seed=seed, name="bars_cnn")
    model.compile(cn.optimizers.Adam(learning_rate=3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, epochs=epochs, verbose=verbose)
    cn.onnx.export(model, onnx_path)
    return onnx_path


def swap_classifier(model, num_classes, seed=0):
    """A model with the imported layers up to the last Dense's input, and a new Dense
    (softmax) with num_classes outputs on those features."""
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    if not dense:
        raise ValueError(f"{model.describe()} has no Dense layer to replace")
    features = dense[-1].input
    head = L.Dense(num_classes, activation="softmax", name="new_classifier", seed=seed)
    return cn.Model(inputs=model.inputs, outputs=head(features), name="finetuned")


def finetune(onnx_path, directory, epochs=25, learning_rate=3e-3, seed=0, verbose=1):
    """Steps 1-3; returns (model, class names, accuracy before, accuracy after) on the
    validation images."""
    imported = cn.onnx.load(onnx_path)
    size = imported.input_shape
    train, val = cn.data.image_dataset_from_directory(
        directory, image_size=size[:2], color_mode="grayscale" if size[2] == 1 else "rgb",
        batch_size=16, validation_split=0.25, subset="both", seed=seed)
    model = swap_classifier(imported, len(train.class_names), seed)
    model.compile(cn.optimizers.Adam(learning_rate=learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x_val, y_val = val.as_arrays()
    before = model.evaluate(x_val, y_val, return_dict=True)["accuracy"]
    model.fit(train, epochs=epochs, validation_data=(x_val, y_val), verbose=verbose)
    after = model.evaluate(x_val, y_val, return_dict=True)["accuracy"]
    return model, train.class_names, before, after, x_val


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="the ONNX model to fine-tune")
    p.add_argument("directory", nargs="?", help="the new dataset: one sub-folder per class")
    p.add_argument("--demo", metavar="DIR", help="make the model and both datasets under DIR first")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--per-class", type=int, default=40, help="--demo: pictures per class")
    p.add_argument("--out", default=None, help="where to write the fine-tuned .onnx (default: next to the model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = p.parse_args(argv)
    if args.demo:
        make_folder(os.path.join(args.demo, "bars"), BARS, args.per_class, seed=args.seed)
        make_folder(os.path.join(args.demo, "shapes"), SHAPES, args.per_class, seed=args.seed + 1)
        args.model = pretrain_and_export(os.path.join(args.demo, "bars"), os.path.join(args.demo, "bars.onnx"),
                                         seed=args.seed, verbose=args.verbose)
        args.directory = os.path.join(args.demo, "shapes")
        print(f"pretrained on {BARS}, exported to {args.model}")
    if not args.model or not args.directory:
        p.error("give MODEL and DIRECTORY, or --demo DIR")
    model, classes, before, after, x_val = finetune(args.model, args.directory, args.epochs, args.learning_rate,
                                                    args.seed, args.verbose)
    print(f"classes {classes}: validation accuracy {before:.3f} with the new classifier untrained, "
          f"{after:.3f} after fine-tuning")
    out = args.out or os.path.splitext(args.model)[0] + "_finetuned.onnx"
    cn.onnx.export(model, out)
    import onnxruntime as ort
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x_val.astype(np.float32)})[0]
    diff = float(np.abs(got - model(x_val)).max())
    print(f"wrote {out}; ONNX Runtime vs convnet on the validation images: max difference {diff:.2e}")
    return {"before": before, "after": after, "onnx": out, "ort_diff": diff, "classes": classes}


if __name__ == "__main__":
    main()
