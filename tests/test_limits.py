"""superres/limits.py: what an upscale needs, checked before the work."""
import numpy as np
import pytest

import model as models
from superres import images, limits


def test_memory_check_counts_the_tile_of_a_deep_model(tmp_path, monkeypatch):
    import collections

    import psutil

    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(2 * 2**30))
    layout = (6000, 8000, 3, 8)            # a 2000x1500 input, x4, written as PNG
    target = str(tmp_path / "out.png")
    limits.check_output_size(target, layout, 512, 4, radius=4)       # three_conv: fits
    with pytest.raises(images.ImageWriteError, match="needs about 2.5 GB of memory"):
        limits.check_output_size(target, layout, 1216, 4, radius=19)  # EDSR, a 1216 tile
    with pytest.raises(images.ImageWriteError, match="needs about 4.0 GB of memory"):
        limits.check_output_size(target, layout, 1216, 4, radius=19,  # run by ONNX Runtime
                                  per_pixel=limits.ARENA_TILE_BYTES_PER_PIXEL)
    # The whole image (no tile) counts every LR pixel once, whatever the radius.
    assert limits.working_memory(1500, 2000, None, 19) == \
        limits.BASE_MEMORY + limits.TILE_BYTES_PER_PIXEL * 1500 * 2000


def test_onnx_runtime_is_counted_with_its_arena(tmp_path):
    from superres import runtimes

    run = lambda image: np.zeros((4 * image.shape[0], 4 * image.shape[1], 3), np.float32)  # noqa: E731
    onnx_like = runtimes.Exported(str(tmp_path / "m.onnx"), "onnx", run, radius=4)
    tflite_like = runtimes.Exported(str(tmp_path / "m.tflite"), "tflite", run, radius=4)
    assert limits.tile_bytes_per_pixel(onnx_like) == limits.ARENA_TILE_BYTES_PER_PIXEL
    assert limits.tile_bytes_per_pixel(tflite_like) == limits.TILE_BYTES_PER_PIXEL


def test_memory_per_tile_pixel_grows_with_the_models_largest_layer_output():
    assert limits.tile_bytes_per_pixel(models.edsr(4, blocks=2, width=32)) == 1024
    # x4plus's layers after its two x2 upsamplings: 64 channels at 16 times the pixels.
    assert limits.tile_bytes_per_pixel(models.rrdbnet(4, blocks=1, features=64)) == 16 * 1024
