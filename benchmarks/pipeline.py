"""Does data.py keep up with training?  Patches per second that the training
pipeline delivers, beside the patches per second one training step of
three_conv consumes (batch 16, 64x64 HR), measured side by side in one run.

    python benchmarks/pipeline.py [--images 32] [--steps 150]

Sources: DIV2K-sized PNGs (2040x1400 HR, made from real photographs in
../shared/data or scikit-image, in a temporary folder in the official DIV2K
layout with MATLAB-style bicubic LR), and ../shared/data/train when present.
"Cold" is the first epoch, bounded by decoding every PNG once; "warm" is later
epochs (decoded images served from the cache).

    python benchmarks/pipeline.py --degradation [--steps 40]

Real-ESRGAN's degradations (train.py --degradation realesrgan): 128x128 HR patches of
../shared/data/train, each LR degraded on the fly in tf.data, against what one step of
the shipped edsr (12 x 32, L1, batch 16 of 128 px) consumes, in float32 and with XLA.
"""

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import print_cpu  # noqa: E402
from train_step import model_rate, training_rate  # noqa: E402  (the same timing in both)

SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def rss_gib():
    import psutil

    return psutil.Process().memory_info().rss / 1024 ** 3


def source_photos():
    from PIL import Image

    paths = sorted(glob.glob(os.path.join(SHARED_DATA, "train", "BSD200", "*.png")))
    if paths:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths[:64]]
    import skimage.data

    return [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
            skimage.data.rocket(), skimage.data.hubble_deep_field()]


def make_div2k_like(root, count, width=2040, height=1400):
    """``count`` HR/LR pairs in the official layout, each HR a 2x2 mosaic of photos."""
    from PIL import Image

    from superres import bicubic

    photos = source_photos()
    hr_dir = os.path.join(root, "DIV2K_train_HR")
    lr_dir = os.path.join(root, "DIV2K_train_LR_bicubic", "X4")
    os.makedirs(hr_dir)
    os.makedirs(lr_dir)
    for i in range(count):
        quads = [np.asarray(Image.fromarray(photos[(4 * i + k) % len(photos)]).resize(
            (width // 2, height // 2), Image.BICUBIC)) for k in range(4)]
        hr = np.concatenate([np.concatenate(quads[:2], 1), np.concatenate(quads[2:], 1)], 0)
        Image.fromarray(hr).save(os.path.join(hr_dir, f"{i + 1:04d}.png"))
        Image.fromarray(bicubic.downscale(hr)).save(os.path.join(lr_dir, f"{i + 1:04d}x4.png"))


def hr_sizes(source):
    """(height, width) of every training HR image, read from the file headers."""
    from PIL import Image

    from superres import images, sources

    folder = os.path.join(source, "DIV2K_train_HR") if sources.source_kind(source) == \
        "div2k_local" else source
    sizes = []
    for path in images.list_images(folder, recursive=True):
        with Image.open(path) as img:
            sizes.append((img.height, img.width))
    return sizes


def pipeline_rate(source, patches_per_image, warm_batches=300, batch=16, lr_patch=16):
    """(cold patches/s, warm patches/s, memory GiB added by the cache).

    Cold (first epoch, empty cache) is bounded by decoding: one parallel pass of
    decoding every pair (and, for HR-only folders, making its LR) is timed, and
    the patches that pass yields are divided by that time.  Warm is end to end:
    batches from the full pipeline once every image sits in the cache.
    """
    import data

    per_pass = sum(patches_per_image or max(1, (h // 4) * (w // 4) // (2 * lr_patch * lr_patch))
                   for h, w in hr_sizes(source))
    pairs = data.pair_dataset(source, "train", holdout=False)
    started = time.perf_counter()
    for _ in pairs.prefetch(8):
        pass
    cold = per_pass / (time.perf_counter() - started)
    before = rss_gib()
    batches = iter(data.training_dataset(pairs, patches_per_image=patches_per_image))
    for _ in range(max(1, per_pass // batch) + 8192 // batch):   # fill cache and shuffle buffer
        next(batches)
    started = time.perf_counter()
    for _ in range(warm_batches):
        next(batches)
    warm = warm_batches * batch / (time.perf_counter() - started)
    return cold, warm, rss_gib() - before


def degradation_rate(batches=60, batch=16, patch=128):
    """Warm patches/s of the training pipeline with Real-ESRGAN's degradations."""
    import data
    from superres import degradations

    pairs = data.pair_dataset(os.path.join(SHARED_DATA, "train"), "train", holdout=False)
    stream = iter(data.training_dataset(pairs, patch, batch_size=batch,
                                        degradation=degradations.chosen("realesrgan")))
    for _ in range(20):   # the first batch waits for the cache and the shuffle buffer
        next(stream)
    started = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch / (time.perf_counter() - started)


def degradation_table(steps):
    print_cpu()
    edsr = {"blocks": 12, "width": 32}
    consumed = {precision: model_rate("edsr", edsr, steps, precision)
                for precision in ("float32", "xla")}
    delivered = degradation_rate()
    for precision, rate in consumed.items():
        print(f"training step consumes: edsr 12x32, 128 px, {precision}: {rate:.1f} patches/s")
    print(f"pipeline delivers (realesrgan degradations, warm): {delivered:.1f} patches/s "
          f"({delivered / max(consumed.values()):.1f}x the faster step)")
    print("Both share the same 2 cores while training: the pipeline's share of the CPU is "
          f"about {max(consumed.values()) / delivered:.0%} of it at the faster step's pace.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="DIV2K-sized images to make")
    parser.add_argument("--steps", type=int, default=150, help="training steps to time")
    parser.add_argument("--degradation", action="store_true",
                        help="only the realistic-degradation pipeline against edsr's step")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    if args.degradation:
        degradation_table(args.steps)
        return 0
    print_cpu()
    consumed = {w: training_rate(w, args.steps) for w in ((64, 32), (128, 64))}
    for widths, rate in consumed.items():
        print(f"training step consumes: three_conv {widths[0]}/{widths[1]}: {rate:.0f} patches/s")
    sources = []
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        make_div2k_like(root, args.images)
        print(f"made {args.images} DIV2K-sized pairs (2040x1400) in "
              f"{time.perf_counter() - started:.0f} s")
        sources.append((f"DIV2K-sized x{args.images}", root))
        if os.path.isdir(os.path.join(SHARED_DATA, "train")):
            sources.append(("shared/data/train (T91+BSD200)", os.path.join(SHARED_DATA, "train")))
        print(f"\n{'source':<32}{'patches/visit':>14}{'cold p/s':>10}{'warm p/s':>10}"
              f"{'cold/64-32':>11}{'warm/64-32':>11}{'cold/128-64':>12}{'mem GiB':>8}")
        for name, source in sources:
            for per_visit in (8, 0):
                cold, warm, memory = pipeline_rate(source, per_visit)
                label = "auto" if per_visit == 0 else str(per_visit)
                print(f"{name:<32}{label:>14}{cold:>10.0f}{warm:>10.0f}"
                      f"{cold / consumed[(64, 32)]:>10.1f}x{warm / consumed[(64, 32)]:>10.1f}x"
                      f"{cold / consumed[(128, 64)]:>11.1f}x{memory:>8.2f}")
    print("\nratios = pipeline patches/s / training-step patches/s (target: >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
