"""What each export format costs: quality, size and speed of the shipped models.

    python benchmarks/export.py [--models three_conv,three_conv_64x32] [--repeats 3]

For every shipped model: TensorFlow float32 (the .h5 through superres/inference.py) and
its exports made by export.py (SavedModel, LiteRT float32 / float16 / int8,
ONNX float32 / int8), each scored by evaluate.py's code on Set5 / Set14 / B100 (PSNR-Y, 4-px
shave, 8-bit outputs) and timed on the 1000x750 LR input of
benchmarks/inference.py (output megapixels per second, whole image, best of
--repeats, 2 threads as this machine has), all in one run.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from machine import cpu_line  # noqa: E402  (benchmarks/machine.py)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
SETS = ("Set5", "Set14", "B100")
VARIANTS = [("SavedModel", "saved_model", "none", "_saved_model"),
            ("LiteRT float32", "tflite", "none", ".tflite"),
            ("LiteRT float16", "tflite", "float16", "_float16.tflite"),
            ("LiteRT int8", "tflite", "int8", "_int8.tflite"),
            ("ONNX", "onnx", "none", ".onnx"),
            ("ONNX int8", "onnx", "int8", "_int8.onnx")]


def size_mb(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names) / 1e6
    return os.path.getsize(path) / 1e6


def set_psnrs(net):
    import evaluate

    scores = []
    for name in SETS:
        folder = os.path.join(SHARED_DATA, name)
        if not os.path.isdir(folder):
            scores.append(float("nan"))
            continue
        _, rows = evaluate.evaluate_source(net, folder, 4)
        scores.append(float(np.mean([row["model_psnr"] for row in rows])))
    return scores


def megapixels_per_second(net, lr, repeats):
    import timeit

    from superres.upscaling import upscale

    run = lambda: upscale(lr, net, tile=None, dtype=np.float32)  # noqa: E731
    run()                                                # warm-up
    seconds = min(timeit.repeat(run, number=1, repeat=repeats))
    return lr.shape[0] * lr.shape[1] * 16 / seconds / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="three_conv,three_conv_64x32",
                        help="shipped models to export and measure")
    parser.add_argument("--lr-size", default="1000x750", help="timed input, WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration", default=os.path.join(SHARED_DATA, "train"),
                        help="int8 calibration images (export.py --data); default: the "
                             "training images, else demo")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import export
    from superres import inference

    calibration = args.calibration if os.path.isdir(args.calibration) else "demo"
    width, height = (int(v) for v in args.lr_size.split("x"))
    lr = np.random.default_rng(0).uniform(size=(height, width, 3)).astype(np.float32)
    print(f"{cpu_line()}; timed input {width}x{height} -> "
          f"{4 * width}x{4 * height}; int8 calibrated on {calibration} (64 images)")
    print(f"\n{'model / format':<34}{'Set5':>8}{'Set14':>8}{'B100':>8}{'MB':>8}{'MP/s':>8}"
          f"{'speed':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            path = inference.shipped_path(name)
            net = inference.load_model(path)
            base = set_psnrs(net)
            base_speed = megapixels_per_second(net, lr, args.repeats)
            print(f"{name + ': TensorFlow float32 (.h5)':<34}" + "".join(
                f"{s:>8.2f}" for s in base) + f"{size_mb(path):>8.2f}{base_speed:>8.1f}"
                f"{'1.00x':>8}", flush=True)
            for label, fmt, quantize, suffix in VARIANTS:
                out = os.path.join(folder, name + suffix)
                export.export_model(net, out, fmt, quantize, calibration, 64)
                exported = inference.load_model(out)
                scores = set_psnrs(exported)
                speed = megapixels_per_second(exported, lr, args.repeats)
                print(f"{name + ': ' + label:<34}" + "".join(f"{s:>8.2f}" for s in scores)
                      + f"{size_mb(out):>8.2f}{speed:>8.1f}{speed / base_speed:>7.2f}x"
                      + "   (" + ", ".join(f"{s - b:+.3f}" for s, b in zip(scores, base))
                      + " dB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
