"""Metrics: functions of (y_true, y_pred) usable standalone and in compile(metrics=[...]).

y_true is integer labels (N,) or one-hot (N, K); y_pred is class probabilities
(or scores) of shape (N, K). During fit, metrics are computed over the whole epoch's
predictions, so an epoch's accuracy is exact, not an average of batch averages.
"""

import numpy as np


def _labels(y_true, n_classes=None, owner="metric"):
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{owner}: expected labels of shape (N,) or one-hot (N, K), got {y.shape}")
    return y.astype(np.int64)


def _check_lengths(y_true, y_pred, owner):
    y_pred = np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{owner}: y_true has {len(y_true)} samples but y_pred has {len(y_pred)}")
    return y_pred


def accuracy(y_true, y_pred):
    """Fraction of samples whose highest-scoring class is the true class."""
    labels = _labels(y_true, owner="accuracy")
    y_pred = _check_lengths(labels, y_pred, "accuracy")
    if y_pred.ndim != 2:
        raise ValueError(f"accuracy: expected y_pred of shape (N, K), got {y_pred.shape}")
    if len(labels) == 0:
        raise ValueError("accuracy: no samples")
    return float((y_pred.argmax(axis=1) == labels).mean())


METRICS = {"accuracy": accuracy, "acc": accuracy}


def get(identifier):
    """(name, function) for a metric name or a function of (y_true, y_pred)."""
    if callable(identifier):
        return getattr(identifier, "name", getattr(identifier, "__name__", "metric")), identifier
    if isinstance(identifier, str) and identifier.lower() in METRICS:
        name = identifier.lower()
        return ("accuracy" if name == "acc" else name), METRICS[name]
    raise ValueError(f"unknown metric {identifier!r}; expected one of {sorted(METRICS)} or a function")
