"""Image pairs for x4 super-resolution, and the tf.data pipelines over them.

One string, ``--data`` in every CLI, names a source:

* ``div2k``: tensorflow-datasets ``div2k/bicubic_x4`` (train / validation).
* a local DIV2K root in the official layout (``DIV2K_train_HR/0001.png`` with
  ``DIV2K_train_LR_bicubic/X4/0001x4.png``, ``DIV2K_valid_HR`` likewise).
* a benchmark set folder: ``HR/`` and ``LR_bicubic_X4/`` with matching names.
* any folder of HR images (searched recursively): HR is cropped to a multiple
  of the scale and LR is made by MATLAB-compatible bicubic (bicubic.py).
* ``demo``: photographs that ship inside scikit-image, so that training runs on
  a fresh machine with no download.

Every source becomes a ``tf.data.Dataset`` of ``{"name", "hr", "lr", "gray"}``
with uint8 RGB images, HR exactly ``scale`` times LR, and ``gray`` telling
whether the HR file was grayscale (the field scores those on their one channel).
``training_dataset`` and ``validation_dataset`` turn that into float32 patch
batches in [0, 1].
"""

import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf

import bicubic
from images import IMAGE_EXTENSIONS

# Formats that tf.io.decode_image reads natively (faster, in parallel); others go through Pillow.
_TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

TFDS_NAME_TEMPLATE = "div2k/bicubic_x{scale}"

# Real photographs shipped in scikit-image's wheel (no download), split so the
# validation images are never trained on.
DEMO_TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "retina",
              "immunohistochemistry", "motorcycle_left")
DEMO_VALIDATION = ("chelsea", "camera")

SPLITS = ("train", "validation")


class DataError(Exception):
    """A data source that cannot be used; the message is meant for the user."""


# --------------------------------------------------------------------------- decoding

def _decode_file(path):
    """tf graph op: decode an image file to (uint8 RGB image, whether the file is grayscale)."""
    def pillow_decode(p):
        import images

        p = p.decode() if isinstance(p, bytes) else str(p)
        try:
            image = images.read_image(p)       # one read gives pixels and mode
        except images.ImageReadError as error:
            raise DataError(str(error)) from None
        return images.to_uint8(image.rgb), np.bool_(image.gray)

    ext = tf.strings.lower(tf.strings.regex_replace(path, r"^.*(\.[^.]*)$", r"\1"))
    native = tf.reduce_any(tf.equal(ext, list(_TF_DECODABLE)))

    def decode_native():
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.uint8,
                                   expand_animations=False)
        channels = tf.shape(image)[-1]
        gray = channels <= 2
        image = tf.cond(gray, lambda: tf.image.grayscale_to_rgb(image[..., :1]),
                        lambda: image[..., :3])
        return image, gray

    def decode_pillow():
        image, gray = tf.numpy_function(pillow_decode, [path], (tf.uint8, tf.bool), stateful=False)
        return tf.reshape(image, [tf.shape(image)[0], tf.shape(image)[1], 3]), tf.reshape(gray, [])

    image, gray = tf.cond(native, decode_native, decode_pillow)
    image.set_shape([None, None, 3])
    return image, gray


def _downscale_op(hr, scale):
    lr = tf.numpy_function(lambda x: bicubic.downscale(x, scale), [hr], tf.uint8, stateful=False)
    lr.set_shape([None, None, 3])
    return lr


def _align(hr, lr, scale):
    """Crop HR to exactly scale x LR (DIV2K-style pairs may carry a remainder)."""
    lr_h, lr_w = tf.shape(lr)[0], tf.shape(lr)[1]
    hr_h, hr_w = tf.shape(hr)[0], tf.shape(hr)[1]
    ok = tf.logical_and(
        tf.logical_and(hr_h >= scale * lr_h, hr_h < scale * (lr_h + 1)),
        tf.logical_and(hr_w >= scale * lr_w, hr_w < scale * (lr_w + 1)))
    tf.debugging.Assert(ok, ["HR size is not scale x LR size", hr_h, hr_w, lr_h, lr_w])
    return hr[: scale * lr_h, : scale * lr_w], lr


# --------------------------------------------------------------------------- sources

