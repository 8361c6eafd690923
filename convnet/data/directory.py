"""Indexing a folder of class sub-folders: which files, in which order, which are bad.

Both folder readers use this: :func:`~convnet.data.image_dataset_from_directory`
and :meth:`ImageDataGenerator.flow_from_directory`.  The order is Keras':

- classes are the sub-folders in sorted name order (or the order given);
- within a class folder, files are grouped by the folder that holds them,
  folders sorted by their path *as a string* (Keras sorts ``os.walk``'s
  roots that way), and files sorted by name within each folder.

Differences from Keras, on purpose: names starting with "." (``.DS_Store``,
``.ipynb_checkpoints/``) are ignored, so a notebook's checkpoint folder never
becomes a class; a symbolic-link loop is an error instead of a walk that only
stops when the path grows too long; and files that are not readable images
are an error naming them (or, with ``on_error="skip"``, left out with one
warning that counts them) instead of a crash in the middle of an epoch.
"""

import os
import warnings

import numpy as np

from .decode import header_problem

__all__ = ["DIRECTORY_ITERATOR_FORMATS", "DATASET_FORMATS", "ON_ERROR", "class_folders",
           "walk_files", "index_directory", "warn_skipped"]

# Extensions each reader accepts, as Keras' DirectoryIterator and TensorFlow's
# image_dataset_from_directory do.  Other files are ignored silently (a
# readme.txt or Thumbs.db in a class folder is not an error).
DIRECTORY_ITERATOR_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
DATASET_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
ON_ERROR = ("raise", "skip")
_MAX_LISTED = 10  # bad files named in one message


def class_folders(directory, owner):
    """Sorted names of the sub-folders of ``directory`` (links to folders count)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"{owner}: {directory!r} is not a directory")
    with os.scandir(directory) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _identity(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def walk_files(folder, extensions, follow_links, owner):
    """Paths of the files under ``folder`` whose names end with ``extensions``, in Keras' order.

    Raises:
        ValueError: a symbolic link (followed when ``follow_links``) leads back
            to a folder that contains it -- a loop that would never end.
    """
    folder = os.fspath(folder)
    groups = []  # (root, sorted file names)
    # Each pending folder carries the identities of its ancestors, so a link
    # back to one of them is recognised however it is spelled.
    pending = [(folder, {_identity(folder): folder})]
    while pending:
        root, ancestors = pending.pop()
        names = []
        try:
            entries = list(os.scandir(root))
        except OSError as exc:
            raise ValueError(f"{owner}: cannot list the folder {root}: {exc}") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # follows links, as os.walk classifies them
                if entry.is_symlink() and not follow_links:
                    continue
                ident = _identity(entry.path)
                if ident in ancestors:
                    raise ValueError(
                        f"{owner}: symbolic link loop: {entry.path} leads back to "
                        f"{ancestors[ident]}, which contains it; remove the link or "
                        "pass follow_links=False")
                pending.append((entry.path, {**ancestors, ident: entry.path}))
            elif entry.name.lower().endswith(extensions):
                names.append(entry.name)
        groups.append((root, sorted(names)))
    groups.sort(key=lambda group: group[0])
    return [os.path.join(root, name) for root, names in groups for name in names]


def _describe(problems):
    listed = "\n  ".join(f"{path}: {why}" for path, why in problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return f"\n  {listed}{more}"


def warn_skipped(owner, problems, where, stacklevel=3):
    """One warning that counts (and lists the first of) the files left out."""
    warnings.warn(f"{owner}: skipped {len(problems)} file(s) {where} that are not readable "
                  f"images (on_error='skip'):{_describe(problems)}", stacklevel=stacklevel)


def check_on_error(on_error, owner):
    if on_error not in ON_ERROR:
        raise ValueError(f"{owner}: on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def index_directory(directory, classes, extensions, follow_links, on_error, owner,
                    split=None, allow_empty_classes=False):
    """List and check the images of a class-folder tree.

    Args:
        directory: the folder of class sub-folders.
        classes: class names in label order, or None for the sorted sub-folders.
        extensions: file name endings that count as images.
        follow_links: descend into symbolic links to folders.
        on_error: ``"raise"``: a file whose header Pillow cannot read (or a
            decompression bomb) is a ValueError naming it; ``"skip"``: such
            files are left out, with one warning that counts them.
        owner: the caller's name, for messages.
        split: ``(start, stop)`` fractions: keep files ``int(start*n)`` to
            ``int(stop*n)`` of each class (Keras' per-class validation split).
        allow_empty_classes: a class folder without images is allowed (Keras'
            DirectoryIterator) instead of an error (TensorFlow's dataset).

    Returns:
        ``(paths, labels, class_names)``: N paths grouped by class in Keras'
        order, int64 labels ``(N,)``, the list of class names.
    """
    directory = os.fspath(directory)
    folders = class_folders(directory, owner)
    if classes is None:
        class_names = folders
    else:
        class_names = [str(c) for c in classes]
        missing = [c for c in class_names if not os.path.isdir(os.path.join(directory, c))]
        if missing or len(set(class_names)) != len(class_names):
            raise ValueError(f"{owner}: classes {class_names} must name distinct sub-folders of "
                             f"{directory}; it has {folders}")
    if not class_names:
        raise ValueError(f"{owner}: {directory} must contain one sub-folder per class; found none")

    paths, labels, problems = [], [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(directory, name)
        found = []
        for path in walk_files(folder, extensions, follow_links, owner):
            why = header_problem(path)
            if why is None:
                found.append(path)
            else:
                problems.append((path, why))
        if split is not None:
            found = found[int(split[0] * len(found)):int(split[1] * len(found))]
        elif not found and not allow_empty_classes:
            raise ValueError(f"{owner}: class folder {folder} holds no images with extensions "
                             f"{', '.join(extensions)}" + (f" ({len(problems)} unreadable files "
                                                          "found so far)" if problems else ""))
        paths.extend(found)
        labels.extend([label] * len(found))

    if problems:
        if on_error == "raise":
            raise ValueError(f"{owner}: {len(problems)} file(s) in {directory} are not readable "
                             f"images (pass on_error='skip' to leave them out):"
                             f"{_describe(problems)}")
        warn_skipped(owner, problems, f"in {directory}", stacklevel=4)
    return paths, np.asarray(labels, dtype=np.int64), class_names
