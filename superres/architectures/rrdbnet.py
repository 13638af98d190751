"""rrdbnet: ESRGAN's and Real-ESRGAN's generator."""

import keras
import numpy as np

from superres.architectures.layers import NearestUpsampling, ReflectCrop, ReflectPad


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
