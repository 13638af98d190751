"""Super-resolution models: a small registry of Keras functional models.

Every model maps RGB float32 in [0, 1] of any size (N, H, W, 3) to
(N, scale*H, scale*W, 3).  Outputs are not clipped inside the model (clipping
would stop gradients during training); callers clip when they make images.
Importing this module registers the custom layer, so a saved ``.h5`` loads
with plain ``keras.models.load_model(path)``.
"""

import keras
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


def three_conv(scale=4, widths=(64, 32), channels=3, kernel_initializer="glorot_uniform"):
    """ESPCN-shaped model: conv 5x5/w1 ReLU, conv 3x3/w2 ReLU, conv 3x3 to
    channels*scale^2, depth-to-space.  ``widths`` defaults to the seed's 64/32."""
    width1, width2 = widths
    inputs = keras.Input(shape=(None, None, channels), name="lr")
    x = keras.layers.Conv2D(width1, 5, padding="same", activation="relu",
                            kernel_initializer=kernel_initializer, name="conv1")(inputs)
    x = keras.layers.Conv2D(width2, 3, padding="same", activation="relu",
                            kernel_initializer=kernel_initializer, name="conv2")(x)
    x = keras.layers.Conv2D(channels * scale * scale, 3, padding="same",
                            kernel_initializer=kernel_initializer, name="conv3")(x)
    outputs = DepthToSpace(scale, name="depth_to_space")(x)
    return keras.Model(inputs, outputs, name=f"three_conv_x{scale}")


MODELS = {
    "three_conv": three_conv,
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
    return radius


def multiply_adds_per_output_pixel(model):
    """Multiply-adds per HR output pixel (convolution weights only)."""
    scale = None
    per_lr_pixel = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            per_lr_pixel += kh * kw * layer.input.shape[-1] * layer.filters
        if isinstance(layer, DepthToSpace):
            scale = layer.block_size
    return per_lr_pixel / (scale * scale)
