"""Functional models: symbolic calls, backprop through a DAG, shared layers,
Sequential as the linear case, saving graphs, and the errors of bad graphs."""

import json

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.graph import GraphError


def residual_model(seed=0, dtype=None):
    x = cn.Input(shape=(6, 6, 2), dtype=dtype)
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", dtype=dtype)(x)
    h = L.Conv2D(4, 3, padding="same", dtype=dtype)(h)
    shortcut = L.Conv2D(4, 1, strides=2, dtype=dtype)(x)        # 1x1 stride-2 projection
    h = L.ReLU(dtype=dtype)(L.Add(dtype=dtype)([h, shortcut]))
    out = L.Dense(3, dtype=dtype)(L.Flatten(dtype=dtype)(h))
    return cn.Model(inputs=x, outputs=out, seed=seed)


def test_input_and_symbolic_calls_record_nodes():
    x = cn.Input(shape=(8, 8, 1), name="pixels")
    conv = L.Conv2D(5, 3)
    h = conv(x)
    assert x.shape == (None, 8, 8, 1) and h.shape == (None, 6, 6, 5)
    assert conv.input is x and conv.output is h
    assert h.node.layer is conv and h.node.inputs == [x]
    assert x.layer.name == "pixels"
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(h)


def test_model_inputs_outputs_layers_and_predict(numpy_backend, rng):
    model = residual_model()
    assert len(model.inputs) == 1 and len(model.outputs) == 1
    assert isinstance(model.layers[0], L.InputLayer)
    names = [type(layer).__name__ for layer in model.layers]
    assert names.count("Conv2D") == 3 and "Add" in names
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    p = model.predict(x)
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)      # logits -> probabilities
    raw = model(x)
    assert isinstance(raw, np.ndarray) and raw.shape == (5, 3)
    np.testing.assert_allclose(p, np.exp(raw) / np.exp(raw).sum(1, keepdims=True), rtol=1e-5)


def test_graph_model_learns(backend):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    # class 0: top half bright, 1: bottom half bright, 2: left half bright
    pattern = np.zeros((3, 6, 6, 2), np.float32)
    pattern[0, :3], pattern[1, 3:], pattern[2, :, :3] = 1.0, 1.0, 1.0
    x = (rng.standard_normal((240, 6, 6, 2)) * 0.5 + pattern[y]).astype(np.float32)
    model = residual_model(seed=1)
    model.compile(optimizer=cn.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:200], y[:200], epochs=15, batch_size=20, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x[200:], y[200:], return_dict=True)["accuracy"] >= 0.95


