"""Training throughput of three_conv: plain and with XLA; of every model
in float32, with XLA and in mixed bfloat16 (train.py --bfloat16); then the time
to reach 30.0 dB Set5 PSNR-Y (4-pixel shave, 8-bit outputs) from scratch.

    python benchmarks/train_step.py [--steps 200] [--max-minutes 12] [--no-target]
    python benchmarks/train_step.py --precision-only     # the float32 / bfloat16 table
    python benchmarks/train_step.py --loop-only          # train.py's loop against model.fit
    python benchmarks/train_step.py --gan-only [--xla]   # GAN steps against an L1 step

Throughput: patches per second of ``train_on_batch`` (batch 16, 64x64 HR) on
in-memory batches, so the figure is the model's, not the input pipeline's.
Time to 30 dB: the shipped recipe (T91+BSD200 from ../shared/data/train,
cosine schedule) trained in chunks of 1000 steps, Set5 scored with
evaluate.py's code after each chunk; the clock counts training only.
"""

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def patches_per_second(net, steps, batch, hr_patch, warmup=10):
    """train_on_batch on one fixed random in-memory batch (no input pipeline)."""
    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(batch, hr_patch // 4, hr_patch // 4, 3)).astype(np.float32)
    hr = rng.uniform(size=(batch, hr_patch, hr_patch, 3)).astype(np.float32)
    for _ in range(warmup):
        net.train_on_batch(lr, hr)
    started = time.perf_counter()
    for _ in range(steps):
        net.train_on_batch(lr, hr)
    return steps * batch / (time.perf_counter() - started)


def training_rate(widths, steps, xla=False, batch=16):
    """Patches/s of train_on_batch for three_conv on in-memory batches (no pipeline)."""
    import keras

    import model as models

    keras.utils.set_random_seed(0)
    net = models.three_conv(4, widths)
    net.compile(keras.optimizers.Adam(1e-3), "mse", jit_compile=xla)
    return patches_per_second(net, steps, batch, 64)


def model_rate(name, options, steps, precision, batch=16, hr_patch=128):
    """Patches/s of train_on_batch for a registered model, as train.py builds it:
    'float32', 'xla' (float32, jit_compile), 'bfloat16' (mixed, no XLA) or
    'bfloat16+xla' (mixed, with XLA: what train.py --bfloat16 runs)."""
    import keras

    import model as models

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if "bfloat16" in precision
                                            else "float32")
    try:
        net = models.build_model(name, 4, **options)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    net.compile(keras.optimizers.Adam(1e-3), "mae", jit_compile="xla" in precision)
    return patches_per_second(net, steps, batch, hr_patch, warmup=5)


def loop_against_fit(steps, widths=(128, 64), batch=16):
    """Patches/s of train.py's training loop (distribute.fit on the default
    one-device strategy) and of Keras' model.fit, same model, same in-memory
    dataset, each after a warm-up epoch: what replacing fit cost."""
    import keras
    import tensorflow as tf

    import model as models
    from superres import losses, metrics
    from superres.training import distribute

    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(256, 16, 16, 3)).astype(np.float32)
    hr = rng.uniform(size=(256, 64, 64, 3)).astype(np.float32)

    def batches(context=None, epoch=0):
        return tf.data.Dataset.from_tensor_slices((lr, hr)).repeat().batch(batch).prefetch(4)

    val = tf.data.Dataset.from_tensor_slices((lr[:batch], hr[:batch])).batch(batch)
    psnr = metrics.make_psnr_y_metric(4)
    rates = {}
    for name in ("model.fit", "train.py loop"):
        keras.utils.set_random_seed(0)
        net = models.three_conv(4, widths)
        net.compile(keras.optimizers.Adam(1e-3), "mse", metrics=[psnr])
        net.optimizer.build(net.trainable_variables)
        seconds = []
        for count in (20, steps):    # warm-up (tracing), then timed
            started = time.perf_counter()
            if name == "model.fit":
                net.fit(batches(), epochs=1, steps_per_epoch=count, verbose=0)
            else:
                distribute.fit(tf.distribute.get_strategy(), net, batches, val, epochs=1,
                               steps_per_epoch=count, initial_epoch=0, global_batch=batch,
                               loss=losses.pixel("mse"), psnr_fn=psnr, callbacks=[],
                               verbose=False)
            seconds.append(time.perf_counter() - started)
        rates[name] = steps * batch / seconds[-1]
    return rates


