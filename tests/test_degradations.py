import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import smooth_image
from scipy import special

from superres import degradations as d


def _quadratic(size, sx, sy, theta):
    """[x y] S^-1 [x y]^T written from the covariance matrix, as BasicSR does."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], -1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    sigma = rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T
    return np.sum(grid @ np.linalg.inv(sigma) * grid, -1)


def _padded(kernel):
    pad = (d.MAX_KERNEL - kernel.shape[0]) // 2
    return np.pad(kernel / kernel.sum(), pad)


@pytest.mark.parametrize("size,sx,sy,theta,beta", [(7, 1.0, 1.0, 0.0, 1.0),
                                                   (13, 2.5, 0.7, 0.6, 0.6),
                                                   (21, 3.0, 1.2, -2.0, 3.5)])
def test_each_kernel_kind_sums_to_one_and_matches_its_formula(size, sx, sy, theta, beta):
    q = _quadratic(size, sx, sy, theta)
    expected = {"gaussian": np.exp(-0.5 * q), "generalized": np.exp(-0.5 * q ** beta),
                "plateau": 1 / (q ** beta + 1)}
    made = {"gaussian": d.gaussian_kernel(size, sx, sy, theta),
            "generalized": d.generalized_gaussian_kernel(size, sx, sy, theta, beta),
            "plateau": d.plateau_kernel(size, sx, sy, theta, beta)}
    for kind, kernel in made.items():
        kernel = kernel.numpy()
        assert kernel.shape == (d.MAX_KERNEL, d.MAX_KERNEL)
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5), kind
        np.testing.assert_allclose(kernel, _padded(expected[kind]), atol=1e-6, err_msg=kind)


def test_sinc_kernel_is_the_circular_lowpass_filter():
    size, cutoff = 15, 1.3
    c = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    r = np.hypot(x - c, y - c)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    expected[size // 2, size // 2] = cutoff ** 2 / (4 * np.pi)
    kernel = d.sinc_kernel(size, cutoff).numpy()
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(kernel, _padded(expected), atol=1e-6)


def test_random_kernels_are_normalized_and_centred():
    probabilities = d.Settings().kernel_prob
    for i in range(20):
        kernel = d.random_kernel(d._Draws(tf.constant([i, 3])), probabilities, (0.2, 3.0),
                                 (0.5, 4.0), (1.0, 2.0), 0.1).numpy()
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-6)  # point-symmetric


def test_filter2d_reflects_borders_and_keeps_the_size():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(30, 41, 3)).astype(np.float32)
    kernel = d.gaussian_kernel(9, 1.5, 0.8, 0.4).numpy()
    out = d.filter2d(tf.constant(image), tf.constant(kernel)).numpy()
    padded = np.pad(image, ((10, 10), (10, 10), (0, 0)), mode="reflect")
    expected = np.zeros_like(image)
    for a in range(21):
        for b in range(21):
            expected += kernel[a, b] * padded[a:a + 30, b:b + 41]
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("sigma", [5.0, 25.0])
def test_gaussian_noise_has_the_set_sigma_and_gray_noise_is_shared(sigma):
    image = tf.fill([256, 256, 3], 0.5)
    noise = (d.gaussian_noise(image, tf.constant([1, 2]), sigma, 0.0) - image).numpy() * 255
    assert noise.std() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean()) < 0.2
    gray = (d.gaussian_noise(image, tf.constant([1, 2]), sigma, 1.0) - image).numpy()
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    assert gray.std() * 255 == pytest.approx(sigma, rel=0.02)


def test_poisson_noise_variance_follows_the_intensity():
    # 256 distinct values give 256 levels: variance of value v is v / 256, times scale^2.
    ramp = np.repeat(np.arange(256, dtype=np.float32)[None, :, None] / 255, 512, 0)
    image = tf.constant(np.repeat(ramp, 3, -1))
    scale = 2.0
    noise = (d.poisson_noise(image, tf.constant([4, 5]), scale, 0.0) - image).numpy()
    for value in (32, 128, 224):
        measured = noise[:, value].var()
        assert measured == pytest.approx(value / 255 / 256 * scale ** 2, rel=0.1), value


def test_jpeg_quality_changes_the_error_and_keeps_the_size():
    rng = np.random.default_rng(1)
    smooth = tf.image.resize(rng.uniform(size=(1, 12, 12, 3)).astype(np.float32), [96, 80])[0]
    errors = [float(tf.reduce_mean(tf.abs(d.jpeg(smooth, q) - smooth))) for q in (20, 60, 95)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert d.jpeg(smooth, 50).shape == (96, 80, 3)


def test_jpeg_keeps_the_colours():
    """Real-ESRGAN's JPEG degradation changes detail, not colour: each channel's mean within
    0.3 grey levels at any quality (TensorFlow's default fast IDCT lowered red and blue by
    about 1.1, and models trained on it learned a magenta tint)."""
    image = tf.constant(smooth_image(192, 192, seed=5), tf.float32) / 255.0
    for quality in (30, 60, 95):
        shift = (d.jpeg(image, quality) - image).numpy().reshape(-1, 3).mean(0) * 255
        assert np.abs(shift).max() < 0.3, (quality, shift)


def test_degrade_gives_the_exact_lr_size_and_is_fixed_by_its_seed():
    rng = np.random.default_rng(2)
    hr = tf.constant(rng.integers(0, 256, (128, 96, 3), dtype=np.uint8))
    degrade = tf.function(lambda image, seed: d.degrade(image, seed))
    outputs = [degrade(hr, tf.constant([i, 0], tf.int64)).numpy() for i in range(6)]
    assert all(o.shape == (32, 24, 3) and o.dtype == np.uint8 for o in outputs)
    np.testing.assert_array_equal(outputs[0], degrade(hr, tf.constant([0, 0], tf.int64)))
    assert len({o.tobytes() for o in outputs}) == 6


def test_degrade_without_degradations_is_plain_resizing():
    off = dataclasses.replace(
        d.Settings(), kernel_prob=(1, 0, 0, 0, 0, 0), blur_sigma=(1e-3, 1e-3), sinc_prob=0,
        resize_prob=(0, 0, 1), gaussian_noise_prob=1, noise_range=(0, 0), jpeg_range=(100, 100),
        second_blur_prob=0, resize_prob2=(0, 0, 1), gaussian_noise_prob2=1, noise_range2=(0, 0),
        jpeg_range2=(100, 100), final_sinc_prob=0)
    hr = np.full((64, 64, 3), 90, np.uint8)
    lr = d.degrade(tf.constant(hr), tf.constant([0, 0]), off).numpy()
    assert lr.shape == (16, 16, 3)
    assert np.abs(lr.astype(int) - 90).max() <= 1


def test_settings_from_a_table_checks_names_and_values():
    settings = d.settings_from({"jpeg_range": [60, 90], "sinc_prob": 0})
    assert settings.jpeg_range == (60.0, 90.0) and settings.sinc_prob == 0.0
    for table, named in [({"jpeg_rnage": [1, 2]}, "jpeg_rnage"),
                         ({"sinc_prob": 1.5}, "sinc_prob"),
                         ({"resize_prob": [0.5, 0.5, 0.5]}, "resize_prob"),
                         ({"noise_range": [30, 1]}, "noise_range"),
                         ({"blur_sigma": 2}, "blur_sigma")]:
        with pytest.raises(ValueError, match=named):
            d.settings_from(table)
    assert d.smallest_hr_side() == math.ceil(11 / 0.15)
