"""Metrics against values worked out by hand on small cases."""

import numpy as np
import pytest

import convnet as cn
from convnet import metrics as M

# y_true / y_pred used by several tests; its confusion matrix, by hand:
#            pred 0  pred 1  pred 2
#   true 0     1       1       0
#   true 1     0       2       0
#   true 2     1       0       1
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_by_hand():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # probabilities give the same matrix through argmax; num_classes pads it
    probs = np.eye(3)[Y_PRED] * 0.8 + 0.1
    assert M.confusion_matrix(Y_TRUE, probs).tolist() == cm.tolist()
    assert M.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4).shape == (4, 4)
    assert M.confusion_matrix(np.eye(3)[Y_TRUE], Y_PRED).tolist() == cm.tolist()   # one-hot


def test_precision_recall_f1_by_hand():
    # class 0: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2
    # class 1: TP 2, FP 1, FN 0 -> P 2/3, R 1,   F1 0.8
    # class 2: TP 1, FP 0, FN 1 -> P 1,   R 1/2, F1 2/3
    p, r, f = M.precision_recall_f1(Y_TRUE, Y_PRED, average=None)
    np.testing.assert_allclose(p, [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(r, [0.5, 1.0, 0.5])
    np.testing.assert_allclose(f, [0.5, 0.8, 2 / 3])
    assert M.f1_score(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert M.precision(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert M.recall(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 1 + 0.5) / 3)
    # micro averaging over single-label data is the accuracy, 4/6
    for fn in (M.precision, M.recall, M.f1_score):
        assert fn(Y_TRUE, Y_PRED, average="micro") == pytest.approx(4 / 6)
    # weighted by support (2, 2, 2) equals macro here; check with unequal support
    assert M.f1_score([0, 0, 0, 1], [0, 0, 1, 1], average="weighted") == pytest.approx(
        0.75 * 0.8 + 0.25 * (2 / 3))


def test_precision_of_never_predicted_class_is_zero():
    p, r, f = M.precision_recall_f1([0, 1, 1], [0, 0, 0], average=None, num_classes=2)
    np.testing.assert_allclose(p, [1 / 3, 0.0])
    np.testing.assert_allclose(r, [1.0, 0.0])
    np.testing.assert_allclose(f, [0.5, 0.0])


def test_binary_auc_by_hand():
    # positives 0.35, 0.8; negatives 0.1, 0.4: of 4 (pos, neg) pairs, 3 are ordered right
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert M.roc_auc(y, s) == pytest.approx(0.75)
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf
    # (N, 2) probabilities use column 1; (N, 1) works too
    assert M.roc_auc(y, np.c_[1 - s, s]) == pytest.approx(0.75)
    assert M.roc_auc(y, s[:, None]) == pytest.approx(0.75)


def test_auc_counts_ties_as_half():
    # pairs: (0.5 vs 0.5) tie = 1/2, (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert M.roc_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert M.roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert M.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)


def test_multiclass_auc_is_one_vs_rest_macro_mean():
    y = np.array([0, 1, 2, 0, 1, 2])
    s = np.array([[0.7, 0.2, 0.1],
                  [0.3, 0.5, 0.2],
                  [0.2, 0.3, 0.5],
                  [0.4, 0.4, 0.2],
                  [0.5, 0.3, 0.2],
                  [0.1, 0.6, 0.3]])
    # class 0: pos 0.7, 0.4 vs neg 0.3, 0.2, 0.5, 0.1 -> 4 + 3 = 7 of 8
    # class 1: pos 0.5, 0.3 vs neg 0.2, 0.3, 0.4, 0.6 -> 3 + (1 + 0.5) = 4.5 of 8
    # class 2: pos 0.5, 0.3 vs neg 0.1, 0.2, 0.2, 0.2 -> 4 + 4 = 8 of 8 = 1
    per_class = M.roc_auc(y, s, average=None)
    np.testing.assert_allclose(per_class, [7 / 8, 4.5 / 8, 1.0])
    assert M.roc_auc(y, s) == pytest.approx((7 / 8 + 4.5 / 8 + 1.0) / 3)
    # a class with no sample in y_true is left out of the mean
    assert M.roc_auc([0, 1, 0, 1], s[:4]) == pytest.approx(
        np.mean([M.roc_auc([1, 0, 1, 0], s[:4, 0]), M.roc_auc([0, 1, 0, 1], s[:4, 1])]))


def test_top_k_accuracy_by_hand():
    s = np.array([[0.1, 0.5, 0.4],     # true 2 is 2nd
                  [0.6, 0.3, 0.1],     # true 0 is 1st
                  [0.5, 0.3, 0.2]])    # true 2 is 3rd
    y = np.array([2, 0, 2])
    assert M.top_k_categorical_accuracy(y, s, k=1) == pytest.approx(1 / 3)
    assert M.sparse_top_k_categorical_accuracy(y, s, k=2) == pytest.approx(2 / 3)
    assert M.top_k_categorical_accuracy(np.eye(3)[y], s, k=3) == pytest.approx(1.0)
    assert M.accuracy(y, s) == pytest.approx(1 / 3)
    name, fn = M.get("top2_accuracy")
    assert name == "top2_accuracy" and fn(y, s) == pytest.approx(2 / 3)


def test_classification_report_text():
    text = M.classification_report(Y_TRUE, Y_PRED, class_names=["cat", "dog", "bird"])
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    dog = next(line for line in lines if line.strip().startswith("dog")).split()
    assert dog == ["dog", "0.67", "1.00", "0.80", "2"]
    acc = next(line for line in lines if line.strip().startswith("accuracy")).split()
    assert acc == ["accuracy", "0.67", "6"]
    macro = next(line for line in lines if "macro avg" in line).split()
    assert macro[2:] == ["0.72", "0.67", "0.66", "6"]
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        M.classification_report(Y_TRUE, Y_PRED, class_names=["a", "b"], num_classes=3)


@pytest.mark.parametrize("fn", [M.accuracy, M.roc_auc, M.f1_score, M.precision, M.recall,
                                M.confusion_matrix, M.top_k_categorical_accuracy,
                                M.classification_report])
def test_mismatched_lengths_are_clear_errors(fn):
    with pytest.raises(ValueError, match="y_true has 3 samples but y_pred has 2"):
        fn([0, 1, 2], np.full((2, 3), 1 / 3))


def test_other_bad_input():
    with pytest.raises(ValueError, match="unknown metric 'accuracyy'"):
        M.get("accuracyy")
    with pytest.raises(ValueError, match="out of range"):
        M.confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="both classes"):
        M.roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="whole numbers"):
        M.confusion_matrix([0.5, 1], [0, 1])
    with pytest.raises(ValueError, match="average"):
        M.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="no samples"):
        M.accuracy([], np.zeros((0, 2)))


