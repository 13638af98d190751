"""Real-ESRGAN's second-order degradation model (Wang et al., ICCVW 2021) in TensorFlow ops.

``degrade(hr, seed, settings, scale)`` turns one uint8 HR image (a training patch
or a whole benchmark image) into its realistic LR: two stages of [blur, resize,
noise, JPEG], then, in random order, [resize to the final size + sinc filter] and a
last JPEG.  Written by hand because the model exists only in PyTorch (BasicSR,
Real-ESRGAN); every random draw is stateless from ``seed``, so a fixed seed gives
a fixed LR (validation crops, the degraded benchmark sets).

Differences from the PyTorch original, all small: resizing uses ``tf.image.resize``
(bicubic is Keys a = -0.5 there, PyTorch's a = -0.75), and JPEG is TensorFlow's
libjpeg encoder (4:2:0, integer quality) instead of a differentiable JPEG.
"""

import dataclasses
import math

import tensorflow as tf

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
KERNEL_SIZES = tuple(range(7, 22, 2))
MAX_KERNEL = KERNEL_SIZES[-1]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The degradation model's ranges and probabilities; the defaults are Real-ESRGAN's
    (options/train_realesrgan_x4plus.yml), names as there.  A suffix 2 is the second stage."""

    kernel_prob: tuple = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)   # of KERNEL_KINDS
    blur_sigma: tuple = (0.2, 3.0)
    betag_range: tuple = (0.5, 4.0)
    betap_range: tuple = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_prob: tuple = (0.2, 0.7, 0.1)                           # up, down, keep
    resize_range: tuple = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple = (1.0, 30.0)
    poisson_scale_range: tuple = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple = (30.0, 95.0)
    second_blur_prob: float = 0.8
    kernel_prob2: tuple = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_sigma2: tuple = (0.2, 1.5)
    betag_range2: tuple = (0.5, 4.0)
    betap_range2: tuple = (1.0, 2.0)
    sinc_prob2: float = 0.1
    resize_prob2: tuple = (0.3, 0.4, 0.3)
    resize_range2: tuple = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple = (1.0, 25.0)
    poisson_scale_range2: tuple = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple = (30.0, 95.0)
    final_sinc_prob: float = 0.8


def settings_from(table, name="realesrgan"):
    """The settings of the degradation model ``name`` from a mapping (a config file's table
    of that name); unknown or malformed entries raise ValueError naming them."""
    _, settings_class, _ = MODELS[name]
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"unknown degradation setting {', '.join(unknown)}")
    values = {}
    for field, value in table.items():
        default = fields[field].default
        if isinstance(default, tuple):
            if not (isinstance(value, (list, tuple)) and len(value) == len(default)):
                raise ValueError(f"degradation {field} must be a list of {len(default)} numbers")
            value = tuple(float(v) for v in value)
        else:
            value = float(value)
        values[field] = value
    settings = settings_class(**values)
    check(settings)
    return settings


def check(settings):
    """ValueError unless every probability is in [0, 1], every choice's probabilities
    sum to 1 and every range is ordered."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name.startswith(("kernel_prob", "resize_prob")):
            if min(value) < 0 or abs(sum(value) - 1) > 1e-6:
                raise ValueError(f"degradation {field.name} must be non-negative and sum to 1")
        elif isinstance(value, tuple):
            if not 0 <= value[0] <= value[1]:
                raise ValueError(f"degradation {field.name} must be [low, high] with "
                                 "0 <= low <= high")
        elif not 0 <= value <= 1:
            raise ValueError(f"degradation {field.name} is a probability: between 0 and 1")
    for name in ("jpeg_range", "jpeg_range2"):
        if not 1 <= getattr(settings, name)[0] <= getattr(settings, name)[1] <= 100:
            raise ValueError(f"degradation {name} must lie within 1-100")


# --------------------------------------------------------------------------- random draws