PRECISION_MODELS = [("three_conv 128/64", "three_conv", {"widths": (128, 64)}),
                    ("edsr 8x32", "edsr", {"blocks": 8, "width": 32}),
                    ("edsr 8x48", "edsr", {"blocks": 8, "width": 48})]


def precision_table(steps):
    print("\npatches/s, batch 16 of 128x128 HR patches (32x32 LR), L1, Adam "
          f"({steps} steps each)")
    print(f"{'model':<20}{'float32':>10}{'XLA':>16}{'bfloat16':>16}{'bfloat16+XLA':>16}")
    for label, name, options in PRECISION_MODELS:
        rates = [model_rate(name, options, steps, p)
                 for p in ("float32", "xla", "bfloat16", "bfloat16+xla")]
        print(f"{label:<20}{rates[0]:>10.0f}" + "".join(
            f"{rate:>9.0f} ({rate / rates[0]:.2f}x)" for rate in rates[1:]), flush=True)


def print_loop_against_fit(steps):
    rates = loop_against_fit(steps)
    print(f"\nthree_conv 128/64, batch 16 of 64x64 HR, in-memory dataset ({steps} steps): "
          + ", ".join(f"{name} {rate:.0f} patches/s" for name, rate in rates.items())
          + f" (loop/fit {rates['train.py loop'] / rates['model.fit']:.2f}x)")


