"""Interruption: a training process SIGKILLed in the middle of an epoch and resumed
from its last checkpoint ends with weights bit-identical to a run never
interrupted (numpy backend, same seed), through fit(initial_epoch=...) and through
`convnet train --resume RUN_DIR`; Ctrl-C during `convnet train` saves what was
trained, says where, and exits with status 130 (docs/reliability.md).

Each run is a real subprocess. The kill and the Ctrl-C are sent by the process to
itself at a fixed training step (a wrapper counts the calls of the model's step),
so the test does not depend on timing.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

import convnet as cn

FIT_SCRIPT = textwrap.dedent("""
    import glob, os, re, signal, sys
    import numpy as np
    import convnet as cn
    from convnet import layers as L
    from convnet.callbacks import Callback, ModelCheckpoint, ReduceLROnPlateau

    mode, out = sys.argv[1], sys.argv[2]
    cn.set_backend("numpy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 60)

    class KillAt(Callback):
        def __init__(self, epoch, batch):
            super().__init__()
            self.at = (epoch, batch)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == self.at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0),
                 ModelCheckpoint(os.path.join(out, "ckpt-{epoch:02d}.npz"))]
    if mode == "resume":
        last = max(glob.glob(os.path.join(out, "ckpt-*.npz")))
        model = cn.load_model(last)
        initial_epoch = int(re.search(r"ckpt-(\\d+)", last).group(1))
    else:
        model = cn.Sequential([L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2), L.BatchNormalization(),
                               L.Flatten(), L.Dropout(0.3), L.Dense(3)], input_shape=(8, 8, 1), seed=7)
        model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-2),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        initial_epoch = 0
        if mode == "killed":
            callbacks.append(KillAt(epoch=2, batch=3))      # the third epoch, its fourth of 8 steps
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=callbacks, initial_epoch=initial_epoch,
              validation_data=(x[:16], y[:16]))
    np.savez(os.path.join(out, "final.npz"), *model.get_weights())
    print("lr", model.optimizer.learning_rate, "iterations", model.optimizer.iterations)
""")


def run(args, cwd, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CONVNET_BACKEND": "numpy"}, **kwargs)


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def identical(a, b):
    return len(a) == len(b) and all(u.dtype == v.dtype and np.array_equal(u, v) for u, v in zip(a, b))


def test_fit_killed_mid_epoch_and_resumed_from_its_checkpoint_is_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(FIT_SCRIPT)
    full, broken = tmp_path / "full", tmp_path / "broken"
    full.mkdir()
    broken.mkdir()
    done = run([str(script), "full", str(full)], tmp_path)
    assert done.returncode == 0, done.stderr
    killed = run([str(script), "killed", str(broken)], tmp_path)
    assert killed.returncode == -signal.SIGKILL
    assert not (broken / "final.npz").exists()
    assert sorted(os.listdir(broken)) == ["ckpt-01.npz", "ckpt-02.npz"]   # two whole epochs saved
    resumed = run([str(script), "resume", str(broken)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    # the learning rate was halved by ReduceLROnPlateau in both (its state came back from the file)
    assert resumed.stdout == done.stdout and "iterations 32" in done.stdout
    assert identical(weights(full / "final.npz"), weights(broken / "final.npz"))
    # a checkpoint of the killed run equals the uninterrupted run's at the same epoch
    assert identical(cn.load_model(full / "ckpt-02.npz").get_weights(),
                     cn.load_model(broken / "ckpt-02.npz").get_weights())


CLI_WRAPPER = textwrap.dedent("""
    # convnet's command line, sending itself `signal` inside the given training step
    import os, signal, sys
    from convnet import cli, models
    sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
    step, calls = models.Model._train_batch, []
    def counted(self, xs, ys, *rest):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), sig)
        return step(self, xs, ys, *rest)
    models.Model._train_batch = counted
    sys.exit(cli.main(sys.argv[3:]))
