"""NumpyOps: the readable reference backend.

Every kernel here is written for clarity first. The other backends subclass this
class and override only the hot kernel pairs; the tests check that each override
computes the same function as the code below.

Conventions shared by all kernels:
- images are channels-last, x has shape (N, H, W, C);
- a window is (kh, kw) with strides (sh, sw);
- `pads` is ((top, bottom), (left, right)), already resolved by the layer, so the
  output size is  OH = (H + top + bottom - kh) // sh + 1  (and likewise OW).
"""

import itertools

import numpy as np


def output_size(size, kernel, stride, pad_before, pad_after):
    """Number of window positions along one axis."""
    return (size + pad_before + pad_after - kernel) // stride + 1


class NumpyOps:
    """Reference kernels on numpy arrays. `xp` is the array module the layers use."""

    name = "numpy"
    xp = np

    # ------------------------------------------------------------------ arrays
    def asarray(self, a, dtype=None):
        """`a` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        """A host numpy array holding the values of `a`."""
        return np.asarray(a)

    def is_native(self, a):
        """True when `a` already lives on this backend."""
        return isinstance(a, np.ndarray)

    def matmul(self, a, b):
        """Matrix product; a BLAS GEMM for 2-D float arrays."""
        return a @ b

    # ------------------------------------------------------------------ im2col
    def im2col(self, x, kh, kw, sh, sw, pads):
        """Unfold every (kh, kw) window of x into one row.

        x: (N, H, W, C)  ->  cols: (N*OH*OW, kh*kw*C)

        Row r = (n, i, j) holds the window whose top-left corner sits at
        (i*sh - top, j*sw - left) in x, flattened in (ty, tx, c) order (tap row,
        tap column, channel). That order
        matches a kernel W of shape (kh, kw, C, F) reshaped to (kh*kw*C, F), so the
        convolution becomes one matrix product cols @ W.
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        xpad = xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        cols = xp.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
        # Loop over the kh*kw kernel offsets (small) instead of the OH*OW windows
        # (large): each offset (ty, tx) picks a strided sub-grid of the padded image.
        for ty in range(kh):
            for tx in range(kw):
                cols[:, :, :, ty, tx, :] = xpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :]
        return cols.reshape(n * oh * ow, kh * kw * c)

    def col2im(self, cols, x_shape, kh, kw, sh, sw, pads):
        """The adjoint of im2col: scatter-add every row back onto its window.

        cols: (N*OH*OW, kh*kw*C)  ->  dx: (N, H, W, C)

        A pixel covered by several windows receives the sum of their entries, which
        is exactly what the chain rule asks for: <im2col(x), c> == <x, col2im(c)>.
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        cols = cols.reshape(n, oh, ow, kh, kw, c)
        dxpad = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=cols.dtype)
        for ty in range(kh):
            for tx in range(kw):
                dxpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :] += cols[:, :, :, ty, tx, :]
        return dxpad[:, pt:pt + h, pl:pl + w, :]

    # ------------------------------------------------------- whole convolution
    def conv2d_algorithm(self, x_shape, W2_shape, dtypes=(np.float32,), strides=(1, 1), training=True):
        """The name of the algorithm conv2d_forward/backward run for an input of shape
        x_shape (N, H, W, C), a kernel matrix of shape (kh*kw*C, F) and these strides,
        in a training step or (training=False) an inference's forward pass: here always
        "im2col-gemm", the steps spelled out below (faster backends choose among
        several; profiles show the name)."""
        return "im2col-gemm"

    def conv2d_forward(self, x, W2, b, kh, kw, sh, sw, pads, training=True, relu=False):
        """A whole convolution: y = im2col(x) @ W2 + b, then max(y, 0) when `relu`.

        x: (N, H, W, C), W2: the kernel W (kh, kw, C, F) reshaped to the matrix
        (kh*kw*C, F), b: (F,) or None
        -> (y: (N*OH*OW, F), saved), where `saved` is what conv2d_backward needs:
        here the im2col matrix (a fast backend may keep less and recompute it).
        `relu` lets a fast backend apply a Conv2D's ReLU as it writes y, instead of
        in a second pass over y; here it is that second pass.
        """
        cols = self.im2col(x, kh, kw, sh, sw, pads)        # (N*OH*OW, kh*kw*C)
        y = self.matmul(cols, W2)                           # (N*OH*OW, F)
        if b is not None:
            y += b
        if relu:
            y = self.relu(y, out=y)
        return y, cols

    def conv2d_backward(self, dy, x, saved, W2, kh, kw, sh, sw, pads, need_dx=True, relu_output=None):
        """Gradients of y = im2col(x) @ W2 + b, for dy = dL/dy as the (N*OH*OW, F) matrix.

        -> (dx: (N, H, W, C) or None when not need_dx, dW2: (kh*kw*C, F), db: (F,))
        With cols = im2col(x) (what conv2d_forward saved), the chain rule gives
            dW2 = cols^T @ dy          each weight met every row once
            db  = sum of dy over rows
            dx  = col2im(dy @ W2^T)    dcols, folded back onto the windows
        relu_output: the output of conv2d_forward(..., relu=True), when dy is the
        gradient after that ReLU: first dy = relu_backward(dy, relu_output), the
        gradient before it (a fast backend does this as it reads dy).
        """
        if relu_output is not None:
            dy = self.relu_backward(dy, relu_output)
        cols = saved
        dW2 = self.matmul(cols.T, dy)
        db = dy.sum(axis=0)
        if not need_dx:             # a model's first layer: nobody needs dx
            return None, dW2, db
        dcols = self.matmul(dy, W2.T)                       # (N*OH*OW, kh*kw*C)
        return self.col2im(dcols, x.shape, kh, kw, sh, sw, pads), dW2, db

    # ------------------------------------- dilated and grouped convolution
    def _dilated_windows(self, x, kh, kw, sh, sw, dh, dw, pads):
        """cols (N*OH*OW, kh*kw*C) of a dilated window: tap (ty, tx) reads the
        padded input at (i*sh + ty*dh, j*sw + tx*dw). dh = dw = 1 is im2col."""
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, (kh - 1) * dh + 1, sh, pt, pb)
        ow = output_size(w, (kw - 1) * dw + 1, sw, pl, pr)
        xpad = xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        cols = xp.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
        for ty in range(kh):
            for tx in range(kw):
                y0, x0 = ty * dh, tx * dw
                cols[:, :, :, ty, tx, :] = xpad[:, y0:y0 + sh * oh:sh, x0:x0 + sw * ow:sw, :]
        return cols.reshape(n * oh * ow, kh * kw * c), (oh, ow)

    def _dilated_windows_adjoint(self, cols, x_shape, kh, kw, sh, sw, dh, dw, pads, out_hw):
        """The adjoint of _dilated_windows (scatter-add), cols -> dx (N, H, W, C)."""
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh, ow = out_hw
        cols = cols.reshape(n, oh, ow, kh, kw, c)
        dxpad = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=cols.dtype)
        for ty in range(kh):
            for tx in range(kw):
                y0, x0 = ty * dh, tx * dw
                dxpad[:, y0:y0 + sh * oh:sh, x0:x0 + sw * ow:sw, :] += cols[:, :, :, ty, tx, :]
        return dxpad[:, pt:pt + h, pl:pl + w, :]

    def grouped_conv2d_forward(self, x, W, b, strides, dilation, groups, pads):
        """A convolution with dilation and groups (the general Conv2D).

        x: (N, H, W, C), W: (kh, kw, C/groups, F), b: (F,) or None, F = groups * Fg
        -> (y: (N, OH, OW, F), saved). Group g convolves input channels
        [g*C/groups, (g+1)*C/groups) with filters [g*Fg, (g+1)*Fg): one im2col of
        dilated windows per group, and one product cols_g @ W2_g each.
        Every backend runs this reference (the fast kernels cover groups = 1,
        dilation = 1 only).
        """
        xp = self.xp
        kh, kw, cg, f = W.shape
        fg = f // groups
        n = x.shape[0]
        parts, saved = [], []
        for g in range(groups):
            cols, (oh, ow) = self._dilated_windows(x[..., g * cg:(g + 1) * cg], kh, kw, *strides,
                                                   *dilation, pads)
            W2 = W[..., g * fg:(g + 1) * fg].reshape(kh * kw * cg, fg)
            parts.append(self.matmul(cols, W2))
            saved.append(cols)
        y = parts[0] if groups == 1 else xp.concatenate(parts, axis=1)      # (N*OH*OW, F)
        if b is not None:
            y += b
        return y.reshape(n, oh, ow, f), (saved, (oh, ow))

    def grouped_conv2d_backward(self, dy, x, saved, W, strides, dilation, groups, pads, need_dx=True):
        """(dx or None, dW (kh, kw, C/groups, F), db (F,)) of grouped_conv2d_forward,
        per group as for one convolution: dW2_g = cols_g^T dy_g, dx_g = adjoint(dy_g W2_g^T)."""
        xp = self.xp
        cols_list, out_hw = saved
        kh, kw, cg, f = W.shape
        fg = f // groups
        dy2 = dy.reshape(-1, f)
        dW = xp.empty_like(W)
        dxs = []
        for g in range(groups):
            dyg = dy2[:, g * fg:(g + 1) * fg]
            dW[..., g * fg:(g + 1) * fg] = self.matmul(cols_list[g].T, dyg).reshape(kh, kw, cg, fg)
            if need_dx:
                W2 = W[..., g * fg:(g + 1) * fg].reshape(kh * kw * cg, fg)
                x_shape = (*x.shape[:3], cg)
                dxs.append(self._dilated_windows_adjoint(self.matmul(dyg, W2.T), x_shape, kh, kw,
                                                         *strides, *dilation, pads, out_hw))
        db = dy2.sum(axis=0)
        if not need_dx:
            return None, dW, db
        dx = dxs[0] if groups == 1 else xp.concatenate(dxs, axis=-1)
        return dx, dW, db

    # ----------------------------------------------------------------- pooling
    def maxpool(self, x, ph, pw, sh, sw, pads):
        """Max over each (ph, pw) window; padding never wins (it is -inf).

        x: (N, H, W, C) -> (y: (N, OH, OW, C), argmax: (N, OH, OW, C) int32)
        `argmax` is the position of the maximum inside its window, ty*pw + tx,
        the first one when several tie, so backward routes to exactly one input.
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        xpad = xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
        y = xp.full((n, oh, ow, c), -np.inf, dtype=x.dtype)
        argmax = xp.zeros((n, oh, ow, c), dtype=np.int32)
        for ty in range(ph):
            for tx in range(pw):
                window = xpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :]
                better = window > y          # strict: the first maximum is kept
                y = xp.where(better, window, y)
                argmax = xp.where(better, ty * pw + tx, argmax)
        return y, argmax

    def maxpool_backward(self, dy, argmax, x_shape, ph, pw, sh, sw, pads):
        """Route each output gradient to the one input that was the maximum.

        dy, argmax: (N, OH, OW, C) -> dx: (N, H, W, C). Overlapping windows add up.
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh, ow = dy.shape[1:3]
        dxpad = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
        for ty in range(ph):
            for tx in range(pw):
                routed = xp.where(argmax == ty * pw + tx, dy, 0)
                dxpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :] += routed
        return dxpad[:, pt:pt + h, pl:pl + w, :]

    def avgpool(self, x, ph, pw, sh, sw, pads):
        """Mean over each window, counting only real pixels (padding is excluded,
        as in Keras/TensorFlow).

        x: (N, H, W, C) -> (y: (N, OH, OW, C), count: (OH, OW, 1))
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        xpad = xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        ones = xp.pad(xp.ones((h, w, 1), dtype=x.dtype), ((pt, pb), (pl, pr), (0, 0)))
        total = xp.zeros((n, oh, ow, c), dtype=x.dtype)
        count = xp.zeros((oh, ow, 1), dtype=x.dtype)
        for ty in range(ph):
            for tx in range(pw):
                total += xpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :]
                count += ones[ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :]
        return total / count, count

    def avgpool_backward(self, dy, count, x_shape, ph, pw, sh, sw, pads):
        """Each input in a window gets dy / count of that window.

        dy: (N, OH, OW, C), count: (OH, OW, 1) -> dx: (N, H, W, C).
        """
        xp = self.xp
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh, ow = dy.shape[1:3]
        share = dy / count
        dxpad = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
        for ty in range(ph):
            for tx in range(pw):
                dxpad[:, ty:ty + sh * oh:sh, tx:tx + sw * ow:sw, :] += share
        return dxpad[:, pt:pt + h, pl:pl + w, :]

    # ---------------------------------------------- pooling over gathered windows
    # Windows that the plain loops above do not cover: dilated 2-D windows, and
    # volumes. Any number of spatial axes: x (N, *spatial, C); pool, strides and
    # dilation give one int per spatial axis, pads one (before, after) pair per axis
    # (2-D: (kh, kw), ...; 3-D: (kd, kh, kw), ...). Every backend runs these
    # reference kernels: each gathers the windows' taps with one strided copy per
    # tap, then reduces over the taps (the axis just before the channels).

    def pool_windows(self, x, pool, strides, dilation, pads, fill):
        """Every window as its taps: x (N, *S, C) -> (N, *O, taps, C), taps = prod(pool),
        the padding filled with `fill` (-inf for max, 0 for the average's sum).

        Tap (t_1, ..., t_k), numbered in row-major order, of window (o_1, ..., o_k)
        reads the padded input at (o_1*s_1 + t_1*d_1, ..., o_k*s_k + t_k*d_k).
        """
        xp = self.xp
        n, c = x.shape[0], x.shape[-1]
        out = [output_size(size, (k - 1) * d + 1, s, before, after)
               for size, k, s, d, (before, after) in zip(x.shape[1:-1], pool, strides, dilation, pads)]
        xpad = xp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
        win = xp.empty((n, *out, int(np.prod(pool)), c), dtype=x.dtype)
        for t, taps in enumerate(itertools.product(*(range(k) for k in pool))):
            # along each axis: start at tap * dilation, step by the stride, one per output
            grid = tuple(slice(tap * d, tap * d + s * o, s) for tap, d, s, o in zip(taps, dilation, strides, out))
            win[..., t, :] = xpad[(slice(None), *grid, slice(None))]
        return win

    def pool_windows_adjoint(self, dwin, x_shape, pool, strides, dilation, pads):
        """Scatter-add (N, *O, taps, C) tap gradients back onto x (N, *S, C): an input
        read by several windows (or taps) receives the sum of their gradients."""
        xp = self.xp
        out = dwin.shape[1:-2]
        padded = [size + before + after for size, (before, after) in zip(x_shape[1:-1], pads)]
        dxpad = xp.zeros((x_shape[0], *padded, x_shape[-1]), dtype=dwin.dtype)
        for t, taps in enumerate(itertools.product(*(range(k) for k in pool))):
            grid = tuple(slice(tap * d, tap * d + s * o, s) for tap, d, s, o in zip(taps, dilation, strides, out))
            dxpad[(slice(None), *grid, slice(None))] += dwin[..., t, :]
        inside = tuple(slice(before, before + size) for size, (before, _) in zip(x_shape[1:-1], pads))
        return dxpad[(slice(None), *inside, slice(None))]

    def window_maxpool(self, x, pool, strides, dilation, pads):
        """Max over each window: (y (N, *O, C), argmax (N, *O, C)), argmax the winning
        tap, the first maximum when several tie (as in maxpool); padding never wins."""
        win = self.pool_windows(x, pool, strides, dilation, pads, -np.inf)
        arg = win.argmax(axis=-2)
        return self.xp.take_along_axis(win, arg[..., None, :], axis=-2)[..., 0, :], arg

    def window_maxpool_backward(self, dy, argmax, x_shape, pool, strides, dilation, pads):
        """dy (N, *O, C) goes to the winning tap of each window, then onto x."""
        xp = self.xp
        taps = xp.arange(int(np.prod(pool))).reshape((1,) * (dy.ndim - 1) + (-1, 1))
        dwin = xp.where(taps == argmax[..., None, :], dy[..., None, :], 0).astype(dy.dtype)
        return self.pool_windows_adjoint(dwin, x_shape, pool, strides, dilation, pads)

    def window_avgpool(self, x, pool, strides, dilation, pads):
        """Mean over the real (unpadded) inputs of each window: (y (N, *O, C),
        count (*O, 1), the number of real inputs each window averaged)."""
        xp = self.xp
        total = self.pool_windows(x, pool, strides, dilation, pads, 0).sum(axis=-2)
        ones = xp.ones((1, *x.shape[1:-1], 1), dtype=x.dtype)
        count = self.pool_windows(ones, pool, strides, dilation, pads, 0).sum(axis=-2)[0]
        return total / count, count

    def window_avgpool_backward(self, dy, count, x_shape, pool, strides, dilation, pads):
        """Each real input of a window gets dy / count (padding taps drop out in the adjoint)."""
        share = (dy / count)[..., None, :]
        dwin = self.xp.broadcast_to(share, (*dy.shape[:-1], int(np.prod(pool)), dy.shape[-1]))
        return self.pool_windows_adjoint(dwin, x_shape, pool, strides, dilation, pads)

    # ------------------------------------------------------------- activations
    def add(self, a, b):
        """a + b as a new array (the merge layer Add, and the gradient at a fork of a
        graph, which is the sum over the branches)."""
        return a + b

    def relu(self, x, out=None):
        """max(x, 0); writes into `out` when given (it may be x itself)."""
        return self.xp.maximum(x, 0, out=out)

    def relu_backward(self, dy, y):
        """relu passes the gradient where its output is positive and blocks it elsewhere."""
        return dy * (y > 0)

    # ----------------------------------------------------------------- softmax
    def log_softmax(self, z):
        """log softmax over the last axis, stable for any size of logits.

        log p_k = z_k - logsumexp(z) = (z_k - m) - log(sum_j exp(z_j - m)),
        m = max_j z_j, so every exponent is <= 0 and nothing overflows.
        """
        xp = self.xp
        shifted = z - z.max(axis=-1, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))

    def softmax(self, z):
        """Probabilities over the last axis: exp(log_softmax)."""
        return self.xp.exp(self.log_softmax(z))

    def sparse_softmax_cross_entropy(self, logits, labels):
        """Per-sample cross-entropy and its gradient, from logits and integer labels.

        logits: (N, K), labels: (N,) ints -> (losses: (N,), dlogits: (N, K))
        loss_i = -log softmax(z_i)[y_i];  d loss_i / d z_i = softmax(z_i) - onehot(y_i).
        """
        xp = self.xp
        logp = self.log_softmax(logits)
        rows = xp.arange(logits.shape[0])
        losses = -logp[rows, labels]
        dlogits = xp.exp(logp)
        dlogits[rows, labels] -= 1
        return losses, dlogits

    def softmax_cross_entropy(self, logits, targets):
        """Per-sample cross-entropy against target distributions (one-hot or soft).

        logits, targets: (N, K) -> (losses: (N,), dlogits: (N, K))
        loss_i = -sum_k t_ik log p_ik;  gradient = p_i * sum_k t_ik - t_i.
        """
        logp = self.log_softmax(logits)
        losses = -(targets * logp).sum(axis=-1)
        dlogits = self.xp.exp(logp) * targets.sum(axis=-1, keepdims=True) - targets
        return losses, dlogits

    # -------------------------------------------------------------- optimizers
    def adam_update(self, p, g, m, v, lr, beta_1, beta_2, epsilon, t):
        """One Adam step (Kingma & Ba, Algorithm 1), in place on p, m and v.

        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
        """
        xp = self.xp
        m *= beta_1
        m += (1 - beta_1) * g
        v *= beta_2
        v += (1 - beta_2) * (g * g)
        m_hat = m / (1 - beta_1 ** t)
        v_hat = v / (1 - beta_2 ** t)
        p -= lr * m_hat / (xp.sqrt(v_hat) + epsilon)

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov, weight_decay):
        """One SGD step in place; heavy-ball momentum v <- m v + g, p <- p - lr v.

        Weight decay adds wd * p to the gradient (L2 regularisation). Nesterov
        steps along g + m v instead of v. `velocity` is None without momentum.
        """
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            velocity *= momentum
            velocity += g
            step = g + momentum * velocity if nesterov else velocity
        else:
            step = g
        p -= lr * step

    # ------------------------------------------------------ batch normalization
    def batchnorm_statistics(self, x):
        """Per-channel mean and biased variance over every axis but the last.

        x: (..., C) -> (mean: (C,), var: (C,)),  var = mean((x - mean)^2).
        """
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
        return mean, var

    def batchnorm_normalize(self, x, mean, var, gamma, beta, epsilon):
        """y = gamma * xhat + beta with xhat = (x - mean) / sqrt(var + eps).

        x: (..., C); mean, var, gamma, beta: (C,) -> (y: like x, saved, inv_std: (C,)).
        saved is what batchnorm_backward needs to know xhat: here xhat itself (like
        x); a backend may keep something else (NumbaOps keeps x and mean, and
        recomputes xhat as it reads them, which saves writing xhat out).
        """
        inv_std = 1 / self.xp.sqrt(var + epsilon)
        xhat = (x - mean) * inv_std
        return xhat * gamma + beta, xhat, inv_std

    def batchnorm_backward(self, dy, saved, inv_std, gamma, training, need_dx=True):
        """(dx, dgamma, dbeta) of y = gamma * xhat + beta, from dy (..., C);
        saved and inv_std as batchnorm_normalize returned them (saved: xhat here).

        In training mode mean and var are functions of every x of the channel
        (m values each), which gives
            dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat));
        in inference mode they are constants and dx = dy * gamma * inv_std.
        """
        xhat = saved
        axes = tuple(range(dy.ndim - 1))
        dgamma = (dy * xhat).sum(axis=axes)
        dbeta = dy.sum(axis=axes)
        if not need_dx:
            return None, dgamma, dbeta
        if not training:
            return dy * (gamma * inv_std), dgamma, dbeta
        m = dy.size // dy.shape[-1]
        dx = (gamma * inv_std / m) * (m * dy - dbeta - xhat * dgamma)
        return dx, dgamma, dbeta

    # ------------------------------------------------------------------ random
    def dropout_mask(self, rng, shape, rate, dtype):
        """Inverted-dropout mask: 0 with probability `rate`, else 1/(1-rate)."""
        keep = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
        mask = (keep >= rate).astype(dtype) / dtype.type(1 - rate)
        return self.asarray(mask)
