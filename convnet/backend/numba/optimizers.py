"""Optimizer updates, jitted: Adam and SGD in one fused pass over the arrays.

Same functions as NumpyOps.adam_update / NumpyOps.sgd_update (read those first),
in place, on the arrays flattened (1-D views, so each kernel compiles once per
dtype, not once per parameter rank). fastmath is safe here: each element's update is independent, so
reassociation moves results only by float rounding.
"""

import math

from numba import njit, prange

from ._jit import PJIT, Sized


@njit(**PJIT, fastmath=True)
def _adam(p, g, m, v, lr, b1, b2, ob1, ob2, c1, c2, eps):
    # ob1 = 1 - b1, ob2 = 1 - b2; c1 = 1 - b1**t, c2 = 1 - b2**t: Kingma & Ba's
    # bias corrections. All scalars arrive in p's dtype, so float32 stays float32.
    # p, g, m, v: 1-D, one length
    for k in prange(p.size):
        gk = g[k]
        mk = b1 * m[k] + ob1 * gk
        vk = b2 * v[k] + ob2 * (gk * gk)
        m[k] = mk
        v[k] = vk
        p[k] -= lr * (mk / c1) / (math.sqrt(vk / c2) + eps)


@njit(**PJIT, fastmath=True)
def _sgd(p, g, vel, lr, momentum, nesterov, wd, has_velocity):
    # p, g, vel: 1-D, one length
    for k in prange(p.size):
        gk = g[k] + wd * p[k]
        if has_velocity:
            vk = momentum * vel[k] + gk
            vel[k] = vk
            step = gk + momentum * vk if nesterov else vk
        else:
            step = gk
        p[k] -= lr * step


adam = Sized(_adam)
sgd = Sized(_sgd)
