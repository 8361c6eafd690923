"""Bounded memory: predict and evaluate on 60,000 images hold one batch of
activations at a time, and training does not grow from epoch to epoch
(docs/reliability.md, "Memory").

Each measurement runs in a fresh subprocess and reads the kernel's counters
(/proc/self/status): VmHWM, the peak resident set, is reset to the current RSS
through /proc/self/clear_refs just before the call measured, so the growth is
that call's own. Bytes are counted, nothing is timed.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import CPU_BACKENDS

SCRIPT = textwrap.dedent("""
    import gc, json, sys
    import numpy as np
    import convnet as cn
    from convnet import layers as L
    from convnet.callbacks import Callback

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    backend, mode = sys.argv[1], sys.argv[2]
    cn.set_backend(backend)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60000, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 10, 60000)
    model = cn.Sequential([L.Rescaling(1 / 255), L.Conv2D(8, 3, padding="same", activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dense(10)], input_shape=(8, 8, 1), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    bs = 256
    out = {"batch_activation_bytes": bs * 4 * sum(int(np.prod(layer.output.shape[1:])) for layer in model.layers)}
    if mode == "epochs":
        class Rss(Callback):
            rss = []
            def on_epoch_end(self, epoch, logs=None):
                gc.collect()
                self.rss.append(status("VmRSS"))
        model.fit(x[:2000], y[:2000], epochs=10, batch_size=64, verbose=0, callbacks=[Rss()],
                  validation_data=(x[2000:2500], y[2000:2500]))
        out["epoch_rss"] = Rss.rss
    else:
        call = {"predict": lambda n: model.predict(x[:n], batch_size=bs),
                "evaluate": lambda n: model.evaluate(x[:n], y[:n], batch_size=bs)}[mode]
        call(4 * bs)                   # warm up: kernels compiled, allocator pools made
        gc.collect()
        base = status("VmRSS")
        reset_peak()
        call(60000)
        out["peak_growth"] = status("VmHWM") - base
    print(json.dumps(out))
""")

N, CLASSES = 60000, 10


def can_reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not can_reset_peak(), reason="needs Linux's /proc/self/clear_refs "
                                                             "to reset the peak RSS")


def measure(tmp_path, backend, mode):
    script = tmp_path / "memory.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script), backend, mode], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "CONVNET_BACKEND": backend})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("mode", ["predict", "evaluate"])
def test_predict_and_evaluate_on_60000_images_hold_one_batch_at_a_time(tmp_path, backend, mode):
    m = measure(tmp_path, backend, mode)
    act = m["batch_activation_bytes"]            # 256 images: 862,208 bytes
    # what must exist: the (N, 10) float32 probabilities, twice while the per-batch
    # parts are concatenated; evaluate also gathers the labels (int64) for its metrics
    results = 2 * N * CLASSES * 4 + (2 * N * 8 if mode == "evaluate" else 0)
    allowed = results + 3 * act + 2 * 2**20
    assert m["peak_growth"] <= allowed, m
    # the alternatives this excludes: the whole input as float32 (15.4 MB), or every
    # batch's activations at once (234 batches x 862 KB = 202 MB)
    assert allowed < N * 64 * 4 < N / 256 * act


def test_rss_does_not_grow_from_epoch_to_epoch(tmp_path):
    rss = measure(tmp_path, CPU_BACKENDS[-1], "epochs")["epoch_rss"]
    assert len(rss) == 10
    assert max(rss[1:]) - rss[1] <= 2 * 2**20, [r - rss[1] for r in rss]
