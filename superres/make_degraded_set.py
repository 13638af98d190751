"""Turn a folder of HR images into a fixed test set under realistic degradation.

    python -m superres.make_degraded_set ../shared/data/B100 -o runs/degraded/B100 --seed 0
    python evaluate.py --model edsr --data runs/degraded/B100

Writes OUT/HR/NAME.png (each image cropped to a multiple of the scale) and
OUT/LR_realesrgan_X4/NAME.png, its LR by Real-ESRGAN's second-order model
(superres/degradations.py) with the published ranges, or those of a config file's
[realesrgan] table.  Each image's draws come from the seed and its name, so the
same command rebuilds the same set, and adding an image changes no other.
OUT/degradation.json records the seed and the settings.
"""

import dataclasses
import json
import os
import sys
import zlib

from superres.messages import ArgumentParser, UsageError


def parse_args(argv=None):
    parser = ArgumentParser(description="Make a degraded x4 test set (HR/ + LR_*_X4/) "
                                                 "from a folder of HR images.")
    parser.add_argument("source", help="a folder of HR images, or a benchmark folder (its HR/)")
    parser.add_argument("-o", "--out", required=True, help="the new set's folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the degradations")
    parser.add_argument("--config", default=None, metavar="FILE.toml",
                        help="take the degradation ranges from this file's [realesrgan] table "
                             "(e.g. a training recipe); default: Real-ESRGAN's published ones")
    parser.add_argument("--scale", type=int, default=4, help="downscaling factor")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an existing, non-empty --out")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    return args


def degradation_settings(config):
    """degradations.Settings from a config file's [realesrgan] table (or the defaults)."""
    from superres import degradations
    from superres.training import settings

    if config is None:
        return degradations.Settings()
    try:
        table, _ = settings.read_config(config)
        return degradations.settings_from(table.get("realesrgan", {}))
    except ValueError as error:
        raise UsageError(f"--config {config}: {error}" if not str(error).startswith("--config")
                         else str(error)) from None


def image_seed(seed, name):
    """The stateless seed pair of one image: the set's seed and a hash of its name."""
    return [seed, zlib.crc32(name.encode())]


def make_set(source, out, seed=0, config=None, scale=4, overwrite=False):
    """Write the set; returns the number of images."""
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from superres import degradations, images, sources
    from superres.fileio import can_write_in, write_text

    folder = os.path.join(source, "HR") if os.path.isdir(os.path.join(source, "HR")) else source
    if not os.path.isdir(folder):
        raise UsageError(f"{source}: no such folder")
    paths = images.list_images(folder)
    if not paths:
        raise UsageError(f"{folder}: no images found in this folder")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise UsageError(f"{out} is not empty; pass --overwrite to write into it")
    if not can_write_in(out):
        raise UsageError(f"cannot write in {out} (read-only or no permission)")
    settings = degradation_settings(config)
    least = degradations.smallest_hr_side(settings, scale)
    for path, (width, height) in sources.check_images(paths).items():
        if min(width - width % scale, height - height % scale) < least:
            raise UsageError(f"{path} is {width}x{height}: the degradations need at least "
                             f"{least} px a side")
    degrade = tf.function(lambda hr, s: degradations.degrade(hr, s, settings, scale),
                          input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                           tf.TensorSpec([2], tf.int64)])
    lr_dir = os.path.join(out, f"LR_realesrgan_X{scale}")
    for path in tqdm(paths, desc="degrading", unit="img", leave=False, disable=None):
        name = os.path.splitext(os.path.basename(path))[0]
        image = images.read_image(path)
        hr = images.to_uint8(image.rgb)
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        lr = degrade(tf.constant(hr), tf.constant(image_seed(seed, name), tf.int64)).numpy()
        images.write_png(os.path.join(out, "HR", f"{name}.png"), hr[..., 0] if image.gray else hr)
        images.write_png(os.path.join(lr_dir, f"{name}.png"), np.asarray(lr))
    write_text(os.path.join(out, "degradation.json"), json.dumps(
        {"source": source, "seed": seed, "scale": scale, "config": config,
         "realesrgan": dataclasses.asdict(settings), "command": sys.argv}, indent=2) + "\n")
    return len(paths)


def main(argv=None):
    args = parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import images, sources

    try:
        count = make_set(args.source, args.out, args.seed, args.config, args.scale,
                         args.overwrite)
    except (UsageError, images.ImageReadError, sources.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} images: {args.out}/HR and {args.out}/LR_realesrgan_X{args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
