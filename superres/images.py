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
import zlib

import numpy as np

# What counts as an image in a folder (predict.py inputs, data.py training folders).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
# Pillow refuses images over ~179 MP as possible decompression bombs; tiled
# inference handles large images, so allow up to a gigapixel.
MAX_PIXELS = 1_000_000_000


class ImageReadError(Exception):
    """A file that is not a readable image; the message is one line for the user."""


def list_images(folder, recursive=False):
    """The image files of a folder (IMAGE_EXTENSIONS, not hidden), sorted; sub-folders
    too, depth first in sorted order, with ``recursive``."""
    def images_in(root, names):
        return [os.path.join(root, f) for f in sorted(names)
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]

    if not recursive:
        return images_in(folder, [f for f in os.listdir(folder)
                                  if os.path.isfile(os.path.join(folder, f))])
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += images_in(root, files)
    return found


def earlier_results(paths, scale):
    """Split image files into (inputs, earlier results of predict.py): a file counts as our
    result only when it is one, its name an input's stem plus our suffix (``_x{scale}``,
    ``_x{scale}_compare`` or ``_compare``, PNG) with that input beside it.  Any other name,
    ``holiday_x2.png`` or a camera pair's ``Canon_10_x1.png``, is a user's image."""
    stems = {}
    for path in paths:
        folder, name = os.path.split(path)
        stems.setdefault(folder, set()).add(os.path.splitext(name)[0])
    suffixes = (f"_x{scale}.png", f"_x{scale}_compare.png", "_compare.png")
    inputs, ours = [], []
    for path in paths:
        folder, name = os.path.split(path)
        is_ours = any(name.endswith(s) and name[:-len(s)] in stems[folder] for s in suffixes)
        (ours if is_ours else inputs).append(path)
    return inputs, ours


def image_size(path, verify=False):
    """(width, height) from the file's header, before any decoding (so a huge image can
    be refused first); ``verify`` also checks the file's structure (PNG: every chunk's
    CRC), a fraction of a decode's cost.  ImageReadError if it is not an image."""
    from PIL import Image

    from superres.messages import first_line

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as image:
            size = image.size
            if verify:
                image.verify()
        return size
    except Exception as error:  # Pillow raises many kinds for a bad file
        raise ImageReadError(f"{path}: not a readable image ({first_line(error)})") from None


@dataclasses.dataclass
class UserImage:
    rgb: np.ndarray            # float32 (H, W, 3) in [0, 1] (or uint8: read_image's keep_8bit)
    alpha: np.ndarray | None   # float32 (H, W) in [0, 1], or None
    gray: bool
    bits: int                  # 8 or 16
    icc: bytes | None = None   # the file's embedded ICC colour profile: outputs carry it


def from_array(array):
    """A UserImage of an array of (H, W) gray or (H, W, C) pixels, C = 1 (gray), 2 (gray
    and alpha), 3 (RGB) or 4 (RGBA); uint8, uint16, or float in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"an image is (H, W) or (H, W, 1 to 4) pixels, not {array.shape}")
    if array.dtype not in (np.uint8, np.uint16) and array.dtype.kind != "f":
        raise ValueError(f"pixels are uint8, uint16 or floats in [0, 1], not {array.dtype}")
    top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
    channels = array.shape[-1]
    gray = channels < 3
    colour = array[..., :1 if gray else 3]
    rgb = colour if array.dtype == np.uint8 else colour.astype(np.float32) / np.float32(top)
    if gray:
        rgb = np.repeat(rgb, 3, axis=-1)
    alpha = array[..., -1].astype(np.float32) / np.float32(top) if channels in (2, 4) else None
    return UserImage(rgb, alpha, gray, 16 if array.dtype == np.uint16 else 8)


def icc_profile(path):
    """The ICC profile embedded in an image file, or None (read from the header)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.info.get("icc_profile") or None
    except Exception:   # unreadable files are reported by read_image
        return None


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
    from superres import tfquiet

    tf = tfquiet.import_tensorflow()

    with open(path, "rb") as f:
        data = f.read()
    try:
        array = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as error:   # truncated or corrupt
        from superres.messages import first_line

        raise ImageReadError(f"{path}: not a readable image ({first_line(error.message)})") \
            from None
    array = array.astype(np.float32) / 65535.0
    channels = array.shape[-1]
    gray = channels <= 2
    rgb = np.repeat(array[..., :1], 3, axis=-1) if gray else array[..., :3]
    alpha = array[..., -1] if channels in (2, 4) else None
    return UserImage(rgb, alpha, gray, 16)


