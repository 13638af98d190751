"""MATLAB-compatible bicubic resizing (``imresize(img, scale, 'bicubic')``).

The super-resolution literature makes its LR images and its bicubic baselines
with MATLAB's ``imresize``: Keys cubic kernel (a = -0.5), antialiased when
downscaling (the kernel is stretched by 1/scale), MATLAB's pixel-centre index
mapping and symmetric padding at the borders.  ``tf.image.resize`` and PIL
differ from it by up to several grey levels, which moves PSNR by tenths of a
dB, so this one implementation serves both data.py (LR generation) and
evaluate.py (the bicubic baseline).  It is the only bicubic in the project.
"""

import math

import numpy as np


def cubic_kernel(x):
    """Keys cubic convolution kernel with a = -0.5, as in MATLAB's imresize."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


def _contributions(in_length, out_length, scale, antialias=True):
    """Return (weights, indices), each (out_length, taps): which input samples
    feed every output sample, and how much (MATLAB's ``contributions``)."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        # Stretch the kernel so that it low-passes before decimation.
        def kernel(x):
            return scale * cubic_kernel(scale * x)

        kernel_width = kernel_width / scale
    else:
        kernel = cubic_kernel
    out_coords = np.arange(1, out_length + 1, dtype=np.float64)
    # Output pixel centres mapped back into input coordinates (1-based).
    u = out_coords / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding: index -1 reads 0, index n reads n-1, ...
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    used = np.any(weights != 0, axis=0)
    return weights[:, used], indices[:, used]


def _resize_axis(image, axis, out_length, scale, antialias):
    from scipy import sparse

    weights, indices = _contributions(image.shape[axis], out_length, scale, antialias)
    # One sparse (out x in) matrix per axis; repeated mirrored indices are summed.
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    matrix = sparse.csr_matrix((weights.ravel(), (rows, indices.ravel())),
                               shape=(out_length, image.shape[axis]))
    moved = np.moveaxis(image, axis, 0)
    out = matrix @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(out.reshape((out_length,) + moved.shape[1:]), 0, axis)


def imresize(image, scale=None, output_shape=None, antialias=True):
    """Resize an H x W or H x W x C image as MATLAB's ``imresize(..., 'bicubic')``.

    Give either ``scale`` (e.g. 0.25 or 4) or ``output_shape`` (rows, cols).
    A uint8 image gives a uint8 image, rounded and clipped after each axis as
    MATLAB does; a float image gives float64 with no clipping.
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    image = np.asarray(image)
    is_uint8 = image.dtype == np.uint8
    in_rows, in_cols = image.shape[:2]
    if scale is not None:
        scales = (float(scale), float(scale))
        output_shape = (int(math.ceil(in_rows * scale)), int(math.ceil(in_cols * scale)))
    else:
        scales = (output_shape[0] / in_rows, output_shape[1] / in_cols)
    out = image.astype(np.float64)
    # MATLAB resizes the dimension with the larger reduction first; on ties, rows first.
    for axis in np.argsort(scales, kind="stable"):
        out = _resize_axis(out, int(axis), output_shape[axis], scales[axis], antialias)
        if is_uint8:
            out = np.clip(np.round(out), 0, 255)
    return out.astype(np.uint8) if is_uint8 else out


def modcrop(image, scale):
    """Crop the bottom and right so that both sides are multiples of ``scale``."""
    rows, cols = image.shape[:2]
    return image[: rows - rows % scale, : cols - cols % scale]


def downscale(hr, scale=4):
    """The field's LR image: MATLAB ``imresize(modcrop(hr, scale), 1/scale, 'bicubic')``."""
    return imresize(modcrop(hr, scale), scale=1.0 / scale)


def upscale(lr, scale=4):
    """The field's bicubic baseline: MATLAB ``imresize(lr, scale, 'bicubic')``."""
    return imresize(lr, scale=scale)
