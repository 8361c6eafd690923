"""A small synthetic image dataset for tests, the demo and learners: bars,
crosses and circles drawn at random positions and sizes, with noise.

make_shapes(n) -> (x: (n, size, size, 1) float32 in [0, 1], y: (n,) int64 in {0, 1, 2})
"""

import numpy as np

CLASS_NAMES = ("bar", "cross", "circle")


def make_shapes(n, size=28, seed=0, noise=0.1):
    """n images of size x size pixels, one shape each, classes balanced at random."""
    if n < 1 or size < 12:
        raise ValueError(f"make_shapes: need n >= 1 and size >= 12, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASS_NAMES), size=n)
    rows, cols = np.mgrid[0:size, 0:size]
    x = np.zeros((n, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        r = rng.integers(size // 5, size // 3 + 1)            # half-extent of the shape
        cy, cx = rng.integers(r, size - r, size=2)             # centre, shape fully inside
        thick = max(1, size // 14)
        if label == 0:      # a bar, horizontal or vertical
            if rng.random() < 0.5:
                mask = (abs(rows - cy) < thick) & (abs(cols - cx) <= r)
            else:
                mask = (abs(cols - cx) < thick) & (abs(rows - cy) <= r)
        elif label == 1:    # a plus-shaped cross
            mask = ((abs(rows - cy) < thick) & (abs(cols - cx) <= r)) | \
                   ((abs(cols - cx) < thick) & (abs(rows - cy) <= r))
        else:               # a ring
            dist = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2)
            mask = abs(dist - r) < thick
        x[i][mask] = 1.0
    x += noise * rng.standard_normal(x.shape).astype(np.float32)
    return np.clip(x, 0, 1)[..., None], y.astype(np.int64)