class _Draws:
    """Independent stateless draws from one seed, one fresh sub-seed per call."""

    def __init__(self, seed, count=96):
        self.seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count)
        self.used = 0

    def seed(self):
        assert self.used < self.seeds.shape[0], "more draws than sub-seeds"
        self.used += 1
        return self.seeds[self.used - 1]

    def uniform(self, low, high, shape=()):
        return tf.random.stateless_uniform(shape, self.seed(), low, high)

    def chance(self, probability):
        return self.uniform(0.0, 1.0) < probability

    def choice(self, probabilities):
        logits = tf.math.log(tf.constant([probabilities], tf.float32))
        return tf.random.stateless_categorical(logits, 1, self.seed(), dtype=tf.int32)[0, 0]


# --------------------------------------------------------------------------- blur kernels

def _grid(size=MAX_KERNEL):
    axis = tf.range(size, dtype=tf.float32) - (size - 1) / 2
    return tf.meshgrid(axis, axis)   # x varies along columns, y along rows


def quadratic_form(sigma_x, sigma_y, theta, size=MAX_KERNEL):
    """[x y] S^-1 [x y]^T on the kernel grid, S the covariance rotated by ``theta``."""
    x, y = _grid(size)
    cos, sin = tf.cos(theta), tf.sin(theta)
    u, v = x * cos + y * sin, -x * sin + y * cos
    return tf.square(u / sigma_x) + tf.square(v / sigma_y)


def _window(kernel, size):
    """Zero outside the central ``size`` x ``size`` window, then normalize: the
    kernel of that size padded to MAX_KERNEL (shapes stay static in the graph)."""
    x, y = _grid(kernel.shape[0])
    half = tf.cast(size // 2, tf.float32)
    inside = tf.logical_and(tf.abs(x) <= half, tf.abs(y) <= half)
    kernel = tf.where(inside, kernel, 0.0)
    return kernel / tf.reduce_sum(kernel)


def gaussian_kernel(size, sigma_x, sigma_y, theta):
    return _window(tf.exp(-0.5 * quadratic_form(sigma_x, sigma_y, theta)), size)


def generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, beta):
    return _window(tf.exp(-0.5 * tf.pow(quadratic_form(sigma_x, sigma_y, theta), beta)), size)


def plateau_kernel(size, sigma_x, sigma_y, theta, beta):
    return _window(1.0 / (tf.pow(quadratic_form(sigma_x, sigma_y, theta), beta) + 1.0), size)


def sinc_kernel(size, cutoff):
    """2-D circular low-pass (jinc) filter with cutoff frequency ``cutoff`` (radians)."""
    x, y = _grid()
    radius = tf.sqrt(x * x + y * y)
    safe = tf.where(radius > 0, radius, 1.0)
    kernel = cutoff * tf.math.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = tf.where(radius > 0, kernel, cutoff ** 2 / (4 * math.pi))
    return _window(kernel, size)


def _beta(draws, beta_range):
    """Real-ESRGAN's beta: below or above 1 with equal chance (ranges straddle 1)."""
    low, high = beta_range
    return tf.where(draws.chance(0.5), draws.uniform(low, max(low, min(1.0, high))),
                    draws.uniform(min(max(1.0, low), high), high))


def random_kernel(draws, probabilities, sigma_range, betag_range, betap_range, sinc_prob):
    """One blur kernel (MAX_KERNEL square) of a random size 7-21: with ``sinc_prob`` a
    sinc, else one of KERNEL_KINDS drawn by ``probabilities``."""
    size = tf.gather(KERNEL_SIZES, draws.choice([1 / len(KERNEL_SIZES)] * len(KERNEL_SIZES)))
    kind = draws.choice(probabilities)
    sigma_x = draws.uniform(*sigma_range)
    isotropic = tf.equal(kind % 2, 0)
    sigma_y = tf.where(isotropic, sigma_x, draws.uniform(*sigma_range))
    theta = tf.where(isotropic, 0.0, draws.uniform(-math.pi, math.pi))
    beta_g, beta_p = _beta(draws, betag_range), _beta(draws, betap_range)
    # Real-ESRGAN's cutoffs for sinc kernels of 7-21 px: sharper ones only when small.
    cutoff = tf.where(size < 13, draws.uniform(math.pi / 3, math.pi),
                      draws.uniform(math.pi / 5, math.pi))
    family = kind // 2
    kernel = tf.switch_case(family, [
        lambda: gaussian_kernel(size, sigma_x, sigma_y, theta),
        lambda: generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, beta_g),
        lambda: plateau_kernel(size, sigma_x, sigma_y, theta, beta_p)])
    return tf.where(draws.chance(sinc_prob), sinc_kernel(size, cutoff), kernel)


