"""predict.py on large photos: 4000x3000 (a 16000x12000 output) and 6000x4000
(a 24000x16000 output): wall time, output megapixels per second and the peak
resident memory of each predict.py process.

    python benchmarks/predict_large.py [--model weights/three_conv_x4.h5] [--tile 512]
        [--sizes 4000x3000 6000x4000] [--format jpg]

The inputs are made from real photographs (scikit-image's) resized in a
temporary folder.  Each predict.py runs in a fresh process that reports its
own peak RSS (ru_maxrss), the figure a user would see.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from machine import cpu_line  # noqa: E402  (benchmarks/machine.py)


def make_photo(path, width=4000, height=3000):
    import skimage.data
    from PIL import Image

    tiles = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
             skimage.data.rocket()]
    quarter = [np.asarray(Image.fromarray(t).resize((width // 2, height // 2), Image.BICUBIC))
               for t in tiles]
    photo = np.concatenate([np.concatenate(quarter[:2], 1), np.concatenate(quarter[2:], 1)], 0)
    Image.fromarray(photo).save(path, quality=95)


# Runs predict.py as __main__ in this child and reports the child's own peak RSS.
CHILD = ("import resource, runpy, sys\n"
         "sys.argv = sys.argv[1:]\n"
         "try:\n"
         "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
         "finally:\n"
         "    print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
         "          file=sys.stderr)\n")


def run_predict(source, model=None, tile=None, bfloat16=False, runtime=None):
    """(wall seconds, peak RSS in KiB, output path) of one predict.py process."""
    command = [sys.executable, "-c", CHILD, os.path.join(REPO, "predict.py"), source]
    if bfloat16:
        command.append("--bfloat16")
    if runtime:
        command += ["--runtime", runtime]
    if model:
        command += ["--model", model]
    if tile is not None:
        command += ["--tile", str(tile)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak_kib")]
    return wall, int(peak[-1].split()[1]), os.path.splitext(source)[0] + "_x4.png"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model .h5 (default: shipped weights)")
    parser.add_argument("--tile", type=int, default=None, help="--tile for predict.py")
    parser.add_argument("--sizes", nargs="+", default=["4000x3000", "6000x4000"],
                        help="input sizes WIDTHxHEIGHT")
    parser.add_argument("--format", default="jpg", choices=("jpg", "png"),
                        help="input file format")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time each size with predict.py --bfloat16")
    parser.add_argument("--runtime", default=None,
                        help="predict.py --runtime (default: its own, ONNX Runtime when the "
                             "model ships its export)")
    args = parser.parse_args(argv)
    from superres import images

    print(f"{cpu_line()}, tile {args.tile or 'default'}, "
          f"runtime {args.runtime or 'default'}")
    print(f"{'input':>11} {'output':>13} {'compute':>9} {'wall s':>7} {'out MP/s':>9} "
          f"{'peak RSS':>10}")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        for bfloat16 in (False, True) if args.bfloat16 else (False,):
            with tempfile.TemporaryDirectory() as folder:
                source = os.path.join(folder, f"photo.{args.format}")
                make_photo(source, width, height)
                wall, peak_kib, output = run_predict(source, args.model, args.tile, bfloat16,
                                                         args.runtime)
                out_width, out_height, _ = images.png_header(output)
            megapixels = out_width * out_height / 1e6
            print(f"{size:>11} {out_width:>6}x{out_height:<6} "
                  f"{'bfloat16' if bfloat16 else 'float32':>9} {wall:>7.1f} "
                  f"{megapixels / wall:>9.2f} {peak_kib / 1024 ** 2:>7.2f} GiB", flush=True)
    print("wall time includes start-up, reading and the streamed PNG write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
