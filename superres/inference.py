"""Running a trained model on whole images: loading, tiling, 8-bit output.

Shared by evaluate.py and predict.py so both produce the same pixels.
"""

import os
import sys

import numpy as np

from superres import REPO_DIR, runtimes
from superres.messages import first_line

WEIGHTS_DIR = os.path.join(REPO_DIR, "weights")
# Shipped models by name, strongest first: the default is the first one present.
SHIPPED = ("edsr", "photo_plus", "photo", "three_conv", "three_conv_64x32")
TRAIN_HINT = ("train one with `python train.py --data demo --out runs/demo` "
              "and pass --model runs/demo/model.h5")


class ModelError(Exception):
    """A model file that cannot be used; the message is meant for the user."""


def shipped_path(name):
    return os.path.join(WEIGHTS_DIR, f"{name}_x4.h5")


def shipped_models():
    """Names of the shipped models present in weights/, strongest first."""
    return [name for name in SHIPPED if os.path.exists(shipped_path(name))]


# predict.py's default, the first of these shipped: students of Real-ESRGAN x4plus, whose
# texture and cleaning beat the models trained here on Real-ESRGAN's degradations (README,
# docs/training-log.md); evaluate.py keeps the strongest bicubic-benchmark model.
PHOTO_MODELS = ("photo", "photo_plus")


def photo_model():
    """predict.py's default: the first PHOTO_MODELS shipped, else None (the strongest)."""
    return next((name for name in PHOTO_MODELS if name in shipped_models()), None)


def resolve_model_path(model=None):
    """The model file to use: ``model`` as a path, else as a shipped model's name
    (``three_conv`` is weights/three_conv_x4.h5); by default the strongest shipped
    model.  A clear ModelError if there is none."""
    shipped = shipped_models()
    if model is None:
        if not shipped:
            raise ModelError(f"no shipped model in {os.path.relpath(WEIGHTS_DIR)}/; {TRAIN_HINT}")
        return shipped_path(shipped[0])
    if os.path.exists(model):
        return model
    if model in shipped:
        return shipped_path(model)
    from superres import ncnn_weights

    if model in ncnn_weights.PUBLISHED:
        try:
            return ncnn_weights.converted_path(model)
        except ncnn_weights.NcnnError as error:
            raise ModelError(f"--model {model}: {error}") from None
    names = f"shipped models: {', '.join(shipped)}" if shipped else "no model is shipped"
    raise ModelError(f"--model {model}: no such file, and not a shipped model's name "
                     f"({names}); {TRAIN_HINT}")


RUNTIMES = ("auto", "tensorflow")
RUNTIME_HELP = ("auto: a .h5 model with its own ONNX export beside it (NAME.onnx, written by "
                "export.py from that file; the shipped models have one) runs in ONNX Runtime, "
                "with the same output to float rounding (faster where TensorFlow has no "
                "oneDNN, docs/performance.md); tensorflow: always Keras")


def describe(path, net=None):
    """How the CLIs name the model they use: the shipped name, else the path; and
    the ONNX export that runs it, if one does, or bfloat16 if it computes in it."""
    from superres import ncnn_weights

    label = path
    for name in SHIPPED:
        if os.path.abspath(path) == os.path.abspath(shipped_path(name)):
            label = f"{name} ({os.path.relpath(path)})"
    for name in ncnn_weights.PUBLISHED:
        if os.path.abspath(path) == os.path.abspath(ncnn_weights.cached_path(name)):
            label = f"{name} (Real-ESRGAN's published weights, converted to {path})"
    if isinstance(net, runtimes.Exported) and os.path.abspath(net.path) != os.path.abspath(path):
        label += f", run by ONNX Runtime from {os.path.relpath(net.path)}"
    elif net is not None and not isinstance(net, runtimes.Exported) and any(
            layer.dtype_policy.name == "mixed_bfloat16" for layer in net.layers):
        label += ", computed in bfloat16"
    return label


