"""Running a trained model on whole images: loading, tiling, 8-bit output.

Shared by evaluate.py and predict.py so both produce the same pixels.
"""

import os

import numpy as np

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(REPO_DIR, "weights", "three_conv_x4.h5")
TRAIN_HINT = ("train one with `python train.py --data demo --out runs/demo` "
              "and pass --model runs/demo/model.h5")


class ModelError(Exception):
    """A model file that cannot be used; the message is meant for the user."""


def resolve_model_path(path=None):
    """The model to use: ``path``, else the shipped weights; a clear error if missing."""
    if path is None:
        if not os.path.exists(DEFAULT_MODEL):
            raise ModelError(f"no shipped model at {os.path.relpath(DEFAULT_MODEL)}; {TRAIN_HINT}")
        return DEFAULT_MODEL
    if not os.path.exists(path):
        raise ModelError(f"model file {path} does not exist; {TRAIN_HINT}")
    return path


def load_model(path=None):
    """Load a saved ``.h5`` model (inference only)."""
    import keras

    import model as _registers_custom_layers  # noqa: F401

    path = resolve_model_path(path)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # h5py/keras raise many kinds for a bad file
        raise ModelError(f"cannot load model {path}: {str(error).splitlines()[0]}") from None


def model_scale(net):
    """The upscaling factor of a model (its output size / input size)."""
    import model as models

    for layer in net.layers:
        if isinstance(layer, models.DepthToSpace):
            return layer.block_size
    probe = net(np.zeros((1, 8, 8, 3), np.float32), training=False)
    return int(probe.shape[1]) // 8


def _run(net, lr_float):
    return net(lr_float[None], training=False)[0].numpy()


def to_uint8(image_float):
    """[0, 1] float to 8 bits, as a saved PNG would be (clip, round half up)."""
    return np.clip(np.floor(np.asarray(image_float) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def super_resolve_float(net, lr, tile=None, overlap=None):
    """Float32 SR output in [0, 1]-ish of an RGB uint8 (H, W, 3) image.

    With ``tile`` set, the LR image is processed in tiles of at most
    ``tile`` x ``tile`` pixels, each padded by ``overlap`` LR pixels of real
    image context (default: the model's receptive radius), and only the tile's
    own part of each result is kept: the stitched output equals whole-image
    inference, while memory depends on the tile size only.
    """
    import model as models

    scale = model_scale(net)
    lr_float = np.asarray(lr, np.float32) / 255.0
    height, width = lr_float.shape[:2]
    if tile is None or (height <= tile and width <= tile):
        return _run(net, lr_float)
    if overlap is None:
        overlap = models.receptive_radius(net)
    out = np.empty((height * scale, width * scale, 3), np.float32)
    for top, left, piece in iter_tiles(net, lr_float, tile, overlap, scale):
        out[top:top + piece.shape[0], left:left + piece.shape[1]] = piece
    return out


def iter_tiles(net, lr_float, tile, overlap, scale):
    """Yield (top, left, sr_piece) in HR coordinates for each LR tile."""
    height, width = lr_float.shape[:2]
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, height), min(x1 + overlap, width)
            result = _run(net, lr_float[py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            yield (y0 * scale, x0 * scale,
                   result[oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale])


def super_resolve(net, lr, tile=None):
    """8-bit SR output of an RGB uint8 image; tiles are converted to 8 bits as they
    come, so a large output never exists in float32."""
    import model as models

    if tile is None:
        return to_uint8(super_resolve_float(net, lr))
    scale = model_scale(net)
    lr_float = np.asarray(lr, np.float32) / 255.0
    height, width = lr_float.shape[:2]
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    overlap = models.receptive_radius(net)
    for top, left, piece in iter_tiles(net, lr_float, tile, overlap, scale):
        out[top:top + piece.shape[0], left:left + piece.shape[1]] = to_uint8(piece)
    return out
