"""Draw the README's model comparison: one crop of a benchmark image as bicubic (MATLAB
imresize), each model's output and the HR original, each crop titled with its PSNR-Y.

    python docs/figures/make_compare_models.py ../shared/data/Set14 --image zebra \
        --models three_conv edsr -o docs/figures/compare_models.png

The crop is the LR window with the most detail unless --crop TOP,LEFT,SIZE (LR pixels) is
given. Models are shipped names or .h5 / exported files, as for predict.py --model.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("folder", help="a benchmark folder with HR/ and LR_bicubic_X4/")
    parser.add_argument("--image", default="zebra", help="image name (without .png)")
    parser.add_argument("--models", nargs="+", default=["three_conv"],
                        help="shipped model names or model files, in panel order")
    parser.add_argument("--crop", default=None, help="TOP,LEFT,SIZE of the crop in LR pixels")
    parser.add_argument("-o", "--output", default="docs/figures/compare_models.png")
    return parser.parse_args(argv)


def crop_psnr(hr, test, scale):
    """PSNR-Y of a crop, shaving the scale-pixel border as the benchmark scores do."""
    from superres import metrics

    return metrics.psnr(metrics.shave(metrics.rgb_to_y(hr), scale),
                        metrics.shave(metrics.rgb_to_y(test), scale))


def panels(folder, name, models, crop=None, scale=4):
    """[(title, uint8 crop)] for bicubic, each model and HR."""
    from superres import bicubic, images, inference
    from superres.upscaling import upscale
    from superres.figures import busiest_window

    hr = images.to_uint8(images.read_image(os.path.join(folder, "HR", f"{name}.png")).rgb)
    lr = images.to_uint8(images.read_image(
        os.path.join(folder, f"LR_bicubic_X{scale}", f"{name}.png")).rgb)
    top, left, size = crop or (*busiest_window(lr, 48), 48)
    window = np.s_[top * scale:(top + size) * scale, left * scale:(left + size) * scale]
    outputs = [("bicubic", bicubic.upscale(lr, scale))]
    for model in models:
        path = inference.resolve_model_path(model)
        outputs.append((inference.describe(path).split(" ")[0],
                        upscale(lr, inference.load_model(path), dtype=np.uint8)))
    result = [(f"{title}: {crop_psnr(hr[window], out[window], scale):.2f} dB", out[window])
              for title, out in outputs]
    return result + [("HR", hr[window])]


def draw(figure_panels, title, path):
    from superres import figures

    fig, axes = figures.subplots(1, len(figure_panels), figsize=(3.2 * len(figure_panels), 3.6))
    for axis, (label, crop) in zip(axes, figure_panels):
        axis.imshow(crop, interpolation="nearest")
        axis.set_title(label, fontsize=10)
        axis.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    figures.save(fig, path)


def main(argv=None):
    args = parse_args(argv)
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import images, inference

    try:
        figure_panels = panels(args.folder, args.image, args.models, crop)
    except (images.ImageReadError, inference.ModelError) as error:
        sys.exit(f"error: {error}")
    draw(figure_panels, f"{os.path.basename(os.path.normpath(args.folder))}/{args.image}, x4, "
                        "PSNR-Y of the crop", args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
