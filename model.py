"""Super-resolution models: a small registry of Keras functional models.

Every model maps RGB float32 in [0, 1] of any size (N, H, W, 3) to
(N, scale*H, scale*W, 3).  Outputs are not clipped inside the model (clipping
would stop gradients during training); callers clip when they make images.
Importing this module registers the custom layer, so a saved ``.h5`` loads
with plain ``keras.models.load_model(path)``.
"""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="sr")
class DepthToSpace(keras.layers.Layer):
    """Sub-pixel rearrangement (``tf.nn.depth_to_space``) as a serializable layer."""

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h * b, None if w is None else w * b, c // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="sr")
class NearestUpsampling(keras.layers.Layer):
    """Nearest-neighbour upsampling as depth-to-space of the channels repeated: the same
    pixels as ``UpSampling2D``, but a layout every runtime converts with its channel count
    known (LiteRT's converter loses it through UpSampling2D's reshape)."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs):
        return tf.nn.depth_to_space(tf.tile(inputs, [1, 1, 1, self.size * self.size]),
                                    self.size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        s = self.size
        return (n, None if h is None else h * s, None if w is None else w * s, c)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _known_channels(x, channels):
    """``x`` with its channel count known again: computed paddings and crops hide it, and
    LiteRT's converter needs it (a reshape, which every runtime has; EnsureShape is not)."""
    shape = tf.shape(x)
    return tf.reshape(x, [shape[0], shape[1], shape[2], channels])


def _reflect_amounts(image, pad):
    """The mirrored margin of each side: ``pad``, or less on an image too small for it."""
    shape = tf.shape(image)
    return tf.minimum(pad, shape[1] - 1), tf.minimum(pad, shape[2] - 1)


@keras.saving.register_keras_serializable(package="sr")
class ReflectPad(keras.layers.Layer):
    """Mirror ``pad`` pixels onto each side (fewer on an image too small for them), as
    Real-ESRGAN's inference does before its network (``pre_pad``); ``ReflectCrop`` takes the
    upscaled margin off again.  A border output pixel then sees mirrored image rather than
    zeros, as in the original; tiles stay exact, since a tile's own mirrored margin only
    reaches outputs within its overlap."""

    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, inputs):
        ph, pw = _reflect_amounts(inputs, self.pad)
        padded = tf.pad(inputs, [[0, 0], [ph, ph], [pw, pw], [0, 0]], mode="REFLECT")
        return _known_channels(padded, inputs.shape[-1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="sr")
class ReflectCrop(keras.layers.Layer):
    """[LR, upscaled] -> the upscaled image less the margin ``ReflectPad`` added to LR."""

    def __init__(self, pad, scale, **kwargs):
        super().__init__(**kwargs)
        self.pad, self.scale = int(pad), int(scale)

    def call(self, inputs):
        lr, upscaled = inputs
        ph, pw = _reflect_amounts(lr, self.pad)
        shape = tf.shape(upscaled)
        top, left = ph * self.scale, pw * self.scale
        return _known_channels(upscaled[:, top:shape[1] - top, left:shape[2] - left],
                               upscaled.shape[-1])

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], None, None, input_shape[1][3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "scale": self.scale}


def three_conv(scale=4, widths=(64, 32), channels=3, kernel_initializer="glorot_uniform"):
    """ESPCN-shaped model: conv 5x5/w1 ReLU, conv 3x3/w2 ReLU, conv 3x3 to
    channels*scale^2, depth-to-space.  ``widths`` defaults to the seed's 64/32."""
    width1, width2 = widths

    def conv(filters, kernel_size, activation, name):
        return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation,
                                   kernel_initializer=kernel_initializer, name=name)

    inputs = keras.Input(shape=(None, None, channels), name="lr")
    x = conv(width1, 5, "relu", name="conv1")(inputs)
    x = conv(width2, 3, "relu", name="conv2")(x)
    x = conv(channels * scale * scale, 3, None, name="conv3")(x)
    outputs = DepthToSpace(scale, name="depth_to_space")(x)
    return keras.Model(inputs, outputs, name=f"three_conv_x{scale}")


