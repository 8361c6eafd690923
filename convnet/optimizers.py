"""Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW.

An optimizer keeps per-parameter slots (velocity; Adam's m and v) keyed by a stable
string such as "0/W" (layer index / parameter name) and updates parameters in
place through the backend's kernels (ops.sgd_update, ops.adam_update). Its
learning rate is a number or a schedule of the step (`schedules`, also reachable
as `cn.optimizers.schedules` as in Keras).
"""

import math

import numpy as np

from . import schedules
from ._checks import check_real
from .backend import get_ops


class Optimizer:
    """Base class. `learning_rate` is a positive number, which may be changed between
    steps (callbacks do), or a schedules.LearningRateSchedule of the step count."""

    name = "optimizer"

    def __init__(self, learning_rate):
        self.iterations = 0
        self.slots = {}
        self._learning_rate = None
        self.learning_rate = learning_rate

    @property
    def learning_rate(self):
        """The rate the next step uses: the number set, or the schedule at this step."""
        if self.schedule is not None:
            return self.schedule(self.iterations)
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, dict):               # a schedule as a model file keeps it
            try:
                value = schedules.deserialize(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__}: learning_rate: {exc}") from None
        if isinstance(value, schedules.LearningRateSchedule):
            self._learning_rate = value
            return
        if self.schedule is not None:             # Keras' rule: a schedule's rate is not set by hand
            raise TypeError(f"{type(self).__name__}: the learning rate follows a {type(self.schedule).__name__} "
                            "schedule and cannot be set to a number; build the optimizer with a number "
                            "as its learning_rate to change it during training")
        self._learning_rate = check_real(value, "learning_rate", type(self).__name__, low=0, low_open=True)

    @property
    def schedule(self):
        """The LearningRateSchedule the rate follows, or None for a number."""
        rate = self._learning_rate
        return rate if isinstance(rate, schedules.LearningRateSchedule) else None

    def apply_gradients(self, params_and_grads):
        """One step over [(key, param, grad), ...]; params are updated in place."""
        checked = self._check_gradients(params_and_grads)
        lr = self.learning_rate          # the schedule at the steps made before this one
        self.iterations += 1
        for key, param, grad in checked:
            self._update(key, param, grad, lr)

    def _check_gradients(self, params_and_grads):
        """The (key, param, grad) triples, each grad as an array of its param's dtype.

        Parameters are updated in place, so each must be a writeable floating array
        of the active backend (a list or an int array would be updated as a copy, or
        not at all); a gradient must have its parameter's shape. Everything is
        checked before the first parameter changes, so a bad entry leaves all as they were.
        """
        owner = f"{type(self).__name__}.apply_gradients"
        ops = get_ops()
        try:
            triples = list(params_and_grads)
        except TypeError:
            raise TypeError(f"{owner}: expected a list of (key, param, grad) triples, "
                            f"got {type(params_and_grads).__name__}") from None
        checked = []
        for i, entry in enumerate(triples):
            if not isinstance(entry, (tuple, list)) or len(entry) != 3:
                raise TypeError(f"{owner}: entry {i} must be a (key, param, grad) triple, got {entry!r:.80}")
            key, param, grad = entry
            if not ops.is_native(param) or not np.issubdtype(param.dtype, np.floating):
                kind = getattr(param, "dtype", type(param).__name__)
                raise TypeError(f"{owner}: parameter {key!r} must be a floating array of the "
                                f"{type(ops).__name__} backend (it is updated in place), got {kind}")
            if not param.flags.writeable:
                raise ValueError(f"{owner}: parameter {key!r} is read-only; it is updated in place")
            if not hasattr(grad, "shape"):
                try:
                    grad = np.asarray(grad)
                except ValueError:        # a ragged list
                    raise ValueError(f"{owner}: gradient of {key!r} is not a rectangular array") from None
            if grad.dtype.kind not in "fiu":
                raise TypeError(f"{owner}: gradient of {key!r} must be a real numeric array, got dtype {grad.dtype}")
            if tuple(grad.shape) != tuple(param.shape):
                raise ValueError(f"{owner}: gradient of {key!r} has shape {tuple(grad.shape)}, "
                                 f"its parameter {tuple(param.shape)}")
            checked.append((key, param, ops.asarray(grad, dtype=param.dtype)))
        return checked

    def step_bound(self):
        """A bound B on how much the next step can lengthen any parameter,
        |new p| <= |p| + B, given gradients that are finite and whose squares are
        finite; None when the optimizer has none (an SGD velocity can grow without
        bound). Without weight decay B bounds the change itself. The training
        loop's divergence guard skips its undo copy when the bound proves the step
        finite (convnet/models.py `_train_batch`)."""
        return None

    def _slot(self, key, name, like):
        slots = self.slots.setdefault(key, {})
        if name not in slots:
            slots[name] = get_ops().xp.zeros_like(like)
        elif not get_ops().is_native(slots[name]):
            slots[name] = get_ops().asarray(np.asarray(slots[name]))
        return slots[name]

    def get_config(self):
        rate = self._learning_rate
        return {"learning_rate": schedules.serialize(rate) if self.schedule is not None else rate}

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
        momentum = check_real(momentum, "momentum", "SGD", low=0, high=1, high_open=True)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.weight_decay = check_real(weight_decay, "weight_decay", "SGD", low=0)

    def _update(self, key, p, g, lr):
        velocity = self._slot(key, "velocity", p) if self.momentum else None
        get_ops().sgd_update(p, g, velocity, lr, self.momentum,
                             self.nesterov, self.weight_decay)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), the update torch.optim.Adam makes.

    weight_decay (Keras' argument; None or 0 for none) shrinks every parameter
    before the step, apart from the gradient: p -= lr * weight_decay * p, the
    decoupled weight decay of Loshchilov & Hutter (AdamW), as Keras and
    torch.optim.AdamW apply it. (An L2 term in the loss would instead pass
    through Adam's per-parameter scaling.)
    """

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
        super().__init__(learning_rate)
        owner = type(self).__name__
        self.beta_1 = check_real(beta_1, "beta_1", owner, low=0, high=1, high_open=True)
        self.beta_2 = check_real(beta_2, "beta_2", owner, low=0, high=1, high_open=True)
        self.epsilon = check_real(epsilon, "epsilon", owner, low=0, low_open=True)
        self.weight_decay = None if weight_decay is None else \
            check_real(weight_decay, "weight_decay", owner, low=0)

    def _update(self, key, p, g, lr):
        if self.weight_decay:
            p -= p * p.dtype.type(lr * self.weight_decay)
        m = self._slot(key, "m", p)
        v = self._slot(key, "v", p)
        get_ops().adam_update(p, g, m, v, lr, self.beta_1, self.beta_2,
                              self.epsilon, self.iterations)

    def step_bound(self):
        """lr * C * sqrt(1 - b2^t) / (1 - b1^t) bounds |lr * m_hat / (sqrt(v_hat) + eps)|.

        m = (1-b1) sum_k b1^k g_(t-k) and v = (1-b2) sum_k b2^k g_(t-k)^2, so by
        Cauchy-Schwarz (splitting b1^k = (b1^2/b2)^(k/2) * b2^(k/2))
            |m| <= (1-b1) / sqrt(1-b2) * sqrt(1 / (1 - b1^2/b2)) * sqrt(v) = C sqrt(v)
        when b1^2 < b2 (the defaults: C = 7.3); the bias corrections scale m by
        1/(1-b1^t) and sqrt(v) by 1/sqrt(1-b2^t). None when b1^2 >= b2.
        Weight decay multiplies p by 1 - lr * weight_decay first, which does not
        lengthen p while that factor lies in [-1, 1]; beyond, None.
        """
        b1, b2 = self.beta_1, self.beta_2
        if b1 * b1 >= b2 or (self.weight_decay or 0) * self.learning_rate > 2:
            return None
        t = self.iterations + 1
        c = (1 - b1) / math.sqrt(1 - b2) / math.sqrt(1 - b1 * b1 / b2)
        return self.learning_rate * c * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay on by default (Keras' AdamW: 0.004); the
    update is Adam's with weight_decay (see Adam)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number >= 0, got None (Adam has no decay)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(identifier):
    """An Optimizer from its name ("adam", "adamw", "sgd"), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    if isinstance(identifier, dict) and str(identifier.get("class_name", "")).lower() in OPTIMIZERS:
        config = identifier.get("config", {})
        if not isinstance(config, dict):
            raise TypeError(f"optimizer config must be a dict, got {config!r}")
        cls = OPTIMIZERS[identifier["class_name"].lower()]
        try:
            return cls(**config)
        except TypeError as exc:   # an unknown keyword: say which optimizer refused it
            if "unexpected keyword" not in str(exc):
                raise
            raise TypeError(f"{cls.__name__}: {exc}") from None
    raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(OPTIMIZERS)} "
                     "or an Optimizer object")


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
