"""Decoding image files with Pillow, and the checks that keep bad files out.

Two checks, at two moments:

- :func:`header_problem` opens a file's header only (fast): it finds files
  that are not images at all, damaged headers, and decompression bombs
  (declared sizes above Pillow's ``Image.MAX_IMAGE_PIXELS``) before any
  training starts.
- :func:`load_image` decodes the pixels; damaged or truncated pixel data is
  found here, and reported as an :class:`ImageDecodeError` naming the file.
"""

import os
import warnings

import numpy as np

__all__ = ["COLOR_MODES", "PIL_FILTERS", "ImageDecodeError", "header_problem", "load_image"]

# color_mode -> (Pillow mode, channels)
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}

# Resampling filter names: Keras' (flow_from_directory: "box") and TensorFlow's
# (image_dataset_from_directory: "area") for Pillow's box filter.
PIL_FILTERS = ("nearest", "bilinear", "bicubic", "area", "box", "lanczos", "hamming")


class ImageDecodeError(ValueError):
    """A file that should be an image cannot be decoded; ``path`` names it."""

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path}: {reason}")


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a dependency
        raise ImportError("convnet.data needs Pillow: pip install pillow") from exc
    return Image


def _resample(interpolation):
    image = _pil()
    r = image.Resampling
    return {"nearest": r.NEAREST, "bilinear": r.BILINEAR, "bicubic": r.BICUBIC, "area": r.BOX,
            "box": r.BOX, "lanczos": r.LANCZOS, "hamming": r.HAMMING}[interpolation]


def _bomb_reason(size):
    """The refusal text when ``size = (width, height)`` exceeds Pillow's pixel limit."""
    limit = _pil().MAX_IMAGE_PIXELS
    width, height = size
    if limit and width * height > limit:
        return (f"decompression bomb refused: it declares {width}x{height} = {width * height} "
                f"pixels, more than Pillow's limit PIL.Image.MAX_IMAGE_PIXELS = {limit}")
    return None


# What Pillow raises for files it cannot read: OSError (unidentified or
# truncated), SyntaxError (some broken headers), ValueError, and
# DecompressionBombError (declared size above twice the limit).
def _decode_errors():
    return (OSError, SyntaxError, ValueError, EOFError, _pil().DecompressionBombError)


def header_problem(path):
    """None if Pillow reads the header of ``path`` and its size is allowed, else why not.

    Only the header is read, so this is fast; pixel data is checked by
    :func:`load_image`.
    """
    image_mod = _pil()
    try:
        with warnings.catch_warnings():
            # the size is judged below against the limit itself
            warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
            with image_mod.open(path) as im:
                return _bomb_reason(im.size)
    except _decode_errors() as exc:
        return str(exc) or type(exc).__name__


def load_image(path, image_size, color_mode="rgb", interpolation="bilinear",
               keep_aspect_ratio=False):
    """Decode one image file to a uint8 array ``(H, W, C)``, resized to ``image_size``.

    Args:
        path: image file.
        image_size: ``(height, width)``.  (Pillow's own sizes are (width, height).)
        color_mode: ``"grayscale"`` (C=1), ``"rgb"`` (C=3) or ``"rgba"`` (C=4).
        interpolation: resampling filter, one of :data:`PIL_FILTERS`.
        keep_aspect_ratio: first crop the centre of the image to the aspect
            ratio of ``image_size`` (as Keras' ``load_img``), so that resizing
            does not distort it.

    Raises:
        ImageDecodeError (a ValueError): naming the file, if Pillow cannot
            decode it or it is a decompression bomb.
    """
    image_mod = _pil()
    mode, channels = COLOR_MODES[color_mode]
    height, width = image_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
            with image_mod.open(path) as im:
                reason = _bomb_reason(im.size)
                if reason is not None:
                    raise ImageDecodeError(path, reason)
                im = im.convert(mode)  # also forces the full decode (GIF: first frame)
                if keep_aspect_ratio and im.size != (width, height):
                    im = im.crop(_centre_crop_box(im.size, (width, height)))
                if im.size != (width, height):
                    im = im.resize((width, height), resample=_resample(interpolation))
                array = np.asarray(im, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except _decode_errors() as exc:
        raise ImageDecodeError(path, str(exc) or type(exc).__name__) from exc
    return array.reshape(height, width, channels)


def _centre_crop_box(size, target):
    """Pillow box ``(left, top, right, bottom)``: the largest centred crop of
    ``size = (w, h)`` with the aspect ratio of ``target = (tw, th)``."""
    w, h = size
    tw, th = target
    crop_h = min(h, (w * th) // tw)
    crop_w = min(w, (h * tw) // th)
    top = (h - crop_h) // 2
    left = (w - crop_w) // 2
    return (left, top, left + crop_w, top + crop_h)


def decode_batch(paths, image_size, color_mode, interpolation, keep_aspect_ratio=False,
                 on_error="raise", skipped=None, dtype=np.float32):
    """Decode ``paths`` into one array ``(B, H, W, C)`` of ``dtype`` (values 0..255).

    With ``on_error="raise"`` the first file that cannot be decoded raises
    :class:`ImageDecodeError`.  With ``"skip"`` such files are left out of the
    batch and recorded in the dict ``skipped`` (path -> reason).

    Returns:
        ``(x, kept)``: the images, and the positions in ``paths`` they came from
        (``kept == arange(len(paths))`` when nothing was skipped).
    """
    height, width = image_size
    channels = COLOR_MODES[color_mode][1]
    x = np.empty((len(paths), height, width, channels), dtype=dtype)
    kept = []
    for row, path in enumerate(paths):
        try:
            x[len(kept)] = load_image(path, image_size, color_mode, interpolation,
                                      keep_aspect_ratio)
        except ImageDecodeError as exc:
            if on_error == "raise":
                raise
            skipped[exc.path] = exc.reason
            continue
        kept.append(row)
    return x[:len(kept)], np.asarray(kept, dtype=np.int64)
