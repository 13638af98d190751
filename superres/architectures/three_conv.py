"""three_conv: the seed's network (ESPCN's shape)."""

import keras

from superres.architectures.layers import DepthToSpace


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
