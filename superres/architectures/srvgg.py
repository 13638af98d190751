"""srvgg: Real-ESRGAN's compact network (SRVGGNetCompact)."""

import keras

from superres.architectures.layers import (DepthToSpace, NearestUpsampling, ReflectCrop,
                                           ReflectPad)


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