def _read_tiff16_color(path):
    """16-bit colour TIFF (Pillow reduces it to 8 bits), or None for any other TIFF."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.dtype != np.uint16 or page.ndim != 3 or page.shape[-1] not in (3, 4):
            return None
        array = page.asarray().astype(np.float32) / 65535.0
    return UserImage(array[..., :3], array[..., 3] if array.shape[-1] == 4 else None, False, 16)


def read_image(path, keep_8bit=False):
    """Read an image file as a UserImage (with its ICC profile); any failure is an
    ImageReadError.  ``keep_8bit=True`` leaves an 8-bit image's RGB as uint8 (a
    quarter of float32's memory, for large photos)."""
    image = _read_pixels(path, keep_8bit)
    image.icc = icc_profile(path)
    return image


def _read_pixels(path, keep_8bit=False):
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file")
    try:
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        if path.lower().endswith((".tif", ".tiff")):
            image = _read_tiff16_color(path)
            if image is not None:
                return image
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
            rgb = np.asarray(img.convert("RGB"))
            if not keep_8bit:
                rgb = rgb.astype(np.float32)
                rgb /= 255.0   # in place: a large photo is not held twice as float
            return UserImage(rgb, alpha, gray, 8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError, struct.error, zlib.error) as error:
        from superres.messages import first_line

        raise ImageReadError(f"{path}: not a readable image ({first_line(error)})") from None


def luma(rgb):
    """Gray from RGB by ITU-R BT.601 luma (0.299, 0.587, 0.114), the weights of
    MATLAB's rgb2ycbcr Y, rescaled to full range."""
    return np.asarray(rgb)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def _quantize(image_float, top, dtype, rows=16):
    """clip(floor(x * top + 0.5), 0, top) as ``dtype``, a few rows at a time in one
    small float buffer that stays in cache: the same arithmetic as the plain
    expression, faster than image-sized passes over a large tile."""
    image = np.asarray(image_float)
    if image.ndim == 0:
        return _quantize(image[None], top, dtype)[0]
    out = np.empty(image.shape, dtype)
    buffer = np.empty((rows,) + image.shape[1:], image.dtype if image.dtype.kind == "f"
                      else np.float64)
    for row in range(0, len(image), rows):
        part = buffer[:len(image) - row] if len(image) - row < rows else buffer
        np.multiply(image[row:row + rows], top, out=part)
        np.add(part, 0.5, out=part)
        np.clip(part, 0, top, out=part)   # then truncation is floor: nothing is negative
        out[row:row + rows] = part
    return out


def to_uint8(image_float):
    """[0, 1] float to 8 bits, as a saved PNG would be (clip, round half up)."""
    if getattr(image_float, "dtype", None) == np.uint8:
        return image_float
    return _quantize(image_float, 255.0, np.uint8)


def to_uint16(image_float):
    return _quantize(image_float, 65535.0, np.uint16)


# What an output's extension makes of it: format, and whether 16 bits and alpha fit.
OUTPUT_FORMATS = {
    ".png": ("PNG", True, True),
    ".tif": ("TIFF", True, True),
    ".tiff": ("TIFF", True, True),
    ".webp": ("WEBP", False, True),
    ".jpg": ("JPEG", False, False),
    ".jpeg": ("JPEG", False, False),
}


class ImageWriteError(Exception):
    """An output that cannot be written as asked; the message is one line for the user."""