def filter2d(image, kernel):
    """Convolve an (H, W, C) float image with a square kernel, borders reflected
    (as BasicSR's filter2D); the image must be larger than half the kernel.  By FFT:
    TensorFlow's CPU convolutions run a 21 x 21 single-channel kernel far slower."""
    size = kernel.shape[0]
    pad = size // 2
    padded = tf.pad(tf.transpose(image, [2, 0, 1]), [[0, 0], [pad, pad], [pad, pad]],
                    mode="REFLECT")                                   # (C, H + 2p, W + 2p)
    shape = tf.shape(padded)[1:]
    spectrum = tf.signal.rfft2d(padded) * tf.signal.rfft2d(kernel[::-1, ::-1], fft_length=shape)
    # Circular convolution: every output row and column from 2p on saw no wrap-around.
    full = tf.signal.irfft2d(spectrum, fft_length=shape)
    return tf.transpose(full[:, 2 * pad:, 2 * pad:], [1, 2, 0])


# --------------------------------------------------------------------------- resize, noise, JPEG

def resize(image, size, mode):
    """Resize to ``size`` (h, w) by RESIZE_MODES[mode] (a tensor index), no antialiasing
    (as PyTorch's interpolate)."""
    size = tf.maximum(tf.cast(size, tf.int32), 1)
    return tf.switch_case(mode, [
        lambda m=m: tf.image.resize(image, size, method=m, antialias=False)
        for m in RESIZE_MODES])


def random_resize(draws, image, target, probabilities, scale_range):
    """Resize ``target`` (h, w, float) by a factor drawn up / down / keep."""
    direction = draws.choice(probabilities)
    up = draws.uniform(1.0, max(1.0, scale_range[1]))
    down = draws.uniform(min(1.0, scale_range[0]), 1.0)
    factor = tf.gather(tf.stack([up, down, 1.0]), direction)
    size = tf.cast(tf.floor(target * factor), tf.int32)
    return resize(image, size, draws.choice([1 / 3] * 3))


