"""Stateful metric objects with Keras' semantics, computed on host numpy.

Each object accumulates over batches and reports one number for everything
seen since the last reset::

    m = AUC()
    for y_batch, p_batch in batches:
        m.update_state(y_batch, p_batch)      # sample_weight=... optional
    m.result()                                # a Python float
    m.reset_state()                           # start a new epoch

``m.name`` is the key under which a model logs it (``"auc"``, ``"val_auc"``).
Calling ``m(y_true, y_pred)`` updates the state and returns ``result()``, as
in Keras.  ``y_pred`` is what the model outputs: probabilities (softmax or
sigmoid), not logits (``AUC(from_logits=True)`` applies the sigmoid itself).

Families:

- mean metrics (:class:`MeanMetricWrapper` and the accuracies): one value
  per sample, averaged with the sample weights: ``sum(w * v) / sum(w)``;
- confusion-matrix metrics (:class:`Precision`, :class:`Recall`,
  :class:`AUC`): weighted true/false positive/negative counts at fixed
  thresholds over every element of ``y_pred`` (``y_true`` is positive where
  it is non-zero), accumulated exactly over the epoch;
- :class:`ExactMacroAUC`: keeps every label and score of the epoch and
  computes the exact one-vs-rest ROC AUC, averaged over classes (this is
  what ``metrics.roc_auc`` and the old ``compile(metrics=["auc"])`` reported).
"""

import numpy as np

from .arrays import to_host

__all__ = ["Metric", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
           "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC", "ExactMacroAUC",
           "EpochMetric", "label_kind_from_shapes"]

_EPSILON = 1e-7  # Keras' backend epsilon, used for AUC's end thresholds


# ----------------------------------------------------------------- helpers
def _array(a, owner, what):
    a = np.asarray(to_host(a))
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: {what} must be numbers, got dtype {a.dtype}")
    return a