def _is_mixed(layer):
    return layer.dtype_policy.name != layer.dtype_policy.variable_dtype


def as_float32(net):
    """The float32 model of a mixed-precision (bfloat16) one, which keeps float32 weights
    already; a float32 model is returned as it is."""
    if not any(_is_mixed(layer) for layer in net.layers):
        return net
    config = net.get_config()
    for entry in config["layers"]:
        if "dtype" in entry["config"] and entry["class_name"] != "InputLayer":
            entry["config"]["dtype"] = "float32"
    flat = keras.Model.from_config(config)
    for layer in net.layers:
        flat.get_layer(layer.name).set_weights(layer.get_weights())
    return flat


def edsr(scale=4, blocks=8, width=32, channels=3, kernel_initializer="glorot_uniform"):
    """EDSR-style residual network in LR space (Lim et al., 2017, the baseline's
    shape at a smaller size): head conv, ``blocks`` residual blocks of two 3x3
    convolutions with ReLU between and no batch normalization, a body conv, a
    global skip, then one 3x3 conv to channels*scale^2 and depth-to-space (ESPCN's
    tail, cheaper than EDSR's two x2 stages at x4)."""
    def conv(filters, activation=None, name=None):
        return keras.layers.Conv2D(filters, 3, padding="same", activation=activation,
                                   kernel_initializer=kernel_initializer, name=name)

    inputs = keras.Input(shape=(None, None, channels), name="lr")
    head = conv(width, name="head")(inputs)
    x = head
    for i in range(1, blocks + 1):
        y = conv(width, "relu", name=f"block{i}_conv1")(x)
        y = conv(width, name=f"block{i}_conv2")(y)
        x = keras.layers.Add(name=f"block{i}_add")([x, y])
    x = conv(width, name="body_end")(x)
    x = keras.layers.Add(name="global_skip")([head, x])
    x = conv(channels * scale * scale, name="tail")(x)
    # float32 output even when trained under a mixed-precision policy, so the
    # loss and PSNR are computed in float32.
    outputs = DepthToSpace(scale, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inputs, outputs, name=f"edsr_{blocks}x{width}_x{scale}")


def rrdbnet(scale=4, blocks=23, features=64, growth=32, channels=3,
            kernel_initializer="glorot_uniform", reflect_pad=0):
    """ESRGAN's and Real-ESRGAN's generator (Wang et al., 2018 and 2021; BasicSR's RRDBNet):
    a head conv, ``blocks`` residual-in-residual dense blocks (three dense blocks of five 3x3
    convolutions, ``growth`` channels each, LeakyReLU 0.2, residuals scaled by 0.2), a body
    conv and a global skip in LR space; then nearest x2 and a conv, log2(scale) times, and two
    convs at full size.  Real-ESRGAN x4plus is 23 blocks of 64 features, growth 32.
    ``reflect_pad``: mirror that many LR pixels around the input first (ReflectPad), as
    Real-ESRGAN's inference does."""
    stages = int(round(np.log2(scale)))
    if scale < 2 or 2 ** stages != scale:
        raise ValueError(f"rrdbnet upscales by powers of 2, not {scale}")

    def conv(filters, name, leaky=False):
        return keras.layers.Conv2D(filters, 3, padding="same", name=name,
                                   activation=keras.layers.LeakyReLU(0.2) if leaky else None,
                                   kernel_initializer=kernel_initializer)

    def scaled_residual(x, skip, name):
        return keras.layers.Add(name=name)([keras.layers.Rescaling(0.2)(x), skip])

    inputs = keras.Input(shape=(None, None, channels), name="lr")
    padded = ReflectPad(reflect_pad, name="reflect_pad")(inputs) if reflect_pad else inputs
    head = conv(features, "conv_first")(padded)
    x = head
    for b in range(1, blocks + 1):
        block_in = x
        for r in range(1, 4):
            dense = [x]
            for k in range(1, 5):
                joined = dense[0] if k == 1 else keras.layers.Concatenate()(dense)
                dense.append(conv(growth, f"rrdb{b}_rdb{r}_conv{k}", leaky=True)(joined))
            y = conv(features, f"rrdb{b}_rdb{r}_conv5")(keras.layers.Concatenate()(dense))
            x = scaled_residual(y, x, f"rrdb{b}_rdb{r}_add")
        x = scaled_residual(x, block_in, f"rrdb{b}_add")
    x = keras.layers.Add(name="global_skip")([head, conv(features, "conv_body")(x)])
    for i in range(1, stages + 1):
        x = NearestUpsampling(2, name=f"up{i}")(x)
        x = conv(features, f"conv_up{i}", leaky=True)(x)
    x = conv(features, "conv_hr", leaky=True)(x)
    outputs = keras.layers.Conv2D(channels, 3, padding="same", dtype="float32",
                                  kernel_initializer=kernel_initializer, name="conv_last")(x)
    if reflect_pad:
        outputs = ReflectCrop(reflect_pad, scale, name="reflect_crop")([inputs, outputs])
    return keras.Model(inputs, outputs, name=f"rrdbnet_{blocks}x{features}g{growth}_x{scale}")


