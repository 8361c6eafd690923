"""Finding, downloading and loading the four IDX files of an MNIST-style dataset.

Shared by :mod:`convnet.datasets.fashion_mnist` and :mod:`convnet.datasets.mnist`.

Search order (the first *location holding all four files* wins; files are never
mixed across locations, so a half-filled folder cannot pair one dataset's
images with another's labels):

1. ``path=`` given to ``load_data`` -- a directory, or its ``<name>/`` sub-folder.
   An explicit path is a promise: if the files are not there it is an error,
   with no silent fallback to somewhere else.
2. ``$CONVNET_DATA`` -- a directory, or its ``<name>/`` sub-folder.
3. The user cache, ``$XDG_CACHE_HOME/convnet/<name>`` (``~/.cache/convnet/<name>``).
4. System folders, e.g. Debian's ``/usr/share/datasets/fashion-mnist``.
5. A download from the dataset's official address into the user cache,
   verified against SHA-256 and renamed into place only when verified.

Each file is accepted under its published name (``train-images-idx3-ubyte.gz``)
or decompressed (``train-images-idx3-ubyte``).
"""

import dataclasses
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .._files import atomic_write
from ..data.idx import read_idx

ROLES = ("x_train", "y_train", "x_test", "y_test")

#: Environment variable: a directory holding datasets (see module docstring).
DATA_ENV = "CONVNET_DATA"
#: Environment variable: a base URL that replaces the official mirrors.
URL_ENV = "CONVNET_DATASET_URL"

_CHUNK = 1 << 16


class DownloadError(OSError):
    """A dataset file could not be fetched: network/HTTP failure or short transfer."""


class ChecksumError(DownloadError, ValueError):
    """A downloaded file's SHA-256 differs from the published one (file discarded)."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    Attributes:
        filename: name on the mirrors and in the cache, e.g. ``"t10k-labels-idx1-ubyte.gz"``.
        sha256: SHA-256 of the published (compressed) file.
        raw_sha256: SHA-256 of its decompressed IDX content.  Recompressing a
            file changes ``sha256`` but not this (Debian's package did exactly
            that), so a download whose archive hash differs is still accepted
            when the content it decompresses to matches.
    """

    filename: str
    sha256: str
    raw_sha256: str

    @property
    def names(self):
        """Accepted names on disk: compressed first, then decompressed."""
        stem = self.filename.removesuffix(".gz")
        return (self.filename, stem)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What identifies an MNIST-style dataset: its files and where to get them.

    Attributes:
        name: folder name used in the cache and under ``$CONVNET_DATA``.
        aliases: other accepted sub-folder names (e.g. ``"fashion_mnist"``).
        files: role (``x_train``, ``y_train``, ``x_test``, ``y_test``) -> RemoteFile.
        mirrors: base URLs tried in order; each is joined with a file name.
    """

    name: str
    aliases: tuple
    files: dict
    mirrors: tuple


def cache_dir(name):
    """``$XDG_CACHE_HOME/convnet/<name>``, or ``~/.cache/convnet/<name>``.

    The XDG spec says a relative ``XDG_CACHE_HOME`` is invalid and must be ignored.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "convnet" / name


def _complete_set(spec, directory):
    """Role -> existing file path if ``directory`` holds all four files, else None."""
    found = {}
    for role, remote in spec.files.items():
        for fname in remote.names:
            candidate = Path(directory) / fname
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            return None
    return found


def _with_subfolders(spec, directory):
    directory = Path(directory)
    return [directory] + [directory / sub for sub in (spec.name, *spec.aliases)]


def _expected_names(spec):
    return ", ".join(remote.filename for remote in spec.files.values())


def _base_urls(spec, base_url):
    if base_url is None:
        base_url = os.environ.get(URL_ENV) or None
    return (base_url,) if base_url else tuple(spec.mirrors)


def find_files(spec, path=None, system_dirs=(), base_url=None, download=True):
    """Locate (downloading if needed) the four files of ``spec``.

    Args:
        spec: the DatasetSpec.
        path: explicit directory (searched with its ``<name>/`` sub-folder), or None.
        system_dirs: system folders to try after the cache (e.g. Debian's).
        base_url: overrides ``$CONVNET_DATASET_URL`` and the official mirrors.
        download: when False, raise instead of downloading.

    Returns:
        ``(files, source)``: role -> Path, and a short description of where
        they came from (``"path"``, ``"$CONVNET_DATA"``, ``"cache"``,
        ``"system"`` or ``"download"``).

    Raises:
        FileNotFoundError: ``path`` given but incomplete, or nothing found and
            ``download`` is False.
        DownloadError / ChecksumError: the download failed (nothing is left
            in the cache for the failed file).
    """
    if path is not None:
        for directory in _with_subfolders(spec, path):
            found = _complete_set(spec, directory)
            if found:
                return found, "path"
        raise FileNotFoundError(
            f"{spec.name}: {os.fspath(path)} (or its {spec.name}/ sub-folder) does not hold "
            f"all four files: {_expected_names(spec)} (decompressed names also accepted)"
        )

    env_dir = os.environ.get(DATA_ENV)
    if env_dir:
        for directory in _with_subfolders(spec, env_dir):
            found = _complete_set(spec, directory)
            if found:
                return found, f"${DATA_ENV}"

    cache = cache_dir(spec.name)
    found = _complete_set(spec, cache)
    if found:
        return found, "cache"

    for directory in system_dirs:
        found = _complete_set(spec, directory)
        if found:
            return found, "system"

    if not download:
        raise FileNotFoundError(
            f"{spec.name}: files not found (looked in path=, ${DATA_ENV}, {cache}"
            f"{''.join(', ' + os.fspath(d) for d in system_dirs)}) and download=False"
        )
    _download_missing(spec, cache, _base_urls(spec, base_url))
    found = _complete_set(spec, cache)
    assert found, "download reported success but the files are missing"
    return found, "download"


