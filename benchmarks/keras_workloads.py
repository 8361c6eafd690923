"""The five workloads in Keras 3 on TensorFlow (CPU, 2 threads), for comparison.

    python benchmarks/keras_workloads.py --mode train --batch 32 128
    python benchmarks/keras_workloads.py --mode infer --batch 1 32 128

Training: `model.fit` over 16 in-memory batches of the given size (one epoch,
Adam, sparse categorical cross-entropy from logits; W4 softmax + categorical
cross-entropy on one-hot labels), images/s of the whole fit call after one
warm-up fit. Inference: `model.predict_on_batch`. TensorFlow runs with 2 intra-op
threads and 1 inter-op thread. The networks have the same layers and shapes as
benchmarks/workloads.py (channels-last, as convnet). Needs `tensorflow-cpu`
(the bench extra); exits with a message (status 0) when it is not installed.
"""

import argparse
import os
import statistics
import time

import numpy as np
from common import emit, throughput
from workloads import ONE_HOT, WORKLOADS

FIT_BATCHES = 16


def resnet_small(keras, input_shape, classes):
    """W5 in Keras' functional API: the network of convnet.presets.resnet_small."""
    L = keras.layers

    def conv_bn(x, filters, k, strides, relu=True):
        x = L.BatchNormalization()(L.Conv2D(filters, k, strides=strides, padding="same", use_bias=False)(x))
        return L.ReLU()(x) if relu else x

    inputs = keras.Input(input_shape)
    x = conv_bn(inputs, 16, 3, 1)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            h = conv_bn(conv_bn(x, filters, 3, strides), filters, 3, 1, relu=False)
            shortcut = x if strides == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, strides, False)
            x = L.ReLU()(L.Add()([h, shortcut]))
    outputs = L.Dense(classes)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def build(workload, keras):
    L = keras.layers
    if workload == "W5":
        spec = WORKLOADS[workload]
        model = resnet_small(keras, spec["input_shape"], spec["classes"])
        model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model
    if workload == "W1":
        layers = [L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)]
    elif workload == "W2":
        layers = [L.Conv2D(32, 3, padding="same", activation="relu"),
                  L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, padding="same", activation="relu"),
                  L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10)]
    elif workload == "W3":
        layers = [L.Conv2D(8, 3, strides=2, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(8, 3, strides=2, activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(16, activation="relu"), L.Dense(4)]
    elif workload == "W4":
        layers = [L.Conv2D(5, 5, strides=3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.1),
                  L.Conv2D(3, 3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.2),
                  L.Flatten(), L.Dense(3, activation="softmax")]
    else:
        raise ValueError(f"unknown workload {workload!r}")
    model = keras.Sequential([keras.Input(WORKLOADS[workload]["input_shape"]), *layers])
    loss = ("categorical_crossentropy" if workload in ONE_HOT
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7), loss=loss)
    return model


def data(workload, n):
    rng = np.random.default_rng(0)
    spec = WORKLOADS[workload]
    x = rng.random((n, *spec["input_shape"]), dtype=np.float32)
    y = rng.integers(0, spec["classes"], n)
    if workload in ONE_HOT:
        y = np.eye(spec["classes"], dtype=np.float32)[y]
    return x, y


def run(mode, workloads, batches, threads=2, min_time=0.4, windows=5):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    keras.utils.set_random_seed(0)
    results = []
    for wname in workloads:
        for n in batches:
            model = build(wname, keras)
            if mode == "train":
                x, y = data(wname, n * FIT_BATCHES)
                model.fit(x, y, batch_size=n, epochs=1, verbose=0, shuffle=False)   # warm-up: traces
                rates = []
                for _ in range(max(1, windows // 2)):
                    t0 = time.perf_counter()
                    model.fit(x, y, batch_size=n, epochs=1, verbose=0, shuffle=False)
                    rates.append(len(x) / (time.perf_counter() - t0))
                rate = statistics.median(rates)
            else:
                x, _ = data(wname, n)
                rate = throughput(lambda model=model, x=x: model.predict_on_batch(x), n, min_time, windows)
            results.append({"engine": f"keras-{keras.__version__}", "workload": wname, "mode": mode,
                            "batch": n, "images_per_s": rate})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    parser.add_argument("--batch", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")      # TensorFlow's start-up chatter
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("tensorflow is not installed: skipping the Keras/TensorFlow comparison (pip install tensorflow-cpu)")
        if args.json:
            print("JSON []")
        return 0
    batches = args.batch or ([32, 128] if args.mode == "train" else [1, 32, 128])
    emit(run(args.mode, args.workload, batches, args.threads, args.min_time, args.windows), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
