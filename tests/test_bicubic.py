import glob
import os

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data, smooth_image

from superres import bicubic


def test_kernel_is_keys_cubic_with_a_minus_half():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0]
    np.testing.assert_allclose(bicubic.cubic_kernel(x), expected)
    np.testing.assert_allclose(bicubic.cubic_kernel(-x), expected)


def test_sizes_follow_matlab():
    image = smooth_image(37, 50)
    assert bicubic.imresize(image, scale=0.25).shape == (10, 13, 3)   # ceil(37/4), ceil(50/4)
    assert bicubic.downscale(image).shape == (9, 12, 3)               # modcrop first
    assert bicubic.upscale(image[:9, :12]).shape == (36, 48, 3)
    assert bicubic.imresize(image, output_shape=(20, 30)).shape == (20, 30, 3)


def test_constant_image_stays_constant():
    image = np.full((32, 24, 3), 77, np.uint8)
    assert np.all(bicubic.downscale(image) == 77)
    assert np.all(bicubic.upscale(image) == 77)


def test_linear_ramp_is_reproduced_inside():
    # Cubic convolution reproduces linear functions; antialiasing keeps the mean.
    ramp = np.tile(np.arange(64, dtype=np.float64), (64, 1))
    small = bicubic.imresize(ramp, scale=0.25)
    expected = np.arange(16) * 4 + 1.5            # centre of each 4-pixel block
    np.testing.assert_allclose(small[4:-4, 4:-4], np.tile(expected, (16, 1))[4:-4, 4:-4],
                               atol=1e-9)


def test_uint8_in_uint8_out_float_in_float_out():
    image = smooth_image(16, 16)
    assert bicubic.upscale(image).dtype == np.uint8
    assert bicubic.upscale(image.astype(np.float64)).dtype == np.float64


@needs_shared_data
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_downscale_matches_matlab_lr_files(set_name):
    from PIL import Image

    for hr_path in sorted(glob.glob(os.path.join(SHARED_DATA, set_name, "HR", "*.png"))):
        hr = np.array(Image.open(hr_path))
        lr = np.array(Image.open(hr_path.replace(os.sep + "HR" + os.sep,
                                                 os.sep + "LR_bicubic_X4" + os.sep)))
        ours = bicubic.downscale(hr).astype(int)
        assert ours.shape == lr.shape
        difference = np.abs(ours - lr.astype(int))[2:-2, 2:-2]
        assert difference.max() <= 1, hr_path
        assert difference.mean() < 0.01, hr_path
