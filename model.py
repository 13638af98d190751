"""The model registry: every architecture by name, built by one function.

Every model maps RGB float32 in [0, 1] of any size (N, H, W, 3) to
(N, scale*H, scale*W, 3).  Outputs are not clipped inside the model (clipping
would stop gradients during training); callers clip when they make images.
The builders live in superres/architectures/, one file each; importing this module
registers their custom layers, so a saved ``.h5`` loads with plain
``keras.models.load_model(path)``.
"""

import keras
import numpy as np

from superres.architectures.edsr import edsr
from superres.architectures.layers import InputColours
from superres.architectures.rrdbnet import rrdbnet
from superres.architectures.srvgg import srvgg
from superres.architectures.three_conv import three_conv

# name: (builder, {builder option: the training setting that gives it}).  A new architecture
# is a builder in superres/architectures/ and one line here (its settings, if new, in
# superres/training/settings.py).
MODELS = {
    "three_conv": (three_conv, {"widths": "widths"}),
    "edsr": (edsr, {"blocks": "blocks", "width": "features"}),
    "rrdbnet": (rrdbnet, {"blocks": "blocks", "features": "features", "growth": "growth"}),
    "srvgg": (srvgg, {"convs": "convs", "features": "features"}),
}


def build_model(name="three_conv", scale=4, **options):
    """Build a registered model by name; unknown names are a ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    builder, _ = MODELS[name]
    return builder(scale=scale, **options)


def options_from(settings):
    """The builder options of ``settings.model`` that the training ``settings`` give (none for
    an unknown name: ``build_model`` says what is known)."""
    _, option_settings = MODELS.get(settings.model, (None, {}))
    options = {}
    for option, setting in option_settings.items():
        value = getattr(settings, setting)
        options[option] = tuple(value) if isinstance(value, list) else value
    return options


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
