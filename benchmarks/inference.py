"""Inference throughput near the CPU's limit?  Output megapixels per second of
every shipped model (an untrained 8x32 EDSR when none ships) on a large input,
whole-image and tiled, in TensorFlow and in ONNX Runtime (what predict.py runs
when the .h5 ships its ONNX export), beside bicubic upscaling by
tf.image.resize, and the achieved GFLOP/s as a fraction of this machine's
measured fp32 matmul GFLOP/s (a large tf.matmul, timed in the same run).

    python benchmarks/inference.py [--lr-size 1000x750] [--repeats 3]

Variants: eager vs tf.function with XLA (jit_compile), tile sizes, and
bfloat16 compute (only where the CPU has AVX512_BF16 or AMX; reported with its
Set5 PSNR change when ../shared/data is present).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from machine import cpu_line  # noqa: E402  (benchmarks/machine.py)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def best_time(fn, repeats):
    fn()                                   # warm-up (graph building, allocation)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(repeats, n=4096):
    import tensorflow as tf

    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))

    @tf.function
    def product():
        return tf.reduce_sum(tf.matmul(a, b))

    return 2 * n ** 3 / best_time(lambda: product().numpy(), repeats) / 1e9


def conv_flops_per_lr_pixel(net):
    import model as models

    return 2 * models.multiply_adds_per_output_pixel(net) * 16


def conv_stack(widths, data_format):
    """three_conv's convolutions alone (no depth-to-space) in a given layout."""
    import keras

    shape = (3, None, None) if data_format == "channels_first" else (None, None, 3)
    x = inputs = keras.Input(shape)
    for filters, size, activation in ((widths[0], 5, "relu"), (widths[1], 3, "relu"),
                                      (48, 3, None)):
        x = keras.layers.Conv2D(filters, size, padding="same", activation=activation,
                                data_format=data_format)(x)
    return keras.Model(inputs, x)


def layout_times(widths, lr, repeats):
    """Seconds for NHWC and NCHW versions of the same convolutions (traced graphs)."""
    import tensorflow as tf

    times = {}
    for data_format in ("channels_last", "channels_first"):
        net = conv_stack(widths, data_format)
        batch = lr[None] if data_format == "channels_last" else lr.transpose(2, 0, 1)[None]
        run = tf.function(lambda x, net=net: net(x, training=False))
        times[data_format] = best_time(lambda: run(batch).numpy(), repeats)
    return times


def onnx_twin(net, h5_path, folder):
    """What predict.py runs by default: the .h5's own ONNX export if it ships one,
    else a fresh float ONNX export in ``folder``; None without ONNX Runtime."""
    import export
    from superres import runtimes

    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    twin, _ = runtimes.onnx_export_of(h5_path) if h5_path else (None, None)
    if twin is None:
        twin = export.export_model(net, os.path.join(folder, "model.onnx"), "onnx")
    return runtimes.load(twin)