def srvgg(scale=4, convs=16, features=64, channels=3, kernel_initializer="glorot_uniform",
          reflect_pad=0):
    """Real-ESRGAN's compact network (SRVGGNetCompact): a conv and ``convs`` more, each
    followed by a per-channel PReLU, all at ``features`` channels in LR space; a conv to
    channels*scale^2, depth-to-space, plus the input upsampled by nearest neighbour.
    ``reflect_pad`` as in ``rrdbnet``."""
    def conv(filters, name):
        return keras.layers.Conv2D(filters, 3, padding="same", name=name,
                                   kernel_initializer=kernel_initializer)

    def prelu(name):
        return keras.layers.PReLU(keras.initializers.Constant(0.25), shared_axes=[1, 2],
                                  name=name)

    inputs = keras.Input(shape=(None, None, channels), name="lr")
    padded = ReflectPad(reflect_pad, name="reflect_pad")(inputs) if reflect_pad else inputs
    x = padded
    for i in range(convs + 1):
        x = prelu(f"prelu{i}")(conv(features, f"conv{i}")(x))
    x = conv(channels * scale * scale, "conv_last")(x)
    x = DepthToSpace(scale, dtype="float32", name="depth_to_space")(x)
    base = NearestUpsampling(scale, dtype="float32", name="nearest")(padded)
    outputs = keras.layers.Add(dtype="float32", name="add_nearest")([x, base])
    if reflect_pad:
        outputs = ReflectCrop(reflect_pad, scale, name="reflect_crop")([inputs, outputs])
    return keras.Model(inputs, outputs, name=f"srvgg_{convs}x{features}_x{scale}")


def edsr_blocks(net):
    """How many residual blocks an edsr model has (0 for other models)."""
    return sum(1 for layer in net.layers
               if layer.name.startswith("block") and layer.name.endswith("_add"))


