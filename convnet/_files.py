"""Atomic file writing shared by model files, the IDX writer and the dataset downloader.

A reader must never see half a file: a crash, a full disk or a failed checksum
in the middle of writing leaves the destination either absent or as it was.
The data goes to a temporary file *in the destination's directory* (so the final
``os.replace`` is a same-filesystem rename, which POSIX makes atomic) and is
renamed over the destination only when everything succeeded:

    write temp -> flush -> fsync(temp) -> rename(temp, path) -> fsync(directory)

A process killed (SIGKILL) mid-write leaves the destination as it was and an
orphan ``.<name>.<random>.tmp`` beside it; the leading dot keeps listings and
the dataset search from taking it for a finished file.
"""

import contextlib
import os
import secrets


def _create_temp(directory, basename):
    """Create and open a fresh temporary file next to the destination.

    Returns ``(fd, path)``.  The name starts with a dot so directory listings
    (and our own dataset search) do not mistake it for a finished file.
    ``os.open`` with mode 0o666 lets the process umask decide the permissions,
    as a plain ``open()`` would; ``tempfile.mkstemp`` would force 0o600.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = os.path.join(directory, f".{basename}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Context manager yielding a file whose contents replace ``path`` on success.

    ``mode`` is ``"wb"`` (a binary file) or ``"w"`` (text: UTF-8, newlines
    written as given, which is what the csv module wants).

    If the ``with`` body raises (including a verification failure the caller
    raises itself), the temporary file is deleted and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write({path!r}): mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(directory, os.path.basename(path))
    text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    try:
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            # fsync before the rename: otherwise a power loss can leave the new
            # name pointing at a file whose data blocks never reached the disk.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename lives in the directory's own data: until the directory is
    # synced, a power loss can bring back the old name (or no name at all).
    fsync_directory(directory)


def fsync_directory(directory):
    """Flush a directory's entries (a rename or a new file in it) to disk.

    Windows cannot open a directory, and some filesystems refuse to fsync one
    (EINVAL); there the rename is as durable as the OS makes it, and nothing
    better can be done, so those errors are ignored.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
