"""Optimizers: SGD (momentum, Nesterov, weight decay) and Adam.

An optimizer keeps per-parameter slots (velocity; Adam's m and v) keyed by a stable
string such as "0/W" (layer index / parameter name) and updates parameters in
place through the backend's kernels (ops.sgd_update, ops.adam_update).
"""

import numpy as np

from .backend import get_ops


class Optimizer:
    """Base class. `learning_rate` may be changed between steps (schedules, callbacks)."""

    name = "optimizer"

    def __init__(self, learning_rate):
        if not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be a positive number, "
                             f"got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.slots = {}

    def apply_gradients(self, params_and_grads):
        """One step over [(key, param, grad), ...]; params are updated in place."""
        self.iterations += 1
        for key, param, grad in params_and_grads:
            self._update(key, param, grad)

    def _slot(self, key, name, like):
        slots = self.slots.setdefault(key, {})
        if name not in slots:
            slots[name] = get_ops().xp.zeros_like(like)
        elif not get_ops().is_native(slots[name]):
            slots[name] = get_ops().asarray(np.asarray(slots[name]))
        return slots[name]

    def get_config(self):
        return {"learning_rate": self.learning_rate}

    # state for model files: iterations + every slot as a host array
    def get_state(self):
        ops = get_ops()
        arrays = {f"{key}|{name}": ops.to_numpy(a) for key, slots in self.slots.items()
                  for name, a in slots.items()}
        return self.iterations, arrays

    def set_state(self, iterations, arrays):
        self.iterations = int(iterations)
        self.slots = {}
        for joined, value in arrays.items():
            key, name = joined.rsplit("|", 1)
            self.slots.setdefault(key, {})[name] = get_ops().asarray(value)


class SGD(Optimizer):
    """p -= lr * v, v = momentum * v + (g + weight_decay * p)  (heavy ball, as in PyTorch).

    With nesterov=True the step is g + momentum * v instead of v.
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _update(self, key, p, g):
        velocity = self._slot(key, "velocity", p) if self.momentum else None
        get_ops().sgd_update(p, g, velocity, self.learning_rate, self.momentum,
                             self.nesterov, self.weight_decay)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), the update torch.optim.Adam makes."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= beta < 1:
                raise ValueError(f"Adam: {label} must be in [0, 1), got {beta!r}")
        if epsilon <= 0:
            raise ValueError(f"Adam: epsilon must be positive, got {epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, key, p, g):
        m = self._slot(key, "m", p)
        v = self._slot(key, "v", p)
        get_ops().adam_update(p, g, m, v, self.learning_rate, self.beta_1, self.beta_2,
                              self.epsilon, self.iterations)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(identifier):
    """An Optimizer from its name ("adam", "sgd"), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name", "").lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier["class_name"].lower()](**identifier.get("config", {}))
    raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(OPTIMIZERS)} "
                     "or an Optimizer object")


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
