"""Fashion-MNIST / MNIST loaders: every place in the search order, and the download.

All data is generated: tiny IDX files whose first pixel tells which location
they came from.  Downloads go to an http.server on 127.0.0.1 in a thread.
"""

import dataclasses
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from convnet.data import write_idx
from convnet.datasets import ChecksumError, DownloadError, _common, fashion_mnist, mnist

NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def make_set(directory, marker, n_train=6, n_test=4, gz=True):
    """Write the four files; every training image's pixel [0, 0] equals ``marker``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(marker)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_train[:, 0, 0] = marker
    arrays = {
        "x_train": x_train,
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for role, array in arrays.items():
        name = NAMES[role] if gz else NAMES[role][:-3]
        write_idx(directory / name, array)
    return arrays


def spec_for(module, directory):
    """The module's SPEC with checksums of the generated files in ``directory``."""
    files = {}
    for role, remote in module.SPEC.files.items():
        data = (directory / remote.filename).read_bytes()
        files[role] = dataclasses.replace(
            remote,
            sha256=hashlib.sha256(data).hexdigest(),
            raw_sha256=hashlib.sha256(gzip.decompress(data)).hexdigest(),
        )
    return dataclasses.replace(module.SPEC, files=files)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No real env var, cache or Debian folder can leak into a test."""
    monkeypatch.delenv("CONVNET_DATA", raising=False)
    monkeypatch.delenv("CONVNET_DATASET_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(tmp_path / "debian"),))
    # Any accidental attempt at the real mirrors fails fast instead of hanging.
    monkeypatch.setattr(fashion_mnist, "SPEC",
                        dataclasses.replace(fashion_mnist.SPEC, mirrors=("http://127.0.0.1:9/",)))
    monkeypatch.setattr(mnist, "SPEC",
                        dataclasses.replace(mnist.SPEC, mirrors=("http://127.0.0.1:9/",)))
    return tmp_path


def cache(tmp_path, name="fashion-mnist"):
    return tmp_path / "xdg-cache" / "convnet" / name


# -- the search order ----------------------------------------------------------------------


def test_explicit_path(clean_env):
    arrays = make_set(clean_env / "mine", marker=1)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(path=clean_env / "mine")
    for got, role in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"),
                      (y_test, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[role])
    assert x_train.shape == (6, 28, 28) and y_test.shape == (4,)


def test_explicit_path_beats_everything_else(clean_env, monkeypatch):
    make_set(clean_env / "mine", marker=1)
    make_set(clean_env / "env", marker=2)
    make_set(cache(clean_env), marker=3)
    make_set(clean_env / "debian", marker=4)
    monkeypatch.setenv("CONVNET_DATA", str(clean_env / "env"))
    (x, _), _ = fashion_mnist.load_data(path=str(clean_env / "mine"))
    assert x[0, 0, 0] == 1
    assert fashion_mnist.find_files(path=clean_env / "mine")[1] == "path"


def test_explicit_path_accepts_subfolder_and_uncompressed(clean_env):
    make_set(clean_env / "root" / "fashion-mnist", marker=5, gz=False)
    (x, _), _ = fashion_mnist.load_data(path=clean_env / "root")
    assert x[0, 0, 0] == 5


def test_explicit_path_without_files_is_an_error_not_a_fallback(clean_env):
    make_set(cache(clean_env), marker=3)  # would be found if we fell back
    (clean_env / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*train-images-idx3-ubyte\.gz"):
        fashion_mnist.load_data(path=clean_env / "empty")


def test_env_var_beats_cache_and_system(clean_env, monkeypatch):
    make_set(clean_env / "env", marker=2)
    make_set(cache(clean_env), marker=3)
    make_set(clean_env / "debian", marker=4)
    monkeypatch.setenv("CONVNET_DATA", str(clean_env / "env"))
    (x, _), _ = fashion_mnist.load_data()
    assert x[0, 0, 0] == 2


def test_env_var_subfolder(clean_env, monkeypatch):
    make_set(clean_env / "env" / "mnist", marker=6)
    make_set(clean_env / "env" / "fashion-mnist", marker=7)
    monkeypatch.setenv("CONVNET_DATA", str(clean_env / "env"))
    assert mnist.load_data()[0][0][0, 0, 0] == 6
    assert fashion_mnist.load_data()[0][0][0, 0, 0] == 7


def test_env_var_without_files_falls_through_to_cache(clean_env, monkeypatch):
    (clean_env / "env").mkdir()
    make_set(cache(clean_env), marker=3)
    monkeypatch.setenv("CONVNET_DATA", str(clean_env / "env"))
    (x, _), _ = fashion_mnist.load_data()
    assert x[0, 0, 0] == 3


def test_cache_beats_system_dir(clean_env):
    make_set(cache(clean_env), marker=3)
    make_set(clean_env / "debian", marker=4)
    (x, _), _ = fashion_mnist.load_data()
    assert x[0, 0, 0] == 3
    assert fashion_mnist.find_files()[1] == "cache"


def test_cache_location_follows_xdg_and_home(clean_env, monkeypatch):
    assert _common.cache_dir("mnist") == clean_env / "xdg-cache" / "convnet" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(clean_env / "home"))
    assert _common.cache_dir("mnist") == clean_env / "home" / ".cache" / "convnet" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert _common.cache_dir("mnist") == clean_env / "home" / ".cache" / "convnet" / "mnist"


def test_debian_system_dir(clean_env):
    make_set(clean_env / "debian", marker=4)
    (x, _), _ = fashion_mnist.load_data(download=False)
    assert x[0, 0, 0] == 4
    assert fashion_mnist.find_files()[1] == "system"


def test_incomplete_location_is_skipped_not_mixed(clean_env):
    """Three of four files in the cache must not be paired with Debian's fourth."""
    make_set(cache(clean_env), marker=3)
    (cache(clean_env) / NAMES["y_test"]).unlink()
    make_set(clean_env / "debian", marker=4)
    (x, _), _ = fashion_mnist.load_data()
    assert x[0, 0, 0] == 4