def gan_step_seconds(steps, batch, d_width, perceptual, xla, hr_patch=128):
    """Seconds per train.py step of the shipped edsr (12 x 32) on one in-memory batch:
    L1 alone (d_width 0), or L1 + perceptual (hed_vgg16's architecture; random weights,
    same cost) + vanilla GAN against a U-Net discriminator of base width ``d_width``."""
    import keras
    import tensorflow as tf

    import model as models
    import train
    from superres import losses, metrics
    from superres.architectures.unet_discriminator import unet_discriminator
    from superres.training import distribute

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(batch, hr_patch // 4, hr_patch // 4, 3)).astype(np.float32)
    hr = rng.uniform(size=(batch, hr_patch, hr_patch, 3)).astype(np.float32)
    net = models.edsr(4, 12, 32)
    net.compile(keras.optimizers.Adam(1e-4, use_ema=bool(d_width), ema_momentum=0.999))
    net.optimizer.build(net.trainable_variables)
    discriminator = None
    if d_width:
        discriminator = unet_discriminator(d_width)
        discriminator.compile(keras.optimizers.Adam(1e-4))
        discriminator.optimizer.build(discriminator.trainable_variables)
        # train.py's own settings for these flags, so the benchmark cannot miss one
        settings = train.parse_args([
            "--model", "edsr", "--loss", "l1", "--unsharp-target", "--val-patch-size", "192",
            "--perceptual-weight", str(float(perceptual)), "--adversarial-weight", "0.1",
            "--adversarial-loss", "vanilla", "--discriminator-width", str(d_width)])
        # random VGG weights: the cost is the same, and nothing is loaded
        built = {"perceptual": losses.perceptual(losses.vgg_features(
            "hed_vgg16", settings.perceptual_layers, None), settings.perceptual_layers)} \
            if perceptual else {}
        loss, discriminator_loss = losses.from_settings(settings, discriminator, built)
    else:
        loss, discriminator_loss = losses.pixel("l1"), None
    step = distribute.make_train_step(tf.distribute.get_strategy(), net, loss,
                                      metrics.make_psnr_y_metric(4), batch, xla, discriminator,
                                      discriminator_loss)
    iterator = iter(tf.data.Dataset.from_tensors((lr, hr)).repeat())
    for _ in range(3):
        step(iterator)["loss"].numpy()
    started = time.perf_counter()
    for _ in range(steps):
        step(iterator)["loss"].numpy()
    return (time.perf_counter() - started) / steps


def gan_table(steps, xla, batches=(8, 16)):
    print(f"\nseconds per train.py step, edsr 12x32, 128x128 HR patches, "
          f"{'XLA' if xla else 'no XLA'} ({steps} steps each); GAN = L1 + perceptual "
          "(VGG16 to conv5_3) + 0.1 x vanilla GAN, EMA")
    print(f"{'batch':<7}{'L1':>8}" + "".join(f"{f'GAN, D {w}':>18}" for w in (16, 32, 64)))
    for batch in batches:
        base = gan_step_seconds(steps, batch, 0, False, xla)
        row = [gan_step_seconds(steps, batch, w, True, xla) for w in (16, 32, 64)]
        print(f"{batch:<7}{base:>8.2f}" + "".join(f"{t:>10.2f} ({t / base:4.1f}x)" for t in row),
              flush=True)


def set5_psnr(net):
    import evaluate

    _, rows = evaluate.evaluate_source(net, os.path.join(SHARED_DATA, "Set5"), 4)
    return float(np.mean([row["model_psnr"] for row in rows]))


def time_to_target(widths, target, max_minutes, total_steps, chunk=1000, xla=False):
    """Train the shipped recipe until Set5 PSNR-Y >= target; returns a list of
    (steps, training seconds, Set5 PSNR)."""
    import keras

    import data
    import model as models
    from superres import metrics

    keras.utils.set_random_seed(0)
    net = models.three_conv(4, widths)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, total_steps, alpha=0.01)
    net.compile(keras.optimizers.Adam(schedule), "mse",
                metrics=[metrics.make_psnr_y_metric(4)], jit_compile=xla)
    batches = data.training_dataset(
        data.pair_dataset(os.path.join(SHARED_DATA, "train"), "train"), patches_per_image=8)
    trace, trained = [], 0.0
    while trained < max_minutes * 60:
        started = time.perf_counter()
        net.fit(batches, epochs=1, steps_per_epoch=chunk, verbose=0)
        trained += time.perf_counter() - started
        psnr = set5_psnr(net)
        trace.append(((len(trace) + 1) * chunk, trained, psnr))
        print(f"  {trace[-1][0]:>6} steps  {trained:7.0f} s  Set5 {psnr:.2f} dB", flush=True)
        if psnr >= target:
            break
    return trace


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps timed per variant")
    parser.add_argument("--target", type=float, default=30.0, help="Set5 PSNR-Y to reach")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="give up on the target after this much training time")
    parser.add_argument("--widths", default="128,64", help="widths for the time-to-target run")
    parser.add_argument("--no-target", action="store_true", help="throughput only")
    parser.add_argument("--loop-only", action="store_true",
                        help="only train.py's loop against Keras' model.fit")
    parser.add_argument("--precision-only", action="store_true",
                        help="only the float32 / XLA / bfloat16 table of every model")
    parser.add_argument("--gan-only", action="store_true",
                        help="only the GAN step (U-Net D of widths 16, 32, 64) against L1")
    parser.add_argument("--xla", action="store_true", help="--gan-only: with XLA")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()   # without TensorFlow's start-up log
    from machine import print_cpu   # benchmarks/machine.py

    print_cpu()
    if args.precision_only:
        precision_table(max(args.steps // 4, 10))
        return 0
    if args.loop_only:
        print_loop_against_fit(args.steps)
        return 0
    if args.gan_only:
        gan_table(max(args.steps // 20, 3), args.xla)
        return 0
    variants = [("plain", {}), ("XLA", {"xla": True})]
    for batch in (16, 64):
        print(f"\npatches/s, batch {batch} of 64x64 HR patches ({args.steps} steps each)")
        print(f"{'three_conv':<12}" + "".join(f"{name:>20}" for name, _ in variants))
        for widths in ((64, 32), (128, 64)):
            rates = [training_rate(widths, args.steps, batch=batch, **options)
                     for _, options in variants]
            print(f"{widths[0]}/{widths[1]:<9}" + "".join(
                f"{rate:>11.0f} ({rate / rates[0]:.2f}x)" for rate in rates))
    precision_table(max(args.steps // 4, 10))
    print_loop_against_fit(args.steps)
    if args.no_target:
        return 0
    if not os.path.isdir(os.path.join(SHARED_DATA, "Set5")):
        print(f"(skipping time to {args.target} dB: {SHARED_DATA} not found)")
        return 0
    widths = tuple(int(w) for w in args.widths.split(","))
    print(f"\ntime to {args.target} dB Set5 PSNR-Y, three_conv {widths[0]}/{widths[1]}, "
          "T91+BSD200, batch 16, Adam 1e-3 cosine over 120k steps:")
    trace = time_to_target(widths, args.target, args.max_minutes, total_steps=120_000)
    steps, seconds, psnr = trace[-1]
    if psnr >= args.target:
        print(f"reached {psnr:.2f} dB after {steps} steps, {seconds / 60:.1f} min of training")
    else:
        print(f"not reached within {args.max_minutes} min: {psnr:.2f} dB after {steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