def _list_images(folder, recursive=False):
    found = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files)
                      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    else:
        found = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return found


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _div2k_local_pairs(root, split, scale):
    tag = "train" if split == "train" else "valid"
    hr_dir = os.path.join(root, f"DIV2K_{tag}_HR")
    lr_dir = os.path.join(root, f"DIV2K_{tag}_LR_bicubic", f"X{scale}")
    if not os.path.isdir(hr_dir):
        return None
    pairs = []
    for hr_path in _list_images(hr_dir):
        name = _stem(hr_path)
        lr_path = os.path.join(lr_dir, f"{name}x{scale}{os.path.splitext(hr_path)[1]}")
        if not os.path.isfile(lr_path):
            raise DataError(f"{hr_path} has no LR image: expected {lr_path}")
        pairs.append((name, hr_path, lr_path))
    return pairs


def _benchmark_pairs(folder, scale):
    hr_dir = os.path.join(folder, "HR")
    lr_dir = os.path.join(folder, f"LR_bicubic_X{scale}")
    lr_by_stem = {_stem(p): p for p in _list_images(lr_dir)}
    pairs = []
    for hr_path in _list_images(hr_dir):
        name = _stem(hr_path)
        if name not in lr_by_stem:
            raise DataError(f"{hr_path} has no LR image in {lr_dir}")
        pairs.append((name, hr_path, lr_by_stem[name]))
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
    if os.path.isdir(os.path.join(data, "HR")) and os.path.isdir(
            os.path.join(data, f"LR_bicubic_X{scale}")):
        return "benchmark"
    return "hr_folder"


def source_name(data):
    """Short name for tables: the folder name, or 'div2k' / 'demo'."""
    if data in ("div2k", "demo"):
        return data
    return os.path.basename(os.path.normpath(data))


def _file_pairs_dataset(pairs, scale):
    names = [p[0] for p in pairs]
    hr_paths = [p[1] for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices(
        {"name": names, "hr_path": hr_paths, "lr_path": [p[2] for p in pairs]})

    def load(item):
        hr, gray = _decode_file(item["hr_path"])
        hr, lr = _align(hr, _decode_file(item["lr_path"])[0], scale)
        return {"name": item["name"], "hr": hr, "lr": lr, "gray": gray}

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _hr_only_dataset(names, hr_dataset, scale):
    """Pairs from (HR, gray) alone: modcrop, then MATLAB-compatible bicubic LR."""
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(names), hr_dataset))

    def make_pair(name, decoded):
        hr, gray = decoded
        hr_h, hr_w = tf.shape(hr)[0], tf.shape(hr)[1]
        hr = hr[: hr_h - hr_h % scale, : hr_w - hr_w % scale]
        return {"name": name, "hr": hr, "lr": _downscale_op(hr, scale), "gray": gray}

    return ds.map(make_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _demo_images(split):
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


def check_tfds_available(scale=4, data_dir=None):
    """Return the tfds builder, or raise DataError at once when DIV2K is neither
    prepared locally nor downloadable (tfds would otherwise retry for minutes)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAME_TEMPLATE.format(scale=scale), data_dir=data_dir)
    if builder.is_prepared():
        return builder
    from tensorflow_datasets.datasets.div2k import div2k_dataset_builder

    host = urllib.parse.urlparse(div2k_dataset_builder._DL_URL).hostname
    try:
        socket.create_connection((host, 443), timeout=10).close()
    except OSError:
        raise DataError(
            f"DIV2K (tfds {builder.name}) is not prepared in {builder.data_dir} and {host} "
            "cannot be reached; point --data at a local DIV2K folder "
            "(DIV2K_train_HR/, DIV2K_train_LR_bicubic/X4/, DIV2K_valid_HR/, ...) "
            "or use --data demo") from None
    return builder


def _tfds_dataset(split, scale, data_dir=None):
    builder = check_tfds_available(scale, data_dir)
    builder.download_and_prepare()
    ds = builder.as_dataset(split=split, shuffle_files=False)
    first = 1 if str(split).startswith("train") else 801  # names only

    def to_pair(index, example):
        hr, lr = _align(example["hr"], example["lr"], scale)
        name = tf.strings.as_string(index + first, width=4, fill="0")
        return {"name": name, "hr": hr, "lr": lr, "gray": tf.constant(False)}

    return ds.enumerate().map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def check_images(paths):
    """Stop on the first file that is not a readable image, naming it (Pillow reads
    headers and, for PNG, checks every chunk's CRC: a fraction of a decode's cost).
    Returns each path's (width, height)."""
    from PIL import Image

    import images

    Image.MAX_IMAGE_PIXELS = images.MAX_PIXELS
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
                image.verify()
        except Exception as error:  # Pillow raises many kinds for a bad file
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"{path}: not a readable image ({detail}); remove or replace it")
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