def deepen_from(net, shallow):
    """Start a deeper edsr ``net`` where the trained ``shallow`` one (same width) is:
    its layers are copied by name, and each block ``shallow`` lacks starts as an
    identity (first conv random, second conv zero, so it still receives gradients),
    so ``net`` computes exactly what ``shallow`` did and trains on from there."""
    if not 0 < edsr_blocks(shallow) < edsr_blocks(net):
        raise ValueError(f"{shallow.name} is not a shallower edsr than {net.name}")
    copied = {layer.name for layer in shallow.layers}
    for layer in net.layers:
        if layer.name in copied:
            layer.set_weights(shallow.get_layer(layer.name).get_weights())
        elif layer.name.endswith("_conv2"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def unet_discriminator(width=64, channels=3):
    """Real-ESRGAN's U-Net discriminator with spectral normalization (Wang et al., 2021):
    three stride-2 4x4 convolutions down, three bilinear x2 + 3x3 convolutions up with skips,
    two more 3x3 convolutions; a realness logit per pixel, so it judges local texture.
    ``width`` is the first level's channels (64 in Real-ESRGAN)."""
    def conv(filters, kernel_size=3, strides=1, name=None):
        return keras.layers.SpectralNormalization(keras.layers.Conv2D(
            filters, kernel_size, strides, padding="same", use_bias=False), name=name)

    def act(x):
        return keras.layers.LeakyReLU(0.2)(x)

    inputs = keras.Input(shape=(None, None, channels), name="image")
    x0 = act(keras.layers.Conv2D(width, 3, padding="same", name="conv0")(inputs))
    x1 = act(conv(width * 2, 4, 2, name="down1")(x0))
    x2 = act(conv(width * 4, 4, 2, name="down2")(x1))
    x = act(conv(width * 8, 4, 2, name="down3")(x2))
    for skip, filters, name in ((x2, width * 4, "up1"), (x1, width * 2, "up2"), (x0, width, "up3")):
        x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = keras.layers.Add()([act(conv(filters, name=name)(x)), skip])
    x = act(conv(width, name="conv7")(x))
    x = act(conv(width, name="conv8")(x))
    logits = keras.layers.Conv2D(1, 3, padding="same", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"unet_discriminator_{width}")


@keras.saving.register_keras_serializable(package="sr")
class InputColours(keras.layers.Layer):
    """[LR, sub-pixel tensor] -> the sub-pixel tensor with the input's low frequencies.

    Placed before a network's ``DepthToSpace``, it adds to the network's output the
    Gaussian-blurred (``sigma`` LR pixels) difference between LR and the output's
    scale x scale block means, upsampled bilinearly.  A model trained on realistic
    degradations takes some fine dark texture for noise and smooths it away, which moves
    an image's colour means; this keeps the input's (the consistency with the input that
    StableSR's colour fix enforces), leaving everything finer than the blur to the network.
    A layer, so every runtime and export computes it; on the LR grid throughout (block
    means of the sub-pixel channels, bilinear x scale as a 3 x 3 convolution to them), so it
    adds no pass over the output.  Its fixed kernels are non-trainable weights."""

    def __init__(self, scale, sigma=1.5, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.sigma = int(scale), float(sigma)
        self.blur_radius = int(np.ceil(3 * self.sigma))
        self.radius = self.blur_radius + 1       # the blur's, and the upsampling's one pixel

    def build(self, input_shape):
        channels = input_shape[0][-1]
        taps = np.exp(-0.5 * (np.arange(-self.blur_radius, self.blur_radius + 1) /
                              self.sigma) ** 2)
        taps = taps / taps.sum()
        # One 2-D kernel, not two 1-D ones, so that each runtime's receptive radius (a sum
        # of kernel half-widths) counts the blur once.
        blur = np.repeat(np.outer(taps, taps)[:, :, None, None], channels + 1, axis=2)
        upsample = bilinear_phases(self.scale, channels)
        means = np.tile(np.eye(channels), (self.scale ** 2, 1)) / self.scale ** 2
        fixed = {"block_means": means[None, None],
                 "blur": blur, "upsample": upsample}
        for name, value in fixed.items():
            setattr(self, name, self.add_weight(
                name=name, shape=value.shape, trainable=False,
                initializer=keras.initializers.Constant(value.astype(np.float32))))

    def call(self, inputs):
        lr, phases = inputs
        # Block means as a 1 x 1 convolution: runtimes keep their convolution layout through it.
        offset = lr - tf.nn.conv2d(phases, self.block_means, 1, "VALID")
        # Blurred with a channel of ones and divided by it, so the zero padding does not
        # fade the fix at the image's borders.
        both = tf.concat([offset, tf.ones_like(offset[..., :1])], axis=-1)
        both = tf.nn.depthwise_conv2d(both, self.blur, [1, 1, 1, 1], "SAME")
        low = both[..., :-1] / both[..., -1:]
        # Edge pixels repeated, as bilinear resizing clamps at the borders.
        low = tf.pad(low, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC")
        return phases + tf.nn.conv2d(low, self.upsample, 1, "VALID")

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "sigma": self.sigma}


def bilinear_phases(scale, channels):
    """A 3 x 3 kernel from ``channels`` to the scale^2 * channels sub-pixel channels of
    ``DepthToSpace`` that upsamples bilinearly (half-pixel centres, as ``tf.image.resize``)."""
    kernel = np.zeros((3, 3, channels, scale * scale * channels))
    offsets = (2 * np.arange(scale) + 1 - scale) / (2 * scale)     # of each output row
    weights = [np.array([max(0, -d), 1 - abs(d), max(0, d)]) for d in offsets]
    for a in range(scale):
        for b in range(scale):
            for c in range(channels):
                kernel[:, :, c, (a * scale + b) * channels + c] = np.outer(weights[a],
                                                                           weights[b])
    return kernel


def with_input_colours(net, sigma=1.5):
    """``net`` with ``InputColours`` before its ``DepthToSpace``: the same network weights,
    the input's colours."""
    shuffle = next(layer for layer in net.layers if isinstance(layer, DepthToSpace))
    fixed = InputColours(shuffle.block_size, sigma, dtype="float32", name="input_colours")(
        [net.input, shuffle.input])
    outputs = DepthToSpace(shuffle.block_size, dtype="float32", name=shuffle.name)(fixed)
    return keras.Model(net.input, outputs, name=net.name)


MODELS = {
    "three_conv": three_conv,
    "edsr": edsr,
    "rrdbnet": rrdbnet,
    "srvgg": srvgg,
}
# Each builder's options and the training settings (settings.py) that give them.
MODEL_SETTINGS = {
    "three_conv": {"widths": "widths"},
    "edsr": {"blocks": "blocks", "width": "features"},
    "rrdbnet": {"blocks": "blocks", "features": "features", "growth": "growth"},
    "srvgg": {"convs": "convs", "features": "features"},
}


def build_model(name="three_conv", scale=4, **options):
    """Build a registered model by name; unknown names are a ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](scale=scale, **options)


def receptive_radius(model):
    """How many LR pixels on each side can influence an output pixel (sum of
    the convolution half-widths); tiled inference needs at least this overlap."""
    radius = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            radius += max(kh, kw) // 2
        if isinstance(layer, InputColours):
            radius += layer.radius
    return radius


def multiply_adds_per_output_pixel(model):
    """Multiply-adds per HR output pixel (convolution weights only), each convolution
    counted at the size it runs at (LR, or after an upsampling)."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(model.input, [model.output] + [layer.output for layer in convs])
    side = 8
    outputs = probe(np.zeros((1, side, side, model.input.shape[-1]), np.float32))
    total = 0
    for layer, out in zip(convs, outputs[1:]):
        kh, kw = layer.kernel_size
        total += kh * kw * layer.input.shape[-1] * layer.filters * out.shape[1] * out.shape[2]
    return total / (outputs[0].shape[1] * outputs[0].shape[2])


def largest_activation_per_lr_pixel(model):
    """The most floats any one layer outputs per LR input pixel (a layer after an upsampling
    counts its larger size): what a model's working memory grows with."""
    layers = [layer for layer in model.layers
              if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    side = 16
    outputs = probe(np.zeros((1, side, side, model.input.shape[-1]), np.float32))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return max(out.shape[1] * out.shape[2] * out.shape[3] for out in outputs) / side ** 2
