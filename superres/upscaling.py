"""Upscaling, the one thing users do: an image in, the upscaled image out (``upscale``); or
one band of rows at a time (``upscale_bands``) and into a file (``upscale_to_file``), in
memory bounded by the tile size.  Tiles overlap by the model's receptive radius, so the
result equals whole-image inference exactly, whatever the tile."""

import os

import numpy as np

_LOADED = {}


def load(model=None, runtime="auto"):
    """A model ready to upscale with, loaded once per process: None (the default photo
    model), a shipped model's name, Real-ESRGAN's published ones, or a model file."""
    from superres import inference

    path = inference.resolve_model_path(inference.photo_model() if model is None else model)
    key = (os.path.realpath(path), os.path.getmtime(path), runtime)
    if key not in _LOADED:
        _LOADED[key] = inference.load_model(path, runtime=runtime)
    return _LOADED[key]


def upscale(image, model=None, tile="auto", runtime="auto", dtype=None):
    """``image`` upscaled by ``model`` (a loaded model, or what ``load`` takes).

    ``image``: an array of (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA pixels, uint8,
    uint16 or float in [0, 1]; or a PIL image.  The result is of the same kind, layout
    and type: 8 or 16 bits rounded as a saved file would be, or for a float image the
    model's float output (not clipped); ``dtype`` asks for another (np.float32 of a uint8
    image).  A gray image comes out gray (BT.601 luma), alpha is upscaled by bicubic.
    ``tile``: the LR tile side ("auto": the model's default; None: the whole image at once)."""
    from superres import images

    net = load(model, runtime) if model is None or isinstance(model, (str, os.PathLike)) \
        else model
    is_pil = hasattr(image, "getbands")
    if is_pil and image.mode not in ("L", "I;16", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    array = np.asarray(image)
    bands = [band for _, band in upscale_bands(net, images.from_array(array), tile,
                                               dtype=dtype or array.dtype)]
    out = bands[0] if len(bands) == 1 else np.concatenate(bands)
    if array.ndim == 3 and out.ndim == 2:      # (H, W, 1) in, (H, W, 1) out
        out = out[..., None]
    if is_pil:
        from PIL import Image

        return Image.fromarray(out)
    return out


def upscale_bands(net, image, tile="auto", on_tile=None, dtype=None):
    """Upscale a UserImage (superres/images.py) one band of tile rows at a time; yields
    (output row, band), bands ready to write: uint8 or uint16 as the image's bits (or
    ``dtype``), gray or RGB as the image, alpha last.  ``on_tile`` is called after each tile
    (progress)."""
    from superres import bicubic, images, inference

    scale = inference.model_scale(net)
    if tile == "auto":
        tile = inference.default_tile(net)
    dtype = np.dtype(dtype or (np.uint16 if image.bits == 16 else np.uint8))
    convert = {np.dtype(np.uint8): images.to_uint8, np.dtype(np.uint16): images.to_uint16}.get(
        dtype, lambda piece: piece.astype(dtype, copy=False))
    # The model sees a gray image as RGB; its output becomes gray by BT.601 luma.
    to_output = (lambda piece: convert(images.luma(piece))) if image.gray else convert
    colour = inference.tiled_bands(
        lambda piece: inference.forward(net, inference.as_float(piece)), image.rgb, scale,
        tile, inference.receptive_radius(net), to_output, on_tile)
    if image.alpha is None:
        yield from colour
        return
    alpha = inference.tiled_bands(lambda piece: bicubic.imresize(piece, scale=scale),
                                  image.alpha, scale, tile, overlap=4, convert=convert)
    for (row, band), (_, alpha_band) in zip(colour, alpha):
        band = band[..., None] if band.ndim == 2 else band
        yield row, np.concatenate([band, alpha_band[..., None]], -1)


def read_checked(net, source, target, tile="auto", max_mp=None):
    """The UserImage of the file ``source`` once it is known to fit: refused before decoding
    above ``max_mp`` megapixels (None: limits.MAX_INPUT_MP, 0: no limit) or beyond the
    memory, and before any work when ``target``'s format cannot hold it or its output would
    not fit in memory (images.ImageReadError / ImageWriteError) or on the disk
    (limits.DiskTooFull)."""
    from superres import images, inference, limits

    scale = inference.model_scale(net)
    tile = inference.default_tile(net) if tile == "auto" else tile
    limits.check_input_size(source, scale, limits.MAX_INPUT_MP if max_mp is None else max_mp)
    image = images.read_image(source, keep_8bit=True)
    images.check_output_format(target, image.alpha is not None)
    limits.check_output_size(target, output_layout(image, scale), tile, scale,
                             inference.receptive_radius(net), limits.tile_bytes_per_pixel(net))
    return image


def output_layout(image, scale):
    """(height, width, channels, bits) of the output of a UserImage."""
    height, width = image.rgb.shape[:2]
    channels = (1 if image.gray else 3) + (image.alpha is not None)
    return height * scale, width * scale, channels, image.bits


def upscale_to_file(net, image, target, tile="auto", compare=None, on_tile=None,
                    replace=False):
    """Upscale a UserImage into ``target``: PNG band by band as the tiles complete, other
    formats whole; with ``compare`` a comparison figure there too.  Returns (output shape,
    note or None).  Without ``replace`` a target that another process wrote meanwhile is
    left alone (FileExistsError)."""
    from concurrent.futures import ThreadPoolExecutor

    from superres import figures, images, inference
    from superres.fileio import atomic_path

    scale = inference.model_scale(net)
    height, width, channels, bits = output_layout(image, scale)
    figure = figures.ComparisonFigure(image.rgb, scale, (height, width)) if compare else None
    bands = upscale_bands(net, image, tile, on_tile)
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
