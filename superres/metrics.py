"""PSNR and SSIM as the super-resolution literature computes them.

Convention (EDSR, RCAN, SwinIR tables): luminance Y of ITU-R BT.601 as
MATLAB's ``rgb2ycbcr`` (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for
R, G, B in 0..255, not rounded), ``scale`` pixels shaved from every border,
PSNR in float64 against a peak of 255, SSIM with an 11x11 Gaussian window
(sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the valid window positions.
Grayscale images are scored as they are.

NIQE (Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality
analyzer", IEEE SPL 2013) scores an image without a reference: the distance of its
natural-scene statistics from those of pristine photos (lower is more natural).
No kept Python library computes it as MATLAB's niqe does, so it is written here
from the paper and the published MATLAB release.
"""

import functools
import os

import numpy as np

from superres import REPO_DIR

CONVENTION = ("PSNR/SSIM on Y (ITU-R BT.601, MATLAB rgb2ycbcr), {scale}-pixel border shaved, "
              "8-bit outputs; SSIM 11x11 Gaussian (sigma 1.5), K1=0.01, K2=0.03; "
              "bicubic = MATLAB imresize (antialiased Keys cubic, a=-0.5)")

# MATLAB rgb2ycbcr's rows (Y, Cb, Cr) for RGB in [0, 1], without the offsets: what
# an RGB difference is in YCbCr.
YCBCR_ROWS = np.array([[65.481, 128.553, 24.966],
                       [-37.797, -74.203, 112.0],
                       [112.0, -93.786, -18.214]]) / 255.0
_Y_WEIGHTS = YCBCR_ROWS[0]


def rgb_to_y(image):
    """Y in [16, 235] (float64) from an RGB image in 0..255; a 2-D or 1-channel
    grayscale image is returned as it is (float64)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    return 16.0 + image[..., :3] @ _Y_WEIGHTS


def shave(image, border):
    return image[border:-border, border:-border] if border > 0 else image


def psnr(reference, test, peak=255.0):
    """PSNR in dB, float64.  Identical images give inf."""
    mse = np.mean((np.asarray(reference, np.float64) - np.asarray(test, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def _gaussian_window(size=11, sigma=1.5):
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return window / window.sum()


def _filter_valid(image, window):
    """Separable 'valid' correlation with ``window`` along both axes (float64)."""
    size = len(window)
    rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=0) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ window


def ssim(reference, test, peak=255.0, size=11, sigma=1.5):
    """Mean SSIM of two 2-D images (Wang et al. 2004 with its standard settings:
    Gaussian window over the valid positions only, K1 = 0.01, K2 = 0.03), float64.
    In NumPy, in float64 as scikit-image's: tf.image.ssim rounds to float32, and is slower
    on whole images."""
    a = np.asarray(reference, np.float64)
    b = np.asarray(test, np.float64)
    if min(a.shape) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels (after shaving), "
                         f"not {a.shape[1]}x{a.shape[0]}")
    window = _gaussian_window(size, sigma)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mean_a, mean_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mean_a ** 2
    var_b = _filter_valid(b * b, window) - mean_b ** 2
    covariance = _filter_valid(a * b, window) - mean_a * mean_b
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(ssim_map.mean())


def psnr_ssim_y(reference_rgb, test_rgb, scale):
    """The field's scores of two 8-bit images: (PSNR, SSIM) on shaved Y."""
    ref = shave(rgb_to_y(reference_rgb), scale)
    out = shave(rgb_to_y(test_rgb), scale)
    return psnr(ref, out), ssim(ref, out)


def psnr_rgb(reference_rgb, test_rgb, scale):
    """PSNR over all RGB channels (no Y conversion), shaved, for comparison only."""
    return psnr(shave(np.asarray(reference_rgb), scale), shave(np.asarray(test_rgb), scale))


# A patch predicted exactly (a saturated white or black patch, clipped) has zero
# error and infinite PSNR, which would make the batch mean inf.  Its error is
# floored at that of 8-bit rounding alone (1/12 of a squared step): 58.9 dB, by definition.
_MSE_FLOOR = (1.0 / 255.0) ** 2 / 12.0


def channel_mean_shift(reference_rgb, test_rgb):
    """Per-channel (R, G, B) mean of ``test_rgb`` minus ``reference_rgb``'s, in the images'
    units: a colour or brightness shift that PSNR-Y alone would not name."""
    means = [np.asarray(x, np.float64).reshape(-1, 3).mean(axis=0)
             for x in (test_rgb, reference_rgb)]
    return means[0] - means[1]


def make_psnr_y_metric(scale):
    """Keras metric: PSNR on shaved Y of [0, 1] RGB batches (float, not rounded to
    8 bits), per patch at most 58.9 dB (the PSNR of 8-bit rounding alone)."""
    import tensorflow as tf

    weights = tf.constant(_Y_WEIGHTS, tf.float32)

    def psnr(y_true, y_pred):
        y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 0.0, 1.0)
        # On [0, 1] RGB: Y/255 = 16/255 + RGB . weights; the offset cancels in the error.
        true_y = tf.tensordot(y_true, weights, 1)[:, scale:-scale, scale:-scale, None]
        pred_y = tf.tensordot(y_pred, weights, 1)[:, scale:-scale, scale:-scale, None]
        mse = tf.reduce_mean(tf.square(true_y - pred_y), axis=(1, 2, 3))
        return -10.0 * tf.math.log(tf.maximum(mse, _MSE_FLOOR)) / tf.math.log(10.0)

    return psnr