def make_runner(net, mode):
    import tensorflow as tf

    if mode == "eager":
        return lambda x: net(x, training=False)
    if mode == "xla":
        return tf.function(lambda x: net(x, training=False), jit_compile=True)
    return tf.function(lambda x: net(x, training=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr-size", default="1000x750", help="input WxH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None,
                        help="a trained .h5 to measure (default: every shipped model)")
    args = parser.parse_args(argv)
    from superres import tfquiet

    tfquiet.import_tensorflow()   # without TensorFlow's start-up log
    import keras
    import tensorflow as tf

    import model as models
    from superres import inference
    from superres.upscaling import upscale

    # Removed when main returns or the interpreter exits, an exception included.
    scratch = tempfile.TemporaryDirectory(prefix="sr_bench_")
    workdir = scratch.name
    width, height = (int(v) for v in args.lr_size.split("x"))
    out_mp = width * height * 16 / 1e6
    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(height, width, 3)).astype(np.float32)
    peak = matmul_gflops(args.repeats)
    print(f"{cpu_line()}; fp32 matmul peak (4096^3 tf.matmul): {peak:.0f} GFLOP/s")
    print(f"input {width}x{height} -> output {4 * width}x{4 * height} ({out_mp:.1f} MP)\n")

    resize = tf.function(lambda x: tf.image.resize(x, (4 * height, 4 * width), "bicubic"))
    t_bicubic = best_time(lambda: resize(lr[None]).numpy(), args.repeats)
    print(f"{'bicubic tf.image.resize':<56}{out_mp / t_bicubic:>8.1f} MP/s")

    bf16_flags = inference.native_bfloat16()
    paths = {args.model: args.model} if args.model else {
        name: inference.shipped_path(name) for name in inference.shipped_models()}
    nets = {name: inference.load_model(path) for name, path in paths.items()}
    keras.utils.set_random_seed(0)
    if "edsr" not in nets:   # speed does not depend on the weights
        nets["edsr 8x32 (untrained)"] = models.edsr(4, blocks=8, width=32)
    print(f"\n{'model / variant':<56}{'MP/s':>8}{'GFLOP/s':>9}{'% peak':>8}")
    for name, net in nets.items():
        flops = conv_flops_per_lr_pixel(net) * width * height
        print(f"{name}: {models.multiply_adds_per_output_pixel(net):.0f} multiply-adds per "
              f"output pixel, {net.count_params()} parameters")
        rows = []
        for mode in ("eager", "graph", "xla"):
            run = make_runner(net, mode)
            rows.append((f"{mode}, whole image",
                         best_time(lambda: run(lr[None]).numpy(), args.repeats)))
        default = inference.default_tile(net)
        for tile in sorted({128, 256, 512, default}):
            label = " (predict.py's default)" if tile == default else ""
            rows.append((f"tiled {tile}{label}", best_time(
                lambda: upscale(lr, net, tile=tile, dtype=np.float32),
                args.repeats)))
        exported = onnx_twin(net, paths.get(name), workdir)
        if exported:
            rows.append(("ONNX Runtime, whole image", best_time(
                lambda: upscale(lr, exported, tile=None, dtype=np.float32), args.repeats)))
            tile = inference.default_tile(exported)
            rows.append((f"ONNX Runtime, tiled {tile} (predict.py)", best_time(
                lambda: upscale(lr, exported, tile=tile, dtype=np.float32), args.repeats)))
        for label, seconds in rows:
            gflops = flops / seconds / 1e9
            print(f"{name + ': ' + label:<56}{out_mp / seconds:>8.2f}{gflops:>9.1f}"
                  f"{100 * gflops / peak:>7.0f}%")
        if bf16_flags:
            half = inference.to_bfloat16(net)
            rows_bf16 = [
                ("bfloat16, whole image", best_time(
                    lambda: upscale(lr, half, tile=None, dtype=np.float32),
                    args.repeats)),
                (f"bfloat16, tiled {default}", best_time(
                    lambda: upscale(lr, half, tile=default, dtype=np.float32),
                    args.repeats))]
            for label, seconds in rows_bf16:
                gflops = flops / seconds / 1e9
                print(f"{name + ': ' + label:<56}{out_mp / seconds:>8.2f}{gflops:>9.1f}"
                      f"{100 * gflops / peak:>7.0f}% (of the fp32 peak)")
    print("\nlayout (convolutions only, graph mode, whole image):")
    for widths in ((128, 64), (64, 32)):
        try:
            times = layout_times(widths, lr, args.repeats)
        except tf.errors.UnimplementedError:   # TensorFlow's CPU kernels without oneDNN
            print("  channels_first convolutions are not available on this CPU's TensorFlow "
                  "(no oneDNN): channels_last only")
            break
        print(f"  {widths[0]}/{widths[1]}: channels_last {times['channels_last']:.2f} s, "
              f"channels_first {times['channels_first']:.2f} s "
              f"({times['channels_first'] / times['channels_last']:.2f}x)")
    print(f"\nbfloat16-capable CPU flags: {sorted(bf16_flags) or 'none'}")
    if bf16_flags and os.path.isdir(os.path.join(SHARED_DATA, "Set5")):
        import evaluate

        for name in paths:
            for label, net in (("float32", nets[name]),
                               ("bfloat16", inference.to_bfloat16(nets[name]))):
                _, rows = evaluate.evaluate_source(net, os.path.join(SHARED_DATA, "Set5"), 4)
                print(f"{name}, Set5 PSNR-Y in {label}: "
                      f"{np.mean([r['model_psnr'] for r in rows]):.3f} dB")
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