def test_the_same_seed_gives_the_same_graph_weights():
    a, b = residual_model(seed=3), residual_model(seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = residual_model(seed=4)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


# ---------------------------------------------------------------- backprop
def numeric_input_grad(model, x, y, h=1e-6):
    """Central differences of the model's loss w.r.t. every input entry."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = model.compute_loss(model.forward([x], training=False), [y])[0]
        flat[i] = old - h
        minus = model.compute_loss(model.forward([x], training=False), [y])[0]
        flat[i] = old
        out[i] = (plus - minus) / (2 * h)
    return grad


def test_input_gradient_through_a_fork_sums_the_branches(backend, rng):
    """x feeds the main path and the projection shortcut: dL/dx is the sum of both
    branches' contributions; compare with finite differences in float64."""
    model = residual_model(dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((2, 6, 6, 2))
    y = np.array([0, 2])
    xs, ys = model.check_batch(x, y)
    _, grads = model.compute_loss(model.forward(xs, training=True), ys)
    (dx,) = model.backward(grads, input_grads=True)
    numeric = numeric_input_grad(model, x, y)
    np.testing.assert_allclose(cn.get_ops().to_numpy(dx), numeric, rtol=1e-6, atol=1e-8)


def test_model_gradcheck_on_graphs(backend, rng):
    """Every parameter of a residual model, a two-branch Concatenate model and a
    weight-shared model, against central differences in float64."""
    inp = cn.Input(shape=(5, 5, 1))
    a = L.Conv2D(2, 3, padding="same", activation="tanh")(inp)
    b = L.MaxPooling2D(1)(L.Conv2D(3, 1)(inp))
    merged = L.Concatenate()([a, b])
    concat_model = cn.Model(inp, L.Dense(3, activation="softmax")(L.Flatten()(merged)), seed=0)
    inp2 = cn.Input(shape=(4,))
    shared = L.Dense(4, activation="tanh")
    h = shared(shared(inp2))                      # the same weights twice
    shared_model = cn.Model(inp2, L.Dense(3)(h), seed=0)
    for model, x in ((residual_model(), rng.standard_normal((3, 6, 6, 2))),
                     (concat_model, rng.standard_normal((3, 5, 5, 1))),
                     (shared_model, rng.standard_normal((3, 4)))):
        model.compile(loss="sparse_categorical_crossentropy")
        report = cn.gradcheck(model, x, np.array([0, 2, 1]))
        assert report.passed, str(report)


@pytest.mark.parametrize("make", [
    lambda: L.Add(), lambda: L.Subtract(), lambda: L.Multiply(), lambda: L.Average(),
    lambda: L.Concatenate(), lambda: L.Concatenate(axis=1),
])
def test_merge_layers_gradcheck(backend, rng, make):
    layer = make()
    count = 2 if isinstance(layer, L.Subtract) else 3
    xs = [rng.standard_normal((2, 3, 4, 2)) for _ in range(count)]
    report = cn.gradcheck(layer, xs)
    assert report.passed, str(report)
    assert sorted(report.errors) == [f"input_{i}" for i in range(count)]


@pytest.mark.parametrize("layer, shape, out", [
    (lambda: L.ZeroPadding2D(1), (2, 3, 4, 2), (2, 5, 6, 2)),
    (lambda: L.ZeroPadding2D(((0, 2), (1, 0))), (2, 3, 4, 2), (2, 5, 5, 2)),
    (lambda: L.UpSampling2D(2), (2, 3, 4, 2), (2, 6, 8, 2)),
    (lambda: L.UpSampling2D((1, 3)), (2, 3, 4, 2), (2, 3, 12, 2)),
])
def test_padding_and_upsampling(backend, rng, layer, shape, out):
    lay = layer()
    x = rng.standard_normal(shape)
    assert lay.forward(x).shape == out
    report = cn.gradcheck(lay, x)
    assert report.passed, str(report)


def test_upsampling_backward_sums_each_block(numpy_backend):
    up = L.UpSampling2D(2, dtype="float64")
    up.forward(np.zeros((1, 2, 2, 1)))
    dy = np.arange(16.0).reshape(1, 4, 4, 1)
    dx = up.backward(dy)
    assert dx[0, 0, 0, 0] == 0 + 1 + 4 + 5 and dx[0, 1, 1, 0] == 10 + 11 + 14 + 15


def test_shared_layer_gradients_add_up(numpy_backend, rng):
    """Dense W used twice in y = W (W x): dL/dW is the sum of the two uses."""
    inp = cn.Input(shape=(3,), dtype="float64")
    shared = L.Dense(3, use_bias=False, dtype="float64")
    model = cn.Model(inp, shared(shared(inp)), seed=0)
    model.compile(loss="categorical_crossentropy")
    W = cn.get_ops().to_numpy(shared.params["W"])
    x = rng.standard_normal((4, 3))
    y = np.eye(3)[[0, 1, 2, 0]]
    _, grads = model.compute_loss(model.forward([x], training=True), [y])
    model.backward(grads)
    g = np.asarray(grads[0])               # dL/dz with z = (x W) W
    h1 = x @ W
    expected = x.T @ (g @ W.T) + h1.T @ g  # first use + second use
    np.testing.assert_allclose(shared.grads["W"], expected, rtol=1e-10)
    assert len(shared.inbound_nodes) == 2
    with pytest.raises(AttributeError, match="2 inbound nodes"):
        _ = shared.output
    assert shared.get_output_at(1) is model.outputs[0]


# ---------------------------------------------------------- sequential is a graph
def test_sequential_is_the_linear_graph_and_the_course_extractor_runs(numpy_backend, rng):
    model = cn.Sequential()
    model.add(cn.Input(shape=(8, 8, 1)))
    model.add(L.Conv2D(4, 3, activation="relu"))
    model.add(L.MaxPooling2D(2))
    model.add(L.Conv2D(2, 3, padding="same", activation="relu"))
    model.add(L.Flatten())
    model.add(L.Dense(3))
    assert model.input_shape == (8, 8, 1) and model.output_shape == (3,)
    assert len(model.layers) == 5                       # the InputLayer is not listed, as in Keras
    assert model.inputs[0].shape == (None, 8, 8, 1) and model.outputs[0] is model.layers[-1].output
    # the image-classification course's feature-map extractor, unchanged
    extractor = cn.Model(inputs=model.inputs,
                         outputs=[layer.output for layer in model.layers if "conv2d" in layer.name])
    x = rng.standard_normal((2, 8, 8, 1)).astype(np.float32)
    maps = extractor(x)
    assert [m.shape for m in maps] == [(2, 6, 6, 4), (2, 3, 3, 2)]
    assert all(isinstance(m, np.ndarray) for m in maps)
    by_hand = model.layers[0].forward(x)
    np.testing.assert_allclose(maps[0], by_hand, rtol=1e-6)
    np.testing.assert_allclose(maps[1], model.layers[2].forward(model.layers[1].forward(by_hand)), rtol=1e-6)


def test_sequential_builds_on_first_data_and_add_after_build(numpy_backend, rng):
    model = cn.Sequential([L.Flatten(), L.Dense(4)])
    assert not model.built
    model.compile(loss="sparse_categorical_crossentropy")
    model.train_step(rng.standard_normal((3, 2, 2, 1)), np.array([0, 1, 3]))
    assert model.built and model.input_shape == (2, 2, 1)
    model.add(L.Dense(2))
    assert model.output_shape == (2,) and model.predict(np.zeros((1, 2, 2, 1))).shape == (1, 2)


def test_add_input_not_first_is_an_error():
    model = cn.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="Input can only come first"):
        model.add(cn.Input(shape=(3,)))


# ------------------------------------------------------------------ several ins/outs
def test_two_inputs_two_outputs(numpy_backend, rng):
    a, b = cn.Input(shape=(4,), name="a"), cn.Input(shape=(3,), name="b")
    h = L.Concatenate()([L.Dense(5, activation="relu")(a), b])
    out1 = L.Dense(3, name="cls")(h)
    out2 = L.Dense(2, name="aux")(h)
    model = cn.Model(inputs=[a, b], outputs=[out1, out2], seed=0)
    model.compile(optimizer=cn.optimizers.Adam(1e-2), loss=["sparse_categorical_crossentropy",
                                                            "categorical_crossentropy"],
                  metrics=["accuracy"])
    xa, xb = rng.standard_normal((60, 4)), rng.standard_normal((60, 3))
    y1 = (xa[:, 0] > 0).astype(int)
    y2 = np.eye(2)[(xb[:, 0] > 0).astype(int)]
    history = model.fit([xa, xb], [y1, y2], epochs=30, batch_size=20, verbose=0)
    logs = model.evaluate([xa, xb], [y1, y2], return_dict=True)
    assert set(logs) == {"loss", "cls_accuracy", "aux_accuracy"}
    assert logs["cls_accuracy"] >= 0.85 and logs["aux_accuracy"] >= 0.85
    assert history.history["loss"][-1] < history.history["loss"][0]
    p1, p2 = model.predict({"a": xa[:3], "b": xb[:3]})
    assert p1.shape == (3, 3) and p2.shape == (3, 2)
    with pytest.raises(ValueError, match="2 inputs; give a list of 2 arrays"):
        model.predict(xa)


# ------------------------------------------------------------------------ summary
def test_summary_of_a_graph_has_connected_to(numpy_backend):
    lines = []
    residual_model().summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text and "FLOPs/img" in text
    add_line = next(line for line in text.splitlines() if "(Add)" in line)
    assert "conv2d" in add_line and "[0][0]" in add_line
    seq_lines = []
    cn.Sequential([L.Dense(2)], input_shape=(3,)).summary(print_fn=seq_lines.append)
    assert "Connected to" not in seq_lines[0] and "InputLayer" not in seq_lines[0]


# ------------------------------------------------------------------------ saving
def test_graph_round_trips_bit_for_bit(numpy_backend, rng, tmp_path):
    model = residual_model(seed=2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "g.npz")
    loaded = cn.load_model(tmp_path / "g.npz")
    assert type(loaded) is cn.Model
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    with np.load(tmp_path / "g.npz", allow_pickle=False) as f:
        meta = json.loads(str(f["__meta__"]))
    add = next(s for s in meta["model"]["layers"] if s["class_name"] == "Add")
    assert len(add["inbound_nodes"][0]) == 2        # the topology is in the JSON


def test_shared_layer_model_round_trips(numpy_backend, rng, tmp_path):
    inp = cn.Input(shape=(4,))
    shared = L.Dense(4, activation="tanh")
    model = cn.Model(inp, L.Dense(2)(shared(shared(inp))), seed=0)
    model.save(tmp_path / "s.npz")
    loaded = cn.load_model(tmp_path / "s.npz")
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert len(loaded.get_layer(shared.name).inbound_nodes) == 2


def resumable_run(tmp_path, stop_after=None, resume_from=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    if resume_from is None:
        inp = cn.Input(shape=(6, 6, 2))
        h = L.Conv2D(3, 3, padding="same", activation="relu")(inp)
        h = L.BatchNormalization()(L.Add()([h, L.Conv2D(3, 1)(inp)]))
        out = L.Dense(2)(L.Dropout(0.3)(L.Flatten()(h)))
        model = cn.Model(inp, out, seed=5)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        initial = 0
    else:
        model = cn.load_model(resume_from)
        initial = stop_after
    callbacks = [cn.callbacks.EarlyStopping(monitor="val_loss", patience=50),
                 cn.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
                 cn.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.npz"))]
    epochs = stop_after if (resume_from is None and stop_after) else 6
    model.fit(x, y, epochs=epochs, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=callbacks, initial_epoch=initial)
    return model, callbacks


def test_save_mid_training_and_resume_bit_identical(numpy_backend, tmp_path):
    straight, cbs = resumable_run(tmp_path / "a")
    _, _ = resumable_run(tmp_path / "b", stop_after=3)
    resumed, cbs_resumed = resumable_run(tmp_path / "b", stop_after=3, resume_from=tmp_path / "b" / "ckpt.npz")
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert straight.optimizer.learning_rate == resumed.optimizer.learning_rate
    # the callbacks' counters came back from the file
    assert cbs[0].wait == cbs_resumed[0].wait and cbs[0].best == cbs_resumed[0].best
    assert cbs[1].wait == cbs_resumed[1].wait


def test_model_state_covers_callbacks_and_counters(numpy_backend, tmp_path):
    model, _ = resumable_run(tmp_path, stop_after=2)
    state, arrays = cn.load_model(tmp_path / "ckpt.npz").get_state()
    assert state["epochs_seen"] == 2 and state["optimizer"]["iterations"] == 2 * 4
    names = [c["class_name"] for c in state["callbacks"]]
    assert names == ["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"]
    assert any(k.startswith("optimizer/") for k in arrays)


def test_version_1_sequential_files_still_load(numpy_backend, tmp_path, rng):
    """A file as convnet wrote it before graphs (format version 1)."""
    model = cn.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(3)], input_shape=(5, 5, 1), seed=0)
    old_config = {"name": "old", "input_shape": [5, 5, 1], "seed": 0, "class_names": ["a", "b", "c"],
                  "layers": [cn.layers.serialize(layer) for layer in model.layers]}
    meta = {"format": "convnet-model", "version": 1, "model": old_config,
            "rng": {"model": None, "shuffle": None, "layers": [None, None, None]},
            "compile": {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}},
                        "iterations": 7, "loss": {"class_name": "SparseCategoricalCrossentropy",
                                                  "config": {"from_logits": False}, "given_as_name": True,
                                                  "name": "sparse_categorical_crossentropy"},
                        "metrics": ["accuracy"]}}
    arrays = {f"param/{i}/{k}": cn.get_ops().to_numpy(v) for i, layer in enumerate(model.layers)
              for k, v in layer.params.items()}
    np.savez(tmp_path / "v1.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    loaded = cn.load_model(tmp_path / "v1.npz")
    assert type(loaded) is cn.Sequential and loaded.class_names == ["a", "b", "c"]
    assert loaded.optimizer.iterations == 7 and loaded.optimizer.learning_rate == 0.01
    x = rng.standard_normal((2, 5, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ------------------------------------------------------------------------- errors
def test_merge_shapes_that_disagree_name_the_layer():
    a, b = cn.Input(shape=(4, 4, 8)), cn.Input(shape=(4, 4, 16))
    with pytest.raises(ValueError, match=r"Add 'bad_add': inputs must all have the same shape, "
                                         r"got \(N, 4, 4, 8\), \(N, 4, 4, 16\)"):
        L.Add(name="bad_add")([a, b])
    with pytest.raises(ValueError, match="Concatenate 'cat'.*every axis but -1"):
        L.Concatenate(name="cat")([cn.Input(shape=(4, 4, 8)), cn.Input(shape=(5, 4, 8))])


def test_an_input_not_connected_to_the_outputs():
    a, b = cn.Input(shape=(3,), name="used"), cn.Input(shape=(3,), name="unused")
    with pytest.raises(GraphError, match="input 'unused' is not connected to the outputs"):
        cn.Model(inputs=[a, b], outputs=L.Dense(2)(a))


def test_an_output_that_needs_an_input_not_given():
    a, b = cn.Input(shape=(3,), name="given"), cn.Input(shape=(3,), name="forgotten")
    out = L.Add(name="join")([a, b])
    with pytest.raises(GraphError, match="graph disconnected.*'join'.*'forgotten'"):
        cn.Model(inputs=a, outputs=out)


def test_a_cycle_is_refused_naming_the_layer():
    x = cn.Input(shape=(3,), name="x")
    model = cn.Model(x, L.Dense(3, name="d2")(L.Dense(3, name="d1")(x)))
    config = model.get_config()
    # rewire d1 to read from d2's output: d1 -> d2 -> d1
    d1 = next(s for s in config["layers"] if s["config"]["name"] == "d1")
    d1["inbound_nodes"] = [[["d2", 0]]]
    with pytest.raises(GraphError, match="layer 'd1' waits on.*cycle"):
        cn.Model.from_config(config)


def test_calling_a_layer_on_a_mix_of_values_and_symbols():
    x = cn.Input(shape=(3,))
    with pytest.raises(TypeError, match="mixing symbolic tensors and values"):
        L.Add()([x, np.zeros((1, 3))])
    with pytest.raises(TypeError, match="inputs must be symbolic tensors.*got ndarray"):
        cn.Model(inputs=np.zeros((1, 3)), outputs=L.Dense(2)(x))
    with pytest.raises(ValueError, match="Dense 'dense_.*expects one input tensor"):
        L.Dense(2)([x, x])


def test_a_shared_layer_called_on_another_shape():
    dense = L.Dense(2)
    dense(cn.Input(shape=(3,)))
    with pytest.raises(ValueError, match=r"expected input shape \(N, 3\), got \(N, 4\)"):
        dense(cn.Input(shape=(4,)))


def test_model_inputs_must_be_input_tensors():
    x = cn.Input(shape=(3,))
    h = L.Dense(3)(x)
    with pytest.raises(GraphError, match="not of cn.Input"):
        cn.Model(inputs=h, outputs=L.Dense(2)(h))


def test_layer_names_must_be_unique_in_a_model():
    x = cn.Input(shape=(3,))
    with pytest.raises(GraphError, match=r"\['twin'\] appear more than once"):
        cn.Model(x, L.Dense(2, name="twin")(L.Dense(3, name="twin")(x)))


def _batchnorm_model(seed=0):
    # conv -> BN -> ReLU (folded, ReLU too); conv -> BN -> Add (folded, no ReLU);
    # a conv with its own ReLU before a BN (not folded: not linear); a conv whose
    # output also feeds the shortcut (not folded: BN is not its only reader)
    x = cn.Input(shape=(7, 6, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="c1")(x)))
    h = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="c2")(h))
    wide = L.Conv2D(4, 1, name="c3")(x)
    h = L.Add()([h, L.BatchNormalization()(wide), wide])
    h = L.BatchNormalization()(L.Conv2D(5, 3, strides=2, activation="relu", name="c4")(h))
    h = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name="c5")(h)))
    return cn.Model(inputs=x, outputs=L.Dense(3)(L.Flatten()(h)), seed=seed)


