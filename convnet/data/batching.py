"""Batch iterables: the protocol the training loop consumes.

A *batch dataset* is any object with

- ``len(ds)``: the number of batches in one epoch (``steps_per_epoch``), and
- ``iter(ds)``: a fresh pass over the data.  Each call to ``iter()`` starts a
  new epoch (reshuffled when shuffling is on); the batches are ``(x, y)``
  tuples of numpy arrays, or ``x`` alone for data without labels.

Shuffling is deterministic: epoch ``k`` of a dataset created with ``seed=s``
always has the same order, whatever happened to other datasets.  The
per-epoch generator is seeded from ``(s, k)`` rather than from one long-lived
generator, so a validation pass or an abandoned iterator cannot shift the
sequence.

:class:`ArrayBatches` batches in-memory arrays; image folders
(:mod:`convnet.data.image_folder`) and augmentation flows
(:mod:`convnet.data.augmentation`) follow the same protocol.
"""

import math

import numpy as np

__all__ = ["ArrayBatches", "BatchDataset", "MappedDataset", "epoch_rng"]


def _entropy(seed):
    """An int that, with the epoch number, seeds each epoch's generator.

    ``seed=None`` draws fresh OS entropy once, so one object's epochs differ
    from each other and from other objects', yet stay internally consistent.
    """
    if seed is None:
        return np.random.SeedSequence().entropy
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def epoch_rng(entropy, epoch, stream=0):
    """Generator for epoch ``epoch``: a pure function of ``(entropy, epoch, stream)``.

    ``stream`` separates independent uses of the same seed (e.g. shuffling a
    training set vs. a validation set built from one seed).
    """
    return np.random.default_rng(np.random.SeedSequence([entropy, stream, epoch]))


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


class BatchDataset:
    """Base class of the batch iterables: ``len()``, re-iterable epochs, ``map``.

    Subclasses implement ``__len__``, ``num_samples`` and ``_iter_epoch(epoch)``;
    this class counts epochs so that every ``iter()`` is the next epoch.
    """

    _epoch = 0

    def __len__(self):
        raise NotImplementedError

    @property
    def num_samples(self):
        """Number of examples in one epoch."""
        raise NotImplementedError

    def _iter_epoch(self, epoch):
        raise NotImplementedError

    def __iter__(self):
        # A plain method (not a generator function) so the epoch counter
        # advances when iter() is called, not lazily on the first next().
        epoch = self._epoch
        self._epoch = epoch + 1
        return self._iter_epoch(epoch)

    def iter_epoch(self, epoch):
        """The batches of epoch number `epoch` (its order depends on nothing else),
        without moving the epoch counter: how a model resumed at epoch k replays
        exactly the batches of an uninterrupted run."""
        return self._iter_epoch(int(epoch))

    @property
    def epoch(self):
        """How many epochs (``iter()`` calls) have been started so far."""
        return self._epoch

    def map(self, fn):
        """A dataset whose batches are ``fn(x, y)`` (or ``fn(x)`` without labels).

        Use it for augmentation, e.g. ``ds.map(ImageDataGenerator(horizontal_flip=True))``
        (an ImageDataGenerator called as ``gen(x, y)`` returns ``(augmented_x, y)``)
        or ``ds.map(lambda x, y: (x / 255.0, y))``.
        """
        return MappedDataset(self, fn)

    def as_arrays(self):
        """All batches of one epoch concatenated: ``(x, y)`` (or ``x``).

        Holds the whole dataset in memory.
        """
        xs, ys = [], []
        labelled = None
        for batch in self:
            labelled = isinstance(batch, tuple)
            if labelled:
                xs.append(batch[0])
                ys.append(batch[1])
            else:
                xs.append(batch)
        if labelled is None:
            raise ValueError(f"{type(self).__name__} is empty: no batches to concatenate")
        x = np.concatenate(xs)
        return (x, np.concatenate(ys)) if labelled else x


class MappedDataset(BatchDataset):
    """``parent`` with ``fn`` applied to every batch (see :meth:`BatchDataset.map`).

    Attributes the parent has (``class_names``, ``file_paths``, ``batch_size``...)
    are reachable through this wrapper.
    """

    def __init__(self, parent, fn):
        if not callable(fn):
            raise TypeError(f"map: expected a callable, got {fn!r}")
        self.parent = parent
        self.fn = fn

    def __len__(self):
        return len(self.parent)

    @property
    def num_samples(self):
        return self.parent.num_samples

    def __iter__(self):
        # Epochs are counted by the parent, so a map()ped view and its parent
        # share one epoch sequence; iter() is called here, eagerly, so the
        # epoch starts when iter() is called, as for any BatchDataset.
        return self._mapped(iter(self.parent))

    def _mapped(self, batches):
        fn = self.fn
        for batch in batches:
            yield fn(*batch) if isinstance(batch, tuple) else fn(batch)

    @property
    def epoch(self):
        return self.parent.epoch

    def __getattr__(self, name):
        if name == "parent":  # not set yet (e.g. during unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.parent, name)