def test_nothing_found_without_download(clean_env):
    with pytest.raises(FileNotFoundError, match="download=False"):
        fashion_mnist.load_data(download=False)


def test_mnist_does_not_use_the_fashion_folder(clean_env):
    make_set(clean_env / "debian", marker=4)
    with pytest.raises(FileNotFoundError):
        mnist.load_data(download=False)


# -- bad files -------------------------------------------------------------------------------


def test_mismatched_counts_name_both_files(clean_env):
    make_set(clean_env / "d", marker=1)
    write_idx(clean_env / "d" / NAMES["y_train"], np.zeros(5, np.uint8))  # 6 images, 5 labels
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*6 images.*"
                                         r"train-labels-idx1-ubyte\.gz.*5 labels"):
        fashion_mnist.load_data(path=clean_env / "d")


def test_wrong_kind_of_array_names_the_file(clean_env):
    make_set(clean_env / "d", marker=1)
    write_idx(clean_env / "d" / NAMES["x_test"], np.zeros((4, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*expected uint8 images"):
        fashion_mnist.load_data(path=clean_env / "d")


def test_corrupt_gzip_in_dataset_names_the_file(clean_env):
    make_set(clean_env / "d", marker=1)
    target = clean_env / "d" / NAMES["x_train"]
    target.write_bytes(target.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
        fashion_mnist.load_data(path=clean_env / "d")


def test_wrong_magic_in_dataset_names_the_file(clean_env):
    make_set(clean_env / "d", marker=1)
    (clean_env / "d" / NAMES["y_test"]).write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz.*magic"):
        fashion_mnist.load_data(path=clean_env / "d")


# -- downloads from 127.0.0.1 --------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict] = {}  # path -> (status, body, announced length or None)
    hits: ClassVar[list] = []

    def do_GET(self):
        self.hits.append(self.path)
        status, body, announced = self.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if announced is None else announced))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True  # a short body must end the connection

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.routes = {}
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/data/"
    httpd.shutdown()
    httpd.server_close()


def serve(directory, routes, **overrides):
    """Route /data/<name> to the bytes of each file in ``directory``."""
    for name in NAMES.values():
        routes[f"/data/{name}"] = (200, (directory / name).read_bytes(), None)
    routes.update(overrides)


def leftovers(directory):
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_download_good_files_are_cached_and_loaded(clean_env, server, monkeypatch, capsys):
    _, url = server
    arrays = make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes)

    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(base_url=url)
    for got, role in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"),
                      (y_test, "y_test")):
        np.testing.assert_array_equal(got, arrays[role])
    assert leftovers(cache(clean_env)) == sorted(NAMES.values())  # and no temp files
    assert "Downloading" in capsys.readouterr().err

    # Second load: straight from the cache, no request.
    _Handler.hits.clear()
    assert fashion_mnist.find_files(base_url=url)[1] == "cache"
    fashion_mnist.load_data(base_url=url)
    assert _Handler.hits == []


