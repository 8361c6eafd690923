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


# ------------------------------------------------- stand-ins for the course's data
XRAY_CLASSES = ("normal", "pneumonia", "covid")
GALAXY_CLASSES = ("normal", "ringed", "merger", "other")


def make_xrays(n, size=64, classes=XRAY_CLASSES, seed=0, weights=None):
    """Stand-in chest X-rays: (x (n, size, size, 1) float32 in [0, 1], y (n,) int64).

    Two dark lung fields in a brighter chest; "normal" lungs are clear,
    "pneumonia" has one or two dense bright patches low in a lung, "covid" a
    faint haze over the outer part of both lungs. Not medical images: data that
    a small CNN separates only by looking at local texture, as the course's
    models must. weights: class frequencies (the course's sets are imbalanced).
    """
    if n < 1 or size < 16:
        raise ValueError(f"make_xrays: need n >= 1 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    k = len(classes)
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    y = rng.choice(k, size=n, p=p)
    rows, cols = np.mgrid[0:size, 0:size] / size
    x = np.empty((n, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        shift = rng.normal(0, 0.02, 2)
        img = 0.55 + 0.1 * rng.random() - 0.25 * ((cols - 0.5) ** 2)
        lungs = np.zeros_like(img, dtype=bool)
        for side in (-1, 1):
            cx, cy = 0.5 + side * 0.2 + shift[0], 0.5 + shift[1]
            lungs |= ((cols - cx) / 0.14) ** 2 + ((rows - cy) / 0.3) ** 2 < 1
        img = np.where(lungs, 0.2, img)
        name = classes[label]
        if name == "pneumonia":
            for _ in range(rng.integers(1, 3)):
                side = rng.choice((-1, 1))
                cx, cy = 0.5 + side * 0.2 + rng.normal(0, 0.03), 0.62 + rng.normal(0, 0.05)
                blob = np.exp(-(((cols - cx) ** 2 + (rows - cy) ** 2) / (2 * 0.05 ** 2)))
                img = img + 0.55 * blob * lungs
        elif name == "covid":
            outer = np.abs(cols - 0.5) > 0.24
            img = img + (0.22 + 0.05 * rng.random()) * (lungs & outer)
        elif name != "normal":
            img = img + 0.1 * (label / k) * lungs
        x[i] = img + 0.05 * rng.standard_normal(img.shape)
    return np.clip(x, 0, 1)[..., None], y.astype(np.int64)


def make_galaxies(n, size=128, seed=0):
    """Stand-in galaxy pictures in the course's layout: (x (n, size, size, 3) float32
    in [0, 1], y (n, 4) one-hot float32) for GALAXY_CLASSES.

    "normal": a smooth elliptical glow; "ringed": a glow with a bright ring;
    "merger": two glows close together; "other": a faint irregular smudge.
    """
    if n < 1 or size < 16:
        raise ValueError(f"make_galaxies: need n >= 1 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    rows, cols = np.mgrid[0:size, 0:size] / size
    x = np.empty((n, size, size, 3), dtype=np.float32)

    def glow(cx, cy, r, q, angle):
        dx, dy = cols - cx, rows - cy
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / q
        return np.exp(-(u ** 2 + v ** 2) / (2 * r ** 2)), np.sqrt(u ** 2 + v ** 2)

    for i, label in enumerate(labels):
        cx, cy = 0.5 + rng.normal(0, 0.04, 2)
        r, q, angle = rng.uniform(0.06, 0.1), rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
        g, dist = glow(cx, cy, r, q, angle)
        if label == 1:
            g = 0.7 * g + 0.8 * np.exp(-((dist - 2.5 * r) ** 2) / (2 * (0.2 * r) ** 2))
        elif label == 2:
            offset = rng.uniform(2.0, 3.0) * r
            g2, _ = glow(cx + offset * np.cos(angle), cy + offset * np.sin(angle), 0.8 * r, q, angle)
            g = g + g2
        elif label == 3:
            g = 0.5 * g * (1 + 0.8 * np.sin(cols * rng.uniform(20, 40)) * np.sin(rows * rng.uniform(20, 40)))
        color = np.array([1.0, 0.9, 0.75]) * rng.uniform(0.8, 1.0)
        img = g[..., None] * color + 0.04 * rng.standard_normal((size, size, 3))
        stars = rng.random((size, size)) > 0.998
        img[stars] = 1.0
        x[i] = np.clip(img, 0, 1)
    return x, np.eye(4, dtype=np.float32)[labels]


def write_class_folders(root, x, y, class_names, prefix="img"):
    """Save images x (N, H, W, 1 or 3) in [0, 1] as PNG files root/<class name>/<prefix>_<i>.png
    (the layout flow_from_directory reads); y: (N,) labels. Returns root."""
    import os

    from PIL import Image
    for i, (img, label) in enumerate(zip(x, y)):
        folder = os.path.join(root, class_names[int(label)])
        os.makedirs(folder, exist_ok=True)
        pixels = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        Image.fromarray(pixels).save(os.path.join(folder, f"{prefix}_{i:05d}.png"))
    return root
