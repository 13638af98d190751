"""edsr: EDSR's residual network in LR space, and growing a trained one deeper."""

import keras
import numpy as np

from superres.architectures.layers import DepthToSpace


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