def check_output_format(path, has_alpha=False):
    """Raise ImageWriteError unless ``path``'s extension names a format we write (and
    that format can hold alpha, when there is alpha)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ImageWriteError(f"{path}: cannot write {ext or 'files without an extension'}; "
                              f"use one of {', '.join(OUTPUT_FORMATS)}")
    name, _, alpha_ok = OUTPUT_FORMATS[ext]
    if has_alpha and not alpha_ok:
        raise ImageWriteError(f"{path}: {name} cannot hold the image's transparency; "
                              "write .png, .tif or .webp")


def write_image(path, array, icc=None, replace=True):
    """Write a uint8/uint16 array (1-4 channels) in the format ``path``'s extension
    names, atomically, with the ICC profile ``icc`` embedded if given.  Formats
    without 16 bits (JPEG, WebP) get the 8-bit rounding; returns a note saying so,
    or None."""
    check_output_format(path, array.ndim == 3 and array.shape[-1] in (2, 4))
    name, deep_ok, _ = OUTPUT_FORMATS[os.path.splitext(path)[1].lower()]
    note = None
    if array.dtype == np.uint16 and not deep_ok:
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        note = f"{path}: {name} holds 8 bits per channel; the 16-bit result was rounded"
    if name == "PNG":
        write_png(path, array, icc, replace)
        return note
    from superres.fileio import atomic_path

    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    with atomic_path(path, replace) as tmp:
        if name == "TIFF":
            import tifffile   # Pillow cannot write 16-bit RGB TIFF

            channels = array.shape[-1] if array.ndim == 3 else 1
            tifffile.imwrite(tmp, array, compression="zlib",
                             photometric="rgb" if channels >= 3 else "minisblack",
                             extrasamples=["unassalpha"] if channels in (2, 4) else None,
                             iccprofile=icc)
        else:
            from PIL import Image

            extra = {"icc_profile": icc} if icc else {}
            Image.fromarray(array).save(tmp, format=name, quality=95, **extra)
    return note


def write_png(path, array, icc=None, replace=True):
    """Write a uint8 or uint16 array with 1, 2, 3 or 4 channels as PNG, atomically
    (PngStream's encoder: no TensorFlow needed), with an ICC profile if given."""
    from superres.fileio import atomic_path

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    with atomic_path(path, replace) as tmp:
        stream = PngStream(tmp, array.shape[1], array.shape[0], array.shape[2],
                           16 if array.dtype == np.uint16 else 8, icc=icc)
        try:
            stream.write(array)
        except BaseException:
            stream.file.close()
            raise
        stream.close()


class PngStream:
    """Write a PNG band by band, so an output larger than memory never exists whole
    (Pillow and TensorFlow encode whole arrays only).  Rows get PNG's "Up" filter
    (vectorized; it compresses photographs almost as well as per-row adaptive
    filtering) and are deflated as they come.  Use as a context manager over a
    temporary path; ``write`` takes uint8/uint16 arrays of shape (rows, width[, c])."""

    COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}   # channels -> PNG colour type

    def __init__(self, path, width, height, channels, bits=8, level=2, icc=None):
        self.path, self.width, self.height = path, width, height
        self.channels, self.bits = channels, bits
        self.rows_written, self.previous = 0, None
        # ISA-L's deflate (the isal package): several times zlib's speed for the same
        # size of upscaled photos (docs/performance.md), the same zlib stream.
        from isal import isal_zlib

        self.deflate = isal_zlib.compressobj(level)
        self.file = open(path, "wb")
        ihdr = struct.pack(">IIBBBBB", width, height, bits, self.COLOR_TYPES[channels], 0, 0, 0)
        self.file.write(b"\x89PNG\r\n\x1a\n")
        self._chunk(b"IHDR", ihdr)
        if icc:   # iCCP: a profile name, compression method 0 (zlib), the profile
            import zlib

            self._chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))

    def _chunk(self, kind, payload):
        import zlib

        self.file.write(struct.pack(">I", len(payload)) + kind + payload)
        self.file.write(struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF))

    def write(self, band):
        band = np.asarray(band)
        if band.ndim == 2:
            band = band[..., None]
        if band.shape[1:] != (self.width, self.channels):
            raise ValueError(f"band of shape {band.shape} for a {self.width}-wide "
                             f"{self.channels}-channel PNG")
        for row in range(0, len(band), 64):   # a few rows at a time: copies stay small
            self._write_rows(band[row:row + 64])

    def _write_rows(self, band):
        raw = band.astype(">u2" if self.bits == 16 else np.uint8).reshape(len(band), -1)
        raw = raw.view(np.uint8).reshape(len(band), -1)
        above = np.concatenate([self.previous if self.previous is not None
                                else np.zeros_like(raw[:1]), raw[:-1]])
        filtered = np.empty((len(raw), raw.shape[1] + 1), np.uint8)
        filtered[:, 0] = 2                                   # filter type "Up"
        np.subtract(raw, above, out=filtered[:, 1:])         # wraps modulo 256, as PNG wants
        self.previous = raw[-1:].copy()
        data = self.deflate.compress(filtered.tobytes())
        if data:
            self._chunk(b"IDAT", data)
        self.rows_written += len(band)

    def close(self):
        if self.rows_written != self.height:
            self.file.close()
            raise ValueError(f"PNG has {self.rows_written} of {self.height} rows")
        self._chunk(b"IDAT", self.deflate.flush())
        self._chunk(b"IEND", b"")
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:
            self.close()
        else:
            self.file.close()
