"""Random malformed calls to the public API raise only ValueError or TypeError, with a
message naming the argument, the layer or the file -- never an IndexError, a numba
TypingError, a ZeroDivisionError or numpy's own message from deep inside a kernel.

Covered: layer constructors, layer forward/backward (on every CPU backend), losses,
optimizers, initializers, metrics, gradcheck and the data loaders. Wrong ranks and
dtypes, negative/zero sizes, NaN/inf, empty arrays, labels out of range, strings
where numbers go, mismatched lengths. Model-level calls (fit/evaluate/predict) are
not here: the model API is being rewritten and gets its own cases.

Tests marked xfail(strict=True) are real defects in modules this suite does not own;
each reason names the fix. When the fix lands the test passes, strict xfail turns
that into a failure, and the marker is removed.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import profile

import convnet as cn
from convnet import initializers, losses, metrics, optimizers
from convnet import layers as L

BACKENDS = [name for name in cn.available_backends() if name != "cupy"]


def clean_error(fn, *names):
    """Call fn; it must raise ValueError/TypeError whose message contains one of `names`."""
    try:
        fn()
    except (ValueError, TypeError) as exc:
        text = str(exc)
        assert any(n.lower() in text.lower() for n in names), \
            f"{type(exc).__name__} {text!r} names none of {names}"
        return exc
    except Exception as exc:   # noqa: BLE001 - the point: nothing else may escape
        pytest.fail(f"escaped {type(exc).__name__}: {exc}")
    pytest.fail(f"accepted a malformed call (expected an error naming {names})")


# ------------------------------------------------------------------- strategies
not_numbers = st.one_of(
    st.text(max_size=4), st.none(), st.booleans(), st.builds(object),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(np.zeros(2)), st.just(1 + 2j),
)
bad_floats = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf))
bad_positive_int = st.one_of(st.integers(max_value=0), st.floats(), not_numbers,
                             st.tuples(st.integers(1, 3)))
bad_pair = st.one_of(
    st.integers(max_value=0), st.floats(), not_numbers,
    st.lists(st.integers(1, 3), max_size=1), st.lists(st.integers(1, 3), min_size=3, max_size=4),
    st.tuples(st.integers(max_value=0), st.integers(1, 3)), st.tuples(st.integers(1, 3), st.text(max_size=1)),
    st.tuples(st.floats(1, 3), st.integers(1, 3)),
)
bad_padding = st.one_of(
    st.text(max_size=6).filter(lambda s: s.lower() not in ("valid", "same")),
    st.integers(max_value=-1), st.floats(), st.none(), st.booleans(), st.tuples(st.integers(0, 2)),
)
# a real number outside [0, 1) (or not a real number at all)
bad_unit_open = st.one_of(st.floats().filter(lambda v: not 0 <= v < 1), not_numbers)
bad_unit_closed = st.one_of(st.floats().filter(lambda v: not 0 <= v <= 1), not_numbers)
bad_positive_real = st.one_of(st.floats(max_value=0), bad_floats, not_numbers)
bad_activation = st.one_of(
    st.text(max_size=8).filter(lambda s: s.lower() not in ("relu", "sigmoid", "tanh", "softmax", "linear")),
    st.integers(), st.floats(), st.booleans(), st.builds(object),
)


# ----------------------------------------------------------- layer constructors
CONSTRUCTORS = [
    # (owner, argument, call, strategy of invalid values)
    ("Conv2D", "filters", lambda v: L.Conv2D(v, 3), bad_positive_int),
    ("Conv2D", "kernel_size", lambda v: L.Conv2D(2, v), bad_pair),
    ("Conv2D", "strides", lambda v: L.Conv2D(2, 3, strides=v), bad_pair),
    ("Conv2D", "padding", lambda v: L.Conv2D(2, 3, padding=v), bad_padding),
    ("Conv2D", "activation", lambda v: L.Conv2D(2, 3, activation=v), bad_activation),
    ("Conv2D", "initializer", lambda v: L.Conv2D(2, 3, kernel_initializer=v),
     st.one_of(st.text(max_size=5).filter(lambda s: s.lower() not in initializers.INITIALIZERS),
               st.integers(), st.none())),
    ("MaxPooling2D", "pool_size", lambda v: L.MaxPooling2D(v), bad_pair),
    ("MaxPooling2D", "strides", lambda v: L.MaxPooling2D(2, strides=v),   # None: strides = pool_size
     bad_pair.filter(lambda v: v is not None)),
    ("MaxPooling2D", "padding", lambda v: L.MaxPooling2D(2, padding=v), st.one_of(bad_padding, st.integers(2, 9))),
    ("AveragePooling2D", "pool_size", lambda v: L.AveragePooling2D(v), bad_pair),
    ("AveragePooling2D", "padding", lambda v: L.AveragePooling2D(3, padding=v),
     st.one_of(bad_padding, st.integers(3, 9))),
    ("Dense", "units", lambda v: L.Dense(v), bad_positive_int),
    ("Dense", "activation", lambda v: L.Dense(3, activation=v), bad_activation),
    ("Dropout", "rate", lambda v: L.Dropout(v), bad_unit_open),
    ("BatchNormalization", "momentum", lambda v: L.BatchNormalization(momentum=v), bad_unit_closed),
    ("BatchNormalization", "epsilon", lambda v: L.BatchNormalization(epsilon=v), bad_positive_real),
    ("Activation", "activation", lambda v: L.Activation(v), bad_activation),
    ("Rescaling", "scale", lambda v: L.Rescaling(v), st.one_of(bad_floats, not_numbers)),
    ("Rescaling", "offset", lambda v: L.Rescaling(1.0, offset=v), st.one_of(bad_floats, not_numbers)),
]


@pytest.mark.parametrize("owner,argument,call,values", CONSTRUCTORS,
                         ids=[f"{o}-{a}" for o, a, _, _ in CONSTRUCTORS])
@profile(0.5)
@given(data=st.data())
def test_layer_constructor_rejects_bad_arguments(owner, argument, call, values, data):
    value = data.draw(values, label=argument)
    clean_error(lambda: call(value), argument)


@pytest.mark.parametrize("dtype", [0, "abc", "int32", "complex64", object])
def test_layer_dtype_argument_is_checked_where_given(dtype):
    clean_error(lambda: L.Dense(3, dtype=dtype, name="d_dtype"), "Dense 'd_dtype'")


@pytest.mark.parametrize("seed", [1.5, "3", -1, math.nan, True])
def test_layer_seed_argument_is_checked(seed):
    clean_error(lambda: L.Dense(3, seed=seed, name="d_seed"), "Dense 'd_seed'")


@pytest.mark.parametrize("shape", ["abc", 5, (0, 5), (-1,), (2.5, 3)])
def test_layer_input_shape_argument_is_checked(shape):
    clean_error(lambda: L.Dense(3, input_shape=shape, name="d_shape"), "Dense 'd_shape'")


@pytest.mark.parametrize("shape", [(0, 5, 1), (5, 5, 0), (-1, 5, 1), (5.5, 5, 1)])
@pytest.mark.parametrize("make", [L.Flatten, L.GlobalAveragePooling2D, L.ReLU], ids=["Flatten", "GAP", "ReLU"])
def test_build_rejects_non_positive_sizes(make, shape):
    layer = make()
    clean_error(lambda: layer.build(shape), type(layer).__name__)


# ------------------------------------------------------------- layer forward
LAYERS = {
    # name -> (factory, rank of a good input, a good input)
    "Conv2D": (lambda n: L.Conv2D(2, 3, padding="same", name=n), 4, np.zeros((2, 5, 5, 1))),
    "MaxPooling2D": (lambda n: L.MaxPooling2D(2, name=n), 4, np.zeros((2, 5, 5, 1))),
    "AveragePooling2D": (lambda n: L.AveragePooling2D(3, strides=2, padding=1, name=n), 4, np.zeros((2, 5, 5, 1))),
    "GlobalAveragePooling2D": (lambda n: L.GlobalAveragePooling2D(name=n), 4, np.zeros((2, 5, 5, 1))),
    "Dense": (lambda n: L.Dense(3, name=n), 2, np.zeros((2, 4))),
    "BatchNormalization": (lambda n: L.BatchNormalization(name=n), None, np.zeros((2, 4))),
    "Dropout": (lambda n: L.Dropout(0.5, seed=0, name=n), None, np.zeros((2, 4))),
    "Activation": (lambda n: L.Activation("softmax", name=n), None, np.zeros((2, 4))),
    "Flatten": (lambda n: L.Flatten(name=n), None, np.zeros((2, 5, 5, 1))),
}
LAYER_NAMES = sorted(LAYERS)

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=6).map(tuple)


def _named(kind):
    return f"{kind.lower()}_bad"


@pytest.mark.parametrize("kind", LAYER_NAMES)
@profile(0.5)
@given(shape=shapes)
def test_forward_wrong_rank(backend, kind, shape):
    make, rank, _ = LAYERS[kind]
    if rank is None or len(shape) == rank:
        shape = shape + (1,) * (7 - len(shape))        # rank 7: wrong for every layer
        if rank is None:
            return
    clean_error(lambda: make(_named(kind)).forward(np.ones(shape, np.float32)), f"'{_named(kind)}'")


@pytest.mark.parametrize("kind", LAYER_NAMES)
@pytest.mark.parametrize("bad", ["strings", "objects", "empty batch", "bytes"])
def test_forward_non_numeric_or_empty(backend, kind, bad):
    make, _, good = LAYERS[kind]
    x = {"strings": np.full(good.shape, "a"), "objects": np.empty(good.shape, object),
         "empty batch": np.zeros((0, *good.shape[1:])), "bytes": np.full(good.shape, b"1")}[bad]
    clean_error(lambda: make(_named(kind)).forward(x, training=True), f"'{_named(kind)}'")


@pytest.mark.parametrize("kind", ["Conv2D", "Dense"])
def test_forward_complex_input_is_refused(kind):
    make, _, good = LAYERS[kind]
    clean_error(lambda: make(_named(kind)).forward(good.astype(complex)), f"'{_named(kind)}'")


def test_forward_ragged_list_names_the_layer():
    clean_error(lambda: L.Dense(3, name="d_ragged").forward([[1.0, 2.0], [3.0]]), "'d_ragged'")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.float16, np.bool_, np.float64])
@pytest.mark.parametrize("kind", ["Conv2D", "MaxPooling2D", "AveragePooling2D", "Dense"])
def test_forward_other_numeric_dtypes_are_converted(backend, kind, dtype):
    """Integer, bool and half inputs are converted to the layer's dtype, on every
    backend (no numba TypingError from a kernel compiled for float32/float64)."""
    make, _, good = LAYERS[kind]
    layer = make(None)
    y = layer.forward(np.ones(good.shape, dtype=dtype))
    assert y.dtype == np.float32 and np.all(np.isfinite(y))


@pytest.mark.parametrize("kind", ["Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                                  "Dense", "BatchNormalization"])
@profile(0.5)
@given(channels=st.integers(1, 6))
def test_forward_wrong_features_after_build(backend, kind, channels):
    make, _, good = LAYERS[kind]
    if channels == good.shape[-1]:
        channels += 1
    layer = make(_named(kind))
    layer.forward(good)
    clean_error(lambda: layer.forward(np.zeros((*good.shape[:-1], channels))), f"'{_named(kind)}'")


@profile()
@given(hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), kernel=st.integers(2, 8),
       padding=st.sampled_from(["valid", 0, 1]), pool=st.booleans())
def test_window_larger_than_input(backend, hw, kernel, padding, pool):
    pad = 0 if padding == "valid" else padding
    if min(hw) + 2 * pad >= kernel or (pool and pad >= kernel):
        return                          # fits (or an invalid pool padding, tested above)
    layer = (L.MaxPooling2D(kernel, padding=padding, name="p_small") if pool
             else L.Conv2D(2, kernel, padding=padding, name="c_small"))
    clean_error(lambda: layer.forward(np.zeros((1, *hw, 2))), "larger than the padded input")


def test_huge_sizes_are_a_value_error_not_a_memory_error():
    clean_error(lambda: L.Dense(10**12).forward(np.zeros((1, 10**4))), "cannot create an array")
    clean_error(lambda: L.Conv2D(10**9, 3).forward(np.zeros((1, 5, 5, 10**3))), "cannot create an array")


# ------------------------------------------------------------ layer backward
@pytest.mark.parametrize("kind", LAYER_NAMES)
@profile(0.5)
@given(shape=shapes)
def test_backward_wrong_dy_shape(backend, kind, shape):
    make, _, good = LAYERS[kind]
    layer = make(_named(kind))
    y = layer.forward(good, training=True)
    if shape == y.shape:
        shape = shape + (1,)
    clean_error(lambda: layer.backward(np.ones(shape, np.float32)), f"'{_named(kind)}'")


def test_backward_before_forward_is_a_runtime_error():
    # not a malformed argument but a call out of order: RuntimeError, as documented
    with pytest.raises(RuntimeError, match="Dense 'd_early': backward called before forward"):
        L.Dense(2, name="d_early").backward(np.zeros((1, 2)))


@pytest.mark.parametrize("bad", ["strings", "objects", "complex"])
def test_backward_non_numeric_dy_names_the_layer(bad):
    layer = L.Dense(3, name="d_dy")
    y = layer.forward(np.zeros((2, 4)))
    dy = {"strings": np.full(y.shape, "a"), "objects": np.empty(y.shape, object),
          "complex": np.zeros(y.shape, complex)}[bad]
    clean_error(lambda: layer.backward(dy), "'d_dy'")


# ------------------------------------------------------------------- losses
LOSS_CLASSES = [losses.SparseCategoricalCrossentropy, losses.CategoricalCrossentropy]


@pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("from_logits", [True, False])
@profile(0.5)
@given(shape=shapes.filter(lambda s: len(s) != 2), seed=st.integers(0, 99))
def test_loss_wrong_rank_predictions(backend, cls, from_logits, shape, seed):
    pred = np.random.default_rng(seed).random(shape)
    clean_error(lambda: cls(from_logits=from_logits).forward(pred, np.zeros(3, int)), cls.__name__)


@pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["empty", "no classes", "strings", "objects", "complex", "ragged", "none"])
def test_loss_malformed_predictions(backend, cls, bad):
    pred = {"empty": np.zeros((0, 3)), "no classes": np.zeros((3, 0)), "strings": np.full((3, 3), "a"),
            "objects": np.empty((3, 3), object), "complex": np.zeros((3, 3), complex),
            "ragged": [[0.1, 0.2], [0.3]], "none": None}[bad]
    target = np.zeros(3, int) if cls is losses.SparseCategoricalCrossentropy else np.eye(3)
    clean_error(lambda: cls(from_logits=True).forward(pred, target), cls.__name__)


@pytest.mark.parametrize("from_logits", [True, False])
@profile()
@given(k=st.integers(1, 5), labels=st.lists(st.integers(-10, 10), min_size=1, max_size=6))
def test_sparse_labels_out_of_range(backend, from_logits, k, labels):
    labels = np.array(labels)
    if labels.min() >= 0 and labels.max() < k:
        labels[0] = k                     # make at least one label out of range
    pred = np.zeros((len(labels), k))
    clean_error(lambda: losses.SparseCategoricalCrossentropy(from_logits).forward(pred, labels),
                f"[0, {k})")


@pytest.mark.parametrize("labels", [
    np.array([0.5, 1.0, 2.0]), np.array([0.0, np.nan, 1.0]), np.array([0, 1, np.inf]),
    np.array(["a", "b", "c"]), np.array([0, 1, None], object), [0, 1], np.zeros(4, int), np.zeros((3, 2)),
    None, "012", [[0], [1, 2], [3]], np.array([0, 1, 2**63], np.uint64),
], ids=["fraction", "nan", "inf", "strings", "objects", "short", "long", "rank2", "none", "string",
        "ragged", "uint64-wraps"])
def test_sparse_labels_malformed(backend, labels):
    clean_error(lambda: losses.SparseCategoricalCrossentropy().forward(np.zeros((3, 3)), labels),
                "SparseCategoricalCrossentropy")


@pytest.mark.parametrize("targets", [
    np.eye(3)[:2], np.eye(4)[:3], -np.eye(3), np.full((3, 3), np.nan), np.full((3, 3), "a"),
    None, np.zeros(3, int), [[1, 0, 0], [0, 1]],
], ids=["short", "wide", "negative", "nan", "strings", "none", "sparse", "ragged"])
def test_categorical_targets_malformed(backend, targets):
    clean_error(lambda: losses.CategoricalCrossentropy().forward(np.zeros((3, 3)), targets),
                "CategoricalCrossentropy")


def test_nan_logits_give_a_nan_loss_not_an_error(backend):
    """Documented choice: a NaN or inf logit is not a malformed call but a diverged
    model; the loss is NaN so the training loop can report where it happened."""
    value = losses.SparseCategoricalCrossentropy(from_logits=True).forward(
        np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([0, 1]))
    assert math.isnan(value)


def test_unknown_loss_and_optimizer_names():
    for bad in ["mse2", 3, None, ""]:
        clean_error(lambda bad=bad: losses.get(bad), "unknown loss")
        clean_error(lambda bad=bad: optimizers.get(bad), "unknown optimizer")
    clean_error(lambda: optimizers.get({"class_name": "Adam", "config": {"lr": 0.1}}), "Adam")
    clean_error(lambda: optimizers.get({"class_name": "SGD", "config": "fast"}), "config")


# ---------------------------------------------------------------- optimizers
OPTIMIZER_ARGS = [
    ("SGD", "learning_rate", lambda v: optimizers.SGD(learning_rate=v), bad_positive_real),
    ("SGD", "momentum", lambda v: optimizers.SGD(momentum=v), bad_unit_open),
    ("SGD", "weight_decay", lambda v: optimizers.SGD(weight_decay=v),
     st.one_of(st.floats(max_value=-1e-9), bad_floats, not_numbers)),
    ("Adam", "learning_rate", lambda v: optimizers.Adam(learning_rate=v), bad_positive_real),
    ("Adam", "beta_1", lambda v: optimizers.Adam(beta_1=v), bad_unit_open),
    ("Adam", "beta_2", lambda v: optimizers.Adam(beta_2=v), bad_unit_open),
    ("Adam", "epsilon", lambda v: optimizers.Adam(epsilon=v), bad_positive_real),
    ("Adam", "weight_decay", lambda v: optimizers.Adam(weight_decay=v),     # None: no decay, allowed
     st.one_of(st.floats(max_value=-1e-9), bad_floats, not_numbers.filter(lambda v: v is not None))),
    ("AdamW", "weight_decay", lambda v: optimizers.AdamW(weight_decay=v),
     st.one_of(st.floats(max_value=-1e-9), bad_floats, not_numbers)),
]


@pytest.mark.parametrize("owner,argument,call,values", OPTIMIZER_ARGS,
                         ids=[f"{o}-{a}" for o, a, _, _ in OPTIMIZER_ARGS])
@profile(0.5)
@given(data=st.data())
def test_optimizer_rejects_bad_arguments(owner, argument, call, values, data):
    value = data.draw(values, label=argument)
    clean_error(lambda: call(value), argument)


@pytest.mark.parametrize("make", [lambda: optimizers.SGD(momentum=0.9), optimizers.Adam], ids=["SGD", "Adam"])
@pytest.mark.parametrize("bad", ["grad shape", "grad strings", "grad none", "grad ragged", "param list",
                                 "param int", "param none", "read-only param", "pair", "not a list"])
def test_apply_gradients_malformed(backend, make, bad):
    p = backend.asarray(np.ones((2, 3), np.float32))
    g = np.ones((2, 3), np.float32)
    entries = {
        "grad shape": [("w", p, np.ones(6, np.float32))], "grad strings": [("w", p, np.full((2, 3), "a"))],
        "grad none": [("w", p, None)], "grad ragged": [("w", p, [[1.0, 2.0, 3.0], [1.0]])],
        "param list": [("w", [[1.0] * 3] * 2, g)], "param int": [("w", np.ones((2, 3), int), g)],
        "param none": [("w", None, g)], "read-only param": [("w", np.ones((2, 3), np.float32), g)],
        "pair": [("w", p)], "not a list": 5,
    }[bad]
    if bad == "read-only param":
        entries[0][1].flags.writeable = False
    opt = make()
    before = backend.to_numpy(p).copy()
    # a good entry first: a bad one later must not let the first be updated
    clean_error(lambda: opt.apply_gradients([("ok", p, g), *entries] if bad != "not a list" else entries),
                "apply_gradients")
    np.testing.assert_array_equal(backend.to_numpy(p), before)
    assert opt.iterations == 0


# -------------------------------------------------------------- initializers
INITS = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros", "ones"]


@pytest.mark.parametrize("name", INITS)
@profile(0.5)
@given(shape=st.one_of(
    st.lists(st.integers(-3, 3), min_size=1, max_size=4).filter(lambda s: min(s) < 1).map(tuple),
    st.text(max_size=3), st.none(), st.floats(), st.tuples(st.floats(1, 3)), st.tuples(st.booleans())))
def test_initializer_bad_shape(name, shape):
    clean_error(lambda: initializers.get(name)(shape, np.random.default_rng(0)), name)


@pytest.mark.parametrize("name", INITS)
@pytest.mark.parametrize("bad", ["rng", "dtype", "int dtype", "huge"])
def test_initializer_bad_rng_dtype_size(name, bad):
    fn = initializers.get(name)
    rng = np.random.default_rng(0)
    call = {"rng": lambda: fn((2, 3), 42 if name not in ("zeros", "ones") else rng, "bogus"),
            "dtype": lambda: fn((2, 3), rng, "bogus"), "int dtype": lambda: fn((2, 3), rng, np.int32),
            "huge": lambda: fn((10**8, 10**8), rng)}[bad]
    clean_error(call, name)


def test_unknown_initializer():
    clean_error(lambda: initializers.get("lecun_uniform2", "Conv2D 'c'"), "Conv2D 'c'")


# ------------------------------------------------------------------- metrics
METRIC_FNS = ["accuracy", "top_k_categorical_accuracy", "roc_auc", "precision", "recall", "f1_score",
              "confusion_matrix", "classification_report"]


@pytest.mark.parametrize("name", METRIC_FNS)
@pytest.mark.parametrize("bad", ["short", "empty", "strings", "rank3 labels", "negative", "nan labels", "none"])
def test_metric_malformed(name, bad):
    y_pred = np.eye(3)[[0, 1, 2, 1]]
    y_true = {"short": np.array([0, 1]), "empty": np.zeros(0, int), "strings": np.array(["a", "b", "c", "d"]),
              "rank3 labels": np.zeros((4, 1, 1), int), "negative": np.array([0, -1, 2, 1]),
              "nan labels": np.array([0, np.nan, 1, 2]), "none": None}[bad]
    if bad == "empty":
        y_pred = np.zeros((0, 3))
    clean_error(lambda: getattr(metrics, name)(y_true, y_pred), name, "labels", "samples", "y_true")


@pytest.mark.parametrize("name", ["accuracy", "precision", "confusion_matrix"])
def test_metric_string_predictions(name):
    clean_error(lambda: getattr(metrics, name)(np.array([0, 1, 2]), np.full((3, 3), "a")), name)


def test_accuracy_label_out_of_range():
    clean_error(lambda: metrics.accuracy(np.array([0, 1, 9]), np.eye(3)), "accuracy")


@pytest.mark.parametrize("name", ["roc_auc", "accuracy"])
def test_metric_nan_scores(name):
    y_pred = np.array([[0.2, 0.8], [np.nan, 0.5], [0.9, 0.1]])
    clean_error(lambda: getattr(metrics, name)(np.array([1, 0, 0]), y_pred), name)


# ----------------------------------------------------------------- gradcheck
def test_gradcheck_malformed_targets_and_inputs():
    clean_error(lambda: cn.gradcheck("dense", np.zeros((1, 3))), "gradcheck")
    clean_error(lambda: cn.gradcheck(L.Dense(2, name="g1"), np.zeros(3)), "'g1'")
    clean_error(lambda: cn.gradcheck(L.Dense(2, name="g2"), np.zeros((0, 3))), "'g2'")
    clean_error(lambda: cn.gradcheck(L.Conv2D(2, 3, name="g3").build((5, 5, 1)), np.zeros((1, 5, 5, 2))), "'g3'")
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    clean_error(lambda: cn.gradcheck(loss, np.zeros((2, 3)), np.array([0, 5])), "SparseCategoricalCrossentropy")


@pytest.mark.parametrize("kwargs", [{"h": 0}, {"h": -1e-6}, {"h": "small"}, {"h": math.nan},
                                    {"max_checks": 0}, {"max_checks": -5}, {"max_checks": 2.5}])
def test_gradcheck_bad_step_and_counts(kwargs):
    clean_error(lambda: cn.gradcheck(L.Dense(2, dtype="float64"), np.ones((2, 3)), **kwargs), "gradcheck")


def test_gradcheck_loss_without_targets():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    clean_error(lambda: cn.gradcheck(loss, np.zeros((2, 3))), "gradcheck")


# --------------------------------------------------------------- data loaders
def test_array_batches_malformed():
    from convnet.data import ArrayBatches
    clean_error(lambda: ArrayBatches(np.zeros((4, 2)), np.zeros(3)), "ArrayBatches")
    clean_error(lambda: ArrayBatches(np.float32(1)), "ArrayBatches")
    for bs in (0, -1, 2.5, "8", None, True):
        clean_error(lambda bs=bs: ArrayBatches(np.zeros((4, 2)), batch_size=bs), "batch_size")


@pytest.mark.parametrize("kwargs", [{"fill_mode": "mirror"}, {"interpolation": "cubic"}, {"zoom_range": -0.5},
                                    {"zoom_range": (2, 1)}])
def test_image_data_generator_bad_arguments(kwargs):
    from convnet.data import ImageDataGenerator
    clean_error(lambda: ImageDataGenerator(**kwargs), "ImageDataGenerator")


@pytest.mark.parametrize("kwargs", [{"rotation_range": "a"}, {"shear_range": "x"}, {"cval": "black"},
                                    {"rotation_range": None}, {"zoom_range": (2, 1, 0)}, {"zoom_range": "ab"}])
def test_image_data_generator_string_numbers(kwargs):
    from convnet.data import ImageDataGenerator
    clean_error(lambda: ImageDataGenerator(**kwargs), *kwargs)


def test_image_folder_malformed(tmp_path):
    from convnet.data import image_dataset_from_directory, load_image
    clean_error(lambda: image_dataset_from_directory(tmp_path / "missing"), "missing")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    clean_error(lambda: load_image(tmp_path / "a" / "bad.png", (8, 8)), "bad.png")
    for kwargs in ({"label_mode": "sparse"}, {"color_mode": "cmyk"}, {"image_size": (0, 8)},
                   {"batch_size": 0}, {"validation_split": 1.5}, {"labels": "folders"}):
        clean_error(lambda kwargs=kwargs: image_dataset_from_directory(tmp_path, **kwargs), *kwargs)


def test_idx_reader_malformed(tmp_path):
    from convnet.data import read_idx, write_idx
    path = tmp_path / "x-idx1"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    clean_error(lambda: read_idx(path), "x-idx1")
    clean_error(lambda: write_idx(tmp_path / "y", np.zeros(3, np.int64)), "'" + str(tmp_path / "y"))
