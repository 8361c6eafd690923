"""Learning-rate schedules: the learning rate as a function of the optimizer's step.

Pass one as an optimizer's `learning_rate`, as in Keras
(`keras.optimizers.schedules`; here also `cn.optimizers.schedules`):

    lr = cn.optimizers.schedules.CosineDecay(2e-3, decay_steps=epochs * steps_per_epoch)
    model.compile(optimizer=cn.optimizers.Adam(lr), ...)

Step t (counting from 0: the number of updates made before this one) then uses
the rate schedule(t). Unlike LearningRateScheduler, which sets the rate once per
epoch, a schedule changes it at every batch. An optimizer built on a schedule
keeps its step count in model files, so a resumed run picks up the curve where
it stopped; its `learning_rate` reads the current value and cannot be set to a
number (Keras' rule), so ReduceLROnPlateau and LearningRateScheduler refuse it.
"""

import math

from ._checks import check_int, check_real


class LearningRateSchedule:
    """Base class: a callable step -> learning rate, with a config for model files."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError


class CosineDecay(LearningRateSchedule):
    """Half a cosine from the start rate down to alpha times it over decay_steps steps
    (Loshchilov & Hutter 2017, SGDR, without restarts); Keras' CosineDecay.

        lr(t) = lr0 * ((1 - alpha) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2 + alpha)

    The curve is flat at the start, where the rate is large and progress fast, and
    flat again at the end, where small steps settle the weights into a minimum.
    With warmup_target set, the first warmup_steps steps rise linearly from
    initial_learning_rate to warmup_target, and the cosine then starts from
    warmup_target (lr0 above).
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        owner = "CosineDecay"
        self.initial_learning_rate = check_real(initial_learning_rate, "initial_learning_rate", owner, low=0)
        self.decay_steps = check_int(decay_steps, "decay_steps", owner, low=1)
        self.alpha = check_real(alpha, "alpha", owner, low=0, high=1)
        self.name = str(name)
        self.warmup_target = None if warmup_target is None else \
            check_real(warmup_target, "warmup_target", owner, low=0)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", owner, low=0)

    def __call__(self, step):
        step = float(step)
        start = self.initial_learning_rate
        if self.warmup_target is not None:
            if step < self.warmup_steps:     # a straight line from the start rate to the target
                return start + (self.warmup_target - start) * step / self.warmup_steps
            step -= self.warmup_steps
            start = self.warmup_target
        done = min(step, self.decay_steps) / self.decay_steps
        return start * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * done)) + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class ExponentialDecay(LearningRateSchedule):
    """lr(t) = lr0 * decay_rate ** (t / decay_steps); Keras' ExponentialDecay.

    With staircase=True the exponent is rounded down, so the rate drops by
    decay_rate once every decay_steps steps (decay_steps = steps per epoch: once
    an epoch) instead of a little at every step.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        owner = "ExponentialDecay"
        self.initial_learning_rate = check_real(initial_learning_rate, "initial_learning_rate", owner, low=0)
        self.decay_steps = check_int(decay_steps, "decay_steps", owner, low=1)
        self.decay_rate = check_real(decay_rate, "decay_rate", owner, low=0, low_open=True)
        self.staircase = bool(staircase)
        self.name = str(name)

    def __call__(self, step):
        exponent = float(step) / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


SCHEDULES = {"CosineDecay": CosineDecay, "ExponentialDecay": ExponentialDecay}


def serialize(schedule):
    """{"class_name": ..., "config": ...}, the form model files keep (as Keras)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """The schedule a serialize() dict describes."""
    if not isinstance(config, dict) or config.get("class_name") not in SCHEDULES:
        name = config.get("class_name") if isinstance(config, dict) else config
        raise ValueError(f"unknown learning-rate schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise TypeError(f"{config['class_name']}: config must be a dict, got {inner!r}")
    return SCHEDULES[config["class_name"]](**inner)
