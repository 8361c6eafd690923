"""Metric objects: Keras' documented examples are the expected values."""

import numpy as np
import pytest

import convnet as cn
from convnet import metrics as M

# -- Keras' documented examples -------------------------------------------------------------


@pytest.mark.parametrize("cls, y_true, y_pred, plain, weights, weighted", [
    (M.Accuracy, [[1], [2], [3], [4]], [[0], [2], [3], [4]], 0.75, [1, 1, 0, 0], 0.5),
    (M.BinaryAccuracy, [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], 0.75, [1, 0, 0, 1], 0.5),
    (M.CategoricalAccuracy, [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], 0.5,
     [0.7, 0.3], 0.3),
    (M.SparseCategoricalAccuracy, [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], 0.5,
     [0.7, 0.3], 0.3),
    (lambda: M.TopKCategoricalAccuracy(k=1), [[0, 0, 1], [0, 1, 0]],
     [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], 0.5, [0.7, 0.3], 0.3),
    (lambda: M.SparseTopKCategoricalAccuracy(k=1), [2, 1],
     [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], 0.5, [0.7, 0.3], 0.3),
    (M.Precision, [0, 1, 1, 1], [1, 0, 1, 1], 2 / 3, [0, 0, 1, 0], 1.0),
    (M.Recall, [0, 1, 1, 1], [1, 0, 1, 1], 2 / 3, [0, 0, 1, 0], 1.0),
    (lambda: M.AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], 0.75, [1, 0, 0, 1], 1.0),
])
def test_keras_documented_values(cls, y_true, y_pred, plain, weights, weighted):
    m = cls()
    m.update_state(np.array(y_true), np.array(y_pred, dtype=np.float32))
    assert m.result() == pytest.approx(plain, abs=1e-6)
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(np.array(y_true), np.array(y_pred, dtype=np.float32), sample_weight=weights)
    assert m.result() == pytest.approx(weighted, abs=1e-6)


def test_precision_top_k_as_keras_documents():
    # equal scores: top_k keeps the first k columns, as TensorFlow's top_k does
    y, p = np.array([[0, 0, 1, 1]]), np.array([[1, 1, 1, 1]], np.float32)
    assert M.Precision(top_k=2)(y, p) == 0.0
    assert M.Precision(top_k=4)(y, p) == 0.5


def test_precision_recall_class_id_and_several_thresholds():
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    # column 0: labels 1,0,1,0; scores .9 .6 .3 .2 -> at 0.5 predicted 1,1,0,0.
    # All 8 pairs: above 0.25 are .9 .6 .4 .3 .7 .8, four of them labelled 1.
    assert M.Precision(class_id=0)(y, p) == 0.5
    assert M.Recall(class_id=0)(y, p) == 0.5
    np.testing.assert_allclose(M.Precision(thresholds=[0.25, 0.5, 0.95])(y, p), [4 / 6, 2 / 4, 0])


def test_accumulates_over_batches_like_one_pass():
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 50)]
    p = rng.dirichlet(np.ones(3), 50)
    w = rng.random(50)
    for make in (M.CategoricalAccuracy, M.AUC, M.Precision, M.Recall,
                 lambda: M.AUC(curve="PR"), lambda: M.AUC(multi_label=True)):
        whole, parts = make(), make()
        whole.update_state(y, p, sample_weight=w)
        for s in (slice(0, 7), slice(7, 30), slice(30, 50)):
            parts.update_state(y[s], p[s], sample_weight=w[s])
        assert parts.result() == pytest.approx(whole.result(), rel=1e-12)


# -- AUC ---------------------------------------------------------------------------------


def test_auc_hand_computed_roc_through_every_vertex():
    # Scores in different threshold buckets: the 200-threshold curve passes
    # through every vertex of the exact ROC curve, whose area is 3/4.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert M.AUC()(y, p) == pytest.approx(0.75, abs=1e-12)


def test_auc_scores_in_one_bucket_tie_where_the_exact_auc_does_not():
    # 0.501 and 0.502 both lie between thresholds 99/199 and 100/199, so Keras'
    # AUC sees a tie (area 1/2); the exact AUC sees the negative scored higher.
    y = np.array([1, 0])
    p = np.array([0.501, 0.502])
    assert M.AUC()(y, p) == pytest.approx(0.5)
    assert M.ExactMacroAUC()(y, p) == 0.0


