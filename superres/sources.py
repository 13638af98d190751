"""Which image files a --data value names, and reading them without TensorFlow.

One string, ``--data`` in every CLI, names a source:

* ``div2k``: tensorflow-datasets ``div2k/bicubic_x4`` (read by data.py).
* a local DIV2K root in the official layout (``DIV2K_train_HR/0001.png`` with
  ``DIV2K_train_LR_bicubic/X4/0001x4.png``, ``DIV2K_valid_HR`` likewise).
* a benchmark set folder: ``HR/`` and ``LR_bicubic_X4/`` (or one other ``LR_*_X4/``,
  e.g. a degraded set) with matching names.
* any folder of HR images (searched recursively): HR is cropped to a multiple
  of the scale and LR is made by MATLAB-compatible bicubic (superres/bicubic.py).
* ``demo``: photographs that ship inside scikit-image, so that training runs on
  a fresh machine with no download.

``plan`` lists a source's files; ``read_pairs`` reads them as NumPy pairs
(evaluate.py); data.py makes tf.data pipelines of the same pairs.
"""

import dataclasses
import os
import sys

import numpy as np

from superres.images import list_images
from superres.messages import some

# Real photographs shipped in scikit-image's wheel (no download), split so the
# validation images are never trained on.
DEMO_TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "retina",
              "immunohistochemistry", "motorcycle_left")
DEMO_VALIDATION = ("chelsea", "camera")

SPLITS = ("train", "validation")


class DataError(Exception):
    """A data source that cannot be used; the message is meant for the user."""


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _div2k_local_pairs(root, split, scale):
    tag = "train" if split == "train" else "valid"
    hr_dir = os.path.join(root, f"DIV2K_{tag}_HR")
    lr_dir = os.path.join(root, f"DIV2K_{tag}_LR_bicubic", f"X{scale}")
    if not os.path.isdir(hr_dir):
        return None
    pairs = []
    for hr_path in list_images(hr_dir):
        name = _stem(hr_path)
        lr_path = os.path.join(lr_dir, f"{name}x{scale}{os.path.splitext(hr_path)[1]}")
        if not os.path.isfile(lr_path):
            raise DataError(f"{hr_path} has no LR image: expected {lr_path}")
        pairs.append((name, hr_path, lr_path))
    return pairs


def lr_folder(folder, scale):
    """A benchmark folder's LR folder: LR_bicubic_X{scale}, else the one LR_*_X{scale}
    (a degraded set, e.g. LR_realesrgan_X4 from superres/make_degraded_set.py); None if neither."""
    bicubic = os.path.join(folder, f"LR_bicubic_X{scale}")
    if os.path.isdir(bicubic):
        return bicubic
    found = sorted(f for f in os.listdir(folder) if f.startswith("LR_")
                   and f.endswith(f"_X{scale}") and os.path.isdir(os.path.join(folder, f)))
    if len(found) > 1:
        raise DataError(f"{folder} has several LR folders ({', '.join(found)}); keep one")
    return os.path.join(folder, found[0]) if found else None


def _benchmark_pairs(folder, scale):
    hr_dir = os.path.join(folder, "HR")
    lr_dir = lr_folder(folder, scale)
    lr_by_stem = {_stem(p): p for p in list_images(lr_dir)}
    pairs = []
    for hr_path in list_images(hr_dir):
        name = _stem(hr_path)
        if name not in lr_by_stem:
            raise DataError(f"{hr_path} has no LR image in {lr_dir}")
        pairs.append((name, hr_path, lr_by_stem.pop(name)))
    if lr_by_stem:
        names = sorted(os.path.basename(p) for p in lr_by_stem.values())
        print(f"note: {lr_dir}: left out {len(names)} LR image(s) with no HR image in {hr_dir} "
              f"({some(names)})", file=sys.stderr)
    return pairs


def source_kind(data, scale=4, flag="--data"):
    """Classify a --data value: 'tfds', 'demo', 'div2k_local', 'benchmark' or 'hr_folder'."""
    if data == "div2k":
        return "tfds"
    if data == "demo":
        return "demo"
    if not os.path.exists(data):
        raise DataError(f"{flag} {data!r}: no such folder (expected 'div2k', 'demo' or a folder)")
    if not os.path.isdir(data):
        raise DataError(f"{flag} {data!r} is a file; give a folder of images")
    if any(os.path.isdir(os.path.join(data, f"DIV2K_{t}_HR")) for t in ("train", "valid")):
        return "div2k_local"
    if os.path.isdir(os.path.join(data, "HR")) and lr_folder(data, scale):
        return "benchmark"
    return "hr_folder"


def source_name(data):
    """Short name for tables: the folder name, or 'div2k' / 'demo'."""
    if data in ("div2k", "demo"):
        return data
    return os.path.basename(os.path.normpath(data))


def demo_images(split):
    import skimage.data

    names = DEMO_TRAIN if split == "train" else DEMO_VALIDATION
    images = []
    for name in names:
        if name == "motorcycle_left":
            image = skimage.data.stereo_motorcycle()[0]
        else:
            image = getattr(skimage.data, name)()
        gray = image.ndim == 2
        if gray:
            image = np.repeat(image[..., None], 3, axis=-1)
        images.append((np.ascontiguousarray(image[..., :3], dtype=np.uint8), gray))
    return list(names), images


