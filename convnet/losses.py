"""Cross-entropy losses, fused with softmax and computed stably from logits.

With logits z (N, K) and p = softmax(z):

    loss = mean_i  -sum_k t_ik log p_ik,    log p = z - logsumexp(z)
    d loss / d z = (p - t) / N              (for one-hot t)

Computing log p as z - logsumexp(z) (with the max subtracted first) never forms
exp of a large number and never takes log(0), so logits of 1e4 give finite
numbers. A model whose last layer is softmax is trained through this same path:
the model feeds the loss the last layer's pre-softmax logits.

Usage, as a learner:  loss.forward(logits, targets) -> mean loss (float);
loss.backward() -> d loss / d logits (N, K). As in Keras, loss(y_true, y_pred)
returns the mean loss.
"""

import numpy as np

from ._checks import check_real
from .arrays import class_indices, to_host
from .backend import get_ops

_PROB_EPSILON = 1e-7


class Loss:
    """Base class: forward(y_pred, y_true) -> float, backward() -> d loss / d y_pred."""

    name = "loss"

    def __init__(self, from_logits=False, name=None):
        self.from_logits = bool(from_logits)
        if name is not None:
            self.name = name
        self._grad = None

    def __call__(self, y_true, y_pred):
        return self.forward(y_pred, y_true)

    def forward(self, y_pred, y_true, from_logits=None, sample_weight=None):
        """Mean loss over the batch. y_pred: (N, K) logits or probabilities.

        sample_weight: None, a scalar or (N,) weights. Weighted, the loss is Keras'
        sum_over_batch_size reduction, sum_i w_i loss_i / N (divided by the batch
        size, not by the sum of the weights), and its gradient w_i dloss_i / N."""
        ops = get_ops()
        owner = type(self).__name__
        if not hasattr(y_pred, "dtype"):
            try:
                y_pred = np.asarray(y_pred)
            except ValueError as exc:     # a ragged list
                raise ValueError(f"{owner}: predictions must be a rectangular array: {exc}") from None
        # NaN or inf predictions are *not* refused here: they give a NaN loss, which
        # is what a training loop watches for (the model reports where it diverged)
        if y_pred.dtype.kind not in "fiub":
            raise TypeError(f"{owner}: expected real-valued predictions, got dtype {y_pred.dtype}")
        y_pred = ops.asarray(y_pred)
        if y_pred.ndim != 2 or y_pred.shape[0] == 0 or y_pred.shape[1] == 0:
            raise ValueError(f"{owner}: expected predictions of shape (N, classes) "
                             f"with N > 0 and classes > 0, got {tuple(y_pred.shape)}")
        if not np.issubdtype(y_pred.dtype, np.floating):
            y_pred = y_pred.astype(np.float32)
        targets = self._targets(y_true, y_pred.shape)
        logits = self.from_logits if from_logits is None else from_logits
        n = y_pred.shape[0]
        if logits:
            losses, grad = self._from_logits(ops, y_pred, targets)
        else:
            losses, grad = self._from_probabilities(ops, y_pred, targets)
        if sample_weight is not None:
            w = ops.asarray(check_sample_weight(sample_weight, n, owner), dtype=losses.dtype)
            losses = losses * w
            grad = grad * w[:, None]
        self._grad = grad / n
        return float(losses.sum()) / n

    def backward(self):
        """d (mean loss) / d y_pred from the last forward: (N, K)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before forward")
        return self._grad

    def get_config(self):
        return {"from_logits": self.from_logits}


def smoothed_targets(targets, label_smoothing):
    """Targets (N, K) moved toward the uniform distribution:
    t' = (1 - s) t + s / K, Keras' label smoothing. The model is then never pushed
    to make one logit infinitely larger than the rest, which tends to generalise better
    (Szegedy et al. 2016, "Rethinking the Inception architecture", section 7)."""
    return targets * (1.0 - label_smoothing) + label_smoothing / targets.shape[-1]


class SmoothedLoss(Loss):
    """A cross-entropy that takes label_smoothing in [0, 1] (0: the targets as given)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(from_logits=from_logits, name=name)
        self.label_smoothing = check_real(label_smoothing, "label_smoothing", type(self).__name__, low=0, high=1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(SmoothedLoss):
    """Cross-entropy with integer class labels y (N,) in [0, K).

    label_smoothing > 0 trains on the smoothed one-hot targets of the labels, as
    CategoricalCrossentropy(label_smoothing) does on one-hot targets (Keras' sparse
    loss has no such option; PyTorch's CrossEntropyLoss has it for class indices)."""

    name = "sparse_categorical_crossentropy"

    def _targets(self, y_true, pred_shape):
        labels = check_sparse_labels(y_true, pred_shape, type(self).__name__)
        if self.label_smoothing:
            one_hot = np.zeros(pred_shape)
            one_hot[np.arange(pred_shape[0]), labels] = 1.0
            return smoothed_targets(one_hot, self.label_smoothing)
        return labels

    def _from_logits(self, ops, logits, labels):
        if self.label_smoothing:          # dense targets from _targets
            return ops.softmax_cross_entropy(logits, ops.asarray(labels, dtype=logits.dtype))
        return ops.sparse_softmax_cross_entropy(logits, ops.asarray(labels))

    def _from_probabilities(self, ops, probs, labels):
        if self.label_smoothing:
            return _dense_cross_entropy(ops, probs, labels)
        xp = ops.xp
        labels = ops.asarray(labels)
        rows = xp.arange(probs.shape[0])
        picked = xp.clip(probs[rows, labels], _PROB_EPSILON, 1.0)
        grad = xp.zeros_like(probs)
        grad[rows, labels] = -1 / picked
        return -xp.log(picked), grad


class CategoricalCrossentropy(SmoothedLoss):
    """Cross-entropy with one-hot (or soft) targets of shape (N, K);
    label_smoothing s trains on (1 - s) t + s / K (Keras' option)."""

    name = "categorical_crossentropy"

    def _targets(self, y_true, pred_shape):
        owner = type(self).__name__
        if y_true is None:
            raise TypeError(f"{owner}: expected one-hot targets of shape {tuple(pred_shape)}, got None")
        try:
            t = np.asarray(to_host(y_true))
        except ValueError as exc:         # a ragged list
            raise ValueError(f"{owner}: targets must be a rectangular array: {exc}") from None
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{owner}: expected numeric one-hot targets, got dtype {t.dtype}")
        if t.shape != tuple(pred_shape):
            raise ValueError(f"{type(self).__name__}: expected one-hot targets of shape "
                             f"{tuple(pred_shape)}, got {t.shape}")
        if not np.all(np.isfinite(t)) or (t < 0).any():
            raise ValueError(f"{type(self).__name__}: targets must be finite and non-negative")
        return smoothed_targets(t, self.label_smoothing) if self.label_smoothing else t

    def _from_logits(self, ops, logits, targets):
        return ops.softmax_cross_entropy(logits, ops.asarray(targets, dtype=logits.dtype))

    def _from_probabilities(self, ops, probs, targets):
        return _dense_cross_entropy(ops, probs, targets)


def _dense_cross_entropy(ops, probs, targets):
    """(per-sample -sum_k t_k log p_k, its gradient -t / p) from probabilities (N, K)."""
    xp = ops.xp
    t = ops.asarray(targets, dtype=probs.dtype)
    p = xp.clip(probs, _PROB_EPSILON, 1.0)
    return -(t * xp.log(p)).sum(axis=-1), -t / p


def check_sparse_labels(y, pred_shape, owner):
    """Integer labels (N,) within [0, K); (N, 1) is accepted and flattened."""
    n, k = pred_shape
    try:
        y = np.asarray(to_host(y))
    except ValueError as exc:             # a ragged list
        raise ValueError(f"{owner}: labels must be a rectangular array: {exc}") from None
    if y.dtype.kind == "u" and y.size and y.max() >= k:
        # checked before the int64 conversion below, which would wrap 2**63 to < 0
        raise ValueError(f"{owner}: labels must lie in [0, {k}) for {k} classes, got values up to {y.max()}")
    y = class_indices(y, owner, shape_text=f"({n},)")
    if y.shape[0] != n:
        raise ValueError(f"{owner}: expected integer labels of shape ({n},), got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{owner}: labels must lie in [0, {k}) for {k} classes, "
                         f"got values from {y.min()} to {y.max()}")
    return y


def check_sample_weight(sample_weight, n, owner):
    """Host float64 weights (n,) from a scalar, (n,) or (n, 1); finite and >= 0."""
    try:
        w = np.asarray(to_host(sample_weight))
    except ValueError as exc:             # a ragged list
        raise ValueError(f"{owner}: sample_weight must be a rectangular array: {exc}") from None
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: sample_weight must be numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    elif w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{owner}: sample_weight must have shape ({n},), one weight per sample, "
                         f"got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{owner}: sample_weight must be finite and >= 0")
    return w


LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
}


def get(identifier, from_logits=False):
    """A Loss from its name or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in LOSSES:
        return LOSSES[identifier.lower()](from_logits=from_logits)
    raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(LOSSES)} or a Loss object")