def test_get_names_and_compile(numpy_backend):
    for ident, name in [("accuracy", "accuracy"), ("acc", "accuracy"), ("AUC", "auc"),
                        ("f1", "f1"), ("f1_score", "f1"), ("precision", "precision"),
                        ("recall", "recall"), ("top_k_categorical_accuracy",
                                               "top_k_categorical_accuracy"),
                        ("sparse_categorical_accuracy", "sparse_categorical_accuracy")]:
        assert M.get(ident)[0] == name
    fn = lambda y, p: 0.25   # noqa: E731
    assert M.get(fn) == ("<lambda>", fn)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    model = cn.Sequential([cn.layers.Dense(3)], input_shape=(6,), seed=1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "auc", "exact_macro_auc", "f1", "top2_accuracy"])
    logs = model.evaluate(x, y, return_dict=True)
    probs = model.predict(x)
    assert logs["accuracy"] == pytest.approx(M.accuracy(y, probs))
    # "auc" is Keras' AUC: one ROC curve over the flattened one-hot labels, 200 thresholds
    assert logs["auc"] == pytest.approx(M.AUC()(np.eye(3)[y], probs))
    assert logs["exact_macro_auc"] == pytest.approx(M.roc_auc(y, probs))
    assert logs["f1"] == pytest.approx(M.f1_score(y, probs))
    assert logs["top2_accuracy"] == pytest.approx(M.top_k_categorical_accuracy(y, probs, k=2))
    assert M.get("sparse_categorical_accuracy")[1](y, probs) == logs["accuracy"]