def gaussian_noise(image, seed, sigma, gray):
    """Add N(0, sigma/255) noise; ``gray`` (0 or 1) makes it the same in every channel."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    color = tf.random.stateless_normal(tf.shape(image), seeds[0]) * sigma / 255.0
    mono = tf.random.stateless_normal(tf.shape(image)[:2], seeds[1])[..., None] * sigma / 255.0
    return image + color * (1.0 - gray) + mono * gray


def _poisson(image, seed):
    """Shot noise at as many levels as the image has distinct 8-bit values (rounded up
    to a power of 2), as Real-ESRGAN counts them."""
    image = tf.clip_by_value(tf.round(image * 255.0), 0, 255) / 255.0
    distinct = tf.cast(tf.size(tf.unique(tf.reshape(image, [-1])).y), tf.float32)
    levels = tf.pow(2.0, tf.math.ceil(tf.math.log(distinct) / math.log(2.0)))
    counts = tf.random.stateless_poisson(tf.shape(image), seed, image * levels, tf.float32)
    return counts / levels - image


def poisson_noise(image, seed, scale, gray):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    color = _poisson(image, seeds[0])
    mono = _poisson(tf.image.rgb_to_grayscale(image), seeds[1])
    return image + (color * (1.0 - gray) + mono * gray) * scale


def random_noise(draws, image, gaussian_prob, sigma_range, poisson_range, gray_prob):
    gray = tf.cast(draws.chance(gray_prob), tf.float32)
    sigma, scale = draws.uniform(*sigma_range), draws.uniform(*poisson_range)
    seed = draws.seed()
    noisy = tf.cond(draws.chance(gaussian_prob),
                    lambda: gaussian_noise(image, seed, sigma, gray),
                    lambda: poisson_noise(image, seed, scale, gray))
    return tf.clip_by_value(noisy, 0.0, 1.0)


def jpeg(image, quality):
    """Encode and decode with TensorFlow's JPEG codec at integer ``quality`` (1-100).
    Decoded with libjpeg's accurate IDCT, as Pillow and OpenCV decode: TensorFlow's default
    fast one lowers red and blue by about a grey level per pass, a tint models learn."""
    pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    decoded = tf.image.adjust_jpeg_quality(pixels, tf.cast(tf.round(quality), tf.int32),
                                           dct_method="INTEGER_ACCURATE")
    return tf.cast(decoded, tf.float32) / 255.0


# --------------------------------------------------------------------------- the model

def degrade(hr, seed, settings=Settings(), scale=4):
    """LR of one uint8 HR image (H, W multiples of ``scale``) by the second-order
    model; ``seed`` is a stateless seed pair.  Returns uint8 (H / scale, W / scale, 3)."""
    s = settings
    draws = _Draws(seed)
    image = tf.cast(hr, tf.float32) / 255.0
    hr_size = tf.cast(tf.shape(image)[:2], tf.float32)
    lr_size = tf.shape(image)[:2] // scale
    kernel1 = random_kernel(draws, s.kernel_prob, s.blur_sigma, s.betag_range, s.betap_range,
                            s.sinc_prob)
    kernel2 = random_kernel(draws, s.kernel_prob2, s.blur_sigma2, s.betag_range2,
                            s.betap_range2, s.sinc_prob2)
    final_size = tf.gather(KERNEL_SIZES, draws.choice([1 / len(KERNEL_SIZES)] * len(KERNEL_SIZES)))
    final_sinc = tf.where(draws.chance(s.final_sinc_prob),
                          sinc_kernel(final_size, draws.uniform(math.pi / 3, math.pi)),
                          _window(tf.ones([MAX_KERNEL, MAX_KERNEL]), 1))   # identity

    # First stage.
    image = filter2d(image, kernel1)
    image = random_resize(draws, image, hr_size, s.resize_prob, s.resize_range)
    image = random_noise(draws, image, s.gaussian_noise_prob, s.noise_range,
                         s.poisson_scale_range, s.gray_noise_prob)
    image = jpeg(image, draws.uniform(*s.jpeg_range))
    # Second stage.
    image = tf.cond(draws.chance(s.second_blur_prob), lambda: filter2d(image, kernel2),
                    lambda: image)
    image = random_resize(draws, image, hr_size / scale, s.resize_prob2, s.resize_range2)
    image = random_noise(draws, image, s.gaussian_noise_prob2, s.noise_range2,
                         s.poisson_scale_range2, s.gray_noise_prob2)
    quality = draws.uniform(*s.jpeg_range2)
    mode = draws.choice([1 / 3] * 3)

    def to_lr_size(x):
        return filter2d(resize(x, lr_size, mode), final_sinc)

    image = tf.cond(draws.chance(0.5), lambda: jpeg(to_lr_size(image), quality),
                    lambda: to_lr_size(jpeg(image, quality)))
    lr = tf.cast(tf.clip_by_value(tf.round(image * 255.0), 0, 255), tf.uint8)
    return tf.ensure_shape(lr, [None, None, 3])


def smallest_hr_side(settings=Settings(), scale=4):
    """The least HR side ``degrade`` accepts: every image it filters must exceed half
    a kernel (reflected borders), the first stage's smallest resize included."""
    return math.ceil((MAX_KERNEL // 2 + 1) / min(settings.resize_range[0], 1.0))


# The degradation models by name: (degrade(hr, seed, settings, scale), its settings' dataclass,
# the least HR side it takes for given settings and scale).  A model named X takes its ranges
# from the config's [X] table.  "bicubic" (the pairs' own LR: MATLAB imresize, or the source's
# LR files) is the absence of a model.  Settings' --degradation choices list these names.
MODELS = {"realesrgan": (degrade, Settings, smallest_hr_side)}


def chosen(name, table=None, scale=4):
    """The LR-making function of (uint8 HR, seed) of the degradation model ``name`` with the
    ranges of ``table``; None for "bicubic"."""
    if name == "bicubic":
        return None
    make, _, _ = MODELS[name]
    settings = settings_from(table or {}, name)
    return lambda hr, seed: make(hr, seed, settings, scale)


def least_hr_side(name, table=None, scale=4):
    """The least HR side that the degradation model ``name`` takes with ``table``."""
    _, _, least = MODELS[name]
    return least(settings_from(table or {}, name), scale)
