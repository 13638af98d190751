"""Exported models (SavedModel folder, LiteRT ``.tflite``, ``.onnx``) run like Keras ones.

Each loader gives an ``Exported``: a function from one float32 RGB image
(H, W, 3) in [0, 1] to its upscaled float image, plus what tiling needs (the
scale and the receptive radius, read from the model's own convolutions), so
predict.py and evaluate.py run every format through the same tiling code.
"""

import dataclasses
import hashlib
import os
from typing import Callable

import numpy as np

from superres.messages import first_line

EXPORT_SUFFIXES = (".tflite", ".onnx")


class RuntimeProblem(Exception):
    """An exported model that cannot be run; the message is meant for the user."""


@dataclasses.dataclass
class Exported:
    path: str
    format: str          # "saved_model", "tflite" or "onnx"
    run: Callable        # (H, W, 3) float32 -> (sH, sW, 3) float32
    radius: int          # receptive radius in LR pixels (sum of kernel half-widths)
    scale: int = 0

    def __post_init__(self):
        probe = self.run(np.zeros((8, 12, 3), np.float32))
        if probe.ndim != 3 or probe.shape[2] != 3 or probe.shape[0] % 8 \
                or probe.shape[0] * 12 != probe.shape[1] * 8:
            raise RuntimeProblem(f"{self.path} is not an image-to-image upscaler: an 8x12 RGB "
                                 f"image gives an output of shape {probe.shape}")
        self.scale = probe.shape[0] // 8


def is_exported(path):
    return path.endswith(EXPORT_SUFFIXES) or os.path.isdir(path)


def load(path):
    """The exported model at ``path``, by its suffix (a folder is a SavedModel)."""
    if os.path.isdir(path):
        return load_saved_model(path)
    if path.endswith(".tflite"):
        return load_tflite(path)
    return load_onnx(path)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_export_of(h5_path):
    """``(path, problem)``: the float ONNX export beside ``h5_path`` (same name, .onnx)
    when export.py wrote it from this very file and ONNX Runtime is installed, else
    ``(None, why not)``; ``why not`` is None when there is simply no such file."""
    candidate = os.path.splitext(h5_path)[0] + ".onnx"
    if not os.path.isfile(candidate):
        return None, None
    try:
        import onnx
        import onnxruntime  # noqa: F401

        meta = {p.key: p.value for p in onnx.load(candidate).metadata_props}
    except ImportError:
        return None, None     # onnxruntime is optional: TensorFlow runs the .h5 as ever
    except Exception as error:  # onnx raises its own kinds for a damaged file
        return None, f"{candidate} is not a readable ONNX model ({first_line(error)})"
    if meta.get("source_sha256") != sha256(h5_path):
        return None, f"{candidate} was not exported from this {os.path.basename(h5_path)}"
    if meta.get("quantize") != "none":
        return None, f"{candidate} is quantized ({meta.get('quantize')}), not a float export"
    return candidate, None


def _check_input(path, shape):
    if len(shape) != 4 or shape[-1] != 3:
        raise RuntimeProblem(f"{path} is not an image-to-image upscaler: it takes {shape}, "
                             "not (N, H, W, 3) RGB images")
    if any(isinstance(d, int) and d > 0 for d in shape[1:3]):
        raise RuntimeProblem(f"{path} has a fixed input size {tuple(shape[1:3])}; export it "
                             "with a dynamic height and width (python export.py does)")


def load_saved_model(path):
    from superres import tfquiet

    tf = tfquiet.import_tensorflow()

    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise RuntimeProblem(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
    except Exception as error:  # TF raises many kinds for a damaged SavedModel
        raise RuntimeProblem(f"cannot load SavedModel {path}: {first_line(error)}") from None
    (name, spec), = serve.structured_input_signature[1].items()
    _check_input(path, list(spec.shape))
    output_name = next(iter(serve.structured_outputs))
    # Keras convolution kernels are (kh, kw, in, out) variables.
    radius = sum(max(v.shape[:2]) // 2 for v in loaded.variables if v.shape.rank == 4)
    forward = tf.function(lambda x: serve(**{name: x})[output_name])

    def run(image, loaded=loaded):  # holds ``loaded``: its variables die with it
        return forward(tf.constant(image[None])).numpy()[0]

    return Exported(path, "saved_model", run, radius)


def load_tflite(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeProblem(f"{path}: running .tflite models needs the ai-edge-litert package "
                             "(pip install ai-edge-litert)") from None
    try:
        interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    except (ValueError, RuntimeError) as error:
        raise RuntimeProblem(f"cannot load {path}: not a valid LiteRT model "
                             f"({first_line(error)})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise RuntimeProblem(f"{path} is not an image-to-image upscaler: it has {len(inputs)} "
                             f"inputs and {len(outputs)} outputs")
    source, target = inputs[0], outputs[0]
    _check_input(path, [int(d) if d > 0 else None for d in source["shape_signature"]])
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    radius = 0
    for op in interpreter._get_ops_details():  # no public API lists the ops
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kh, kw = tensors[op["inputs"][1]]["shape"][1:3]   # filters are (out, kh, kw, in)
            radius += max(kh, kw) // 2
    current = [None]

    def run(image):
        if current[0] != image.shape:
            interpreter.resize_tensor_input(source["index"], (1,) + image.shape)
            interpreter.allocate_tensors()
            current[0] = image.shape
        interpreter.set_tensor(source["index"], _quantize(image[None], source))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(target["index"]), target)[0]

    return Exported(path, "tflite", run, radius)


def _quantize(x, detail):
    """Float input for a model whose input is integer (fully quantized)."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(x, detail):
    if x.dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


def _import_onnx(path):
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise RuntimeProblem(f"{path}: running .onnx models needs the onnxruntime and onnx "
                             "packages (pip install onnxruntime onnx)") from None
    return onnx, onnxruntime


def load_onnx(path):
    """An .onnx file as an Exported model."""
    onnx, onnxruntime = _import_onnx(path)
    try:
        model = onnx.load(path)
        graph = model.graph
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count()
        # Idle threads sleep instead of spinning: between model calls the same cores
        # decode, tile, score and write (spinning slowed evaluate.py down markedly).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as error:  # onnx and onnxruntime raise their own kinds
        raise RuntimeProblem(f"cannot load {path}: not a valid ONNX model "
                             f"({first_line(error)})") from None
    if len(session.get_inputs()) != 1:
        raise RuntimeProblem(f"{path} is not an image-to-image upscaler: it has "
                             f"{len(session.get_inputs())} inputs")
    source = session.get_inputs()[0]
    _check_input(path, [d if isinstance(d, int) else None for d in source.shape])
    weights = {w.name: list(w.dims) for w in graph.initializer}
    radius = 0
    for node in graph.node:
        if node.op_type == "Conv":   # kernel_shape, else the (out, in, kh, kw) weights
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"),
                          weights.get(node.input[1], [0, 0, 1, 1])[2:])
            radius += max(kernel) // 2

    def run(image):
        return session.run(None, {source.name: image[None]})[0][0]

    return Exported(path, "onnx", run, radius)
