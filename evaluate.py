"""Score a model against bicubic interpolation, as the super-resolution papers do.

    python evaluate.py --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/B100

For every image the given LR is upscaled by the model and by bicubic
(MATLAB imresize), both are rounded to 8 bits as a saved PNG would be, and
both are scored against HR: PSNR/SSIM on the Y channel (ITU-R BT.601, as
MATLAB rgb2ycbcr) with ``scale`` pixels shaved from every border.
"""

import csv
import json
import os
import sys

import numpy as np

from superres.fileio import can_write_in
from superres.inference import DESCRIPTIONS, RUNTIME_HELP, RUNTIMES
from superres.messages import ArgumentParser, some

CSV_FIELDS = ("set", "name", "bicubic_psnr", "bicubic_ssim", "model_psnr", "model_ssim",
              "bicubic_psnr_rgb", "model_psnr_rgb", "bicubic_niqe", "model_niqe")


def parse_args(argv=None):
    parser = ArgumentParser(
        description="PSNR/SSIM (Y channel, scale-pixel shave) of a model and of bicubic "
                    "upscaling, one row per data source.",
    )
    add = parser.add_argument
    add("--model", default=None,
        help="a model .h5 file, or a model's name: " + ", ".join(DESCRIPTIONS)
             + " (README, Models); default: the strongest shipped one on clean bicubic inputs (edsr)")
    add("--data", nargs="+", required=True,
        help="one or more sources: a benchmark folder (HR/ + LR_bicubic_X4/), a folder of HR "
             "images (LR made by MATLAB-style bicubic), a local DIV2K root or 'div2k' "
             "(validation split), or 'demo'")
    add("--limit", type=int, default=None, help="score only the first N images of each source")
    add("--rgb", action="store_true", help="also report PSNR on RGB (no Y conversion)")
    add("--niqe", action="store_true",
        help="also report NIQE (no-reference naturalness, lower is better) of the outputs")
    add("--no-reference", action="store_true",
        help="the --data folders hold model inputs with no ground truth (real photos): "
             "score the outputs, and bicubic's, by NIQE alone")
    add("--json", default=None, help="write all scores to this JSON file")
    add("--csv", default=None, help="write per-image scores to this CSV file")
    add("--save-images", default=None, metavar="DIR",
        help="write each SR output as DIR/<set>/<name>.png")
    add("--overwrite", action="store_true", help="replace existing output files")
    add("--bfloat16", action="store_true", help="run the model in bfloat16 (see predict.py)")
    add("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    add("--tfds-dir", default=None, help="tensorflow-datasets data_dir for --data div2k")
    args = parser.parse_args(argv)
    if args.no_reference and args.rgb:
        parser.error("--rgb needs ground truth; --no-reference scores the outputs by NIQE")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1 (leave it out to score every image)")
    return args


def score_image(net, hr, lr, scale, gray=False, with_rgb=False, with_niqe=False):
    """Scores of one image; returns (row dict, output image as it would be saved)."""
    from superres import bicubic, metrics
    from superres.upscaling import upscale

    output = upscale(lr, net, dtype=np.uint8)
    bicubic_output = bicubic.upscale(lr, scale)
    if gray:
        # Grayscale files are scored as they are, on their one channel (no Y conversion);
        # both upscales become gray by the same BT.601 luma (an RGB LR of a gray HR, as a
        # degraded set may hold, must not put bicubic on one channel and the model on luma).
        hr = hr[..., 0]
        bicubic_output = metrics.rgb_to_gray(bicubic_output)
        output = metrics.rgb_to_gray(output)
    row = {}
    row["bicubic_psnr"], row["bicubic_ssim"] = metrics.psnr_ssim_y(hr, bicubic_output, scale)
    row["model_psnr"], row["model_ssim"] = metrics.psnr_ssim_y(hr, output, scale)
    if with_rgb:
        row["bicubic_psnr_rgb"] = metrics.psnr_rgb(hr, bicubic_output, scale)
        row["model_psnr_rgb"] = metrics.psnr_rgb(hr, output, scale)
    if with_niqe:
        row["bicubic_niqe"], row["model_niqe"] = niqe_or_nan(bicubic_output), niqe_or_nan(output)
    return row, output


def niqe_or_nan(image):
    """NIQE, or NaN for an image smaller than NIQE's two 96 x 96 blocks (said once per set)."""
    from superres import metrics

    try:
        return metrics.niqe_of(image)
    except ValueError:
        return float("nan")


def score_input(net, lr, scale):
    """NIQE of the model's and bicubic's upscales of an input with no ground truth."""
    from superres import bicubic
    from superres.upscaling import upscale

    output = upscale(lr, net, dtype=np.uint8)
    return {"bicubic_niqe": niqe_or_nan(bicubic.upscale(lr, scale)),
            "model_niqe": niqe_or_nan(output)}, output


def input_images(source, limit=None, scale=4):
    """(name, uint8 RGB) of every image in a folder of model inputs (recursive), less the
    earlier results of predict.py in it (images.earlier_results), named in a note."""
    from superres import images, sources

    if not os.path.isdir(source):
        raise sources.DataError(f"--data {source!r}: no such folder")
    paths, ours = images.earlier_results(images.list_images(source, recursive=True), scale)
    if ours:
        names = [os.path.relpath(p, source) for p in ours]
        print(f"note: {source}: left out {len(ours)} earlier result(s) of predict.py, each "
              f"beside its input ({some(names)})",
              file=sys.stderr)
    paths = paths[:limit]
    if not paths:
        raise sources.DataError(f"no images found in {source}")
    sources.check_images(paths)

    def read():
        for path in paths:
            rgb = images.to_uint8(images.read_image(path).rgb)
            yield {"name": os.path.splitext(os.path.relpath(path, source))[0], "lr": rgb}

    return read(), len(paths)


def source_pairs(source, scale, limit=None, tfds_dir=None):
    """The image pairs of one --data source (its validation split where it has splits),
    read with NumPy (only tensorflow-datasets' DIV2K needs TensorFlow), and how many."""
    import itertools

    from superres import sources

    files = sources.plan(source, "validation", scale, holdout=False)
    if files.kind != "tfds":
        count = len(files.pairs) + len(files.hr) + len(files.demo[0])
        return itertools.islice(sources.read_pairs(files, scale), limit), min(count, limit or count)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import data

    pairs = data.pair_dataset(source, "validation", scale, holdout=False, tfds_data_dir=tfds_dir)
    return (pairs.take(limit) if limit else pairs).as_numpy_iterator(), limit


def evaluate_source(net, source, scale, limit=None, with_rgb=False, save_dir=None,
                    tfds_dir=None, with_niqe=False, no_reference=False):
    """Per-image rows for one --data source (its validation split where it has splits;
    with ``no_reference`` a folder of inputs without ground truth)."""
    from tqdm import tqdm

    from superres import sources
    from superres.images import write_png

    set_name = sources.source_name(source)
    rows = []
    pairs, count = input_images(source, limit, scale) if no_reference else \
        source_pairs(source, scale, limit, tfds_dir)
    # disable=None: a bar on a terminal, nothing in a log (the table is printed at the end).
    for item in tqdm(pairs, desc=set_name, unit="img", total=count, leave=False,
                     disable=None):
        name = item["name"].decode() if isinstance(item["name"], bytes) else item["name"]
        try:
            if no_reference:
                row, output = score_input(net, item["lr"], scale)
            else:
                row, output = score_image(net, item["hr"], item["lr"], scale, bool(item["gray"]),
                                      with_rgb, with_niqe)
        except ValueError as error:    # e.g. an image too small for SSIM's window
            image = item["lr"] if no_reference else item["hr"]
            raise sources.DataError(f"{os.path.join(source, name)}: "
                                    f"{'LR' if no_reference else 'HR'} {image.shape[1]}x"
                                    f"{image.shape[0]} is too small to score ({error})") from None
        rows.append({"set": set_name, "name": name, **row})
        if save_dir:
            write_png(os.path.join(save_dir, set_name, f"{name}.png"), output)
    if not rows:
        raise sources.DataError(f"no images in {source}")
    return set_name, rows


def summarize(rows):
    """Mean of every score over a set's images (NIQE over those large enough for it)."""
    def mean(values):
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    return {key: mean([r[key] for r in rows]) for key in rows[0] if key not in ("set", "name")}


def format_table(results, scale):
    from superres import metrics

    first = next(iter(results.values()))["mean"]
    reference, with_rgb, with_niqe = ("model_psnr" in first, "model_psnr_rgb" in first,
                                      "model_niqe" in first)
    header = f"{'set':<12}{'n':>5}"
    if reference:
        header += f"  {'bicubic PSNR/SSIM':>18}  {'model PSNR/SSIM':>18}  {'gain dB':>7}"
    if with_rgb:
        header += f"  {'RGB PSNR bic/model':>19}"
    if with_niqe:
        header += f"  {'NIQE bic/model':>15}"
    lines = [header, "-" * len(header)]
    for set_name, result in results.items():
        mean = result["mean"]
        line = f"{set_name:<12}{result['n']:>5}"
        if reference:
            line += (f"  {mean['bicubic_psnr']:>9.2f} / {mean['bicubic_ssim']:.4f}  "
                     f"{mean['model_psnr']:>9.2f} / {mean['model_ssim']:.4f}  "
                     f"{mean['model_psnr'] - mean['bicubic_psnr']:>+7.2f}")
        if with_rgb:
            line += f"  {mean['bicubic_psnr_rgb']:>9.2f} / {mean['model_psnr_rgb']:.2f}"
        if with_niqe:
            line += f"  {mean['bicubic_niqe']:>7.3f} / {mean['model_niqe']:.3f}"
        lines.append(line)
    if reference:
        lines.append(f"x{scale}. " + metrics.CONVENTION.format(scale=scale) + ".")
    if with_niqe:
        lines.append(metrics.NIQE_CONVENTION + ".")
    return "\n".join(lines)


def to_json(results, scale):
    from superres import metrics

    sets = {}
    for set_name, result in results.items():
        mean = result["mean"]
        sets[set_name] = {"n": result["n"], "bicubic": {}, "model": {},
                          "images": [{k: v for k, v in row.items() if k != "set"}
                                     for row in result["rows"]]}
        for key, value in mean.items():
            method, measure = key.split("_", 1)
            sets[set_name][method][measure] = value
    return {"scale": scale, "convention": metrics.CONVENTION.format(scale=scale), "sets": sets}


class OutputExists(Exception):
    """An output the user already has, or one that cannot be written; the message
    is for the user."""


def check_outputs_free(args):
    """Before any scoring: refuse to overwrite a user's files unless --overwrite is
    given, and refuse outputs that could not be written at the end."""
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path and os.path.isdir(path):
            raise OutputExists(f"{flag} {path} is a folder; give a file name")
        if path and os.path.exists(path) and not args.overwrite:
            raise OutputExists(f"{path} exists; pass --overwrite to replace it")
        if path and not can_write_in(os.path.dirname(os.path.abspath(path))):
            raise OutputExists(f"{flag} {path}: cannot write there (read-only or no permission)")
    if args.save_images and os.path.isdir(args.save_images) and os.listdir(args.save_images) \
            and not args.overwrite:
        raise OutputExists(f"{args.save_images} is not empty; pass --overwrite to write into it")
    if args.save_images and not can_write_in(args.save_images):
        raise OutputExists(f"--save-images {args.save_images}: cannot write there "
                           "(read-only or no permission)")


def evaluate(args):
    from superres import inference
    from superres.fileio import atomic_path, write_text

    check_outputs_free(args)
    model_path = inference.resolve_model_path(args.model)
    net = inference.load_model(model_path, bfloat16=args.bfloat16, runtime=args.runtime)
    print(f"model: {inference.describe(model_path, net)}")
    scale = inference.model_scale(net)
    if scale < 2:
        raise inference.ModelError(f"{model_path} does not upscale (its output is x{scale} its "
                                   "input); evaluate.py scores x2 and larger models")
    results = {}
    for source in args.data:
        set_name, rows = evaluate_source(net, source, scale, args.limit, args.rgb,
                                         args.save_images, args.tfds_dir, args.niqe,
                                         args.no_reference)
        results[set_name] = {"n": len(rows), "rows": rows, "mean": summarize(rows)}
        small = sum(np.isnan(r.get("model_niqe", 0.0)) for r in rows)
        if small:
            print(f"note: {set_name}: {small} of {len(rows)} outputs are smaller than NIQE's "
                  "two 96x96 blocks and have no NIQE; its mean is over the others")
    print(format_table(results, scale))
    if args.json:
        write_text(args.json, json.dumps(to_json(results, scale), indent=2) + "\n")
    if args.csv:
        with atomic_path(args.csv) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
                writer.writeheader()
                for result in results.values():
                    writer.writerows(result["rows"])
    return results


def main(argv=None):
    """Scores; TensorFlow is imported only for a model or data source that needs it
    (a .h5 run by Keras, tensorflow-datasets' DIV2K)."""
    args = parse_args(argv)
    from superres import inference, sources
    from superres.messages import first_line

    try:
        evaluate(args)
    except (sources.DataError, inference.ModelError, OutputExists) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(error, tf.errors.OpError):
            raise
        print(f"error: {first_line(error.message)}", file=sys.stderr)  # an image inside tf.data
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