def test_predict_folds_batch_normalization_into_the_convolution_before_it(backend, rng):
    model = _batchnorm_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((5, 7, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    for _ in range(3):
        model.train_step(x, y)         # moving statistics and gamma/beta away from 0 and 1
    folds = {model.graph.nodes[i].layer.name: (bn.layer.name, None if relu is None else type(relu.layer).__name__)
             for i, node in enumerate(model.graph.nodes) if id(node) in model.graph.batchnorm_folds
             for bn, relu in [model.graph.batchnorm_folds[id(node)]]}
    assert sorted(folds) == ["c1", "c2", "c5"]
    assert folds["c1"][1] == "ReLU" and folds["c2"][1] is None and folds["c5"][1] == "Activation"
    # the folded inference computes the unfolded one's numbers (to rounding):
    # model(x) runs every layer, predict and evaluate fold
    logits = model(x)
    plain = np.exp(logits - logits.max(1, keepdims=True))
    plain /= plain.sum(1, keepdims=True)
    probabilities = model.predict(x, batch_size=5)
    np.testing.assert_allclose(probabilities, plain, rtol=1e-5, atol=1e-6)
    loss = model.evaluate(x, y, verbose=0)
    loss = loss[0] if isinstance(loss, (list, tuple)) else loss
    assert loss == pytest.approx(-np.mean(np.log(plain[np.arange(5), y])), rel=1e-5)
    # and a training step after it still has every layer's own forward to go back through
    before = model.get_weights()
    model.train_step(x, y)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_forward_scaled_is_the_convolution_then_the_affine_map(backend, rng):
    for use_bias, relu in ((True, False), (False, True)):
        conv = L.Conv2D(4, 3, strides=2, padding="same", use_bias=use_bias)
        x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)
        z = conv.forward(x)
        scale = rng.uniform(0.5, 2, 4).astype(np.float32)
        shift = rng.standard_normal(4).astype(np.float32)
        expected = cn.backend.get_ops().to_numpy(z) * scale + shift
        xp = cn.backend.get_ops().xp           # the backend's arrays, as BatchNormalization gives them
        got = cn.backend.get_ops().to_numpy(conv.forward_scaled(x, xp.asarray(scale), xp.asarray(shift), relu=relu))
        np.testing.assert_allclose(got, np.maximum(expected, 0) if relu else expected, rtol=1e-5, atol=1e-5)
