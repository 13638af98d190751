"""predict.py on a 4000x3000 photo (a 16000x12000 output): wall time, output
megapixels per second and peak resident memory of the whole process.

    python benchmarks/predict_large.py [--model weights/three_conv_x4.h5] [--tile 512]

The input is made from real photographs (scikit-image's) resized to
4000x3000 in a temporary folder.  predict.py runs in a fresh process so its
peak RSS (ru_maxrss of the child) is the figure a user would see.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_photo(path, width=4000, height=3000):
    import skimage.data
    from PIL import Image

    tiles = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
             skimage.data.rocket()]
    quarter = [np.asarray(Image.fromarray(t).resize((width // 2, height // 2), Image.BICUBIC))
               for t in tiles]
    photo = np.concatenate([np.concatenate(quarter[:2], 1), np.concatenate(quarter[2:], 1)], 0)
    Image.fromarray(photo).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model .h5 (default: shipped weights)")
    parser.add_argument("--tile", type=int, default=None, help="--tile for predict.py")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "photo.png")
        make_photo(source)
        command = [sys.executable, os.path.join(REPO, "predict.py"), source]
        if args.model:
            command += ["--model", args.model]
        if args.tile is not None:
            command += ["--tile", str(args.tile)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stderr[-2000:])
            return 1
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        import images

        width, height, _ = images.png_header(os.path.join(folder, "photo_x4.png"))
    megapixels = width * height / 1e6
    print(f"input 4000x3000 -> output {width}x{height} ({megapixels:.0f} MP)")
    print(f"wall time (incl. start-up, PNG read/write): {wall:.1f} s")
    print(f"output megapixels per second: {megapixels / wall:.2f}")
    print(f"peak RSS: {peak_kib / 1024 ** 2:.2f} GiB")
    print(f"cpu cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
