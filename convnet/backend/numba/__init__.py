"""The numba backend: NumpyOps's hot kernels jitted for the CPU.

One module per kernel family, and a thin class:

    ops.py          NumbaOps: checks inputs, picks a kernel, allocates outputs
    conv.py         the convolution algorithms ("gemm-chunks", "phases", "tiles",
                    "pixel-rows") and the one place that chooses between them
    im2col.py       im2col / col2im (unfold and fold back), parallel and serial
    phases.py       direct small convolutions on the input split into stride phases
    phases_tiles.py the phases forward (16 or 32k filters) and dW2 (16 or 32) in
                    512-bit register tiles
    pixel_rows.py   direct convolutions of at most 8 float32 filters on x's own pixels,
                    one pixel's filters a vector, any stride
    gemm.py         float32 matrix products in register tiles (numpy's BLAS otherwise)
    simd.py         the 16- and 8-lane float32 vector types those kernels are written in
    pooling.py      max / average pooling and their backward passes
    elementwise.py  relu, column sums (bias gradients), softmax, softmax cross-entropy
    optimizers.py   Adam and SGD updates, one fused pass each
    workers.py      one job per core, each with a one-thread product
    threads.py      Numba's threading layer, serial-vs-parallel threshold, warnings
    _jit.py         jit options and the serial twin of a parallel kernel

docs/how-it-works.md describes every algorithm; numpy_ops.py is the reference
each kernel is tested against.
"""

from .ops import NumbaOps

__all__ = ["NumbaOps"]
