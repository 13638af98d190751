"""Colour and brightness shifts of each model on a benchmark set: each output's per-channel
(R, G, B) means minus the bicubic upscale's, the worst image and the mean over the set (a
tint), in 8-bit grey levels.  test_evaluate holds the shipped photo models to 1.5 per image
and 1.0 as a tint on B100.

    python benchmarks/colour_shift.py --models edsr photo photo_plus [--data ../shared/data/B100]
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="model names or files")
    parser.add_argument("--data", default=os.path.join(SHARED_DATA, "B100"))
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()
    import evaluate
    from superres import bicubic, inference, metrics
    from superres.upscaling import upscale

    pairs = list(evaluate.source_pairs(args.data, 4)[0])
    print(f"{len(pairs)} images of {args.data}; shifts of the channel means from bicubic's "
          "(R, G, B; grey levels)")
    print("\n| model | worst image | its shift | mean shift (tint) |\n|---|---|---|---|")
    for name in args.models:
        net = inference.load_model(name, runtime="auto")     # as predict.py runs it
        shifts = {item["name"]: metrics.channel_mean_shift(
                      bicubic.upscale(item["lr"], 4), upscale(item["lr"], net, dtype=np.uint8))
                  for item in pairs}
        worst = max(shifts, key=lambda n: np.abs(shifts[n]).max())
        tint = np.mean(list(shifts.values()), axis=0)
        print(f"| {name} | {worst} | {np.round(shifts[worst], 2).tolist()} | "
              f"{np.round(tint, 2).tolist()} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