def load_model(path=None, bfloat16=False, runtime="tensorflow"):
    """Load a saved model for inference.  A ``.h5`` runs in Keras unless
    ``runtime="auto"`` finds its float ONNX export beside it (see RUNTIME_HELP).
    ``bfloat16=True`` computes in bfloat16 in Keras (float32 weights kept as master
    copies): faster on CPUs with AVX512_BF16/AMX, slightly less exact (see
    docs/performance.md).  TensorFlow is imported only for a model it runs."""
    path = resolve_model_path(path)
    if runtimes.is_exported(path):
        if bfloat16:
            raise ModelError(f"--bfloat16 applies to Keras .h5 models, not to {path}")
        return _load_exported(path)
    if runtime == "auto" and not bfloat16:
        twin, problem = runtimes.onnx_export_of(path)
        if twin:
            return _load_exported(twin)
        if problem:
            print(f"note: {problem}; running {path} in TensorFlow (re-export it with "
                  f"python export.py {path} --format onnx -o {os.path.splitext(path)[0]}.onnx "
                  "--overwrite)", file=sys.stderr)
    keras = _import_keras()
    try:
        net = keras.models.load_model(path, compile=False)
    except Exception as error:  # h5py/keras raise many kinds for a bad file
        raise ModelError(f"cannot load model {path}: {first_line(error)}") from None
    check_upscaler(net, path)
    return to_bfloat16(net) if bfloat16 else net


# Every model --model names, in one line each (predict.py --help, the app, the README's list).
DESCRIPTIONS = {
    "photo": "real photos (JPEG, noise, blur): EDSR 12 x 32 taught by Real-ESRGAN x4plus, "
             "at edsr's cost",
    "photo_plus": "real photos: Real-ESRGAN's compact network (16 convs x 64) taught by "
                  "x4plus; its closer student, about 2.5 times edsr's cost",
    "edsr": "clean images: EDSR 12 x 32, the sharpest on bicubic-downscaled inputs",
    "three_conv": "the seed's three-convolution network, widths 128/64",
    "three_conv_64x32": "the seed's three-convolution network at its own widths 64/32",
    "realesrgan_x4plus": "Real-ESRGAN x4plus's published weights (RRDBNet): strong on photos, slow",
    "realesr_animevideov3": "Real-ESRGAN's published compact model for animation",
}


def _import_keras():
    """Keras with the project's layers registered, TensorFlow started quietly."""
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import keras

    from superres.architectures import layers  # noqa: F401  (registers the custom layers)

    return keras


def _load_exported(path):
    try:
        return runtimes.load(path)
    except runtimes.RuntimeProblem as error:
        raise ModelError(str(error)) from None


def check_upscaler(net, path):
    """A ModelError unless ``net`` maps any RGB image (N, H, W, 3) to (N, sH, sW, 3)."""
    def refuse(why):
        raise ModelError(f"{path} is not an image-to-image upscaler: {why}")

    shapes = [tuple(t.shape) for t in net.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][-1] != 3:
        refuse(f"it takes {shapes[0] if len(shapes) == 1 else shapes}, not (N, H, W, 3) RGB images")
    if shapes[0][1:3] != (None, None):
        refuse(f"its input size is fixed at {shapes[0][1:3]}")
    try:
        out = net(np.zeros((1, 8, 12, 3), np.float32), training=False)
    except Exception as error:  # whatever the layers raise for an 8x12 probe
        refuse(f"it fails on an 8x12 image ({first_line(error)})")
    shape = tuple(out.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] % 8 or shape[1] // 8 < 1 \
            or shape[1] * 12 != shape[2] * 8:
        refuse(f"an 8x12 RGB image gives an output of shape {shape}")