""")

TRAIN = ["train", "synthetic", "--model", "fmnist-cnn", "--limit", "96", "--batch-size", "32", "--epochs", "3",
         "--dropout", "0.3", "--lr-decay", "0.5", "--backend", "numpy", "--verbose", "0", "--seed", "3"]


def cli(tmp_path, args, signal_name="SIGUSR2", at=0):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(CLI_WRAPPER)
    return run([str(wrapper), signal_name, str(at), *args], tmp_path)


def only_run_dir(output_dir):
    runs = glob.glob(os.path.join(output_dir, "*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_convnet_train_killed_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    done = cli(tmp_path, [*TRAIN, "--output-dir", "full"])
    assert done.returncode == 0, done.stderr
    full = only_run_dir(tmp_path / "full")
    killed = cli(tmp_path, [*TRAIN, "--output-dir", "broken"], "SIGKILL", at=8)   # epoch 3, step 2 of 3
    assert killed.returncode == -signal.SIGKILL
    broken = only_run_dir(tmp_path / "broken")
    assert not os.path.exists(os.path.join(broken, "model.npz"))
    assert cn.load_model(os.path.join(broken, "checkpoint.npz")).optimizer.iterations == 6
    resumed = cli(tmp_path, ["train", "--resume", broken])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {broken} after epoch 2" in resumed.stdout
    a = cn.load_model(os.path.join(full, "model.npz"))
    b = cn.load_model(os.path.join(broken, "model.npz"))
    assert identical(a.get_weights(), b.get_weights())
    assert a.optimizer.learning_rate == b.optimizer.learning_rate == 1e-3 * 0.25
    # the history of the resumed run has every epoch, the same numbers
    with open(os.path.join(full, "history.json")) as f, open(os.path.join(broken, "history.json")) as g:
        assert json.load(f) == json.load(g)
    with open(os.path.join(broken, "metrics.json")) as f:
        assert json.load(f)["epochs_run"] == 3


def test_resume_of_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path):
    result = cli(tmp_path, ["train", "--resume", str(tmp_path)])
    assert result.returncode == 2
    assert f"--resume {tmp_path}: not a resumable run directory (it needs args.json and checkpoint.npz" \
        in result.stderr


def test_ctrl_c_during_convnet_train_saves_what_was_trained_and_exits_130(tmp_path):
    result = cli(tmp_path, [*TRAIN, "--output-dir", "runs"], "SIGINT", at=5)   # epoch 2, step 2
    assert result.returncode == 130, result.stderr
    run_dir = os.path.relpath(only_run_dir(tmp_path / "runs"), tmp_path)    # as given: --output-dir runs
    saved = os.path.join(run_dir, "interrupted.npz")
    assert f"interrupted at epoch 2, step 2: the model as trained so far is saved in {saved}" in result.stdout
    assert f"convnet train --resume {run_dir}" in result.stdout
    assert "stopping after this batch" in result.stderr
    model = cn.load_model(tmp_path / saved)
    assert model.optimizer.iterations == 5                # the step in progress was finished, then it stopped
    assert cn.load_model(tmp_path / run_dir / "checkpoint.npz").optimizer.iterations == 3
    with open(tmp_path / run_dir / "history.json") as f:
        assert len(json.load(f)["loss"]) == 1             # the one complete epoch
    # and the run resumes from its last complete epoch
    resumed = cli(tmp_path, ["train", "--resume", run_dir])
    assert resumed.returncode == 0, resumed.stderr
    assert cn.load_model(tmp_path / run_dir / "model.npz").optimizer.iterations == 9


def test_every_file_of_a_run_directory_is_written_atomically(tmp_path, monkeypatch, numpy_backend):
    """args.json, history.json/.csv, metrics.json and summary.txt go through
    _files.atomic_write (the model files through saving.write_model_file, which
    uses it too): a crash mid-write leaves the previous file (tests/test_files.py)."""
    from convnet import _files
    from convnet import cli as cli_module
    written = []
    real = _files.atomic_write

    def recording(path, mode="wb"):
        written.append(os.path.basename(path))
        return real(path, mode)
    monkeypatch.setattr(cli_module, "atomic_write", recording)
    monkeypatch.setattr(cn.saving, "atomic_write", recording)
    monkeypatch.chdir(tmp_path)
    args = ["train", "synthetic", "--model", "fmnist-cnn", "--limit", "32", "--batch-size", "32", "--epochs", "1",
            "--backend", "numpy", "--verbose", "0"]
    assert cli_module.main(args) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    on_disk = {name for name in os.listdir(run_dir) if not name.endswith(".png")}
    assert on_disk <= set(written), on_disk - set(written)
    assert {"args.json", "history.json", "history.csv", "checkpoint.npz", "model.npz", "metrics.json",
            "summary.txt"} <= on_disk
