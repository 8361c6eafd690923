"""Drive one Conv2D layer by hand: forward, backward, gradient check, naive vs im2col.

    python examples/conv_by_hand.py

Every number printed is computed twice, once by the layer and once by the few
lines of numpy beside it, so you can see that the layer does what the formulas in
convnet/layers/conv.py say. docs/how-it-works.md walks through the same steps.
"""

import os
import sys
import time

import numpy as np

try:
    import convnet as cn
except ImportError:      # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import convnet as cn

from convnet.layers import Conv2D, conv2d_naive


def main(argv=None, verbose=True):
    say = print if verbose else (lambda *a, **k: None)
    np.set_printoptions(precision=4, suppress=True)
    cn.set_backend("numpy")          # the readable reference kernels
    ops = cn.get_ops()

    # ---------------------------------------------------------------- forward
    # one 4x4 grey image, values 0..15, and two 3x3 filters chosen by hand
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    conv = Conv2D(2, 3, dtype="float64")
    conv.build((4, 4, 1))
    vertical_edge = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
    conv.params["W"][:, :, 0, 0] = vertical_edge            # left minus right
    conv.params["W"][:, :, 0, 1] = 1 / 9                    # a 3x3 mean (blur)
    conv.params["b"][...] = [0.0, 0.5]
    say("input x[0, :, :, 0]:\n", x[0, :, :, 0])

    y = conv.forward(x)
    say("\nforward: y = conv(x), shape", y.shape, "(N, OH, OW, F)")
    say("filter 0 (vertical edge):\n", y[0, :, :, 0])
    say("filter 1 (mean + 0.5):\n", y[0, :, :, 1])

    # the same numbers by im2col: one row per output position, one matrix product
    cols = ops.im2col(x, 3, 3, 1, 1, ((0, 0), (0, 0)))
    say("\nim2col(x) has shape", cols.shape, "(N*OH*OW, kh*kw*C); its first row is the "
        "top-left window:\n", cols[0])
    y_gemm = (cols @ conv.params["W"].reshape(9, 2) + conv.params["b"]).reshape(1, 2, 2, 2)
    y_naive = conv2d_naive(x, conv.params["W"], conv.params["b"])
    say("max |layer - cols @ W2 + b| =", np.abs(y - y_gemm).max())
    say("max |layer - conv2d_naive|  =", np.abs(y - y_naive).max())

    # --------------------------------------------------------------- backward
    # take loss = sum(y * dy) for a chosen dy; then d loss / d y = dy
    dy = np.zeros_like(y)
    dy[0, 0, 0, 0] = 1.0        # only the top-left output of filter 0 matters
    dx = conv.backward(dy)
    say("\nbackward with dy = 1 at output (0, 0) of filter 0:")
    say("dW[:, :, 0, 0] (= the top-left 3x3 window of x):\n", conv.grads["W"][:, :, 0, 0])
    say("db =", conv.grads["b"], "(the sum of dy per filter)")
    say("dx[0, :, :, 0] (= filter 0 placed on that window, zero elsewhere):\n", dx[0, :, :, 0])
    dW_by_hand = (cols.T @ dy.reshape(-1, 2)).reshape(conv.params["W"].shape)
    dx_by_hand = ops.col2im(dy.reshape(-1, 2) @ conv.params["W"].reshape(9, 2).T,
                            x.shape, 3, 3, 1, 1, ((0, 0), (0, 0)))
    say("max |dW - cols^T @ dy|         =", np.abs(conv.grads["W"] - dW_by_hand).max())
    say("max |dx - col2im(dy @ W2^T)|   =", np.abs(dx - dx_by_hand).max())

    # ---------------------------------------------------------- gradient check
    rng = np.random.default_rng(0)
    layer = Conv2D(3, 3, strides=2, padding="same", activation="relu", seed=1)
    x_random = rng.standard_normal((2, 7, 7, 2))
    report = cn.gradcheck(layer, x_random)
    say("\ngradient check of Conv2D(3, 3, strides=2, padding='same', relu) "
        "against central differences:")
    say(report)

    # ---------------------------------------------------------- naive vs im2col
    big = Conv2D(16, 3, padding="same", seed=2)
    xb = rng.standard_normal((8, 28, 28, 8)).astype(np.float32)
    start = time.perf_counter()
    y_fast = big.forward(xb)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    y_slow = conv2d_naive(xb, big.params["W"], big.params["b"], padding="same")
    t_slow = time.perf_counter() - start
    diff = float(np.abs(y_fast - y_slow).max())
    say(f"\n8 images 28x28x8 -> 16 filters: im2col {t_fast * 1e3:.1f} ms, naive loops "
        f"{t_slow * 1e3:.1f} ms, max difference {diff:.2e} (float32 rounding)")
    return {"y": y, "y_naive": y_naive, "y_gemm": y_gemm, "dx": dx, "dW": conv.grads["W"],
            "db": conv.grads["b"], "dW_by_hand": dW_by_hand, "dx_by_hand": dx_by_hand,
            "gradcheck": report, "naive_vs_im2col": diff}


if __name__ == "__main__":
    main()