def _same_rank(y_true, y_pred):
    """Keras' squeeze_or_expand_to_same_rank: drop or add a trailing axis of 1."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    return y_true, y_pred


def _inputs(y_true, y_pred, owner):
    y_true = _array(y_true, owner, "y_true")
    y_pred = _array(y_pred, owner, "y_pred")
    if y_true.ndim == 0 or y_pred.ndim == 0:
        raise ValueError(f"{owner}: expected arrays with a batch axis, got y_true {y_true.shape} "
                         f"and y_pred {y_pred.shape}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{owner}: y_true has {len(y_true)} samples but y_pred has "
                         f"{len(y_pred)}")
    return y_true, y_pred


def _weights(sample_weight, n, owner):
    """Sample weights as float64 ``(n,)``, or None.  A scalar applies to all."""
    if sample_weight is None:
        return None
    w = _array(sample_weight, owner, "sample_weight").astype(np.float64)
    if w.ndim == 0:
        return np.full(n, float(w))
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{owner}: sample_weight must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{owner}: sample_weight must be finite and >= 0")
    return w


def _one_hot_if_sparse(y_true, y_pred, owner):
    """Integer labels ``(N,)`` against scores ``(N, K)`` become one-hot ``(N, K)``.

    Keras would broadcast them against each other, silently; a confusion
    matrix over one-hot labels is what such a call means.
    """
    if y_pred.ndim == 2 and y_pred.shape[1] > 1 and (
            y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1)):
        labels = y_true.reshape(-1)
        if np.any(labels != np.round(labels)) or labels.min() < 0 \
                or labels.max() >= y_pred.shape[1]:
            raise ValueError(f"{owner}: integer labels must be in 0..{y_pred.shape[1] - 1} for "
                             f"y_pred with {y_pred.shape[1]} columns")
        return np.eye(y_pred.shape[1])[labels.astype(np.int64)]
    return y_true


def label_kind_from_shapes(y_true_shape, y_pred_shape):
    """``"binary"``, ``"sparse"`` or ``"categorical"``: Keras' rule for ``"accuracy"``.

    As Keras' compile: binary when ``y_pred``'s last axis is 1; sparse when
    ``y_true`` has fewer axes than ``y_pred``, or a last axis of 1 while
    ``y_pred``'s is larger; categorical otherwise.
    """
    y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    t_last = y_true_shape[-1] if y_true_shape else 1
    p_last = y_pred_shape[-1] if y_pred_shape else 1
    if p_last == 1:
        return "binary"
    if len(y_true_shape) < len(y_pred_shape) or (t_last == 1 and p_last > 1):
        return "sparse"
    return "categorical"


# ----------------------------------------------------------------- base
class Metric:
    """Base class: ``update_state`` / ``result`` / ``reset_state`` and a ``name``."""

    default_name = "metric"

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or self.default_name
        self.reset_state()

    def reset_state(self):
        raise NotImplementedError

    def reset_states(self):
        """Keras 2's name for :meth:`reset_state`."""
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        """Constructor arguments as a JSON-able dict (``cls(**config)`` rebuilds it)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


class MeanMetricWrapper(Metric):
    """The weighted mean of ``fn(y_true, y_pred, **kwargs)`` over every sample seen.

    ``fn`` returns one value per sample ``(N,)`` (values with more axes are
    averaged over them first, as Keras does) or one value for the batch,
    which then counts once per sample.
    """

    def __init__(self, fn, name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: fn must be callable, got {fn!r}")
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def _values(self, y_true, y_pred):
        return self._fn(y_true, y_pred, **self._fn_kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _inputs(y_true, y_pred, self.name)
        values = np.asarray(self._values(y_true, y_pred), dtype=np.float64)
        n = len(y_true)
        if values.ndim == 0:
            values = np.full(n, float(values))
        elif values.ndim > 1:
            values = values.reshape(len(values), -1).mean(axis=1)
        if values.shape != (n,):
            raise ValueError(f"{self.name}: the metric function returned {values.shape} values "
                             f"for {n} samples")
        w = _weights(sample_weight, n, self.name)
        if w is None:
            self.total += float(values.sum())
            self.count += n
        else:
            self.total += float(values @ w)
            self.count += float(w.sum())

    def result(self):
        # Keras divides with divide_no_nan: nothing seen (or zero weight) gives 0.
        return self.total / self.count if self.count else 0.0

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


# ------------------------------------------------------------- accuracies
def _accuracy_values(y_true, y_pred):
    y_true, y_pred = _same_rank(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: y_true {y_true.shape} and y_pred {y_pred.shape} must "
                         "have the same shape (Accuracy compares values elementwise)")
    return (y_true == y_pred).astype(np.float64)


def _binary_accuracy_values(y_true, y_pred, threshold=0.5):
    y_true, y_pred = _same_rank(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"binary_accuracy: y_true {y_true.shape} and y_pred {y_pred.shape} "
                         "must have the same shape")
    return (y_true == (y_pred > threshold)).astype(np.float64)


def _categorical_accuracy_values(y_true, y_pred):
    if y_true.shape != y_pred.shape or y_pred.ndim < 2:
        raise ValueError(f"categorical_accuracy: expected one-hot y_true and y_pred of the "
                         f"same shape (N, K), got {y_true.shape} and {y_pred.shape}"
                         + (" (integer labels: use sparse_categorical_accuracy)"
                            if y_true.ndim == y_pred.ndim - 1 else ""))
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float64)


def _sparse_labels(y_true, y_pred, owner):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_pred.ndim < 2 or y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"{owner}: expected integer labels (N,) and scores (N, K), got "
                         f"{y_true.shape} and {y_pred.shape}")
    return y_true


def _sparse_categorical_accuracy_values(y_true, y_pred):
    y_true = _sparse_labels(y_true, y_pred, "sparse_categorical_accuracy")
    return (y_true == y_pred.argmax(axis=-1)).astype(np.float64)


def _in_top_k(labels, y_pred, k):
    """True where the label's score is among the k highest; ties with the k-th
    score count as hits (TensorFlow's in_top_k)."""
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= y_pred.shape[-1]):
        raise ValueError(f"top_k_categorical_accuracy: labels must be in 0..{y_pred.shape[-1] - 1}")
    true_score = np.take_along_axis(y_pred, labels[..., None], axis=-1)
    return ((y_pred > true_score).sum(axis=-1) < k).astype(np.float64)