def pair_dataset(data, split="train", scale=4, holdout=True, tfds_data_dir=None, flag="--data",
                 shard=None):
    """A tf.data.Dataset of {"name", "hr", "lr", "gray"} (uint8 RGB, HR = scale x LR).

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
        if shard:
            import tensorflow_datasets as tfds

            split = tfds.even_splits(split, n=shard[0])[shard[1]]
        return _tfds_dataset(split, scale, tfds_data_dir)
    if kind == "demo":
        names, images = _demo_images(split)
        names, images = _shard(names, shard), _shard(images, shard)
        hr = tf.data.Dataset.from_generator(
            lambda: iter(images), output_signature=(tf.TensorSpec([None, None, 3], tf.uint8),
                                                    tf.TensorSpec([], tf.bool)))
        return _hr_only_dataset(names, hr, scale)
    if kind == "div2k_local":
        pairs = _div2k_local_pairs(data, split, scale)
        if pairs is None:
            tag = "train" if split == "train" else "valid"
            raise DataError(f"{data} has no DIV2K_{tag}_HR folder for the {split} split")
    elif kind == "benchmark":
        pairs = _benchmark_pairs(data, scale)
    else:
        paths = _list_images(data, recursive=True)
        if holdout:
            paths = _holdout(paths, split)
        if not paths:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {data}")
        paths = _shard(paths, shard)
        check_images(paths)
        # Names keep sub-folders so that T91/t1 and BSD200/t1 cannot collide.
        names = [os.path.splitext(os.path.relpath(p, data))[0] for p in paths]
        hr = tf.data.Dataset.from_tensor_slices(paths).map(
            _decode_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _hr_only_dataset(names, hr, scale)
    if kind == "benchmark" and holdout:
        pairs = _holdout(pairs, split)
    if not pairs:
        raise DataError(f"no image pairs found in {data}")
    pairs = _shard(pairs, shard)
    check_pairs(pairs, scale)
    return _file_pairs_dataset(pairs, scale)


def rescaled_pairs(pairs, factors, scale=4):
    """Each pair once per factor: HR downscaled by the factor (MATLAB-style bicubic,
    antialiased), modcropped, with its LR made from it as for any HR image; factor 1
    keeps the pair as it is.  FSRCNN's augmentation of the 91 images (0.9 ... 0.6):
    more scales of the same textures from a small training set."""
    def rescale(hr, lr, factor):
        if factor == 1.0:
            return hr, lr
        smaller = bicubic.modcrop(bicubic.imresize(hr, scale=float(factor)), scale)
        return smaller, bicubic.downscale(smaller, scale)

    def versions(item):
        def one(factor):
            hr, lr = tf.numpy_function(rescale, [item["hr"], item["lr"], factor],
                                       (tf.uint8, tf.uint8), stateful=False)
            hr.set_shape([None, None, 3])
            lr.set_shape([None, None, 3])
            return {"hr": hr, "lr": lr}

        return tf.data.Dataset.from_tensor_slices(tf.constant(factors, tf.float64)).map(one)

    return pairs.flat_map(versions)


# --------------------------------------------------------------------------- patches

def _to_float(image):
    return tf.cast(image, tf.float32) / 255.0


def random_crops(hr, lr, seed, patch_size=64, scale=4, count=1):
    """``count`` aligned random crops: LR patch (p, p) at (y, x) and the HR patch
    (scale*p, scale*p) at (scale*y, scale*x).  ``seed`` is a stateless seed pair."""
    lr_patch = patch_size // scale
    lr_h, lr_w = tf.shape(lr)[0], tf.shape(lr)[1]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    ys = tf.random.stateless_uniform([count], seeds[0], 0, lr_h - lr_patch + 1, dtype=tf.int32)
    xs = tf.random.stateless_uniform([count], seeds[1], 0, lr_w - lr_patch + 1, dtype=tf.int32)
    return (_gather_crops(hr, ys * scale, xs * scale, patch_size),
            _gather_crops(lr, ys, xs, lr_patch))


def _gather_crops(image, ys, xs, size):
    offsets = tf.range(size)
    rows = tf.gather(image, ys[:, None] + offsets[None, :])             # (K, size, W, C)
    return tf.gather(rows, xs[:, None] + offsets[None, :], axis=2, batch_dims=1)


def transform(image, flip, rotations):
    """One of the 8 symmetries of the square: optional horizontal flip, then rot90 x k."""
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    return tf.image.rot90(image, rotations)


def augment(hr, lr, seed):
    """The same random flip and rotation on both images of a pair."""
    choice = tf.random.stateless_uniform([2], seed, 0, 4, dtype=tf.int32)
    flip = tf.equal(choice[0] % 2, 1)
    return transform(hr, flip, choice[1]), transform(lr, flip, choice[1])


def large_enough(patch_size, scale):
    def keep(item):
        shape = tf.shape(item["lr"])
        return tf.reduce_all(shape[:2] >= patch_size // scale)
    return keep


def patches_per_visit(lr, lr_patch, patches_per_image):
    """``patches_per_image``, or with 0 ("auto") one patch per 2 patch areas of the
    image (at least 1): sampling proportional to area, so a 2040x1400 DIV2K image
    yields ~350 patches per decode (decoding then stays far ahead of training,
    benchmarks/pipeline.py) and a small T91 image a few."""
    if patches_per_image:
        return tf.constant(patches_per_image, tf.int32)
    area = tf.shape(lr)[0] * tf.shape(lr)[1]
    return tf.maximum(1, area // (2 * lr_patch * lr_patch))


def degraded(degradation, scale, seed_offset=0):
    """(hr, lr, seed) -> (hr, lr) with LR made anew from the HR patch by
    ``degradation`` (degradations.Settings), or the pair as it is for None."""
    if degradation is None:
        return lambda hr, lr, seed: (hr, lr)
    import degradations

    return lambda hr, lr, seed: (hr, degradations.degrade(hr, seed + seed_offset, degradation,
                                                          scale))


def training_dataset(pairs, patch_size=64, scale=4, batch_size=16, patches_per_image=0,
                     cache="", shuffle_images=1000, shuffle_patches=8192, seed=0,
                     degradation=None):
    """Endless shuffled batches of (lr, hr) float32 patches in [0, 1].

    Decoded pairs are cached (``cache=""`` in memory, or a file prefix on disk)
    so PNG decoding and LR generation happen once; each visit to an image cuts
    ``patches_per_visit`` random aligned crops, each flipped/rotated at random,
    and patches from many images are mixed in a shuffle buffer (uint8, ~13 KB each).
    With a ``degradation`` (degradations.Settings) each patch's LR is made from its
    HR by Real-ESRGAN's model, with random draws of its own.
    """
    if patch_size % scale:
        raise ValueError(f"patch size {patch_size} is not a multiple of scale {scale}")
    images = (pairs.filter(large_enough(patch_size, scale))
              .map(lambda item: (item["hr"], item["lr"]))
              .cache(cache)
              .repeat()
              .shuffle(shuffle_images, seed=seed))
    crop_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    patches = (tf.data.Dataset.zip((images, crop_seeds))
               .map(lambda pair, s: random_crops(
                   pair[0], pair[1], s, patch_size, scale,
                   patches_per_visit(pair[1], patch_size // scale, patches_per_image)),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch())
    augment_seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)
    shuffled = (tf.data.Dataset.zip((patches, augment_seeds))
                .map(lambda pair, s: augment(pair[0], pair[1], s),
                     num_parallel_calls=tf.data.AUTOTUNE)
                .shuffle(shuffle_patches, seed=seed))
    if degradation is not None:   # after the shuffle, so its buffer fills at crop speed
        degrade = degraded(degradation, scale)
        degrade_seeds = tf.data.Dataset.random(seed=seed + 2).batch(2)
        shuffled = tf.data.Dataset.zip((shuffled, degrade_seeds)).map(
            lambda pair, s: degrade(*pair, s), num_parallel_calls=tf.data.AUTOTUNE)
    return (shuffled
            .batch(batch_size, drop_remainder=True)
            .map(lambda hr, lr: (_to_float(lr), _to_float(hr)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def validation_dataset(pairs, patch_size=128, scale=4, crops_per_image=8, batch_size=16,
                       degradation=None):
    """Fixed crops (the same every epoch: seeds derive from the image index), as
    float32 (lr, hr) batches, cached after the first pass; with a ``degradation``
    each crop's LR is degraded from a seed of its own (so also the same every epoch)."""
    def crops(index, item):
        seed = tf.stack([tf.constant(12345, tf.int64), index])
        return random_crops(item["hr"], item["lr"], seed, patch_size, scale, crops_per_image)

    degrade = degraded(degradation, scale)
    return (pairs.filter(large_enough(patch_size, scale))
            .enumerate()
            .map(crops, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .unbatch()
            .enumerate()
            .map(lambda i, pair: degrade(*pair, tf.stack([tf.constant(54321, tf.int64), i])),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .map(lambda hr, lr: (_to_float(lr), _to_float(hr)))
            .cache()
            .prefetch(tf.data.AUTOTUNE))
