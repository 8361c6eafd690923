"""Metrics: functions of (y_true, y_pred) usable standalone and in compile(metrics=[...]).

y_true is integer labels (N,) or one-hot (N, K). y_pred is class probabilities (or
scores) of shape (N, K); the functions that only need a decision (confusion matrix,
precision, recall, F1, classification report) also take predicted labels (N,).
During fit, metrics are computed over the whole epoch's predictions, so an epoch's
accuracy, AUC or F1 is exact, not an average of batch values.

    accuracy                           argmax(y_pred) == y_true
    top_k_categorical_accuracy         the true class is among the k highest scores
    roc_auc (name "auc")               area under the ROC curve (trapezoid rule);
                                       several classes: one-vs-rest, macro average
    precision / recall / f1_score      per class, or averaged: macro, micro, weighted
    confusion_matrix                   C[i, j] = samples of class i predicted as j
    classification_report              a text table of the above per class

`get(identifier)` returns `(name, fn)` with fn(y_true, y_prob) -> float; that is
what compile(metrics=["accuracy", "auc", "f1", "top3_accuracy", ...]) uses.

Stateful metric objects with Keras' semantics (`CategoricalAccuracy`, `AUC`,
`Precision`, ...: update_state / result / reset_state, sample weights) live in
convnet.metric_objects and are re-exported here; `get_metric(identifier, loss=...)`
resolves a compile-style identifier to one of them, as Keras' compile does.
"""

import re

import numpy as np

from .arrays import class_indices, to_host


# ----------------------------------------------------------------- helpers
def _labels(y_true, owner="metric"):
    """Integer labels (N,) from labels (N,), (N, 1) or one-hot (N, K)."""
    y = to_host(y_true)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    y = class_indices(y, owner, shape_text="(N,) or one-hot (N, K)")
    if y.size and y.min() < 0:
        raise ValueError(f"{owner}: labels must be >= 0, got {y.min()}")
    return y


def _check_lengths(y_true, y_pred, owner):
    y_pred = np.asarray(to_host(y_pred))
    if y_pred.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: y_pred must be numbers (scores or labels), got dtype {y_pred.dtype}")
    if y_pred.ndim == 0:
        raise ValueError(f"{owner}: y_pred must be an array of predictions, got a scalar")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{owner}: y_true has {len(y_true)} samples but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError(f"{owner}: no samples")
    return y_pred


def _scores(y_true, y_pred, owner):
    """(labels (N,), scores (N, K)) with matching lengths."""
    labels = _labels(y_true, owner)
    scores = _check_lengths(labels, y_pred, owner)
    if scores.ndim != 2:
        raise ValueError(f"{owner}: expected y_pred of shape (N, K) (class scores), got {scores.shape}")
    if labels.max() >= scores.shape[1]:
        raise ValueError(f"{owner}: label {labels.max()} is out of range for y_pred with "
                         f"{scores.shape[1]} classes")
    _check_finite(scores, owner)
    return labels, scores.astype(np.float64, copy=False)


def _check_finite(scores, owner):
    """NaN scores have no order (argmax picks them, sorting places them anywhere),
    so a metric of them would be a number with no meaning: refuse them."""
    if scores.dtype.kind == "f" and not np.all(np.isfinite(scores)):
        raise ValueError(f"{owner}: y_pred has NaN or infinite scores; a diverged model's "
                         "predictions have no metric")


def _label_pair(y_true, y_pred, num_classes, owner):
    """(true labels, predicted labels, number of classes). y_pred: labels or scores."""
    labels = _labels(y_true, owner)
    pred = _check_lengths(labels, y_pred, owner)
    if pred.ndim == 2 and pred.shape[1] > 1:
        k_pred = pred.shape[1]
        pred = pred.argmax(axis=1)
    else:
        k_pred = None
        pred = _labels(pred, owner + " (y_pred)")
    if num_classes is None:
        num_classes = k_pred or int(max(labels.max(), pred.max())) + 1
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{owner}: num_classes must be a positive int, got {num_classes!r}")
    top = int(max(labels.max(), pred.max()))
    if top >= num_classes:
        raise ValueError(f"{owner}: label {top} is out of range for num_classes={num_classes}")
    return labels, pred, int(num_classes)


