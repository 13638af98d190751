"""The custom Keras layers our architectures share. Registered as serializable, so a saved
``.h5`` loads with plain ``keras.models.load_model`` once this module is imported."""

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
class SpaceToDepth(keras.layers.Layer):
    """``DepthToSpace``'s inverse (``tf.nn.space_to_depth``) as a serializable layer."""

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h // b, None if w is None else w // b, c * b * b)

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
    """``net`` with ``InputColours`` on its output's sub-pixel phases: the same network
    weights, the input's colours.  Where the network's last layer is its ``DepthToSpace``
    (edsr) the fix goes before it; otherwise (srvgg adds the input upsampled after it,
    rrdbnet has none) the output is rearranged into phases and back."""
    shuffle = next((layer for layer in net.layers if isinstance(layer, DepthToSpace)), None)
    if shuffle is None:
        scale = net(np.zeros((1, 8, 8, net.input.shape[-1]), np.float32)).shape[1] // 8
    else:
        scale = shuffle.block_size
    if shuffle is not None and shuffle is net.layers[-1]:
        phases, name = shuffle.input, shuffle.name
    else:
        phases, name = SpaceToDepth(scale, dtype="float32", name="output_phases")(net.output), \
            "depth_to_space_colours"
    fixed = InputColours(scale, sigma, dtype="float32", name="input_colours")(
        [net.input, phases])
    outputs = DepthToSpace(scale, dtype="float32", name=name)(fixed)
    return keras.Model(net.input, outputs, name=net.name)
