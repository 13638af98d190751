import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
needs_shared_data = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_DATA, "Set5")),
    reason=f"benchmark images not found at {SHARED_DATA} (they live beside the project, "
           "not in it; see README)")


def smooth_image(height, width, seed=0):
    """A photo-like uint8 RGB image: smooth colour fields plus mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(1, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase))
    image = np.stack(channels, -1) + rng.normal(0, 0.03, (height, width, 3))
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def save_small_model(folder, widths=(16, 8)):
    """A small untrained three_conv x4 saved as .h5 (a fixed seed); returns its path."""
    import keras

    import model as models

    keras.utils.set_random_seed(0)
    path = str(folder / "net.h5")
    models.three_conv(scale=4, widths=widths).save(path)
    return path


@pytest.fixture(scope="module")
def net():
    """A small untrained three_conv x4 (a fixed seed), for the upscaling tests."""
    import keras

    import model as models

    keras.utils.set_random_seed(0)
    return models.three_conv(scale=4, widths=(16, 8))


@pytest.fixture(scope="module")
def model_path(net, tmp_path_factory):
    """``net`` saved as .h5."""
    path = str(tmp_path_factory.mktemp("model") / "net.h5")
    net.save(path)
    return path


def png_header_only(path, width, height):
    """A PNG whose header announces width x height (what a decompression bomb shows
    before decoding; a real one deflates to gigabytes from a few MB)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def write_png(path, image):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def run_python(args, cwd=REPO, timeout=300):
    """Run a repo script in a fresh interpreter; returns CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def mounted_tmpfs(path, size):
    """Context manager: a small tmpfs at ``path`` (a real full disk or read-only
    filesystem for fault tests); skips the test where mounting is not allowed."""
    import contextlib
    import subprocess

    @contextlib.contextmanager
    def mount():
        os.makedirs(path, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'})")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", path], capture_output=True)

    return mount()


def remount_read_only(path):
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", path], check=True, capture_output=True)


def one_line_error(stderr):
    """The last line of stderr, after checking that no traceback was printed."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr[-3000:]
    return lines[-1]