def rgb_to_gray(image):
    """8-bit grayscale of an 8-bit RGB image by the same BT.601 luma as ``rgb_to_y``
    (full range, so a gray image gives back its own values)."""
    from superres.images import luma, to_uint8

    return to_uint8(luma(np.asarray(image, np.float32) / 255.0))


# --------------------------------------------------------------------------- NIQE

# The published pristine model of MATLAB's niqe release (mu 1x36, cov 36x36, the 7x7
# Gaussian window), as BasicSR ships it; source in weights/SOURCES.md.
NIQE_PARAMS = os.path.join(REPO_DIR, "weights",
                           "niqe_pris_params.npz")
NIQE_BLOCK = 96
NIQE_CONVENTION = ("NIQE (Mittal et al. 2013, MATLAB's pristine model) of the x4 outputs' Y "
                   "(rounded), whole images, 96x96 blocks; lower is more natural")


@functools.lru_cache(maxsize=1)
def _niqe_model():
    with np.load(NIQE_PARAMS) as params:
        return (params["mu_pris_param"][0], params["cov_pris_param"],
                params["gaussian_window"])


@functools.lru_cache(maxsize=1)
def _aggd_table():
    shapes = np.arange(0.2, 10.001, 0.001)
    from scipy.special import gamma

    ratio = gamma(2 / shapes) ** 2 / (gamma(1 / shapes) * gamma(3 / shapes))
    return shapes, ratio


def aggd_fit(values):
    """(shape alpha, left scale, right scale) of an asymmetric generalized Gaussian
    fitted by moment matching (the paper's Eq. 7, a table search as in MATLAB)."""
    import warnings

    from scipy.special import gamma

    values = values.ravel()
    # A flat block (no values below or above 0) gives NaN, as in MATLAB; the pooling leaves
    # NaN features out, so NumPy's warnings about it are noise.
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        left = np.sqrt(np.mean(values[values < 0] ** 2))
        right = np.sqrt(np.mean(values[values > 0] ** 2))
        ratio_lr = left / right
        r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values ** 2)
    r_norm = r_hat * (ratio_lr ** 3 + 1) * (ratio_lr + 1) / (ratio_lr ** 2 + 1) ** 2
    shapes, ratio = _aggd_table()
    alpha = shapes[np.argmin((ratio - r_norm) ** 2)]
    factor = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * factor, right * factor


def _block_features(block):
    """The 18 features of one block of MSCN coefficients: the AGGD of the
    coefficients, and of their products with the four neighbours."""
    from scipy.special import gamma

    alpha, left, right = aggd_fit(block)
    features = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, left, right = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, left, right]
    return features


def niqe_features(gray):
    """The 36 NIQE features (18 per scale, two scales) of each 96 x 96 block of a 2-D image
    in 0..255, one row per block (at least two blocks; no border crop)."""
    from scipy.ndimage import correlate

    from superres import bicubic

    window = _niqe_model()[2]
    image = np.asarray(gray, np.float64)
    rows, cols = image.shape[0] // NIQE_BLOCK, image.shape[1] // NIQE_BLOCK
    if rows * cols < 2:   # the features' covariance needs two blocks
        raise ValueError(f"NIQE needs two {NIQE_BLOCK}x{NIQE_BLOCK} blocks, "
                         f"got {image.shape[1]}x{image.shape[0]} pixels")
    image = image[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
    features = []
    for scale in (1, 2):
        mu = correlate(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
        mscn = (image - mu) / (sigma + 1)
        size = NIQE_BLOCK // scale
        features.append([_block_features(mscn[r * size:(r + 1) * size, c * size:(c + 1) * size])
                         for c in range(cols) for r in range(rows)])
        image = bicubic.imresize(image, scale=0.5)
    return np.concatenate([np.array(f) for f in features], axis=1)


def niqe_distance(features):
    """NIQE's distance between the pristine model and the Gaussian fitted to these block
    features (rows of niqe_features)."""
    mu_pristine, cov_pristine, _ = _niqe_model()
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    difference = mu_pristine - mu
    return float(np.sqrt(difference @ np.linalg.pinv((cov_pristine + cov) / 2) @ difference))


def niqe(gray):
    """NIQE of a 2-D image in 0..255 (for a photo: its Y, rounded, as MATLAB's niqe
    takes it); 96 x 96 blocks (at least two), two scales, no border crop."""
    return niqe_distance(niqe_features(gray))


def _niqe_gray(image):
    image = np.asarray(image)
    gray = image.ndim == 2 or image.shape[-1] == 1
    return rgb_to_y(image) if gray else np.round(rgb_to_y(image))


def niqe_of(image):
    """NIQE of an 8-bit image as the field computes it: RGB through its Y (MATLAB
    rgb2ycbcr, rounded), grayscale as it is."""
    return niqe(_niqe_gray(image))


def pooled_niqe_of(images):
    """NIQE of 8-bit images taken as one set: one Gaussian fitted to the blocks of all of them
    (niqe_of per image, averaged, is noisy where each has only a few blocks, as validation
    crops do)."""
    return niqe_distance(np.concatenate([niqe_features(_niqe_gray(i)) for i in images]))