def _top_k_values(y_true, y_pred, k=5):
    if y_true.shape != y_pred.shape or y_pred.ndim < 2:
        raise ValueError(f"top_k_categorical_accuracy: expected one-hot y_true and y_pred of "
                         f"the same shape (N, K), got {y_true.shape} and {y_pred.shape}")
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k)


def _sparse_top_k_values(y_true, y_pred, k=5):
    y_true = _sparse_labels(y_true, y_pred, "sparse_top_k_categorical_accuracy")
    return _in_top_k(y_true, y_pred, k)


class Accuracy(MeanMetricWrapper):
    """How often ``y_pred`` equals ``y_true`` exactly (values, not argmax)."""

    def __init__(self, name="accuracy"):
        super().__init__(_accuracy_values, name)

    def get_config(self):
        return {"name": self.name}


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches ``y_true`` (0/1), elementwise."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(_binary_accuracy_values, name, threshold=float(threshold))


class CategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred) == argmax(y_true)`` for one-hot labels."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(_categorical_accuracy_values, name)

    def get_config(self):
        return {"name": self.name}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred) == y_true`` for integer labels ``(N,)`` or ``(N, 1)``."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(_sparse_categorical_accuracy_values, name)

    def get_config(self):
        return {"name": self.name}


def _check_k(k, owner):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{owner}: k must be a positive int, got {k!r}")
    return int(k)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the true class (one-hot labels) is among the ``k`` highest scores."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        super().__init__(_top_k_values, name, k=_check_k(k, "TopKCategoricalAccuracy"))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the true class (integer labels) is among the ``k`` highest scores."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        super().__init__(_sparse_top_k_values, name,
                         k=_check_k(k, "SparseTopKCategoricalAccuracy"))


# ------------------------------------------------- confusion-matrix metrics
def _positives_above(scores, labels, weights, thresholds):
    """Weighted true and false positives at each threshold: ``(tp, fp)``, each ``(T,)``.

    A score counts as positive at threshold t when ``score > t`` (strictly, as
    Keras).  ``thresholds`` must be sorted ascending; then the number of
    thresholds a score exceeds is ``searchsorted(thresholds, score, "left")``,
    and the positives at threshold j are the scores exceeding more than j of
    them: a histogram summed from the top.  O(M log T) instead of O(M T).
    """
    exceeded = np.searchsorted(thresholds, scores, side="left")
    exceeded[np.isnan(scores)] = 0  # NaN > t is False for every t
    t = len(thresholds)
    pos = np.bincount(exceeded, weights=weights * labels, minlength=t + 1)
    neg = np.bincount(exceeded, weights=weights * (1 - labels), minlength=t + 1)
    tp = np.cumsum(pos[::-1])[::-1][1:]
    fp = np.cumsum(neg[::-1])[::-1][1:]
    return tp, fp


def _flat_counts_input(metric, y_true, y_pred, sample_weight, label_weights=None):
    """Labels (0/1), scores and weights as flat float64 arrays of one length."""
    y_true, y_pred = _inputs(y_true, y_pred, metric.name)
    y_true = _one_hot_if_sparse(y_true, y_pred, metric.name)
    y_true, y_pred = _same_rank(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{metric.name}: y_true {y_true.shape} and y_pred {y_pred.shape} must "
                         "have the same shape")
    w = _weights(sample_weight, len(y_true), metric.name)
    w = np.ones(y_pred.shape) if w is None else np.broadcast_to(
        w.reshape((-1,) + (1,) * (y_pred.ndim - 1)), y_pred.shape)
    if label_weights is not None:
        w = w * label_weights
    return (y_true != 0).astype(np.float64), y_pred.astype(np.float64), w


