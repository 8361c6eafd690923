"""Hostile and damaged files in class folders (issue: reliability): both folder readers
name the bad file, or skip it with a warning that counts, refuse decompression bombs by
Pillow's limit, and stop on symbolic-link loops."""

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from convnet.data import ImageDataGenerator, image_dataset_from_directory


def save(path, value=100, size=(8, 8), fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(value).integers(0, 256, size + (3,), dtype=np.uint8)
    Image.fromarray(noise).save(path, format=fmt)


@pytest.fixture
def root(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            save(tmp_path / "data" / cls / f"{i}.png", value=i)
    return tmp_path / "data"


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut


def bomb_png(path, width=100_000, height=100_000):
    """A tiny PNG whose header declares width x height pixels (a decompression bomb)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


READERS = {
    "flow_from_directory": lambda d, **kw: ImageDataGenerator().flow_from_directory(
        d, target_size=(4, 4), batch_size=16, shuffle=False, **kw),
    "image_dataset_from_directory": lambda d, **kw: image_dataset_from_directory(
        d, image_size=(4, 4), batch_size=16, shuffle=False, **kw),
}


@pytest.fixture(params=sorted(READERS))
def reader(request):
    return READERS[request.param]


def test_not_an_image_is_an_error_naming_the_file(root, reader):
    (root / "a" / "fake.png").write_text("this is text, not a PNG")
    with pytest.raises(ValueError, match=r"not readable images[\s\S]*a.fake\.png"):
        reader(root)


def test_not_an_image_skipped_with_a_counting_warning(root, reader):
    (root / "a" / "fake.png").write_text("text")
    (root / "b" / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\)[\s\S]*fake\.png[\s\S]*empty\.png"):
        ds = reader(root, on_error="skip")
    batch = next(iter(ds))
    assert len(batch[0]) == 6


@pytest.mark.parametrize("fmt, name", [("PNG", "cut.png"), ("JPEG", "cut.jpg")])
def test_truncated_image_names_the_file_when_decoded(root, reader, fmt, name):
    save(root / "b" / name, value=7, size=(64, 64), fmt=fmt)
    truncate(root / "b" / name)
    ds = reader(root)  # the header is fine: indexing succeeds
    with pytest.raises(ValueError, match=rf"cannot decode image .*b.{name.replace('.', '[.]')}"):
        list(ds)


def test_truncated_image_skipped_from_its_batch_with_a_count(root, reader):
    for name in ("cut1.png", "cut2.png"):
        save(root / "b" / name, value=9, size=(64, 64))
        truncate(root / "b" / name)
    ds = reader(root, on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = next(iter(ds))
    assert len(x) == len(y) == 6  # 8 files, 2 left out
    assert "skipped 2 file(s)" in str(caught[-1].message) and "2 so far" in str(caught[-1].message)
    assert sorted(ds.skipped_files) == [str(root / "b" / "cut1.png"), str(root / "b" / "cut2.png")]


def test_decompression_bomb_header_is_refused(root, reader):
    bomb_png(root / "a" / "bomb.png")
    with pytest.raises(ValueError, match=r"a.bomb\.png.*(decompression bomb|exceeds limit)"):
        reader(root)


def test_pillow_limit_is_the_bound(root, reader, monkeypatch):
    # A modest image above a lowered limit is refused: the bound is Pillow's own setting.
    save(root / "a" / "big.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"big\.png: decompression bomb refused.*1600 pixels"
                                         r".*MAX_IMAGE_PIXELS = 1000"):
        reader(root)
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\)"):
        ds = reader(root, on_error="skip")
    assert len(next(iter(ds))[0]) == 6


def test_load_refuses_a_bomb_even_after_indexing(root, monkeypatch):
    it = READERS["flow_from_directory"](root)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # the files grew "too large" since
    # (above twice the limit Pillow raises its own DecompressionBombError: refused too)
    with pytest.raises(ValueError, match=r"cannot decode image .*0\.png: .*decompression bomb"):
        it[0]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlink_loop_is_a_clear_error(root, reader):
    os.symlink(root / "a", root / "a" / "loop")  # a/loop -> a
    with pytest.raises(ValueError, match=r"symbolic link loop: .*a.loop leads back to"):
        reader(root, follow_links=True)
    # not followed, the link is ignored
    assert len(next(iter(reader(root)))[0]) == 6


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_followed_link_to_another_folder_is_read(root, tmp_path, reader):
    save(tmp_path / "extra" / "x.png", value=5)
    os.symlink(tmp_path / "extra", root / "a" / "more")
    assert len(next(iter(reader(root, follow_links=True)))[0]) == 7
    assert len(next(iter(reader(root)))[0]) == 6


def test_bomb_png_really_declares_the_size(tmp_path):
    bomb_png(tmp_path / "b.png", 300, 200)
    with Image.open(io.BytesIO((tmp_path / "b.png").read_bytes())) as im:
        assert im.size == (300, 200)
