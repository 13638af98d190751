"""Figures drawn off-screen and saved atomically (run curves, --compare, docs figures)."""

import numpy as np


def subplots(*args, **kwargs):
    """matplotlib's subplots on the off-screen Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path, dpi=100, replace=True):
    """Write ``fig`` as a PNG at ``path`` atomically (``replace=False``: only if nothing is
    there by then, else FileExistsError), then close it."""
    import matplotlib.pyplot as plt

    from superres.fileio import atomic_path

    try:
        with atomic_path(path, replace) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


class ComparisonFigure:
    """The model's output whole (subsampled), then nearest, bicubic and model on the
    same zoomed crop where the LR has most detail; gathered band by band."""

    def __init__(self, lr_rgb, scale, out_shape, crop=None):
        from superres import images

        self.lr8, self.scale = images.to_uint8(lr_rgb), scale
        crop = crop or max(8, min(48, min(self.lr8.shape[:2]) // 3))
        self.crop = min(crop, *self.lr8.shape[:2])
        self.top, self.left = busiest_window(self.lr8, self.crop)
        self.step = max(1, max(out_shape[:2]) // 1200)   # a large output is shown subsampled
        self.out_shape = out_shape
        self.overview, self.zoom = [], []

    def add(self, row, band):
        band = display_rgb(band)
        first = (-row) % self.step
        self.overview.append(band[first::self.step, ::self.step])
        y0, size = self.top * self.scale, self.crop * self.scale
        x0 = self.left * self.scale
        lo, hi = max(y0, row), min(y0 + size, row + len(band))
        if lo < hi:
            self.zoom.append(band[lo - row:hi - row, x0:x0 + size])

    def write(self, path, replace=True):
        from matplotlib.patches import Rectangle

        from superres import bicubic

        lr8, scale, crop, top, left = self.lr8, self.scale, self.crop, self.top, self.left
        # Bicubic only around the crop (with margin for the kernel), not the whole image.
        margin = 4
        y0, x0 = max(top - margin, 0), max(left - margin, 0)
        y1, x1 = min(top + crop + margin, lr8.shape[0]), min(left + crop + margin, lr8.shape[1])
        cubic = bicubic.upscale(lr8[y0:y1, x0:x1], scale)
        oy, ox = (top - y0) * scale, (left - x0) * scale
        size = crop * scale
        zooms = (
            ("nearest", np.repeat(np.repeat(lr8[top:top + crop, left:left + crop], scale, 0),
                                  scale, 1)),
            ("bicubic (MATLAB imresize)", cubic[oy:oy + size, ox:ox + size]),
            ("model", np.concatenate(self.zoom)),
        )
        step = self.step
        fig, _ = subplots(figsize=(12, 9))
        fig.clf()
        overview = fig.add_subplot(2, 1, 1)
        overview.imshow(np.concatenate(self.overview))
        overview.add_patch(Rectangle((left * scale / step, top * scale / step), size / step,
                                     size / step, fill=False, color="red", linewidth=2))
        overview.set_title(f"model output ({self.out_shape[1]}x{self.out_shape[0]}), "
                           "red box = zoom")
        overview.axis("off")
        for column, (title, image) in enumerate(zooms):
            axis = fig.add_subplot(2, 3, 4 + column)
            axis.imshow(image, interpolation="nearest")
            axis.set_title(title)
            axis.axis("off")
        fig.tight_layout()
        save(fig, path, replace=replace)


def display_rgb(array):
    """Any output array (gray/RGB, +alpha, 8/16-bit) as 8-bit RGB for a figure."""
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] in (1, 2):
        array = np.repeat(array[..., :1], 3, axis=-1)
    return array[..., :3]


def busiest_window(image, size):
    """Top-left of the size x size window with the most detail (gradient energy)."""
    gray = image.astype(np.float32).mean(axis=-1)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    inner = size - 1
    if inner < 1 or energy.shape[0] < inner or energy.shape[1] < inner:
        return 0, 0
    sums = (integral[inner:, inner:] - integral[:-inner, inner:]
            - integral[inner:, :-inner] + integral[:-inner, :-inner])
    top, left = np.unravel_index(np.argmax(sums), sums.shape)
    return int(top), int(left)