class _ThresholdMetric(Metric):
    """Precision and Recall: TP/FP/FN counts at one or more thresholds."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        owner = type(self).__name__
        if top_k is not None:
            top_k = _check_k(top_k, owner)
        if thresholds is None:
            # Keras: 0.5, or "any score" when only the top k count
            thresholds = 0.5 if top_k is None else -1e10
        self._single = np.ndim(thresholds) == 0
        self.thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        if self.thresholds.ndim != 1 or not np.all(np.isfinite(self.thresholds)):
            raise ValueError(f"{owner}: thresholds must be a number or a list of numbers, "
                             f"got {thresholds!r}")
        self.top_k = top_k
        if class_id is not None and (isinstance(class_id, bool)
                                     or not isinstance(class_id, (int, np.integer))):
            raise ValueError(f"{owner}: class_id must be an int, got {class_id!r}")
        self.class_id = class_id
        self._order = np.argsort(self.thresholds, kind="stable")
        super().__init__(name)

    def reset_state(self):
        t = len(self.thresholds)
        self.true_positives = np.zeros(t)
        self.false_positives = np.zeros(t)
        self.false_negatives = np.zeros(t)

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores, w = _flat_counts_input(self, y_true, y_pred, sample_weight)
        if self.top_k is not None:
            # Keras: only each row's k highest scores may be positive, the rest
            # become -inf; among equal scores the lower column wins (top_k's order).
            top = np.argsort(-scores, axis=-1, kind="stable")[..., :self.top_k]
            keep = np.zeros(scores.shape, dtype=bool)
            np.put_along_axis(keep, top, True, axis=-1)
            scores = np.where(keep, scores, -np.inf)
        if self.class_id is not None:
            if not 0 <= self.class_id < scores.shape[-1]:
                raise ValueError(f"{self.name}: class_id {self.class_id} is out of range for "
                                 f"y_pred with {scores.shape[-1]} columns")
            labels, scores, w = (a[..., self.class_id] for a in (labels, scores, w))
        labels, scores, w = labels.ravel(), scores.ravel(), w.ravel()
        tp, fp = _positives_above(scores, labels, w, self.thresholds[self._order])
        back = np.empty_like(self._order)
        back[self._order] = np.arange(len(self._order))
        tp, fp = tp[back], fp[back]
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += float((w * labels).sum()) - tp

    def _ratio(self, denominator_extra):
        den = self.true_positives + denominator_extra
        values = np.divide(self.true_positives, den, out=np.zeros_like(den), where=den > 0)
        return float(values[0]) if self._single else values

    def get_config(self):
        thresholds = float(self.thresholds[0]) if self._single else self.thresholds.tolist()
        return {"name": self.name, "thresholds": thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_ThresholdMetric):
    """``TP / (TP + FP)`` over every element, positive where ``y_pred > threshold``.

    Args (Keras'): ``thresholds`` (default 0.5; a list gives one result per
    threshold), ``top_k`` (only each row's k highest scores may be positive),
    ``class_id`` (only that column).  0 when nothing was predicted positive.
    Integer labels ``(N,)`` against scores ``(N, K)`` are taken as one-hot.
    """

    default_name = "precision"

    def result(self):
        return self._ratio(self.false_positives)


class Recall(_ThresholdMetric):
    """``TP / (TP + FN)``; arguments as :class:`Precision`.  0 with no positive labels."""

    default_name = "recall"

    def result(self):
        return self._ratio(self.false_negatives)


class AUC(Metric):
    """Area under the ROC or precision-recall curve, from fixed thresholds (Keras' AUC).

    The scores are compared with ``num_thresholds`` thresholds:
    ``-1e-7, 1/(T-1), 2/(T-1), ..., (T-2)/(T-1), 1+1e-7`` (or ``thresholds``
    given, plus the two ends).  At each, weighted TP/FP/TN/FN are accumulated
    over the epoch; ``result()`` integrates the curve through those points.

    Args (Keras'):
        num_thresholds: T >= 2 (200).
        curve: ``"ROC"`` (TPR against FPR) or ``"PR"`` (precision against recall).
        summation_method: ``"interpolation"`` (trapezoids for ROC; Davis &
            Goadrich's interpolation for PR), ``"minoring"`` or ``"majoring"``
            (left/right Riemann sums with the lower/higher end).
        thresholds: explicit thresholds in [0, 1] instead of the even grid.
        multi_label: False: one curve over all flattened label/score pairs
            (so one-hot labels give a single "micro" curve); True: one curve per
            column of ``(N, L)`` data, and the mean of their areas
            (``label_weights`` weights that mean).
        num_labels: accepted for Keras' signature (L is taken from the data).
        label_weights: ``(L,)`` weights of the columns (flattened case: they
            weight each column's pairs).
        from_logits: apply the sigmoid to ``y_pred`` first.
    """

    default_name = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        curve = str(curve).upper()
        if curve not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR', got {curve!r}")
        summation_method = str(summation_method).lower()
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring', got {summation_method!r}")
        if thresholds is not None:
            inner = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
            if inner.size and (inner.min() < 0 or inner.max() > 1):
                raise ValueError("AUC: thresholds must be in [0, 1]")
            num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                    or num_thresholds < 2:
                raise ValueError(f"AUC: num_thresholds must be an int > 1, got {num_thresholds!r}")
            inner = np.array([(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)])
        self.num_thresholds = int(num_thresholds)
        self._given_thresholds = None if thresholds is None else inner.tolist()
        self.thresholds = np.concatenate([[0.0 - _EPSILON], inner, [1.0 + _EPSILON]])
        self.curve = curve
        self.summation_method = summation_method
        self.multi_label = bool(multi_label)
        self.num_labels = num_labels
        self.label_weights = None if label_weights is None else \
            np.asarray(label_weights, dtype=np.float64)
        self.from_logits = bool(from_logits)
        super().__init__(name)

    def reset_state(self):
        # (T, L) counts for multi_label, (T,) otherwise; created on first update
        self.true_positives = self.false_positives = None
        self.true_negatives = self.false_negatives = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores, w = _flat_counts_input(self, y_true, y_pred, sample_weight)
        if self.from_logits:
            scores = 1.0 / (1.0 + np.exp(-scores))
        if self.multi_label:
            if scores.ndim != 2:
                raise ValueError(f"{self.name}: multi_label=True needs (N, L) labels and "
                                 f"scores, got {scores.shape}")
            columns = [(labels[:, j], scores[:, j], w[:, j]) for j in range(scores.shape[1])]
        else:
            if self.label_weights is not None:
                w = w * self.label_weights
            columns = [(labels.ravel(), scores.ravel(), w.ravel())]
        counts = []
        for lab, sc, wt in columns:
            tp, fp = _positives_above(sc, lab, wt, self.thresholds)
            pos, neg = float((wt * lab).sum()), float((wt * (1 - lab)).sum())
            counts.append((tp, fp, neg - fp, pos - tp))
        tp, fp, tn, fn = (np.stack(c, axis=-1) if self.multi_label else c[0]
                          for c in zip(*counts))
        if self.true_positives is None:
            self.true_positives, self.false_positives = tp, fp
            self.true_negatives, self.false_negatives = tn, fn
        else:
            if tp.shape != self.true_positives.shape:
                raise ValueError(f"{self.name}: this batch has {tp.shape[-1]} labels, earlier "
                                 f"batches had {self.true_positives.shape[-1]}")
            self.true_positives = self.true_positives + tp
            self.false_positives = self.false_positives + fp
            self.true_negatives = self.true_negatives + tn
            self.false_negatives = self.false_negatives + fn

    @staticmethod
    def _divide(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)

    def _pr_interpolated(self):
        """Davis & Goadrich (2006): precision interpolated along TP between thresholds."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = self._divide(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, self._divide(p[:-1], np.maximum(p[1:], 0)), 1.0)
        log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
        return self._divide(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0))

    def result(self):
        if self.true_positives is None:
            return 0.0
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        if self.curve == "PR" and self.summation_method == "interpolation":
            pieces = self._pr_interpolated()
        else:
            if self.curve == "ROC":
                x, y = self._divide(fp, fp + tn), self._divide(tp, tp + fn)
            else:
                x, y = self._divide(tp, tp + fn), self._divide(tp, tp + fp)
            if self.summation_method == "interpolation":
                heights = (y[:-1] + y[1:]) / 2
            elif self.summation_method == "minoring":
                heights = np.minimum(y[:-1], y[1:])
            else:
                heights = np.maximum(y[:-1], y[1:])
            # thresholds ascend, so x (FPR or recall) descends along the arrays
            pieces = (x[:-1] - x[1:]) * heights
        per_label = pieces.sum(axis=0)
        if not self.multi_label:
            return float(per_label)
        if self.label_weights is None:
            return float(per_label.mean())
        return float(per_label @ self.label_weights / self.label_weights.sum())

    def get_config(self):
        return {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method,
                "thresholds": self._given_thresholds, "multi_label": self.multi_label,
                "num_labels": self.num_labels,
                "label_weights": None if self.label_weights is None
                else self.label_weights.tolist(),
                "from_logits": self.from_logits}


# --------------------------------------------- exact metrics over the epoch
class EpochMetric(Metric):
    """Keeps every label and prediction of the epoch and applies ``fn`` to all of them.

    For metrics that are not means of per-sample values (exact ROC AUC, F1,
    macro precision): ``result() = fn(all y_true, all y_pred)``.  Memory grows
    with the epoch (N x K scores).  Sample weights are not supported.
    """

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"EpochMetric: fn must be callable, got {fn!r}")
        self._fn = fn
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def reset_state(self):
        self._y_true, self._y_pred = [], []

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.name}: this exact epoch metric does not take sample "
                             "weights")
        y_true, y_pred = _inputs(y_true, y_pred, self.name)
        self._y_true.append(y_true)
        self._y_pred.append(y_pred)

    def result(self):
        if not self._y_true:
            return 0.0
        return float(self._fn(np.concatenate(self._y_true), np.concatenate(self._y_pred)))

    def get_config(self):
        raise NotImplementedError("EpochMetric wraps a function; it cannot be rebuilt from a "
                                  "config")


class ExactMacroAUC(EpochMetric):
    """The exact ROC AUC of the epoch, one-vs-rest and averaged over classes.

    Binary data (scores ``(N,)``, ``(N, 1)`` or ``(N, 2)``) gives the exact
    binary AUC (ties count one half); K > 2 classes the unweighted mean of the
    K one-vs-rest AUCs (classes without both positives and negatives left
    out): :func:`convnet.metrics.roc_auc`.  Unlike :class:`AUC`, no
    thresholds, no flattening of one-hot labels into one curve.
    """

    def __init__(self, name="exact_macro_auc"):
        from .metrics import roc_auc  # metrics re-exports this module: import late
        super().__init__(roc_auc, name)

    def get_config(self):
        return {"name": self.name}


_CLASSES = {cls.__name__: cls for cls in (
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall, AUC,
    ExactMacroAUC)}


class _ByLabelKind(Metric):
    """A metric chosen on the first update from the shapes of y_true and y_pred.

    That is how Keras' compile resolves ``"accuracy"``: binary, sparse or
    categorical accuracy by :func:`label_kind_from_shapes`.  ``resolved`` is
    the chosen metric (None before the first update).
    """

    def __init__(self, name, factories):
        self._factories = factories
        self.resolved = None
        super().__init__(name)

    def reset_state(self):
        if self.resolved is not None:
            self.resolved.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.resolved is None:
            y_true_a, y_pred_a = _inputs(y_true, y_pred, self.name)
            kind = label_kind_from_shapes(y_true_a.shape, y_pred_a.shape)
            self.resolved = self._factories[kind](self.name)
        self.resolved.update_state(y_true, y_pred, sample_weight)

    def result(self):
        return 0.0 if self.resolved is None else self.resolved.result()

    def get_config(self):
        raise NotImplementedError("a metric resolved by label kind is rebuilt from its "
                                  "identifier (get_metric), not from a config")
