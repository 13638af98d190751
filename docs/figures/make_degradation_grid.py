"""Figure: HR crops and LR patches made from them by Real-ESRGAN's degradation model.

    python docs/figures/make_degradation_grid.py ../shared/data/train -o docs/figures/degradations.png

Top row: 128x128 HR crops of four training images; each row below: the 32x32 LR patch
that one random draw of the second-order model makes of each (shown 4x by pixel
replication), a different seed per row: what train.py --degradation realesrgan feeds.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

IMAGES = ("T91/tt1", "BSD200/2092", "BSD200/35008", "T91/tt22")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", help="the training images (T91/ and BSD200/)")
    parser.add_argument("-o", "--out", default="docs/figures/degradations.png")
    parser.add_argument("--rows", type=int, default=4, help="degraded rows")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tf = tfquiet.import_tensorflow()
    import numpy as np

    from superres import degradations, figures, images

    crops = []
    for name in IMAGES:
        hr = images.to_uint8(images.read_image(os.path.join(args.train, name + ".png")).rgb)
        y, x = (hr.shape[0] - 128) // 2, (hr.shape[1] - 128) // 2
        crops.append(hr[y:y + 128, x:x + 128])
    fig, axes = figures.subplots(args.rows + 1, len(crops), figsize=(2.2 * len(crops),
                                                                     2.3 * (args.rows + 1)))
    for column, hr in enumerate(crops):
        axes[0, column].imshow(hr)
        axes[0, column].set_title(IMAGES[column].split("/")[1] + " HR", fontsize=9)
        for row in range(1, args.rows + 1):
            lr = degradations.degrade(tf.constant(hr), tf.constant([row, column], tf.int64))
            axes[row, column].imshow(np.repeat(np.repeat(lr.numpy(), 4, 0), 4, 1))
            axes[row, column].set_title(f"LR, draw {row}", fontsize=9)
    for axis in axes.ravel():
        axis.axis("off")
    fig.suptitle("Real-ESRGAN's second-order degradations (published ranges), 32x32 LR shown 4x")
    fig.tight_layout()
    figures.save(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
