"""tf.data pipelines of image pairs for x4 super-resolution.

The sources that ``--data`` names, and their files, are superres/sources.py's; here they
become ``tf.data.Dataset``s of ``{"name", "hr", "lr", "gray"}`` with uint8 RGB
images, HR exactly ``scale`` times LR, and ``gray`` telling whether the HR file
was grayscale (the field scores those on their one channel).
``training_dataset`` and ``validation_dataset`` turn that into float32 patch
batches in [0, 1], with LR made by bicubic or by Real-ESRGAN's degradations.
"""

import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf

from superres import bicubic
from superres.sources import DataError, plan

# Formats that tf.io.decode_image reads natively (faster, in parallel); others go through Pillow.
_TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

TFDS_NAME_TEMPLATE = "div2k/bicubic_x{scale}"


# --------------------------------------------------------------------------- decoding

def _decode_file(path):
    """tf graph op: decode an image file to (uint8 RGB image, whether the file is grayscale)."""
    def pillow_decode(p):
        from superres import images

        p = p.decode() if isinstance(p, bytes) else str(p)
        try:
            image = images.read_image(p)       # one read gives pixels and mode
        except images.ImageReadError as error:
            raise DataError(str(error)) from None
        return images.to_uint8(image.rgb), np.bool_(image.gray)

    ext = tf.strings.lower(tf.strings.regex_replace(path, r"^.*(\.[^.]*)$", r"\1"))
    native = tf.reduce_any(tf.equal(ext, list(_TF_DECODABLE)))

    def decode_native():
        contents = tf.io.read_file(path)
        # JPEG by libjpeg's accurate IDCT, as Pillow decodes it for evaluation: decode_image's
        # fast one shifts red and blue.
        image = tf.cond(tf.io.is_jpeg(contents),
                        lambda: tf.io.decode_jpeg(contents, dct_method="INTEGER_ACCURATE"),
                        lambda: tf.io.decode_image(contents, channels=0, dtype=tf.uint8,
                                                   expand_animations=False))
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


def pair_dataset(data, split="train", scale=4, holdout=True, tfds_data_dir=None, flag="--data",
                 shard=None):
    """A tf.data.Dataset of {"name", "hr", "lr", "gray"} (uint8 RGB, HR = scale x LR)
    of one split of a source; ``holdout`` and ``shard`` as in sources.plan."""
    files = plan(data, split, scale, holdout, flag, shard)
    if files.kind == "tfds":
        if shard:
            import tensorflow_datasets as tfds

            split = tfds.even_splits(split, n=shard[0])[shard[1]]
        return _tfds_dataset(split, scale, tfds_data_dir)
    if files.kind == "demo":
        names, images = files.demo
        hr = tf.data.Dataset.from_generator(
            lambda: iter(images), output_signature=(tf.TensorSpec([None, None, 3], tf.uint8),
                                                    tf.TensorSpec([], tf.bool)))
        return _hr_only_dataset(list(names), hr, scale)
    if files.kind == "hr":
        hr = tf.data.Dataset.from_tensor_slices([p for _, p in files.hr]).map(
            _decode_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _hr_only_dataset([n for n, _ in files.hr], hr, scale)
    return _file_pairs_dataset(files.pairs, scale)


# Every 20th pair of a teacher cache is held out for validation: the split stays fixed while
# the cache grows.  Pairs lose a border of LR pixels, where a teacher's output depends on how
# its runtime pads (and tiles) the crop rather than on the image.
TEACHER_VALIDATION_EVERY = 20
TEACHER_MARGIN = 8


def teacher_pair_dataset(folders, split="train", scale=4, shard=None):
    """Teacher caches' pairs (superres/teacher_cache.py) as {"name", "hr", "lr", "gray"}, the
    teacher's output standing as "hr": what every term of the loss compares with."""
    from superres import teacher_cache

    every = TEACHER_VALIDATION_EVERY
    paths = [teacher_cache.pair_path(folder, i) for folder in folders
             for i in teacher_cache.pair_indices(folder)
             if (i % every == 0) == (split == "validation")]
    if shard:
        paths = paths[shard[1]::shard[0]]
    m = TEACHER_MARGIN

    def pairs():
        for path in paths:
            with np.load(path) as pair:
                lr, target = pair["lr"], pair["teacher"]
            if lr.shape[0] * scale != target.shape[0] or lr.shape[1] * scale != target.shape[1]:
                raise DataError(f"{path}: the teacher's output is not x{scale} its LR")
            name = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
            yield (name, target[m * scale:-m * scale, m * scale:-m * scale], lr[m:-m, m:-m])

    spec = tf.TensorSpec([None, None, 3], tf.uint8)
    return tf.data.Dataset.from_generator(
        pairs, output_signature=(tf.TensorSpec([], tf.string), spec, spec)).map(
        lambda name, hr, lr: {"name": name, "hr": hr, "lr": lr, "gray": tf.constant(False)})


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
    """(hr, lr, seed) -> (hr, lr) with LR made anew from the HR patch by ``degradation``
    (a function of (hr, seed): degradations.chosen), or the pair as it is for None."""
    if degradation is None:
        return lambda hr, lr, seed: (hr, lr)

    def degrade(hr, lr, seed):
        lr = degradation(hr, seed + seed_offset)
        # The LR's static shape, which the ops lose (Keras' bilinear UpSampling2D, in the
        # discriminator, needs it in a graph).
        side = [None if d is None else d // scale for d in hr.shape[:2]]
        return hr, tf.ensure_shape(lr, side + [hr.shape[-1]])

    return degrade


def training_dataset(pairs, patch_size=64, scale=4, batch_size=16, patches_per_image=0,
                     cache="", shuffle_images=1000, shuffle_patches=8192, seed=0,
                     degradation=None):
    """Endless shuffled batches of (lr, hr) float32 patches in [0, 1].

    Decoded pairs are cached (``cache=""`` in memory, or a file prefix on disk)
    so PNG decoding and LR generation happen once; each visit to an image cuts
    ``patches_per_visit`` random aligned crops, each flipped/rotated at random,
    and patches from many images are mixed in a shuffle buffer (uint8, ~13 KB each).
    With a ``degradation`` (degradations.chosen) each patch's LR is made from its HR,
    with random draws of its own.
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
