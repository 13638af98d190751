"""Export a trained model for deployment: SavedModel, LiteRT (.tflite), ONNX or Keras .h5.

    python export.py                                  # strongest shipped model -> SavedModel
    python export.py three_conv --format tflite --quantize int8
    python export.py runs/demo/model.h5 --format onnx -o model.onnx
    python export.py three_conv --format onnx --quantize int8
    python export.py runs/gan/model.h5 --format h5 --input-colours 1.5 -o gan.h5

Every export takes images of any height and width.  The files run with
``predict.py --model FILE`` and ``evaluate.py --model FILE`` through the same
tiling code as the .h5 models (docs/deployment.md has each format's quality,
size and speed).
"""

import argparse
import os
import shutil
import sys
import tempfile

from superres.fileio import can_write_in, human_size, is_disk_full
from superres.inference import DESCRIPTIONS
from superres.messages import ArgumentParser

QUANTIZATIONS = ("none", "float16", "int8")


def parse_args(argv=None):
    parser = ArgumentParser(
        description="Export a model (.h5 or a shipped model's name) to SavedModel, LiteRT "
                    "(.tflite), ONNX or Keras .h5, with a dynamic input size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("model", nargs="?", default=None,
        help="a model .h5 file or a model's name (" + ", ".join(DESCRIPTIONS) + "); "
             "default: the strongest shipped one")
    add("--format", choices=tuple(FORMATS), default="saved_model", help="what to export to")
    add("--quantize", choices=QUANTIZATIONS, default="none",
        help="float16 weights (tflite), or int8 (tflite or onnx: post-training quantization "
             "of weights and activations, calibrated on --data; float input and output)")
    add("--data", default="demo",
        help="int8: images whose LR patches calibrate the activation ranges (any --data kind "
             "train.py takes: a folder of HR images, a benchmark folder, div2k, demo)")
    add("--calibration-images", type=int, default=64,
        help="int8: how many images of --data calibrate (one LR crop of up to 96x96 each)")
    add("-o", "--output", default=None,
        help="output file (.tflite, .onnx) or folder (SavedModel); default: exports/NAME "
             "beside this script, NAME from the model and the options")
    add("--input-colours", type=float, default=None, metavar="SIGMA",
        help="follow the network by a fixed stage that gives the output the input's low "
             "frequencies (a Gaussian of SIGMA LR pixels; layers.InputColours), so an image's "
             "colours and brightness stay the input's (as photo and photo_plus ship)")
    add("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    if args.input_colours is not None and args.input_colours <= 0:
        parser.error(f"--input-colours must be above 0 (LR pixels), got {args.input_colours:g}")
    _, _, quantizations = FORMATS[args.format]
    if args.quantize not in quantizations:
        takers = [name for name, (_, _, taken) in FORMATS.items() if args.quantize in taken]
        parser.error(f"--quantize {args.quantize} applies to --format {' or '.join(takers)}"
                     + (" only" if len(takers) == 1 else ""))
    if args.calibration_images < 1:
        parser.error("--calibration-images must be at least 1")
    return args


def default_output(model_path, fmt, quantize):
    """exports/NAME: the model's name, the quantization, the format's suffix (a folder:
    NAME_FORMAT; a file of the model's own suffix: NAME_export)."""
    stem, source_suffix = os.path.splitext(os.path.basename(model_path))
    _, suffix, _ = FORMATS[fmt]
    tag = "" if quantize == "none" else "_" + quantize
    name = (f"{stem}{tag}_{fmt}" if suffix is None else
            f"{stem}{tag}_export{suffix}" if suffix == source_suffix else f"{stem}{tag}{suffix}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "exports", name)


def check_output(path, fmt, overwrite):
    _, suffix, _ = FORMATS[fmt]
    files = tuple(s for _, s, _ in FORMATS.values() if s)
    if suffix and not path.endswith(suffix):
        raise ExportError(f"-o {path}: a {fmt} export is a {suffix} file")
    if suffix is None and path.endswith(files):
        raise ExportError(f"-o {path}: a {fmt} export is a folder; give a folder name")
    if os.path.exists(path) and not overwrite:
        raise ExportError(f"{path} exists; pass --overwrite to replace it")
    if not can_write_in(os.path.dirname(os.path.abspath(path))):
        raise ExportError(f"-o {path}: cannot write there (read-only or no permission)")


class ExportError(Exception):
    """A problem the user can fix; the message is for them."""


def calibration_images(data, count):
    """LR crops (up to 96x96, top-left) of the first ``count`` images of ``data``, as
    float32 batches of one: the representative dataset of int8 quantization."""
    import numpy as np

    import data as datasets

    pairs = datasets.pair_dataset(data, "train", holdout=False, flag="--data")
    crops = []
    for item in pairs.take(count):
        lr = item["lr"].numpy()[:96, :96]
        crops.append(lr.astype(np.float32)[None] / 255.0)
    if not crops:
        raise ExportError(f"--data {data}: no images to calibrate int8 quantization with")
    return crops


def tflite_options(quantize, calibration):
    """Converter settings: builtin ops only (no Flex delegate needed); ``calibration()``
    gives int8's representative crops."""
    import tensorflow as tf

    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "none":
        return {"target_spec": {"supported_ops": builtins}}
    if quantize == "float16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {"supported_ops": builtins, "supported_types": [tf.float16]}}
    crops = calibration()
    return {"optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": lambda: ([crop] for crop in crops),
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + builtins}}


def quantize_onnx(float_path, path, crops):
    """Static int8 quantization by ONNX Runtime: QDQ format, per-channel int8 weights and
    uint8 activations (its fast u8s8 kernels), min/max calibrated.

    Weights use 7 bits (``reduce_range``): x86 CPUs without VNNI multiply u8 x s8 pairs
    with VPMADDUBSW, whose int16 sums saturate, so 8-bit weights ruin the output on such a
    CPU (ONNX Runtime's quantize_static docstring gives the same advice;
    docs/deployment.md)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)
    from onnxruntime.quantization.operators.direct_q8 import QDQDirect8BitOp
    from onnxruntime.quantization.registry import QDQRegistry

    name = onnx.load(float_path).graph.input[0].name

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{name: crop} for crop in crops])

        def get_next(self):
            return next(self.feeds, None)

    prepared = float_path + ".prepared.onnx"
    # ONNX shape inference and graph folding first (the symbolic pass needs sympy and
    # adds nothing to a convolutional graph).
    quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
    # DepthToSpace only moves bytes, like the Transpose after it: quantized, both run on
    # uint8 before the last dequantization (bit-identical output, less time;
    # docs/deployment.md).
    registered = "DepthToSpace" in QDQRegistry
    QDQRegistry.setdefault("DepthToSpace", QDQDirect8BitOp)
    try:
        quantize_static(prepared, path, Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    finally:
        if not registered:   # ONNX Runtime's registry is process-wide: leave it as found
            del QDQRegistry["DepthToSpace"]


def stamp_onnx(path, source, quantize):
    """Record in an ONNX file which .h5 it was exported from (its SHA-256) and how it
    was quantized: superres/inference.py runs a .h5 by its float ONNX export only while the
    two still match."""
    import onnx

    from superres import runtimes

    proto = onnx.load(path)
    for key, value in (("source_sha256", runtimes.sha256(source)), ("quantize", quantize)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def _keras_export(net, path, keras_format, **options):
    """Keras' own export, for images of any height and width."""
    import keras

    from superres import tfquiet

    spec = [keras.InputSpec(shape=(None, None, None, 3), dtype="float32")]
    with tfquiet.quiet_stderr():   # the LiteRT converter's C++ lines ("fully_quantize: 0 ...")
        net.export(path, format=keras_format, verbose=False, input_signature=spec, **options)


def write_saved_model(net, path, quantize, calibration, source):
    _keras_export(net, path, "tf_saved_model")


def write_tflite(net, path, quantize, calibration, source):
    _keras_export(net, path, "litert", **tflite_options(quantize, calibration))


def write_onnx(net, path, quantize, calibration, source):
    if quantize == "none":
        _keras_export(net, path, "onnx")
    else:
        crops = calibration()   # before the float export: a bad --data fails in seconds
        float_path = os.path.join(os.path.dirname(path), "float.onnx")
        _keras_export(net, float_path, "onnx")
        quantize_onnx(float_path, path, crops)
    if source:
        stamp_onnx(path, source, quantize)


def write_h5(net, path, quantize, calibration, source):
    net.save(path)


# The export formats: (writer of (net, path, quantize, calibration, source .h5 or None), the
# file's suffix or None for a folder, the quantizations it takes).  A new format is a writer
# and one line here.
FORMATS = {
    "saved_model": (write_saved_model, None, ("none",)),
    "tflite": (write_tflite, ".tflite", ("none", "float16", "int8")),
    "onnx": (write_onnx, ".onnx", ("none", "int8")),
    "h5": (write_h5, ".h5", ("none",)),
}


def export_model(net, path, fmt, quantize="none", data="demo", count=64, source=None):
    """Write ``net`` to ``path`` in ``fmt``: built beside the target under a
    temporary name, then renamed, so a kill leaves no half-written export.
    ``source``: the .h5 file ``net`` was loaded from, recorded in ONNX exports."""
    import warnings

    # tf2onnx's own FutureWarning about np.object, not the user's business.
    warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
    write, _, _ = FORMATS[fmt]
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        built = os.path.join(work, os.path.basename(path))
        write(net, built, quantize, lambda: calibration_images(data, count), source)
        if os.path.isdir(path):
            shutil.rmtree(path)     # --overwrite of a SavedModel folder
        os.replace(built, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def with_input_colours(net, sigma, path):
    from superres.architectures import layers

    if any(isinstance(layer, layers.InputColours) for layer in net.layers):
        raise ExportError(f"--input-colours: {path} keeps its input's colours already")
    print(f"input colours: the output's low frequencies (Gaussian of {sigma:g} LR pixels) "
          "are the input's")
    return layers.with_input_colours(net, sigma)


def _chain(error):
    """An exception and the ones it was raised from or during."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def main(argv=None):
    args = parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import data
    from superres import inference

    try:
        model_path = inference.resolve_model_path(args.model)
        if model_path.endswith((".tflite", ".onnx")) or os.path.isdir(model_path):
            raise ExportError(f"{model_path} is already exported; export.py takes a .h5 model")
        output = args.output or default_output(model_path, args.format, args.quantize)
        check_output(output, args.format, args.overwrite)
        net = inference.load_model(model_path)
        print(f"model: {inference.describe(model_path)}")
        if args.input_colours is not None:
            net = with_input_colours(net, args.input_colours, model_path)
        # An export with the added stage is no twin of its source .h5 (runtimes.onnx_export_of).
        export_model(net, output, args.format, args.quantize, args.data, args.calibration_images,
                     source=model_path if args.input_colours is None else None)
    except (ExportError, inference.ModelError, data.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:   # the converters wrap OSError in their own kinds
        if not any(is_disk_full(e) for e in _chain(error)):
            raise
        folder = os.path.dirname(os.path.abspath(output))
        print(f"error: disk full: cannot write {output} ({human_size(shutil.disk_usage(folder).free)}"
              f" free in {folder}); nothing was written", file=sys.stderr)
        return 2
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(output) for name in names) \
        if os.path.isdir(output) else os.path.getsize(output)
    print(f"wrote {output} ({size / 1e6:.2f} MB); run it with "
          f"python predict.py IMAGE --model {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