def test_download_base_url_from_env(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(mnist, "SPEC", spec_for(mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes)
    monkeypatch.setenv("CONVNET_DATASET_URL", url)
    (x, _), _ = mnist.load_data()
    assert x[0, 0, 0] == 9
    assert leftovers(cache(clean_env, "mnist")) == sorted(NAMES.values())


def test_download_tries_next_mirror(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    spec = spec_for(fashion_mnist, clean_env / "origin")
    dead = url.replace("/data/", "/dead/")  # 404 for every file
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(spec, mirrors=(dead, url)))
    serve(clean_env / "origin", _Handler.routes)
    (x, _), _ = fashion_mnist.load_data()
    assert x[0, 0, 0] == 9


def test_download_accepts_recompressed_archive_with_same_content(clean_env, server, monkeypatch):
    """Like Debian's files: different gzip bytes, identical IDX content."""
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes)
    name = NAMES["x_train"]
    original = (clean_env / "origin" / name).read_bytes()
    recompressed = gzip.compress(gzip.decompress(original), compresslevel=1, mtime=12345)
    assert recompressed != original
    _Handler.routes[f"/data/{name}"] = (200, recompressed, None)
    (x, _), _ = fashion_mnist.load_data(base_url=url)
    assert x[0, 0, 0] == 9


def test_download_wrong_checksum_leaves_nothing(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    make_set(clean_env / "evil", marker=66)  # same names, other content
    serve(clean_env / "evil", _Handler.routes)
    with pytest.raises(ChecksumError, match=r"127\.0\.0\.1.*train-images-idx3-ubyte\.gz.*SHA-256"):
        fashion_mnist.load_data(base_url=url)
    assert leftovers(cache(clean_env)) == []


def test_download_checksum_error_is_a_value_error(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes,
          **{f"/data/{NAMES['y_test']}": (200, b"definitely not gzip", None)})
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        fashion_mnist.load_data(base_url=url)
    # the files before it were verified and kept; the bad one left nothing behind
    assert NAMES["y_test"] not in leftovers(cache(clean_env))
    assert not [f for f in leftovers(cache(clean_env)) if f.startswith(".")]


def test_download_truncated_transfer_leaves_nothing(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes)
    name = NAMES["x_train"]  # the first file fetched
    body = (clean_env / "origin" / name).read_bytes()
    _Handler.routes[f"/data/{name}"] = (200, body[:-100], len(body))  # promises more than sent
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1.*{name}.*truncated"):
        fashion_mnist.load_data(base_url=url)
    assert leftovers(cache(clean_env)) == []


def test_download_http_500_names_the_url(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes,
          **{f"/data/{NAMES['x_train']}": (500, b"oops", None)})
    with pytest.raises(DownloadError, match=rf"{url}{NAMES['x_train']}.*HTTP error 500"):
        fashion_mnist.load_data(base_url=url)
    assert leftovers(cache(clean_env)) == []


def test_download_unreachable_server(clean_env, monkeypatch):
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:9/train-images"):
        fashion_mnist.load_data(base_url="http://127.0.0.1:9/")


def test_interrupted_download_resumes_with_missing_files_only(clean_env, server, monkeypatch):
    _, url = server
    make_set(clean_env / "origin", marker=9)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec_for(fashion_mnist, clean_env / "origin"))
    serve(clean_env / "origin", _Handler.routes,
          **{f"/data/{NAMES['x_test']}": (503, b"busy", None)})
    with pytest.raises(DownloadError):
        fashion_mnist.load_data(base_url=url)
    assert leftovers(cache(clean_env)) == sorted([NAMES["x_train"], NAMES["y_train"]])
    serve(clean_env / "origin", _Handler.routes)
    _Handler.hits.clear()
    fashion_mnist.load_data(base_url=url)
    assert sorted(_Handler.hits) == sorted([f"/data/{NAMES['x_test']}", f"/data/{NAMES['y_test']}"])


# -- the real pinned hashes ----------------------------------------------------------------
#
# The tests above swap in hashes of generated files. These check the hashes the
# loaders actually pin. Offline, only Fashion-MNIST's can be checked, against
# Debian's dataset-fashion-mnist package (`make test` installs it where apt works
# as root). Debian recompressed Zalando's archives, so what can be checked is:
# the content (decompressed IDX) hash of every file, the archives against the
# package's own dpkg record, and that the loader, given the real archives and the
# real pinned hashes, accepts them (and refuses one changed byte).
# Zalando's archive SHA-256s (the `sha256` field) cannot be checked offline.

DEBIAN = "/usr/share/datasets/fashion-mnist"
DPKG_MD5SUMS = "/var/lib/dpkg/info/dataset-fashion-mnist.md5sums"
NO_DEBIAN = (f"dataset-fashion-mnist is not installed ({DEBIAN} missing; `make test` installs it where apt "
             "runs as root): Fashion-MNIST's pinned content SHA-256s are UNVERIFIED in this run")
HEX64 = set("0123456789abcdef")


@pytest.mark.parametrize("module", [fashion_mnist, mnist])
def test_pinned_hashes_are_well_formed_and_distinct(module):
    """Catches a truncated, doubled or pasted-twice hash; not a one-character typo
    (only the real bytes catch that)."""
    digests = [d for remote in module.SPEC.files.values() for d in (remote.sha256, remote.raw_sha256)]
    assert all(len(d) == 64 and set(d) <= HEX64 for d in digests), digests
    assert len(set(digests)) == len(digests)
    assert sorted(r.filename for r in module.SPEC.files.values()) == sorted(NAMES.values())


@pytest.mark.skipif(not os.path.isdir(DEBIAN), reason=NO_DEBIAN)
def test_debian_files_match_the_pinned_content_hashes_and_dpkgs_archive_record():
    recorded = {}
    if os.path.isfile(DPKG_MD5SUMS):
        for line in open(DPKG_MD5SUMS):
            md5, path = line.split()
            recorded[os.path.basename(path)] = md5
    for remote in fashion_mnist.SPEC.files.values():
        path = os.path.join(DEBIAN, remote.filename)
        archive = open(path, "rb").read()
        assert hashlib.sha256(gzip.decompress(archive)).hexdigest() == remote.raw_sha256, path
        if recorded:                           # the archive is the one the package shipped
            assert hashlib.md5(archive).hexdigest() == recorded[remote.filename], path
        # recompressed by Debian, so not Zalando's archive: the loader must rely on raw_sha256
        assert hashlib.sha256(archive).hexdigest() != remote.sha256


@pytest.mark.skipif(not os.path.isdir(DEBIAN), reason=NO_DEBIAN)
def test_real_archives_download_and_verify_against_the_real_pinned_hashes(clean_env, server):
    """Served from 127.0.0.1, the real files pass the loader's check with the real
    SPEC (no swapped hashes); one flipped byte in the labels is refused."""
    _, url = server
    serve(Path(DEBIAN), _Handler.routes)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(base_url=url)
    assert x_train.shape == (60000, 28, 28) and y_test.shape == (10000,)
    assert np.bincount(y_train).tolist() == [6000] * 10

    raw = bytearray(gzip.decompress((Path(DEBIAN) / NAMES["y_test"]).read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    for name in NAMES.values():
        (cache(clean_env) / name).unlink()
    _Handler.routes[f"/data/{NAMES['y_test']}"] = (200, gzip.compress(bytes(raw)), None)
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz"):
        fashion_mnist.load_data(base_url=url)


def _real_mnist_dir():
    for candidate in (os.environ.get("CONVNET_DATA"), _common.cache_dir("mnist")):
        if candidate:
            for d in (Path(candidate), Path(candidate) / "mnist"):
                if all((d / name).is_file() for name in NAMES.values()):
                    return d
    return None


def test_mnist_pinned_hashes_against_real_files_where_present():
    """No Debian or PyPI package ships MNIST, and nothing here reaches its mirrors,
    so its pinned hashes are checked only where a real copy already lies in
    $CONVNET_DATA or the user cache (left by an earlier download)."""
    directory = _real_mnist_dir()
    if directory is None:
        pytest.skip("MNIST's pinned SHA-256s (archive and content) are UNVERIFIED: they cannot be checked "
                    "offline (no package ships MNIST, and no copy is in $CONVNET_DATA or the user cache)")
    for remote in mnist.SPEC.files.values():
        archive = (directory / remote.filename).read_bytes()
        ok = hashlib.sha256(archive).hexdigest() == remote.sha256 or \
            hashlib.sha256(gzip.decompress(archive)).hexdigest() == remote.raw_sha256
        assert ok, directory / remote.filename