def native_bfloat16():
    """The CPU's bfloat16 instructions (AVX512_BF16, AMX), from /proc/cpuinfo: with them
    oneDNN computes in bfloat16 natively; without, TensorFlow emulates it, slowly."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    return sorted({"avx512_bf16", "amx_bf16"} & set(flags))


def to_bfloat16(net):
    """The same model computing in bfloat16 (mixed precision policy), same weights."""
    keras = _import_keras()

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(net, clone_function=clone)
    twin.set_weights(net.get_weights())
    return twin


def model_scale(net):
    """The upscaling factor of a model (its output size / input size)."""
    if isinstance(net, runtimes.Exported):
        return net.scale
    from superres.architectures.layers import DepthToSpace

    for layer in net.layers:
        if isinstance(layer, DepthToSpace):
            return layer.block_size
    probe = net(np.zeros((1, 8, 8, 3), np.float32), training=False)
    return int(probe.shape[1]) // 8


_COMPILED = {}


def forward(net, lr_float):
    """One forward pass.  A tf.function traced once for any image size: graph
    execution is faster than eager on CPU (benchmarks/inference.py)."""
    if isinstance(net, runtimes.Exported):
        return net.run(lr_float)
    import tensorflow as tf
    forward = _COMPILED.get(id(net))
    if forward is None or forward[0] is not net:
        function = tf.function(lambda x: tf.cast(net(x, training=False), tf.float32),
                               input_signature=[
            tf.TensorSpec([1, None, None, lr_float.shape[-1]], tf.float32)])
        forward = _COMPILED[id(net)] = (net, function)
    return forward[1](tf.constant(lr_float[None]))[0].numpy()


def tiled_bands(fn, image, scale, tile=None, overlap=4, convert=None, on_tile=None):
    """Apply ``fn`` (a local operator that upscales by ``scale``) to ``image`` in
    tiles of at most ``tile`` x ``tile`` pixels, each given ``overlap`` pixels of
    real context on every side, keeping only each tile's own part of the result.
    Yields the result one band of tile rows at a time: (output row, band).

    When ``overlap`` covers ``fn``'s reach (the receptive radius for a
    convolutional model), the bands put together equal ``fn(image)``, while
    working memory depends on the tile size and the image width alone.
    ``convert`` (e.g. to 8 bits) is applied to each piece as it comes, so a large
    float output never exists; ``on_tile`` is called after each tile (progress).
    """
    convert = convert or (lambda piece: piece)
    height, width = image.shape[:2]
    tall, wide = _even_split(height, tile), _even_split(width, tile)
    for y0 in range(0, height, tall):
        y1 = min(y0 + tall, height)
        band = None
        for x0 in range(0, width, wide):
            x1 = min(x0 + wide, width)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, height), min(x1 + overlap, width)
            result = fn(image[py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            piece = convert(result[oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale])
            if x1 - x0 == width:    # one tile spans the band: no copy
                band = piece
            else:
                if band is None:
                    band = np.empty(((y1 - y0) * scale, width * scale) + piece.shape[2:],
                                    piece.dtype)
                band[:, x0 * scale:x1 * scale] = piece
            if on_tile:
                on_tile()
        yield y0 * scale, band
        band = None   # not kept alive while the next band is computed


def _even_split(length, tile):
    """The side of the fewest near-equal tiles, at most ``tile``, that cover ``length``:
    ONNX Runtime reuses its memory across same-shaped tiles, and no thin leftover tile
    pays a whole overlap."""
    if not tile or tile >= length:
        return length
    return -(-length // -(-length // tile))


def tile_count(shape, tile=None):
    height, width = shape[:2]
    return -(-height // _even_split(height, tile)) * -(-width // _even_split(width, tile))


def tiled(fn, image, scale, tile=None, overlap=4, convert=None):
    """``tiled_bands`` put together into one array."""
    out = None
    for row, band in tiled_bands(fn, image, scale, tile, overlap, convert):
        if len(band) == image.shape[0] * scale:   # one band is the whole output: no copy
            return band
        if out is None:
            out = np.empty((image.shape[0] * scale,) + band.shape[1:], band.dtype)
        out[row:row + len(band)] = band
    return out


# LR tile side: working memory scales with tile^2, not with the image; the overlap costs
# (1 + 2r/tile)^2 of the work for receptive radius r, so deep models get 28 radii (at most
# 15% of overlap): larger tiles were slower end to end, their activations beyond any cache
# and their fresh memory paged in per tile (docs/performance.md).
TILE = 512
TILE_RADII = 28


def default_tile(net):
    """predict.py's LR tile side for ``net``: 512, or 28 receptive radii (a multiple of
    64) for models whose radius makes the overlap of 512-pixel tiles costly."""
    return max(TILE, -(-TILE_RADII * receptive_radius(net) // 64) * 64)


def receptive_radius(net):
    if isinstance(net, runtimes.Exported):
        return net.radius
    import model as models

    return models.receptive_radius(net)


def as_float(piece):
    """Tiles are made float as they are cut, so a uint8 image is never held as float."""
    if piece.dtype == np.uint8:
        return piece.astype(np.float32) / 255.0
    return piece.astype(np.float32, copy=False)
