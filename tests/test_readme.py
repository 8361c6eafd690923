"""Every command and snippet in README.md runs, on small generated data, and does
what the README says it does.

- The Python blocks run verbatim, in order; the Fashion-MNIST loader is pointed
  at a small generated set (the real one is 60,000 images).
- The `convnet` commands run verbatim as subprocesses, with $CONVNET_DATA holding
  a small generated Fashion-MNIST and the README's placeholders (`path/to/folders`,
  `runs/<run>`, `shirt.png`, ...) replaced by generated files and the run just made.
- The two Quickstart commands are `make demo` and `make test` themselves; they are
  not run from inside the suite (`make test` would run this file again, `make demo`
  trains on the real data for minutes): the check here is that the Makefile has
  those targets and that `make test` installs Debian's data where apt works.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convnet as cn
from convnet.data import write_idx
from convnet.synthetic import make_shapes

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(python|sh)\n(.*?)```", README, flags=re.S)


def small_fashion_mnist(n_train=256, n_test=64):
    """uint8 (N, 28, 28) images of three shapes and their labels, like load_data()."""
    x, y = make_shapes(n_train, size=28, seed=0)
    xt, yt = make_shapes(n_test, size=28, seed=1)
    as_u8 = lambda a: (a[..., 0] * 255).astype(np.uint8)
    return (as_u8(x), y.astype(np.uint8)), (as_u8(xt), yt.astype(np.uint8))


def python_blocks():
    return [body for kind, body in BLOCKS if kind == "python"]


def shell_lines():
    lines = []
    for kind, body in BLOCKS:
        if kind == "sh":
            lines += [line.split("#")[0].strip() for line in body.splitlines() if line.split("#")[0].strip()]
    return lines


def test_the_readme_has_the_blocks_this_file_runs():
    assert len(python_blocks()) == 3
    assert shell_lines()[:2] == ["make demo", "make test"]
    assert all(line.startswith("convnet ") for line in shell_lines()[2:]) and len(shell_lines()) == 9


def test_quickstart_targets_exist_and_make_test_gets_the_debian_data():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: data$", makefile, flags=re.M)
    test_rule = re.search(r"^test: (.*)$", makefile, flags=re.M).group(1).split()
    assert "debian-data" in test_rule and "$(STAMP)" in test_rule
    assert "apt-get install -y -qq dataset-fashion-mnist" in makefile


def test_python_snippets(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cn.datasets.fashion_mnist, "load_data", small_fashion_mnist)
    train, keras_by_hand, functional = python_blocks()
    ns = {}
    exec(compile(train, "README.md python block 1", "exec"), ns)
    assert set(ns["history"].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(ns["history"].history["loss"]) == 5
    assert ns["history"].history["loss"][-1] < ns["history"].history["loss"][0]
    x_test = ns["x_test"]
    result = ns["model"].evaluate(x_test[..., None], ns["y_test"])      # [loss, accuracy]
    assert isinstance(result, list) and len(result) == 2 and result[1] > 0.5
    probs = ns["model"].predict(x_test[:5, ..., None])
    assert probs.shape == (5, 10)                                        # class probabilities, (5, 10)
    assert "Total params" in capsys.readouterr().out                     # summary()
    assert (tmp_path / "model.npz").is_file() and isinstance(ns["model"], cn.Sequential)  # the reloaded one

    rng = np.random.default_rng(0)
    ns2 = {"cn": cn, "L": cn.layers, "x": rng.standard_normal((2, 6, 5, 3)).astype(np.float32),
           "dy": rng.standard_normal((2, 6, 5, 4)).astype(np.float32)}
    exec(compile(keras_by_hand, "README.md python block 2", "exec"), ns2)
    conv = ns2["conv"]
    assert ns2["y"].shape == (2, 6, 5, 4) and ns2["dx"].shape == (2, 6, 5, 3)
    assert set(conv.grads) == {"W", "b"}
    np.testing.assert_allclose(conv.grads["b"], ns2["dy"].sum(axis=(0, 1, 2)), rtol=1e-5)
    assert "PASS" in capsys.readouterr().out                             # print(cn.gradcheck(conv, x))
    naive = cn.layers.conv2d_naive(ns2["x"], conv.params["W"], conv.params["b"], padding="same")
    np.testing.assert_allclose(naive, ns2["y"], rtol=1e-4, atol=1e-5)

    ns3 = {"cn": cn, "L": cn.layers, "images": rng.random((3, 28, 28, 1), dtype=np.float32)}
    exec(compile(functional, "README.md python block 3", "exec"), ns3)
    assert "Connected to" in capsys.readouterr().out
    maps = ns3["feature_maps"]
    assert [m.shape for m in maps] == [(3, 28, 28, 16)] * 3 and all(isinstance(m, np.ndarray) for m in maps)
    assert ns3["model"].predict(ns3["images"]).shape == (3, 10)


@pytest.fixture
def small_world(tmp_path):
    """$CONVNET_DATA with a small Fashion-MNIST, a folder of class folders, and PNGs."""
    data = tmp_path / "data" / "fashion-mnist"
    data.mkdir(parents=True)
    (x, y), (xt, yt) = small_fashion_mnist()
    for name, array in (("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y),
                        ("t10k-images-idx3-ubyte.gz", xt), ("t10k-labels-idx1-ubyte.gz", yt)):
        write_idx(data / name, array)
    folders = tmp_path / "folders"
    gx, gy = make_shapes(30, size=32, seed=2)
    for i, (img, label) in enumerate(zip(gx, gy)):
        (folders / f"class{label}").mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray((img[:, :, 0] * 255).astype(np.uint8)).convert("RGB")
        picture.save(folders / f"class{label}" / f"{i}.png")
    for name, index in (("shirt.png", 0), ("boot.png", 1), ("image.png", 2)):
        Image.fromarray(xt[index]).save(tmp_path / name)
    return tmp_path


def test_convnet_commands(small_world):
    env = {**os.environ, "CONVNET_DATA": str(small_world / "data")}
    env.pop("CONVNET_BACKEND", None)

    def run(line):
        argv = shlex.split(line.replace("path/to/folders", str(small_world / "folders")))
        out = subprocess.run([sys.executable, "-m", "convnet", *argv[1:]], cwd=small_world, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
        return out.stdout

    train_fmnist, train_folder, evaluate, predict, gradcheck, profile, inspect = shell_lines()[2:]
    out = run(train_fmnist)
    assert "test accuracy:" in out and re.search(r"on the (numba|numpy) backend", out), out
    (run_dir,) = (small_world / "runs").iterdir()
    assert re.fullmatch(r".+-fmnist-cnn", run_dir.name)
    expected = {"model.npz", "history.json", "history.csv", "metrics.json", "summary.txt"}
    if _has_matplotlib():
        expected |= {"curves.png", "confusion_matrix.png"}
    assert expected <= set(os.listdir(run_dir)), os.listdir(run_dir)
    here = lambda line: line.replace("runs/<run>", str(run_dir))

    out = run(train_folder)
    assert "validation accuracy:" in out
    out = run(here(evaluate))
    assert "accuracy:" in out and "macro avg" in out
    out = run(here(predict)).strip().splitlines()
    assert [line.split(": ")[0] for line in out] == ["shirt.png", "boot.png"]
    assert all(len(line.split(": ", 1)[1].split(", ")) == 3 for line in out)       # --top 3
    out = run(gradcheck)
    assert "Conv2D" in out and "all passed" in out
    out = run(profile)
    assert "img/s" in out and "conv2d" in out
    run(here(inspect))
    assert any(p.suffix == ".png" for p in (small_world / "inspect").rglob("*"))


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False
