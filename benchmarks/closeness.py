"""How close each model's output comes to Real-ESRGAN x4plus's: PSNR-Y (4-px shave) of the
output against x4plus's on the same input, per image and on average, for real LR photos with
no ground truth (issue 38's measure of a student of x4plus).

    python benchmarks/closeness.py --models bicubic edsr photo photo_plus
                                   [--data ../shared/data/RealSRSet] [--reference realesrgan_x4plus]

x4plus's outputs (our Keras port, whole images) are computed once and kept in
~/.cache/sr-toolkit/reference/ (a folder per data folder and reference model).
"""

import argparse
import hashlib
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def reference_outputs(reference, inputs, data):
    """x4plus's (or ``reference``'s) 8-bit output of every input, cached as PNG."""
    from superres import images, inference
    from superres.upscaling import upscale
    from superres.fileio import cache_folder

    key = hashlib.sha256(os.path.realpath(data).encode()).hexdigest()[:12]
    folder = cache_folder("reference", f"{reference}-{key}")
    net, outputs = None, []
    for name, rgb in inputs:
        path = os.path.join(folder, os.path.splitext(name)[0] + ".png")
        if not os.path.exists(path):
            net = net or inference.load_model(reference, runtime="auto")
            images.write_png(path, upscale(rgb, net, tile=None, dtype=np.uint8))
        outputs.append(images.to_uint8(images.read_image(path).rgb))
    return outputs


def upscaler(name):
    from superres import bicubic, inference
    from superres.upscaling import upscale

    if name == "bicubic":
        return lambda rgb: bicubic.upscale(rgb, 4)
    net = inference.load_model(name, runtime="auto")
    return lambda rgb: upscale(rgb, net, tile=inference.default_tile(net), dtype=np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="model names or files, or bicubic")
    parser.add_argument("--data", default=os.path.join(SHARED_DATA, "RealSRSet"))
    parser.add_argument("--reference", default="realesrgan_x4plus")
    parser.add_argument("--per-image", action="store_true", help="also a row per image")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import images, metrics

    paths = images.list_images(args.data)
    inputs = [(os.path.basename(p), images.to_uint8(images.read_image(p).rgb)) for p in paths]
    targets = reference_outputs(args.reference, inputs, args.data)
    print(f"PSNR-Y (dB, 4-px shave) of each output against {args.reference}'s, "
          f"{len(inputs)} images of {args.data}")
    table = {}
    for name in args.models:
        run = upscaler(name)
        table[name] = [metrics.psnr_ssim_y(target, run(rgb), 4)[0]
                       for (_, rgb), target in zip(inputs, targets)]
        print(f"  {name}: {np.mean(table[name]):.2f}", flush=True)
    print("\n| model | mean PSNR-Y to " + args.reference + " |\n|---|---|")
    for name, values in table.items():
        print(f"| {name} | {np.mean(values):.2f} |")
    if args.per_image:
        print("\n| image | " + " | ".join(table) + " |\n|---" * (len(table) + 1) + "|")
        for i, (image, _) in enumerate(inputs):
            print(f"| {image} | " + " | ".join(f"{table[n][i]:.2f}" for n in table) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
