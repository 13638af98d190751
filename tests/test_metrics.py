import glob
import os

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared_data, smooth_image

from superres import bicubic, metrics


def test_y_is_matlab_rgb2ycbcr_unrounded():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 200, 30]]], np.uint8)
    expected = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    np.testing.assert_allclose(metrics.rgb_to_y(rgb), expected)
    np.testing.assert_allclose(metrics.rgb_to_y(rgb)[0, :2], [16.0, 235.0])


def test_gray_images_are_scored_as_they_are():
    gray = smooth_image(20, 20)[..., 0]
    np.testing.assert_array_equal(metrics.rgb_to_y(gray), gray.astype(np.float64))
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    np.testing.assert_array_equal(metrics.rgb_to_gray(rgb), gray)


def test_psnr_known_value_and_identity():
    a = np.zeros((10, 10))
    b = np.full((10, 10), 5.0)                    # MSE 25
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 25))
    assert metrics.psnr(a, a) == float("inf")


def test_channel_mean_shift_is_each_channels_mean_difference_in_any_sizes():
    reference = np.zeros((4, 6, 3), np.uint8)
    test = np.zeros((8, 12, 3), np.uint8)
    test[..., 0] = 10                 # red up by 10 everywhere
    test[:4, :, 2] = 4                # blue up by 4 on half the pixels
    np.testing.assert_allclose(metrics.channel_mean_shift(reference, test), [10.0, 0.0, 2.0])
    np.testing.assert_allclose(metrics.channel_mean_shift(test, reference), [-10.0, 0.0, -2.0])


def test_shave_removes_scale_pixels_each_side():
    assert metrics.shave(np.zeros((20, 30)), 4).shape == (12, 22)


def _skimage_scores(hr, test, scale):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = metrics.shave(metrics.rgb_to_y(hr), scale)
    b = metrics.shave(metrics.rgb_to_y(test), scale)
    return (peak_signal_noise_ratio(a, b, data_range=255),
            structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=255))


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(np.zeros((10, 40)), np.zeros((10, 40)))


def test_agrees_with_scikit_image_on_synthetic_pair():
    hr = smooth_image(96, 80)
    up = bicubic.upscale(bicubic.downscale(hr))
    psnr, ssim = metrics.psnr_ssim_y(hr, up, 4)
    ref_psnr, ref_ssim = _skimage_scores(hr, up, 4)
    assert psnr == pytest.approx(ref_psnr, abs=1e-6)
    assert ssim == pytest.approx(ref_ssim, abs=1e-12)


@needs_shared_data
def test_agrees_with_scikit_image_on_real_images():
    from PIL import Image

    for hr_path in sorted(glob.glob(os.path.join(SHARED_DATA, "Set14", "HR", "*.png")))[:6]:
        hr = np.array(Image.open(hr_path))
        lr = np.array(Image.open(hr_path.replace(os.sep + "HR" + os.sep,
                                                 os.sep + "LR_bicubic_X4" + os.sep)))
        up = bicubic.upscale(lr)
        psnr, ssim = metrics.psnr_ssim_y(hr, up, 4)
        ref_psnr, ref_ssim = _skimage_scores(hr, up, 4)
        assert psnr == pytest.approx(ref_psnr, abs=1e-6), hr_path
        assert ssim == pytest.approx(ref_ssim, abs=1e-12), hr_path


def test_keras_metric_matches_numpy_psnr_on_y():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (2, 24, 24, 3)).astype(np.float32)
    pred = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    values = metrics.make_psnr_y_metric(4)(tf.constant(truth), tf.constant(pred)).numpy()
    for i in range(2):
        expected = metrics.psnr(metrics.shave(metrics.rgb_to_y(truth[i] * 255), 4),
                                metrics.shave(metrics.rgb_to_y(pred[i] * 255), 4))
        assert values[i] == pytest.approx(expected, abs=1e-3)


def test_keras_psnr_metric_is_finite_on_an_exactly_predicted_patch():
    import tensorflow as tf

    # A saturated white patch whose prediction is clipped to white has zero error;
    # the batch mean must stay finite (capped at the PSNR of 8-bit rounding).
    truth = np.ones((2, 24, 24, 3), np.float32)
    pred = np.stack([np.full((24, 24, 3), 1.2, np.float32),
                     np.full((24, 24, 3), 0.9, np.float32)])
    values = metrics.make_psnr_y_metric(4)(tf.constant(truth), tf.constant(pred)).numpy()
    assert values[0] == pytest.approx(10 * np.log10(12 * 255.0 ** 2), abs=1e-3)  # 58.9 dB
    expected = metrics.psnr(metrics.shave(metrics.rgb_to_y(truth[1] * 255), 4),
                            metrics.shave(metrics.rgb_to_y(pred[1] * 255), 4))
    assert values[1] == pytest.approx(expected, abs=1e-3)


IQA = os.path.join(SHARED_DATA, "iqa")


@pytest.mark.skipif(not os.path.isdir(IQA), reason=f"NIQE's check image not found at {IQA}")
def test_niqe_reproduces_matlab_on_its_check_image():
    from PIL import Image

    baboon = np.asarray(Image.open(os.path.join(IQA, "baboon.png")).convert("RGB"))
    assert metrics.niqe_of(baboon) == pytest.approx(5.7296, abs=0.01)   # MATLAB R2021a
    with open(os.path.join(IQA, "niqe_pris_params.npz"), "rb") as f, \
            open(metrics.NIQE_PARAMS, "rb") as g:
        assert f.read() == g.read()          # the shipped parameters are the published ones


@pytest.mark.skipif(not os.path.isdir(IQA), reason=f"NIQE's check image not found at {IQA}")
def test_pooled_niqe_of_an_images_crops_comes_close_to_its_own():
    from PIL import Image

    baboon = np.asarray(Image.open(os.path.join(IQA, "baboon.png")).convert("RGB"))
    crops = [baboon[r:r + 192, c:c + 192] for r in (0, 192) for c in (0, 192)]
    whole = metrics.niqe_of(baboon)
    assert metrics.pooled_niqe_of([baboon]) == whole
    assert metrics.pooled_niqe_of(crops) == pytest.approx(whole, abs=0.3)
    assert np.mean([metrics.niqe_of(c) for c in crops]) > whole + 1   # four blocks each


def test_niqe_rises_with_noise_and_blur():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    clean = smooth_image(192, 192).astype(np.float64)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255)
    blurred = gaussian_filter(clean, (3, 3, 0))
    scores = [metrics.niqe_of(np.round(x).astype(np.uint8)) for x in (clean, noisy, blurred)]
    assert scores[1] > scores[0] and scores[2] > scores[0]
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        metrics.niqe(np.zeros((95, 200)))
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        metrics.niqe(np.zeros((100, 180)))
