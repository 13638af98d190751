"""What upscaling an image will need, checked before the work: memory to read it and to
upscale it in tiles, disk for the output."""

import os

MAX_INPUT_MP = 100    # a larger input is refused unless the caller allows it

# Memory besides the images: TensorFlow or ONNX Runtime and the model, plus about 1 KiB per
# LR pixel of a tile (overlap included) for its activations; ONNX Runtime's memory arena
# keeps a region per tile shape, so it is counted double.  Measured peaks:
# benchmarks/predict_large.py, docs/performance.md.
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
    """Working memory per LR tile pixel of the runtime that runs ``net``: the figures above,
    or for a Keras model whose largest layer output is bigger (Real-ESRGAN x4plus: 64
    channels at 4x the size) four of those outputs."""
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