def _download_missing(spec, cache, base_urls):
    """Download into ``cache`` each file it does not hold yet, trying mirrors in order."""
    cache.mkdir(parents=True, exist_ok=True)
    for remote in spec.files.values():
        if any((cache / fname).is_file() for fname in remote.names):
            continue  # survives from an earlier, interrupted run: already verified
        failures = []
        for base in base_urls:
            url = base.rstrip("/") + "/" + remote.filename
            try:
                fetch(url, cache / remote.filename, remote)
                break
            except DownloadError as exc:
                failures.append(exc)
        else:
            if len(failures) == 1:
                raise failures[0]
            raise DownloadError(
                f"could not download {remote.filename} ({spec.name}) from any mirror:\n  "
                + "\n  ".join(str(exc) for exc in failures)
            ) from failures[-1]


def _progress(total, desc):
    """A tqdm byte counter when tqdm is installed (silent when not a terminal)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but optional here
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=None)


def fetch(url, dest, remote, timeout=60):
    """Download ``url`` to ``dest`` atomically, verifying ``remote``'s SHA-256.

    The bytes go to a temporary file beside ``dest``; both the archive hash
    and (by decompressing on the fly) the content hash are computed while
    streaming, so verification needs no second pass.  ``dest`` appears only
    after the transfer is complete and verified; on any failure the temporary
    file is removed and the error names the URL and the file.

    Raises:
        DownloadError: HTTP error status, network failure, or fewer bytes
            than the server's Content-Length announced.
        ChecksumError: neither the archive nor its content matches.
    """
    dest = Path(dest)
    print(f"Downloading {url} -> {dest}", file=sys.stderr)
    request = urllib.request.Request(url, headers={"User-Agent": "convnet-datasets"})
    try:
        with atomic_write(dest) as out:
            archive_hash = hashlib.sha256()
            content_hash = hashlib.sha256()
            # wbits=31: expect a gzip wrapper.  A non-gzip or broken stream just
            # disables the content check; the archive check still applies.
            inflater = zlib.decompressobj(wbits=31)
            got = 0
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _progress(total, remote.filename)
                try:
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        archive_hash.update(chunk)
                        if inflater is not None:
                            try:
                                content_hash.update(inflater.decompress(chunk))
                            except zlib.error:
                                inflater = None
                        got += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            # http.client returns b"" rather than raising when the connection
            # closes early, so the length check is ours to make.
            if total is not None and got != total:
                raise DownloadError(
                    f"{url}: transfer truncated: received {got} of {total} bytes "
                    f"for {dest.name}; nothing was written to {dest.parent}"
                )
            digest = archive_hash.hexdigest()
            content_ok = (
                inflater is not None
                and inflater.eof
                and content_hash.hexdigest() == remote.raw_sha256
            )
            if digest != remote.sha256 and not content_ok:
                raise ChecksumError(
                    f"{url}: SHA-256 mismatch for {dest.name}: expected {remote.sha256}, "
                    f"got {digest} ({got} bytes); the download was discarded"
                )
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url}: HTTP error {exc.code} {exc.reason} while downloading {dest.name}"
        ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"{url}: cannot reach the server ({exc.reason}) while downloading {dest.name}"
        ) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"{url}: download of {dest.name} failed: {exc!r}") from exc


def load(spec, path=None, system_dirs=(), base_url=None, download=True):
    """Find the files of ``spec`` and read them.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays, x of shape
        ``(N, 28, 28)`` and y of shape ``(N,)``.

    Raises:
        ValueError: naming the files, if a file is not the expected kind of
            IDX array or if image and label counts differ.
    """
    files, _ = find_files(spec, path, system_dirs, base_url, download)
    arrays = {role: read_idx(files[role]) for role in ROLES}
    for role, want_ndim in (("x_train", 3), ("y_train", 1), ("x_test", 3), ("y_test", 1)):
        array = arrays[role]
        if array.dtype.kind != "u" or array.dtype.itemsize != 1 or array.ndim != want_ndim:
            kind = "images (N, H, W)" if want_ndim == 3 else "labels (N,)"
            raise ValueError(
                f"{files[role]}: expected uint8 {kind}, got {array.dtype} of shape {array.shape}"
            )
    for x_role, y_role in (("x_train", "y_train"), ("x_test", "y_test")):
        n_images, n_labels = len(arrays[x_role]), len(arrays[y_role])
        if n_images != n_labels:
            raise ValueError(
                f"{spec.name}: {files[x_role]} holds {n_images} images but "
                f"{files[y_role]} holds {n_labels} labels"
            )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
