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

from superres.fileio import can_write_in
from superres.limits import MAX_INPUT_MP
from superres.inference import DESCRIPTIONS, PHOTO_MODELS, RUNTIME_HELP, RUNTIMES
from superres.messages import (ArgumentParser, interrupted, raise_if_terminated, some,
                               stop_on_sigterm, terminated_intact, UsageError)

MIN_TILE = 32


def parse_args(argv=None):
    parser = ArgumentParser(
        description="Upscale images x4 (or the model's scale). Writes PNG unless -o "
                    "names .jpg, .webp or .tif.",
    )
    add = parser.add_argument
    add("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    add("-o", "--output", default=None,
        help="output file (one input) or folder (several inputs or a folder); "
             "default: NAME_x4.png beside each input (in the current folder where the "
             "input's folder is read-only)")
    add("--model", default=None,
        help="a model file, or a name: "
             + "; ".join(f"{name}: {line}" for name, line in DESCRIPTIONS.items())
             + f" (default: {PHOTO_MODELS[0]}; Real-ESRGAN's are converted on first use)")
    add("--tile", type=int, default=None,
        help="LR tile side in pixels (bounds memory; the result does not depend on it); "
             "0 runs the whole image at once; default: 512, or 28 receptive radii for deep "
             "models, whose overlap would otherwise cost more; tiles are split evenly")
    add("--max-pixels", type=float, default=MAX_INPUT_MP, metavar="MP",
        help=f"refuse, before decoding, an input of more than this many megapixels (default "
             f"{MAX_INPUT_MP:g}: its x4 output is 16 times that); 0 = no limit")
    add("--overwrite", action="store_true", help="replace existing output files")
    add("--skip-existing", action="store_true",
        help="leave inputs whose output exists alone (continue an interrupted folder run)")
    add("--bfloat16", action="store_true",
        help="compute in bfloat16: faster on CPUs with AVX512_BF16/AMX, slightly less exact "
             "(docs/performance.md)")
    add("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    add("--compare", action="store_true",
        help="also write NAME_x4_compare.png: nearest, bicubic and model side by side, "
             "with the same zoomed crop")
    args = parser.parse_args(argv)
    if args.overwrite and args.skip_existing:
        parser.error("--overwrite and --skip-existing exclude each other")
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
        # A read-only folder (a dataset's) gets no outputs: they go to the current folder.
        places = {}
        for folder in sorted({os.path.dirname(f) for f in files}):
            places[folder] = folder if can_write_in(folder or ".") else ""
            if places[folder] != folder:
                print(f"note: {folder or '.'} is read-only; its inputs' outputs go in the "
                      f"current folder ({os.getcwd()})", file=sys.stderr)
        targets = [os.path.join(places[os.path.dirname(f)], stem + suffix)
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
            raise UsageError(f"cannot write in {folder} (read-only or no permission); "
                             "choose another place with -o")
    remove_killed_writes(targets)


def remove_killed_writes(targets):
    """Temporary files that a killed earlier run left while writing these targets."""
    from superres.fileio import remove_leftover_temps

    for target in targets:
        stem = os.path.splitext(os.path.basename(target))[0]
        remove_leftover_temps(os.path.dirname(os.path.abspath(target)),
                              bases=(stem, stem + "_compare"))


def predict(args):
    """Upscale every input; returns the number of inputs that failed."""
    from tqdm import tqdm

    from superres import images, inference, limits
    from superres.upscaling import read_checked, upscale_to_file

    model_path = inference.resolve_model_path(
        inference.photo_model() if args.model is None else args.model)
    net = inference.load_model(model_path, bfloat16=args.bfloat16, runtime=args.runtime)
    print(f"model: {inference.describe(model_path, net)}")
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
            image = read_checked(net, source, target, tile, args.max_pixels)
        except limits.DiskTooFull as error:
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
            def on_tile(count=1):
                raise_if_terminated()   # a SIGTERM that TensorFlow's C code swallowed
                tile_progress.update(count)

            try:
                shape, note = upscale_to_file(net, image, target, tile,
                                              compare if args.compare else None,
                                              on_tile, replace=args.overwrite)
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
        with terminated_intact():
            failures = predict(args)
    except (UsageError, inference.ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return interrupted(error, "no output was left half-written")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