# ----------------------------------------------------------------- accuracy
def accuracy(y_true, y_pred):
    """Fraction of samples whose highest-scoring class is the true class.

    y_true: (N,) labels or (N, K) one-hot; y_pred: (N, K) scores.
    """
    labels, scores = _scores(y_true, y_pred, "accuracy")
    return float((scores.argmax(axis=1) == labels).mean())


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Fraction of samples whose true class is among the k highest scores.

    y_true: labels (N,) or one-hot (N, K); y_pred: (N, K). A true class tied with
    the k-th score counts as a hit (as TensorFlow's in_top_k does): the sample is a
    hit when fewer than k classes score strictly higher than the true class.
    """
    owner = "top_k_categorical_accuracy"
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{owner}: k must be a positive int, got {k!r}")
    labels, scores = _scores(y_true, y_pred, owner)
    true_score = scores[np.arange(len(labels)), labels]
    higher = (scores > true_score[:, None]).sum(axis=1)
    return float((higher < k).mean())


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """top_k_categorical_accuracy for integer labels (Keras' name; same function)."""
    return top_k_categorical_accuracy(y_true, y_pred, k=k)


class TopKAccuracy:
    """A top-k accuracy metric with a fixed k, named "top{k}_accuracy" in the logs."""

    def __init__(self, k=5):
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"TopKAccuracy: k must be a positive int, got {k!r}")
        self.k = int(k)
        self.name = f"top{self.k}_accuracy"

    def __call__(self, y_true, y_pred):
        return top_k_categorical_accuracy(y_true, y_pred, k=self.k)


# ---------------------------------------------------------------------- ROC
def roc_curve(y_true, y_score):
    """ROC curve of a binary problem: (fpr, tpr, thresholds), each (M,).

    y_true: 0/1 labels (N,); y_score: scores (N,), higher meaning "positive".
    The thresholds are the distinct scores from high to low, preceded by +inf (the
    point (0, 0) where nothing is called positive). Tied scores move the curve
    diagonally, which is what the trapezoid rule needs to count a tie as one half.
    """
    y = _labels(y_true, "roc_curve")
    s = _check_lengths(y, y_score, "roc_curve").astype(np.float64).reshape(len(y), -1)
    if s.shape[1] != 1:
        raise ValueError(f"roc_curve: expected one score per sample, got y_score of shape {s.shape}")
    s = s[:, 0]
    if y.size and y.max() > 1:
        raise ValueError("roc_curve: y_true must be binary (0 or 1)")
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives == 0 or negatives == 0:
        raise ValueError("roc_curve: needs at least one positive and one negative sample, got "
                         f"{positives} positive and {negatives} negative")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last index of each run of equal scores: a threshold there admits the whole run
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    return fpr, tpr, np.r_[np.inf, s[last]]


def _trapezoid(x, y):
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_auc(y_true, y_score, average="macro"):
    """Area under the ROC curve.

    Binary: y_true 0/1 (N,) and y_score (N,), (N, 1) (score of class 1) or (N, 2)
    (probabilities; column 1 is used).
    Several classes (y_score (N, K), K > 2): one ROC per class, that class against
    the rest, and the mean of their areas (average="macro") or the list
    (average=None). Classes with no positive or no negative sample have no ROC
    curve; they are left out of the mean (nan in the list).
    """
    owner = "roc_auc"
    labels = _labels(y_true, owner)
    scores = _check_lengths(labels, y_score, owner).astype(np.float64)
    _check_finite(scores, owner)
    if average not in ("macro", None):
        raise ValueError(f"{owner}: average must be 'macro' or None, got {average!r}")
    if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
        if labels.max() > 1:
            raise ValueError(f"{owner}: one score per sample means a binary problem, but y_true "
                             f"has label {labels.max()}")
        return _binary_auc(labels, scores.reshape(-1), owner)
    if scores.ndim != 2:
        raise ValueError(f"{owner}: expected y_score of shape (N,) or (N, K), got {scores.shape}")
    k = scores.shape[1]
    if labels.max() >= k:
        raise ValueError(f"{owner}: label {labels.max()} is out of range for y_score with {k} classes")
    if k == 2:
        return _binary_auc(labels, scores[:, 1], owner)
    per_class = np.full(k, np.nan)
    for c in range(k):
        is_c = (labels == c).astype(np.int64)
        if 0 < is_c.sum() < len(is_c):
            per_class[c] = _binary_auc(is_c, scores[:, c], owner)
    if average is None:
        return per_class
    if np.all(np.isnan(per_class)):
        raise ValueError(f"{owner}: no class has both positive and negative samples")
    return float(np.nanmean(per_class))


def _binary_auc(labels, scores, owner):
    if labels.min() == labels.max():
        raise ValueError(f"{owner}: AUC needs both classes in y_true, got only class {labels[0]}")
    fpr, tpr, _ = roc_curve(labels, scores)
    return _trapezoid(fpr, tpr)


auc = roc_auc


# ------------------------------------------------- confusion matrix and F1
def confusion_matrix(y_true, y_pred, num_classes=None, _owner="confusion_matrix"):
    """C (K, K) of ints: C[i, j] counts samples of true class i predicted as j.

    y_pred: predicted labels (N,) or class scores/probabilities (N, K) (argmax taken).
    num_classes: K; by default the number of score columns, else max label + 1.
    """
    labels, pred, k = _label_pair(y_true, y_pred, num_classes, _owner)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def _divide(num, den):
    """num / den with 0 where den == 0 (a class never predicted has precision 0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


_AVERAGES = ("macro", "micro", "weighted", None)


def precision_recall_f1(y_true, y_pred, average="macro", num_classes=None, _owner="precision_recall_f1"):
    """(precision, recall, f1) from the confusion matrix.

    Per class c: precision = TP / (TP + FP), recall = TP / (TP + FN),
    F1 = 2 P R / (P + R); 0 where a denominator is 0.
    average: "macro" (mean over classes), "weighted" (mean weighted by support),
    "micro" (from the summed TP/FP/FN; equals accuracy for single-label data) or
    None (arrays, one value per class).
    """
    if average not in _AVERAGES:
        raise ValueError(f"precision/recall/f1: average must be one of {_AVERAGES}, got {average!r}")
    cm = confusion_matrix(y_true, y_pred, num_classes, _owner=_owner)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    if average == "micro":
        tp, predicted, support = tp.sum(), predicted.sum(), support.sum()
    p = _divide(tp, predicted)
    r = _divide(tp, support)
    f = _divide(2 * p * r, p + r)
    if average == "macro":
        return float(p.mean()), float(r.mean()), float(f.mean())
    if average == "weighted":
        w = support / support.sum()
        return float(p @ w), float(r @ w), float(f @ w)
    if average == "micro":
        return float(p), float(r), float(f)
    return p, r, f


def precision(y_true, y_pred, average="macro", num_classes=None):
    """Precision TP / (TP + FP); see precision_recall_f1 for `average`."""
    return precision_recall_f1(y_true, y_pred, average, num_classes, _owner="precision")[0]


def recall(y_true, y_pred, average="macro", num_classes=None):
    """Recall TP / (TP + FN); see precision_recall_f1 for `average`."""
    return precision_recall_f1(y_true, y_pred, average, num_classes, _owner="recall")[1]


def f1_score(y_true, y_pred, average="macro", num_classes=None):
    """F1, the harmonic mean of precision and recall; see precision_recall_f1."""
    return precision_recall_f1(y_true, y_pred, average, num_classes, _owner="f1_score")[2]


def classification_report(y_true, y_pred, class_names=None, digits=2, num_classes=None):
    """A text table of precision, recall, F1 and support per class (as sklearn prints).

    y_pred: predicted labels (N,) or scores (N, K). class_names: one name per class.
    """
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if num_classes is None:
            num_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    k = cm.shape[0]
    if class_names is None:
        class_names = [str(c) for c in range(k)]
    if len(class_names) != k:
        raise ValueError(f"classification_report: {len(class_names)} class names for {k} classes")
    p, r, f = precision_recall_f1(y_true, y_pred, None, k)
    support = cm.sum(axis=1)
    total = int(support.sum())
    width = max(len("weighted avg"), *(len(n) for n in class_names))
    num = f"{{:>10.{digits}f}}"
    head = " " * width + "".join(f"{h:>10}" for h in ("precision", "recall", "f1-score", "support"))
    lines = [head, ""]
    for i, name in enumerate(class_names):
        lines.append(name.rjust(width) + num.format(p[i]) + num.format(r[i]) + num.format(f[i])
                     + f"{support[i]:>10d}")
    lines.append("")
    acc = np.trace(cm) / total
    lines.append("accuracy".rjust(width) + " " * 20 + num.format(acc) + f"{total:>10d}")
    w = support / total
    for label, (pp, rr, ff) in (("macro avg", (p.mean(), r.mean(), f.mean())),
                                ("weighted avg", (p @ w, r @ w, f @ w))):
        lines.append(label.rjust(width) + num.format(pp) + num.format(rr) + num.format(ff)
                     + f"{total:>10d}")
    return "\n".join(lines)


# ------------------------------------------------------------- by name
def _named(fn, name, **kwargs):
    def metric(y_true, y_pred):
        return fn(y_true, y_pred, **kwargs)
    metric.__name__ = name
    metric.name = name
    return metric


METRICS = {
    "accuracy": accuracy,
    # Keras' names for the same argmax accuracy, logged under the name given
    "categorical_accuracy": _named(accuracy, "categorical_accuracy"),
    "sparse_categorical_accuracy": _named(accuracy, "sparse_categorical_accuracy"),
    "top_k_categorical_accuracy": _named(top_k_categorical_accuracy, "top_k_categorical_accuracy"),
    "sparse_top_k_categorical_accuracy": _named(top_k_categorical_accuracy,
                                                "sparse_top_k_categorical_accuracy"),
    "auc": _named(roc_auc, "auc"),
    "precision": _named(precision, "precision"),
    "recall": _named(recall, "recall"),
    "f1": _named(f1_score, "f1"),
    "micro_f1": _named(f1_score, "micro_f1", average="micro"),
    "weighted_f1": _named(f1_score, "weighted_f1", average="weighted"),
}
ALIASES = {"acc": "accuracy", "roc_auc": "auc", "f1_score": "f1", "macro_f1": "f1"}
_TOP_K = re.compile(r"top_?(\d+)(_categorical)?_acc(uracy)?$")


def get(identifier):
    """(name, fn) for a metric: a name such as "accuracy", "auc", "f1", "precision",
    "recall", "top5_accuracy" (any k), or a function of (y_true, y_pred) -> float
    (its `name` attribute or __name__ names it in the logs)."""
    if callable(identifier):
        return getattr(identifier, "name", getattr(identifier, "__name__", "metric")), identifier
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        key = ALIASES.get(key, key)
        if key in METRICS:
            return key, METRICS[key]
        match = _TOP_K.fullmatch(key)
        if match and int(match.group(1)) >= 1:
            metric = TopKAccuracy(int(match.group(1)))
            return metric.name, metric
    raise ValueError(f"unknown metric {identifier!r}; expected one of "
                     f"{sorted(METRICS) + sorted(ALIASES) + ['top<k>_accuracy']} or a function")


# ------------------------------------------------ metric objects by name
# Keras' metric objects, re-exported (the module imports nothing from here at
# import time, so either module can be imported first).
from .metric_objects import (  # noqa: E402
    AUC,
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    EpochMetric,
    ExactMacroAUC,
    MeanMetricWrapper,
    Metric,
    Precision,
    Recall,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    _ByLabelKind,
    label_kind_from_shapes,
)

LABEL_KINDS = ("binary", "sparse", "categorical")
_LOSS_KINDS = {"binary_crossentropy": "binary", "sparse_categorical_crossentropy": "sparse",
               "categorical_crossentropy": "categorical"}
_ACCURACY_BY_KIND = {"binary": BinaryAccuracy, "sparse": SparseCategoricalAccuracy,
                     "categorical": CategoricalAccuracy}
# identifier (lower case) -> metric class; class names work too, as in Keras
_OBJECTS = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "auc": AUC,
    "precision": Precision,
    "recall": Recall,
    "exact_macro_auc": ExactMacroAUC,
    "macro_auc": ExactMacroAUC,
    "roc_auc": ExactMacroAUC,   # the old name of the exact one-vs-rest AUC
}
_OBJECTS.update({cls.__name__.lower(): cls for cls in set(_OBJECTS.values()) | {Accuracy}})


def _label_kind(loss, label_kind):
    if label_kind is not None:
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"get_metric: label_kind must be one of {LABEL_KINDS}, "
                             f"got {label_kind!r}")
        return label_kind
    if loss is None:
        return None
    name = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
    return _LOSS_KINDS.get(str(name).lower())


def get_metric(identifier, loss=None, label_kind=None):
    """A fresh :class:`Metric` object for a compile-style identifier, named as Keras logs it.

    Args:
        identifier: a Metric object (returned as is), a Metric class, a
            string, or a function ``fn(y_true, y_pred)`` returning per-sample
            values (wrapped in a MeanMetricWrapper named after it).
        loss: the compiled loss (name or object), used to resolve "accuracy".
        label_kind: ``"binary"``, ``"sparse"`` or ``"categorical"``; overrides ``loss``.

    Strings (case-insensitive):
        "accuracy"/"acc": BinaryAccuracy, SparseCategoricalAccuracy or
            CategoricalAccuracy by the label kind (from ``label_kind``, else
            the loss; with neither it is decided on the first update from the
            shapes, by Keras' rule :func:`label_kind_from_shapes`);
        Keras' names ("categorical_accuracy", "auc", "precision", "recall",
            "top_k_categorical_accuracy", ...) and class names ("AUC");
        "exact_macro_auc" (also "macro_auc", "roc_auc"): the exact one-vs-rest AUC;
        "top<k>_accuracy": top-k accuracy for that k;
        "f1", "micro_f1", "weighted_f1": exact epoch F1 (EpochMetric).
    The metric's ``name`` (its history key) is the string as written, as in
    Keras 3: "acc" logs "acc", "AUC" logs "AUC"; objects keep their own name.

    Raises:
        ValueError: an unknown name.  TypeError: an identifier of another type.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    kind = _label_kind(loss, label_kind)
    if isinstance(identifier, str):
        name = identifier
        key = identifier.strip().lower()
        if key in ("accuracy", "acc"):
            if kind is not None:
                return _ACCURACY_BY_KIND[kind](name=name)
            return _ByLabelKind(name, {k: (lambda n, c=c: c(name=n))
                                       for k, c in _ACCURACY_BY_KIND.items()})
        if key in _OBJECTS:
            return _OBJECTS[key](name=name)
        match = _TOP_K.fullmatch(key)
        if match and int(match.group(1)) >= 1:
            k = int(match.group(1))
            sparse = lambda n: SparseTopKCategoricalAccuracy(k=k, name=n)  # noqa: E731
            dense = lambda n: TopKCategoricalAccuracy(k=k, name=n)  # noqa: E731
            if kind == "sparse":
                return sparse(name)
            if kind is not None:
                return dense(name)
            return _ByLabelKind(name, {"sparse": sparse, "categorical": dense, "binary": dense})
        key = ALIASES.get(key, key)
        if key in ("f1", "micro_f1", "weighted_f1"):
            return EpochMetric(METRICS[key], name=name)
        raise ValueError(f"get_metric: unknown metric {identifier!r}; expected one of "
                         f"{sorted(set(_OBJECTS) | {'accuracy', 'acc', 'f1', 'micro_f1'})}, "
                         "'top<k>_accuracy', a Metric object or a function")
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "name", None)
                                 or getattr(identifier, "__name__", "metric"))
    raise TypeError(f"get_metric: expected a metric name, a Metric object or a function, "
                    f"got {identifier!r}")


__all__ = ["accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
           "TopKAccuracy", "roc_curve", "roc_auc", "auc", "confusion_matrix",
           "precision_recall_f1", "precision", "recall", "f1_score", "classification_report",
           "get", "METRICS", "get_metric", "label_kind_from_shapes", "Metric",
           "MeanMetricWrapper", "EpochMetric", "Accuracy", "BinaryAccuracy",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC", "ExactMacroAUC"]
