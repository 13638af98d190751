"""Draw the README's real-photo comparison: a crop of each of some real low-resolution images
(no ground truth) upscaled x4 by bicubic and by each model, shown at 100% (one output pixel per
screen pixel).

    python docs/figures/make_real_photos.py ../shared/data/RealSRSet \
        --images dog dped_crop00061 foreman ppt3 \
        --models photo photo_plus realesrgan_x4plus -o docs/figures/students.png

Each crop is the LR window with the most detail unless --crop NAME:TOP,LEFT is given (LR
pixels). Each panel is titled with the NIQE of the whole output (lower looks more natural).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

SCALE = 4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("folder", help="a folder of low-resolution images")
    parser.add_argument("--images", nargs="+",
                        default=["dog", "dped_crop00061", "foreman", "ppt3"],
                        help="image names (without extension), one row each")
    parser.add_argument("--models", nargs="+",
                        default=["photo", "photo_plus", "realesrgan_x4plus"],
                        help="model names or model files, in column order")
    parser.add_argument("--size", type=int, default=64, help="crop size in LR pixels")
    parser.add_argument("--crop", action="append", default=[],
                        help="NAME:TOP,LEFT of an image's crop in LR pixels (repeatable)")
    parser.add_argument("-o", "--output", default="docs/figures/students.png")
    return parser.parse_args(argv)


def read_lr(folder, name):
    from superres import images

    matches = [f for f in images.list_images(folder)
               if os.path.splitext(os.path.basename(f))[0] == name]
    if not matches:
        raise images.ImageReadError(f"{folder}: no image named {name}")
    return images.to_uint8(images.read_image(matches[0]).rgb)


def upscaled_crop(net, lr, window):
    """(whole-image NIQE, the crop of the output) of ``net`` (None: bicubic) on ``lr``."""
    from superres import bicubic, metrics
    from superres.upscaling import upscale

    out = bicubic.upscale(lr, SCALE) if net is None else upscale(lr, net, dtype=np.uint8)
    return metrics.niqe_of(out), out[window]


def rows(args, crops):
    from superres import inference
    from superres.figures import busiest_window

    def window(lr, name):
        top, left = crops.get(name) or busiest_window(lr, args.size)
        return np.s_[top * SCALE:(top + args.size) * SCALE,
                     left * SCALE:(left + args.size) * SCALE]

    nets = [(m, inference.load_model(inference.resolve_model_path(m))) for m in args.models]
    result = []
    for name in args.images:
        lr = read_lr(args.folder, name)
        w = window(lr, name)
        panels = []
        for title, net in [("bicubic", None)] + nets:
            niqe, crop = upscaled_crop(net, lr, w)
            panels.append((f"{name}: {title}\nNIQE {niqe:.2f}", crop))
        result.append(panels)
    return result


def draw(grid, title, path):
    from superres import figures

    columns = max(len(r) for r in grid)
    fig, axes = figures.subplots(len(grid), columns, figsize=(3.0 * columns, 3.3 * len(grid)),
                                 squeeze=False)
    for row, panels in zip(axes, grid):
        for axis in row:
            axis.axis("off")
        for axis, (label, crop) in zip(row, panels):
            axis.imshow(crop, interpolation="nearest")
            axis.set_title(label, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    figures.save(fig, path)


def main(argv=None):
    args = parse_args(argv)
    crops = {}
    for spec in args.crop:
        name, _, place = spec.partition(":")
        crops[name] = tuple(int(v) for v in place.split(","))
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import images, inference

    try:
        grid = rows(args, crops)
    except (images.ImageReadError, inference.ModelError) as error:
        sys.exit(f"error: {error}")
    draw(grid, f"{os.path.basename(os.path.normpath(args.folder))}, x4, crops at 100%; "
               "NIQE of the whole output", args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
