"""Optimizer updates, jitted: Adam and SGD in one fused pass over the arrays.

Same functions as NumpyOps.adam_update / NumpyOps.sgd_update (read those first),
in place. fastmath is safe here: each element's update is independent, so
reassociation moves results only by float rounding.
"""

import math

from numba import njit, prange

from ._jit import PJIT, Sized


@njit(**PJIT, fastmath=True)
def _adam(p, g, m, v, lr, b1, b2, ob1, ob2, c1, c2, eps):
    # ob1 = 1 - b1, ob2 = 1 - b2; c1 = 1 - b1**t, c2 = 1 - b2**t: Kingma & Ba's
    # bias corrections. All scalars arrive in p's dtype, so float32 stays float32.
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    for k in prange(pf.size):
        gk = gf[k]
        mk = b1 * mf[k] + ob1 * gk
        vk = b2 * vf[k] + ob2 * (gk * gk)
        mf[k] = mk
        vf[k] = vk
        pf[k] -= lr * (mk / c1) / (math.sqrt(vk / c2) + eps)


@njit(**PJIT, fastmath=True)
def _sgd(p, g, vel, lr, momentum, nesterov, wd, has_velocity):
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    vf = vel.reshape(-1)
    for k in prange(pf.size):
        gk = gf[k] + wd * pf[k]
        if has_velocity:
            vk = momentum * vf[k] + gk
            vf[k] = vk
            step = gk + momentum * vk if nesterov else vk
        else:
            step = gk
        pf[k] -= lr * step


adam = Sized(_adam)
sgd = Sized(_sgd)