class ArrayBatches(BatchDataset):
    """Mini-batches of in-memory arrays, converted to floats one batch at a time.

    Fashion-MNIST's 60000x28x28 uint8 images take 47 MB; as float32 they would
    take 188 MB (and 376 MB as float64).  Keeping ``x`` in its stored dtype and
    converting only the ``batch_size`` rows being used keeps memory flat.

    Args:
        x: array ``(N, ...)``, e.g. ``(N, 28, 28)`` or ``(N, H, W, C)`` uint8.
        y: array ``(N, ...)`` of labels, or None (batches are then ``x`` only).
        batch_size: rows per batch; the last batch may be smaller.
        shuffle: reshuffle the rows every epoch.
        seed: int for reproducible shuffles, None for fresh randomness.
        transform: optional callable applied to each x batch after the dtype
            conversion and scaling, ``transform(x_batch) -> x_batch``.
        scale: multiply x batches by this (e.g. ``1/255``); implies float32
            unless ``dtype`` says otherwise.
        dtype: dtype of x batches; None keeps x's dtype (float32 if ``scale``).
        drop_remainder: drop the last, smaller batch.

    Iterating yields ``(x_batch, y_batch)`` with ``x_batch`` of shape
    ``(B, ...)`` and dtype ``dtype``, ``y_batch`` of shape ``(B, ...)`` in y's dtype.
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None, transform=None,
                 scale=None, dtype=None, drop_remainder=False):
        # x (or y) may be a list of arrays with one row count (a model with several
        # inputs or outputs): batches are then lists of the same rows of each
        self._x_list = isinstance(x, (list, tuple))
        self._y_list = isinstance(y, (list, tuple))
        xs = [np.asarray(a) if not isinstance(a, np.ndarray) else a for a in (x if self._x_list else [x])]
        if not xs or any(a.ndim < 1 for a in xs):
            raise ValueError(f"ArrayBatches: x must have a batch axis, got shapes {[a.shape for a in xs]}")
        if len({len(a) for a in xs}) != 1:
            raise ValueError(f"ArrayBatches: the x arrays have different row counts {[len(a) for a in xs]}")
        x = xs[0]
        if y is not None:
            ys = [np.asarray(a) if not isinstance(a, np.ndarray) else a for a in (y if self._y_list else [y])]
            for a in ys:
                if len(a) != len(x):
                    raise ValueError(
                        f"ArrayBatches: x has {len(x)} rows but y has {len(a)}; they must match"
                    )
            self._ys = ys
            y = ys[0]
        self._xs = xs
        if transform is not None and not callable(transform):
            raise TypeError(f"ArrayBatches: transform must be callable, got {transform!r}")
        self.x = x
        self.y = y
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self._entropy = _entropy(seed)
        self.transform = transform
        self.scale = scale
        self._keep_dtypes = dtype is None and scale is None and transform is None
        if dtype is None:
            dtype = np.float32 if scale is not None else x.dtype
        self.dtype = np.dtype(dtype)
        self.drop_remainder = bool(drop_remainder)

    @property
    def num_samples(self):
        return len(self.x)

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    def _order(self, rng):
        n = len(self.x)
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def _finish_x(self, xb, rng):
        """Convert a gathered x batch: dtype, scale, transform (hook for subclasses)."""
        xb = xb.astype(self.dtype, copy=False)
        if self.scale is not None:
            xb *= self.dtype.type(self.scale)
        if self.transform is not None:
            xb = self.transform(xb)
        return xb

    def _iter_epoch(self, epoch):
        rng = epoch_rng(self._entropy, epoch)
        order = self._order(rng)
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            if self.shuffle:
                # Same rows, gathered in memory order: a batch is a set (the
                # loss is a mean), and sorted gathers touch memory sequentially.
                idx = np.sort(idx)
            # Fancy indexing copies just these rows, still in x's dtype, so the
            # in-place scaling in _finish_x never touches the caller's array.
            if self._x_list:
                xb = [a[idx] if self._keep_dtypes else self._finish_x(a[idx], rng) for a in self._xs]
            else:
                xb = self._finish_x(self.x[idx], rng)
            if self.y is None:
                yield xb
            else:
                yield (xb, [a[idx] for a in self._ys] if self._y_list else self.y[idx])