def _holdout(items, split, every=10):
    """Deterministic split of a source with no splits of its own: every
    ``every``-th item (sorted order) is validation, the rest training."""
    if len(items) < 2:
        return items
    val = items[every // 2::every] or items[-1:]
    if split == "validation":
        return val
    return [i for i in items if i not in val]


def check_images(paths):
    """Stop on the first file that is not a readable image, naming it (Pillow reads
    headers and, for PNG, checks every chunk's CRC: a fraction of a decode's cost).
    Returns each path's (width, height)."""
    from superres import images

    sizes = {}
    for path in paths:
        try:
            sizes[path] = images.image_size(path, verify=True)
        except images.ImageReadError as error:
            raise DataError(f"{error}; remove or replace it") from None
    return sizes


def check_pairs(pairs, scale):
    """Every HR must be ``scale`` times its LR (up to a remainder below ``scale``)."""
    sizes = check_images([path for pair in pairs for path in pair[1:]])
    for _, hr_path, lr_path in pairs:
        (hr_w, hr_h), (lr_w, lr_h) = sizes[hr_path], sizes[lr_path]
        if not (0 <= hr_w - scale * lr_w < scale and 0 <= hr_h - scale * lr_h < scale):
            raise DataError(f"{lr_path} is {lr_w}x{lr_h}, not 1/{scale} of its HR {hr_path} "
                            f"({hr_w}x{hr_h})")


def _shard(items, shard):
    """Every ``count``-th item from ``index`` on: one input pipeline's share."""
    if shard is None:
        return items
    count, index = shard
    return items[index::count]


@dataclasses.dataclass
class Plan:
    """What a source's split holds: ``pairs`` of (name, HR path, LR path), or ``hr`` of
    (name, HR path) whose LR is made by bicubic, or ``demo`` (names, images), or, for
    tensorflow-datasets, nothing listed here (kind "tfds")."""
    kind: str
    pairs: list = dataclasses.field(default_factory=list)
    hr: list = dataclasses.field(default_factory=list)
    demo: tuple = ((), ())


def plan(data, split="train", scale=4, holdout=True, flag="--data", shard=None):
    """The files of one split of ``data``, checked readable (and HR = scale x LR).

    For sources with no splits of their own (benchmark and HR folders),
    ``holdout=True`` keeps every 10th image for "validation" and the rest for
    "train"; ``holdout=False`` gives every image whatever the split.
    ``shard=(count, index)`` keeps every count-th image from index on, chosen
    before anything is read, so each of ``count`` input pipelines (tf.distribute
    workers) decodes only its own share.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    kind = source_kind(data, scale, flag)
    if kind == "tfds":
        return Plan("tfds")
    if kind == "demo":
        names, images = demo_images(split)
        return Plan("demo", demo=(_shard(names, shard), _shard(images, shard)))
    if kind == "hr_folder":
        from superres.images import IMAGE_EXTENSIONS

        if os.path.isdir(os.path.join(data, "HR")):   # a benchmark without this scale's LR
            data = os.path.join(data, "HR")
        paths = list_images(data, recursive=True)
        if holdout:
            paths = _holdout(paths, split)
        if not paths:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {data}")
        paths = _shard(paths, shard)
        check_images(paths)
        # Names keep sub-folders so that T91/t1 and BSD200/t1 cannot collide.
        return Plan("hr", hr=[(os.path.splitext(os.path.relpath(p, data))[0], p)
                              for p in paths])
    if kind == "div2k_local":
        pairs = _div2k_local_pairs(data, split, scale)
        if pairs is None:
            tag = "train" if split == "train" else "valid"
            raise DataError(f"{data} has no DIV2K_{tag}_HR folder for the {split} split")
    else:
        pairs = _benchmark_pairs(data, scale)
        if holdout:
            pairs = _holdout(pairs, split)
    if not pairs:
        raise DataError(f"no image pairs found in {data}")
    pairs = _shard(pairs, shard)
    check_pairs(pairs, scale)
    return Plan("pairs", pairs=pairs)


def _read_rgb8(path):
    """(uint8 RGB, whether the file is grayscale), as data.py's decoder gives them."""
    from superres import images

    try:
        image = images.read_image(path)
    except images.ImageReadError as error:
        raise DataError(str(error)) from None
    return images.to_uint8(image.rgb), image.gray


def modcrop_pair(hr, scale):
    """(HR cropped to a multiple of ``scale``, its MATLAB-bicubic LR)."""
    from superres import bicubic

    hr = bicubic.modcrop(hr, scale)
    return hr, bicubic.downscale(hr, scale)


def read_pairs(source_plan, scale=4):
    """{"name", "hr", "lr", "gray"} of each image of a plan, read with NumPy (uint8 RGB,
    HR exactly ``scale`` x LR), one at a time."""
    if source_plan.kind == "demo":
        for name, (hr, gray) in zip(*source_plan.demo):
            hr, lr = modcrop_pair(hr, scale)
            yield {"name": name, "hr": hr, "lr": lr, "gray": gray}
    for name, hr_path in source_plan.hr:
        hr, gray = _read_rgb8(hr_path)
        hr, lr = modcrop_pair(hr, scale)
        yield {"name": name, "hr": hr, "lr": lr, "gray": gray}
    for name, hr_path, lr_path in source_plan.pairs:
        hr, gray = _read_rgb8(hr_path)
        lr = _read_rgb8(lr_path)[0]
        yield {"name": name, "hr": hr[: scale * lr.shape[0], : scale * lr.shape[1]], "lr": lr,
               "gray": gray}


def first_undecodable(data, scale=4):
    """The first file of a source that does not decode in full (Pillow), as a
    message naming it, or None: what to tell the user when a decoder fails deep inside
    a tf.data pipeline, whose error names no file.  Decodes every file: only for then."""
    from superres import images

    try:
        files = plan(data, "train", scale, holdout=False)
    except DataError as error:
        return str(error)
    for path in [p for _, p in files.hr] + [p for pair in files.pairs for p in pair[1:]]:
        try:
            images.read_image(path)
        except images.ImageReadError as error:
            return f"{error}; remove or replace it"
    return None
