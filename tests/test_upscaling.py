"""superres/upscaling.py and the tiling under it: any image in, the same image kind out,
exactly the whole-image result in any tiles."""
import numpy as np
import pytest
from conftest import smooth_image

import model as models
from superres import inference
from superres.architectures import layers
from superres.upscaling import upscale


def test_default_tile_grows_with_the_receptive_radius(net):
    deep = models.edsr(4, blocks=8, width=32)          # radius 19
    assert inference.default_tile(net) == 512           # three_conv keeps 512
    assert inference.default_tile(deep) == 576          # 28 radii, a multiple of 64
    assert inference.default_tile(models.edsr(4, blocks=16, width=8)) == 1024   # radius 35


@pytest.mark.parametrize("height,width,tile", [(37, 53, 16), (37, 53, 5), (20, 31, 9),
                                               (64, 64, 33), (53, 37, 40)])
def test_tiled_equals_whole_image(net, height, width, tile):
    lr = smooth_image(height, width, seed=height)
    whole = upscale(lr, net, tile=None, dtype=np.float32)
    tiled = upscale(lr, net, tile=tile, dtype=np.float32)
    assert tiled.shape == whole.shape == (4 * height, 4 * width, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    whole8 = upscale(lr, net, dtype=np.uint8)
    tiled8 = upscale(lr, net, tile=tile, dtype=np.uint8)
    # Float round-off may flip a value lying exactly on a rounding boundary, nothing more.
    assert np.abs(whole8.astype(int) - tiled8.astype(int)).max() <= 1
    assert np.mean(whole8 != tiled8) < 1e-3


@pytest.mark.parametrize("name", ["rrdbnet", "srvgg"])
@pytest.mark.parametrize("pad", [0, 5])
def test_tiles_are_exact_for_real_esrgans_generators(name, pad):
    """Also with Real-ESRGAN's mirrored margin: a tile's own margin only reaches its overlap."""
    import keras

    keras.utils.set_random_seed(0)
    net = {"rrdbnet": lambda: models.rrdbnet(4, blocks=1, features=8, growth=4, reflect_pad=pad),
           "srvgg": lambda: models.srvgg(4, convs=3, features=8, reflect_pad=pad)}[name]()
    lr = smooth_image(45, 38, seed=5)
    whole = upscale(lr, net, tile=None, dtype=np.float32)
    tiled = upscale(lr, net, tile=12, dtype=np.float32)
    assert inference.tile_count(lr.shape, 12) == 16
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("height,width,tile", [(37, 53, 16), (20, 31, 9)])
@pytest.mark.parametrize("name, options", [("edsr", {"blocks": 1, "width": 8}),
                                           ("srvgg", {"convs": 2, "features": 8})])
def test_tiles_are_exact_for_a_model_that_keeps_its_input_colours(height, width, tile, name,
                                                                   options):
    import keras

    keras.utils.set_random_seed(0)
    fixed = layers.with_input_colours(models.build_model(name, 4, **options))
    lr = smooth_image(height, width, seed=height)
    whole = upscale(lr, fixed, tile=None, dtype=np.float32)
    tiled = upscale(lr, fixed, tile=tile, dtype=np.float32)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("height,width,tile", [(3000, 4000, 768), (37, 53, 16), (20, 31, 9)])
def test_tiles_are_near_equal_and_no_larger_than_asked(height, width, tile):
    seen = []

    def record(piece):
        seen.append(piece.shape[:2])
        return np.repeat(np.repeat(piece, 2, 0), 2, 1)

    image = np.zeros((height, width, 1), np.uint8)
    out = inference.tiled(record, image, 2, tile, overlap=0)
    assert out.shape == (2 * height, 2 * width, 1)
    assert len(seen) == inference.tile_count(image.shape, tile) == \
        -(-height // tile) * -(-width // tile)
    rows, cols = sorted({h for h, _ in seen}), sorted({w for _, w in seen})
    assert rows[-1] <= tile and cols[-1] <= tile
    # No thin remainder: every tile is within one tile-count of the largest.
    assert rows[-1] - rows[0] < -(-height // tile) and cols[-1] - cols[0] < -(-width // tile)
    if (height, width) == (3000, 4000):
        assert seen[0] == (750, 667)


def test_too_little_overlap_would_differ(net):
    lr = smooth_image(40, 40, seed=1).astype(np.float32) / 255
    whole = inference.tiled(lambda p: inference.forward(net, p), lr, 4, None)
    short = inference.tiled(lambda p: inference.forward(net, p), lr, 4, tile=16, overlap=1)
    assert np.abs(whole - short).max() > 1e-3


def test_an_image_comes_out_in_its_own_layout_and_type(net):
    from superres import bicubic, images

    rgb = smooth_image(13, 17, seed=3)
    out = upscale(rgb, net)
    assert out.shape == (52, 68, 3) and out.dtype == np.uint8
    raw = upscale(rgb, net, dtype=np.float32)           # the model's own float output
    np.testing.assert_array_equal(images.to_uint8(raw), out)
    np.testing.assert_allclose(upscale(rgb.astype(np.float32) / 255, net), raw, atol=1e-6)
    wide = upscale(rgb.astype(np.uint16) * 257, net)     # 16 bits stay 16 bits
    assert wide.dtype == np.uint16
    assert np.abs(wide.astype(int) // 257 - out.astype(int)).max() <= 1
    gray = upscale(rgb[..., 0], net)                     # gray stays gray: BT.601 luma
    assert gray.shape == (52, 68)
    expected = images.to_uint8(images.luma(upscale(np.repeat(rgb[..., :1], 3, -1), net,
                                                   dtype=np.float32)))
    np.testing.assert_array_equal(gray, expected)
    alpha = np.linspace(0, 255, 13 * 17).reshape(13, 17).astype(np.uint8)
    rgba = upscale(np.dstack([rgb, alpha]), net)         # alpha by bicubic
    np.testing.assert_array_equal(rgba[..., :3], out)
    np.testing.assert_array_equal(rgba[..., 3], images.to_uint8(
        bicubic.imresize(alpha.astype(np.float32) / 255, scale=4)))


def test_a_pil_image_comes_out_a_pil_image(net):
    from PIL import Image

    rgb = smooth_image(9, 11, seed=4)
    for mode in ("RGB", "L", "RGBA"):
        image = Image.fromarray(rgb).convert(mode)
        out = upscale(image, net)
        assert out.mode == mode and out.size == (44, 36)
        np.testing.assert_array_equal(np.asarray(out), upscale(np.asarray(image), net))


def test_bands_put_together_are_the_image(net):
    from superres import images
    from superres.upscaling import upscale_bands

    rgb = smooth_image(37, 23, seed=5)
    bands = list(upscale_bands(net, images.from_array(rgb), tile=9))
    rows = [row for row, _ in bands]
    assert len(bands) > 1 and rows[0] == 0 and rows == sorted(set(rows))
    np.testing.assert_array_equal(np.concatenate([band for _, band in bands]),
                                  upscale(rgb, net, tile=9))


def test_a_model_by_name_is_loaded_once(model_path):
    from superres import upscaling

    first = upscaling.load(model_path, runtime="tensorflow")
    assert upscaling.load(model_path, runtime="tensorflow") is first
    out = upscale(smooth_image(8, 8), model_path, runtime="tensorflow")
    np.testing.assert_array_equal(out, upscale(smooth_image(8, 8), first))


@pytest.mark.parametrize("array,message", [
    (np.zeros((4, 4, 5), np.uint8), r"\(H, W\) or \(H, W, 1 to 4\)"),
    (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or floats"),
])
def test_what_is_not_an_image_is_refused(net, array, message):
    with pytest.raises(ValueError, match=message):
        upscale(array, net)
