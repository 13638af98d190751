"""Reading the images people have, and writing results, without surprises.

``read_image`` returns a ``UserImage``: colour as float32 RGB in [0, 1], an
optional alpha plane, whether the file was grayscale, and its bit depth
(8 or 16), so that the output can keep the input's mode and depth:

    input                                  output PNG
    8-bit RGB / JPEG / palette / CMYK      8-bit RGB
    8-bit grayscale                        8-bit grayscale
    16-bit RGB PNG, 16-bit grayscale       16-bit, same mode
    anything with alpha (RGBA, LA, tRNS)   the same plus alpha (alpha upscaled by bicubic)
    animated GIF / multi-page TIFF         the first frame

EXIF orientation is applied, so photos come out upright.
"""

import dataclasses
import os
import struct

import numpy as np

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
# Pillow refuses images over ~179 MP as possible decompression bombs; tiled
# inference handles large images, so allow up to a gigapixel.
MAX_PIXELS = 1_000_000_000


class ImageReadError(Exception):
    """A file that is not a readable image; the message is one line for the user."""


@dataclasses.dataclass
class UserImage:
    rgb: np.ndarray            # float32 (H, W, 3) in [0, 1]
    alpha: np.ndarray | None   # float32 (H, W) in [0, 1], or None
    gray: bool
    bits: int                  # 8 or 16


def png_header(path):
    """(width, height, bit depth) from a PNG's IHDR, or None for other files."""
    with open(path, "rb") as f:
        header = f.read(26)
    if header[:8] != b"\x89PNG\r\n\x1a\n" or len(header) < 26:
        return None
    width, height = struct.unpack(">II", header[16:24])
    return width, height, header[24]


def _png_bit_depth(path):
    header = png_header(path)
    return header[2] if header else None


def _read_png16(path):
    """16-bit PNGs (Pillow reduces 16-bit RGB to 8 bits): decode with TensorFlow."""
    import tensorflow as tf

    with open(path, "rb") as f:
        array = tf.io.decode_png(f.read(), channels=0, dtype=tf.uint16).numpy()
    array = array.astype(np.float32) / 65535.0
    channels = array.shape[-1]
    gray = channels <= 2
    rgb = np.repeat(array[..., :1], 3, axis=-1) if gray else array[..., :3]
    alpha = array[..., -1] if channels in (2, 4) else None
    return UserImage(rgb, alpha, gray, 16)


def read_image(path):
    """Read an image file as a UserImage; any failure is an ImageReadError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file")
    try:
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        with Image.open(path) as img:
            img.seek(0)                              # first frame of a GIF or TIFF
            img = ImageOps.exif_transpose(img)
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                plane = np.asarray(img, dtype=np.float32)
                return UserImage(np.repeat(plane[..., None] / 65535.0, 3, axis=-1), None,
                                 True, 16)
            if mode == "F":
                plane = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
                return UserImage(np.repeat(plane[..., None], 3, axis=-1), None, True, 16)
            has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            gray = mode in GRAY_MODES
            alpha = None
            if has_alpha:
                alpha = np.asarray(img.convert("RGBA"), np.float32)[..., 3] / 255.0
            rgb = np.asarray(img.convert("RGB"), np.float32) / 255.0
            return UserImage(rgb, alpha, gray, 8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError, struct.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from None


def luma(rgb):
    """Gray from RGB by ITU-R BT.601 luma (0.299, 0.587, 0.114), the weights of
    MATLAB's rgb2ycbcr Y, rescaled to full range."""
    return np.asarray(rgb)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def to_uint8(image_float):
    """[0, 1] float to 8 bits, as a saved PNG would be (clip, round half up)."""
    return np.clip(np.floor(np.asarray(image_float) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def to_uint16(image_float):
    return np.clip(np.floor(np.asarray(image_float) * 65535.0 + 0.5), 0, 65535).astype(np.uint16)


def write_png(path, array):
    """Write a uint8 or uint16 array with 1, 2, 3 or 4 channels as PNG, atomically."""
    import tensorflow as tf

    from fileio import atomic_path

    if array.ndim == 2:
        array = array[..., None]
    encoded = tf.io.encode_png(array, compression=3).numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(encoded)
