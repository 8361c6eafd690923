"""atomic_write: a crash mid-write (an exception, or SIGKILL) leaves the previous file
intact; the data and the directory entry are fsynced; viz plots go through it."""

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from convnet._files import atomic_write

OLD = b"the previous, complete file\n"


def _leftovers(directory, name):
    return sorted(p for p in os.listdir(directory) if p != name)


def test_success_replaces_the_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(OLD)
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert _leftovers(tmp_path, "f.bin") == []


def test_text_mode_writes_utf8_and_keeps_newlines(tmp_path):
    path = tmp_path / "h.csv"
    with atomic_write(path, mode="w") as f:
        f.write("épochs\r\n1\n")
    assert path.read_bytes() == "épochs\r\n1\n".encode("utf-8")
    with pytest.raises(ValueError, match=r"atomic_write\(.*h\.csv.*mode must be 'wb' or 'w', got 'a'"):
        with atomic_write(path, mode="a"):
            pass


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_exception_inside_the_block_leaves_the_previous_file(tmp_path, error):
    path = tmp_path / "model.npz"
    path.write_bytes(OLD)
    with pytest.raises(type(error)):
        with atomic_write(path) as f:
            f.write(b"half of a new file")
            f.flush()
            raise error
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, "model.npz") == []   # the temp file is removed


def test_exception_before_the_first_write_creates_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(ValueError):
        with atomic_write(path):
            raise ValueError("checksum mismatch")
    assert os.listdir(tmp_path) == []


_CHILD = textwrap.dedent("""
    import sys
    from convnet._files import atomic_write
    with atomic_write(sys.argv[1]) as f:
        chunk = b"x" * 65536
        for i in range(16):           # 1 MiB already written and flushed ...
            f.write(chunk)
        f.flush()
        print("writing", flush=True)
        while True:                   # ... and still writing when the parent kills us
            f.write(chunk)
            f.seek(0)
""")


def test_sigkill_mid_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(OLD)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"writing\n"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert path.read_bytes() == OLD
    # the killed writer's temp file is the only trace: a dot-file in the same folder
    (orphan,) = _leftovers(tmp_path, "checkpoint.npz")
    assert orphan.startswith(".checkpoint.npz.") and orphan.endswith(".tmp")
    assert os.path.getsize(tmp_path / orphan) >= 1 << 20


def test_file_and_directory_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"data")
    assert events == ["fsync file", "rename", "fsync dir"]


def test_viz_plot_write_is_atomic(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from convnet import viz

    path = tmp_path / "curves.png"
    history = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7]}
    viz.plot_history(history, path=path)
    good = path.read_bytes()
    assert good[:8] == b"\x89PNG\r\n\x1a\n"

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"\x89PNG half a picture")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="No space left"):
        viz.plot_history({"loss": [3.0, 2.0]}, path=path)
    assert path.read_bytes() == good
    assert _leftovers(tmp_path, "curves.png") == []