def test_auc_strict_threshold_comparison():
    # num_thresholds=3: thresholds -1e-7, 0.5, 1+1e-7.  A score of exactly 0.5 is
    # not above 0.5, so it ties with a score of 0.2: ROC points (1,1), (0,0) only.
    assert M.AUC(num_thresholds=3)([1, 0], [0.5, 0.2]) == pytest.approx(0.5)
    assert M.AUC(num_thresholds=3)([1, 0], [0.51, 0.2]) == pytest.approx(1.0)


def test_auc_one_hot_labels_make_one_flattened_curve():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    flat = M.AUC()(y.ravel(), p.ravel())
    assert M.AUC()(y, p) == pytest.approx(flat, abs=1e-12)
    # multi_label: the mean of the per-column curves instead
    cols = [M.AUC()(y[:, j], p[:, j]) for j in range(3)]
    assert M.AUC(multi_label=True)(y, p) == pytest.approx(np.mean(cols), abs=1e-12)
    # integer labels are taken as the one-hot labels they stand for
    assert M.AUC()(y.argmax(1), p) == pytest.approx(flat, abs=1e-12)


def test_auc_pr_perfect_and_hand_computed():
    assert M.AUC(curve="PR")([1, 0], [0.9, 0.1]) == pytest.approx(1.0)
    # num_thresholds=3 on Keras' doc data: points (tp, fp) = (2,2), (1,0), (0,0).
    # Segment 1: tp 2->1 while p 4->1: slope 1/3, intercept 1 - 1/3 = 2/3,
    #   area (1/3)(1 + (2/3) ln 4) / 1... divided by tp+fn = 2.
    # Segment 2: tp 1->0, p 1->0: slope 1, intercept 0, p ratio 1 -> area 1/2.
    seg1 = (1 / 3) * (1 + (2 / 3) * np.log(4)) / 2
    seg2 = 1 * (1 + 0) / 2
    got = M.AUC(num_thresholds=3, curve="PR")([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert got == pytest.approx(seg1 + seg2, rel=1e-12)


def test_auc_minoring_and_majoring_bracket_interpolation():
    y, p = [0, 0, 1, 1], [0, 0.5, 0.3, 0.9]
    lo = M.AUC(num_thresholds=3, summation_method="minoring")(y, p)
    mid = M.AUC(num_thresholds=3)(y, p)
    hi = M.AUC(num_thresholds=3, summation_method="majoring")(y, p)
    assert (lo, mid, hi) == pytest.approx((0.5, 0.75, 1.0))


def test_auc_from_logits_applies_the_sigmoid():
    y, z = np.array([0, 1, 1, 0, 1]), np.array([-2.0, 0.3, 1.5, 0.1, -0.4])
    assert M.AUC(from_logits=True)(y, z) == pytest.approx(M.AUC()(y, 1 / (1 + np.exp(-z))))


def test_auc_matches_sklearn_where_they_coincide():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    # scores at bucket centres (i + 0.5) / 199, all distinct: no tie inside a bucket
    buckets = rng.choice(199, size=60, replace=False)
    p = ((buckets + 0.5) / 199).reshape(20, 3)
    y = np.eye(3)[rng.integers(0, 3, 20)]
    expected = sklearn_metrics.roc_auc_score(y.ravel(), p.ravel())
    assert M.AUC()(y, p) == pytest.approx(expected, abs=1e-12)
    expected_macro = sklearn_metrics.roc_auc_score(y.argmax(1), p / p.sum(1, keepdims=True),
                                                   multi_class="ovr")
    assert M.ExactMacroAUC()(y.argmax(1), p / p.sum(1, keepdims=True)) == \
        pytest.approx(expected_macro, abs=1e-12)


def test_exact_macro_auc_is_the_old_roc_auc():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 40)
    p = rng.dirichlet(np.ones(4), 40)
    m = M.ExactMacroAUC()
    m.update_state(y[:15], p[:15])
    m.update_state(y[15:], p[15:])
    assert m.result() == M.roc_auc(y, p)
    assert m.name == "exact_macro_auc"
    with pytest.raises(ValueError, match="sample weights"):
        m.update_state(y, p, sample_weight=np.ones(40))


# -- resolution by name -------------------------------------------------------------------


@pytest.mark.parametrize("identifier, cls, name", [
    ("categorical_accuracy", M.CategoricalAccuracy, "categorical_accuracy"),
    ("sparse_categorical_accuracy", M.SparseCategoricalAccuracy, "sparse_categorical_accuracy"),
    ("binary_accuracy", M.BinaryAccuracy, "binary_accuracy"),
    ("auc", M.AUC, "auc"),
    ("AUC", M.AUC, "AUC"),
    ("precision", M.Precision, "precision"),
    ("Recall", M.Recall, "Recall"),
    ("top_k_categorical_accuracy", M.TopKCategoricalAccuracy, "top_k_categorical_accuracy"),
    ("exact_macro_auc", M.ExactMacroAUC, "exact_macro_auc"),
])
def test_get_metric_names_as_keras_logs_them(identifier, cls, name):
    m = M.get_metric(identifier)
    assert type(m) is cls and m.name == name


@pytest.mark.parametrize("loss, cls", [
    ("sparse_categorical_crossentropy", M.SparseCategoricalAccuracy),
    ("categorical_crossentropy", M.CategoricalAccuracy),
    ("binary_crossentropy", M.BinaryAccuracy),
    (cn.losses.CategoricalCrossentropy(), M.CategoricalAccuracy),
])
def test_accuracy_resolves_by_the_loss(loss, cls):
    for identifier in ("accuracy", "acc"):
        m = M.get_metric(identifier, loss=loss)
        assert type(m) is cls and m.name == identifier
    assert type(M.get_metric("accuracy", loss=loss, label_kind="binary")) is M.BinaryAccuracy


@pytest.mark.parametrize("y_true, y_pred, resolved", [
    (np.array([0, 2, 1]), np.eye(3), M.SparseCategoricalAccuracy),          # rank 1 < rank 2
    (np.array([[0], [2], [1]]), np.eye(3), M.SparseCategoricalAccuracy),    # last dim 1 vs 3
    (np.eye(3), np.eye(3), M.CategoricalAccuracy),
    (np.array([[1], [0], [1]]), np.array([[0.9], [0.2], [0.4]]), M.BinaryAccuracy),
])
def test_accuracy_without_a_loss_follows_keras_shape_rule(y_true, y_pred, resolved):
    m = M.get_metric("accuracy")
    m.update_state(y_true, y_pred)
    assert type(m.resolved) is resolved and m.name == "accuracy"
    expected = resolved()
    expected.update_state(y_true, y_pred)
    assert m.result() == expected.result()


def test_get_metric_objects_functions_and_errors():
    auc = M.AUC(name="val_quality")
    assert M.get_metric(auc) is auc
    assert type(M.get_metric(M.Recall)) is M.Recall
    top3 = M.get_metric("top3_accuracy", label_kind="sparse")
    assert type(top3) is M.SparseTopKCategoricalAccuracy and top3.name == "top3_accuracy"

    def hits(y_true, y_pred):
        return (y_true == y_pred.argmax(1)).astype(float)
    m = M.get_metric(hits)
    assert m.name == "hits"
    assert m(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]])) == 0.5
    f1 = M.get_metric("f1")
    assert f1(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx(M.f1_score([0, 1, 1], [0, 1, 0]))
    with pytest.raises(ValueError, match="unknown metric 'aucc'"):
        M.get_metric("aucc")
    with pytest.raises(ValueError, match="label_kind"):
        M.get_metric("accuracy", label_kind="one-hot")
    with pytest.raises(TypeError, match="get_metric"):
        M.get_metric(3)


def test_old_get_still_returns_name_and_function():
    name, fn = M.get("auc")
    assert name == "auc" and fn(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])) == 1.0


def test_config_round_trip():
    for m in (M.AUC(num_thresholds=50, curve="PR", name="pr"), M.Precision(thresholds=[0.3, 0.6]),
              M.BinaryAccuracy(threshold=0.7), M.TopKCategoricalAccuracy(k=2)):
        clone = type(m).from_config(m.get_config())
        assert clone.get_config() == m.get_config()


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="categorical_accuracy.*integer labels"):
        M.CategoricalAccuracy().update_state(np.array([0, 1]), np.eye(2))
    with pytest.raises(ValueError, match="y_true has 2 samples but y_pred has 3"):
        M.AUC().update_state([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\)"):
        M.Recall().update_state([0, 1], [0.1, 0.2], sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="curve"):
        M.AUC(curve="ROCK")
    with pytest.raises(ValueError, match="num_thresholds"):
        M.AUC(num_thresholds=1)
    with pytest.raises(TypeError, match="y_pred must be numbers"):
        M.Precision().update_state([1, 0], ["a", "b"])
