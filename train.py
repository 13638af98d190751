"""Train an x4 super-resolution model.

    python train.py                          # three_conv x4 on DIV2K (tfds), the seed's settings
    python train.py --config configs/three_conv_x4.toml   # a shipped model's recipe
    python train.py --data demo --out runs/demo
    python train.py --config configs/photo.toml --resume  # continue an interrupted run

Settings are declared in superres/training/settings.py, the run folder (--out: model.h5, last.h5,
history.csv, loss_curves.png, config.json, resume state) is kept by superres/training/runfolder.py,
the losses are superres/losses.py's and the loop is superres/training/distribute.py's.
"""

import os
import sys

from superres.messages import interrupted, stop_on_sigterm, terminated_intact, UsageError


def parse_args(argv=None):
    """The resolved settings (settings.TRAINING: defaults, --config file, flags)."""
    from superres.training import settings

    def prepare(args):
        from superres import tfquiet

        # A cluster's strategy must be made before TensorFlow starts its devices.
        tfquiet.import_tensorflow(start_devices=args.distribute != "multiworker")

    args = settings.parse(argv, "Train an x4 super-resolution model (MSE + Adam by default).",
                          prepare)
    if args.bfloat16 and not args.xla:
        from superres import inference

        # XLA rescues emulated bfloat16; where the CPU has it, oneDNN is faster alone.
        args.xla = not inference.native_bfloat16()
    return args


def build_datasets(args):
    import data
    from superres import degradations
    from superres.fileio import can_write_in

    degradation = degradations.chosen(args.degradation, getattr(args, args.degradation, None),
                                      args.scale)
    if args.teacher:
        return teacher_datasets(args)
    if args.data == "div2k":
        data.check_tfds_available(args.scale, args.tfds_dir)  # fail in seconds, not minutes
    if args.cache:
        folder = os.path.dirname(os.path.abspath(args.cache))
        if not (os.path.isdir(folder) and can_write_in(folder)):
            raise data.DataError(f"--cache {args.cache}: cannot write in {folder}")
    # With validation images of its own, a folder without splits gives up nothing for validation.
    holdout = not args.val_data
    train_pairs = data.pair_dataset(args.data, "train", args.scale, holdout=holdout,
                                    tfds_data_dir=args.tfds_dir)
    if args.val_data:
        if os.path.realpath(args.val_data) == os.path.realpath(args.data):
            print("note: --val-data is --data: validation scores training images, so it "
                  "shows the fit, not how the model generalizes")
        val_pairs = data.pair_dataset(args.val_data, "validation", args.scale, holdout=False,
                                      tfds_data_dir=args.tfds_dir, flag="--val-data")
    else:
        val_pairs = data.pair_dataset(args.data, "validation", args.scale,
                                      tfds_data_dir=args.tfds_dir)
    # Decodes images only until the first usable one: cheap, and it stops a run
    # that would otherwise "train" on nothing.
    if not any(True for _ in train_pairs.filter(
            data.large_enough(args.patch_size, args.scale)).take(1)):
        raise data.DataError(f"no training image in {args.data} is at least {args.patch_size} "
                             "px on each side; lower --patch-size")
    val = data.validation_dataset(val_pairs, args.val_patch_size, args.scale, args.val_crops,
                                  args.batch_size, degradation)
    batches = sum(1 for _ in val)  # also fills the validation cache
    if not batches:
        raise data.DataError(f"no validation image is at least {args.val_patch_size} px "
                             "on each side; lower --val-patch-size")
    import tensorflow as tf

    def training_batches(context, epoch):
        """One input pipeline's share of the training images (tf.distribute calls
        this once per worker and epoch), in batches of one replica's share of --batch-size;
        its random draws are a function of (--seed, epoch, pipeline) alone."""
        count, index = context.num_input_pipelines, context.input_pipeline_id
        pairs = train_pairs if count == 1 else data.pair_dataset(
            args.data, "train", args.scale, holdout=holdout, tfds_data_dir=args.tfds_dir,
            shard=(count, index))
        if args.rescale != [1.0]:
            pairs = data.rescaled_pairs(pairs, args.rescale, args.scale)
        seed = epoch_seed(args.seed, epoch, index)
        cache = f"{args.cache}.{index}" if args.cache and count > 1 else args.cache
        return data.training_dataset(pairs, args.patch_size, args.scale,
                                     context.get_per_replica_batch_size(args.batch_size),
                                     args.patches_per_image, cache=cache, seed=seed,
                                     degradation=degradation)

    return training_batches, val.apply(tf.data.experimental.assert_cardinality(batches))


def teacher_datasets(args):
    """build_datasets for --teacher: its caches' pairs, the first topped up to --teacher-pairs
    in all."""
    import data
    from superres import teacher_cache

    folders = teacher_cache.folders(args.teacher_cache, args.teacher)
    have = sum(len(teacher_cache.pair_indices(f)) for f in folders)
    if have < args.teacher_pairs:
        print(f"making up to {args.teacher_pairs - have} teacher pairs in {folders[0]} "
              "(python -m superres.teacher_cache makes thousands in the background)", flush=True)
        first = len(teacher_cache.pair_indices(folders[0])) + args.teacher_pairs - have
        try:
            teacher_cache.fill(folders[0], args.teacher, first,
                               progress=lambda line: print(line, flush=True))
        except teacher_cache.CacheError as error:
            raise data.DataError(f"--teacher {args.teacher}: {error}") from None
    for folder in folders:
        print(f"teacher pairs: {len(teacher_cache.pair_indices(folder))} in {folder}")
    val = data.validation_dataset(data.teacher_pair_dataset(folders, "validation", args.scale),
                                  args.val_patch_size, args.scale, args.val_crops,
                                  args.batch_size)
    batches = sum(1 for _ in val)
    if not batches:
        raise data.DataError(f"{', '.join(folders)}: no validation pair is at least "
                             f"{args.val_patch_size} px on each side; lower --val-patch-size")
    import tensorflow as tf

    def training_batches(context, epoch):
        count, index = context.num_input_pipelines, context.input_pipeline_id
        pairs = data.teacher_pair_dataset(folders, "train", args.scale,
                                          shard=(count, index) if count > 1 else None)
        seed = epoch_seed(args.seed, epoch, index)
        return data.training_dataset(pairs, args.patch_size, args.scale,
                                     context.get_per_replica_batch_size(args.batch_size),
                                     args.patches_per_image, cache=args.cache, seed=seed)

    return training_batches, val.apply(tf.data.experimental.assert_cardinality(batches))


def epoch_seed(seed, epoch, pipeline):
    """The random seed of one epoch's training batches on one input pipeline."""
    return seed + 1000 * epoch + 7919 * pipeline


def compile_model(args):
    import keras

    import model as models

    keras.utils.set_random_seed(args.seed)
    options = {"kernel_initializer": args.kernel_initializer, **models.options_from(args)}
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if args.bfloat16 else "float32")
    try:
        net = models.build_model(args.model, args.scale, **options)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    total_steps = args.epochs * args.steps_per_epoch
    if args.lr_schedule == "cosine":
        warmup = min(args.warmup_steps, total_steps - 1)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else args.lr, decay_steps=total_steps - warmup, alpha=args.lr_floor,
            warmup_target=args.lr if warmup else None, warmup_steps=warmup)
    else:
        learning_rate = args.lr
    net.compile(optimizer=keras.optimizers.Adam(
        learning_rate, global_clipnorm=args.clip_norm or None, use_ema=args.ema > 0,
        ema_momentum=args.ema or 0.99))
    return net


def compile_discriminator(args):
    """The U-Net discriminator of a GAN run, with its own Adam, or None."""
    if not args.adversarial_weight:
        return None
    import keras

    from superres.architectures.unet_discriminator import unet_discriminator

    discriminator = unet_discriminator(args.discriminator_width)
    discriminator.compile(optimizer=keras.optimizers.Adam(args.discriminator_lr))
    discriminator.optimizer.build(discriminator.trainable_variables)
    return discriminator


def last_epoch(args):
    """Where this run stops: --epochs, or --stop-after within a longer schedule."""
    return min(args.epochs, args.stop_after or args.epochs)


def train(args):
    """Run (or resume) training; returns the history rows."""
    from superres import losses, metrics, tfquiet
    from superres.training import distribute, runfolder, settings

    import tensorflow as tf

    # Same inputs, same results, op by op: with each epoch's batches a function of the
    # epoch (epoch_seed), a resumed run ends with the weights of the uninterrupted one.
    tf.config.experimental.enable_op_determinism()
    with tfquiet.quiet_stderr():
        strategy = distribute.make_strategy(args.distribute, args.devices)
    chief = distribute.is_chief(strategy)
    # Everything that can be wrong with the data, model or flags fails here,
    # before --out is touched.
    dataset_fn, val_ds = build_datasets(args)
    with strategy.scope():
        net = compile_model(args)
        net.optimizer.build(net.trainable_variables)
        discriminator = compile_discriminator(args)
        loss, discriminator_loss = losses.from_settings(args, discriminator)
    if args.init_from and not runfolder.committed(args.out, args.resume)[1]:
        start_from(net, args.init_from)   # resuming loads the run's own state instead
    lock = runfolder.lock(args.out) if chief else None
    try:
        if chief:   # a cluster's other workers read the run folder, never write it
            epoch, history, weights = runfolder.prepare(
                args.out, args.resume, args.epochs, settings.recorded(args),
                lambda saved: settings.resume_differences(saved, args), args.config_file,
                args.restart)
        else:
            (epoch, weights), history = runfolder.committed(args.out, args.resume), []
        if weights:
            net.load_weights(weights[runfolder.MAIN])
            if discriminator is not None:
                discriminator.load_weights(weights["discriminator"])
            print(f"resuming {args.out} after epoch {epoch}")
        if epoch >= last_epoch(args):
            print(f"{args.out} already finished {epoch} epochs")
            return history
        callbacks = []
        niqe = settings.scores_niqe(args)
        if chief:
            # With texture terms the best epoch is not the sharpest by PSNR: model.h5 is the
            # most natural.
            callbacks.append(runfolder.make_recorder(
                args.out, history, f"{args.model} x{args.scale} on {args.data}",
                {"discriminator": discriminator} if discriminator is not None else None,
                "val_niqe" if niqe else "val_psnr"))
            if args.tensorboard:
                from superres.training import tensorboard_log

                callbacks.append(tensorboard_log.TensorBoardLog(
                    os.path.join(args.out, "tensorboard"), val_ds, args.scale))
        finished = distribute.fit(
            strategy, net, dataset_fn, val_ds, epochs=last_epoch(args),
            steps_per_epoch=args.steps_per_epoch, initial_epoch=epoch,
            global_batch=args.batch_size, loss=loss, psnr_fn=metrics.make_psnr_y_metric(args.scale),
            callbacks=callbacks, xla=args.xla, verbose=chief, discriminator=discriminator,
            discriminator_loss=discriminator_loss,
            discriminator_only_steps=args.discriminator_only_steps,
            val_niqe_crops=args.val_crops if niqe else 0)
    finally:
        if lock is not None:
            os.close(lock)
    if not chief:
        return history
    if finished and history and history[-1]["epoch"] == last_epoch(args):
        if "val_niqe" in history[-1]:
            best = min(r["val_niqe"] for r in history if "val_niqe" in r)
            print(f"done: {args.out}/model.h5 (best val NIQE {best:.2f})")
        else:
            best = max(r["val_psnr"] for r in history)
            print(f"done: {args.out}/model.h5 (best val PSNR-Y {best:.2f} dB "
                  f"on float outputs, {args.scale}-px shave)")
    else:
        done = history[-1]["epoch"] if history else 0
        kept = os.path.join(args.out, "history.csv" if history else "config.json")
        raise UsageError(f"training stopped in epoch {done + 1}: the loss became NaN or "
                         f"infinite; the run is intact up to epoch {done} ({kept}): continue "
                         "it with --resume, or start it over with --restart (e.g. with a "
                         "lower --lr)")
    return history


def start_from(net, path):
    """Load a trained plain model's weights into ``net`` (--init-from); a shallower
    edsr of the same width grows into a deeper one."""
    from superres import inference
    from superres.architectures.edsr import deepen_from, edsr_blocks

    start = inference.load_model(path)
    try:
        if 0 < edsr_blocks(start) < edsr_blocks(net):
            deepen_from(net, start)
            print(f"note: --init-from {path} has {edsr_blocks(start)} blocks; the "
                  f"other {edsr_blocks(net) - edsr_blocks(start)} start as "
                  "identities", file=sys.stderr)
        else:
            net.set_weights(weights_without_colours(start))
    except ValueError as error:
        raise UsageError(f"--init-from {path}: another architecture ({error})") from None


def weights_without_colours(net):
    """``net``'s weights without its fixed ``InputColours`` kernels, which a shipped photo
    model carries (export.py --input-colours) and a training network does not."""
    from superres.architectures.layers import InputColours

    colours = [layer for layer in net.layers if isinstance(layer, InputColours)]
    if colours:
        print(f"note: --init-from drops {net.name}'s input-colours layer; add it back with "
              "`python export.py RUN/last.h5 --format h5 --input-colours SIGMA`",
              file=sys.stderr)
    return [w for layer in net.layers if layer not in colours for w in layer.get_weights()]


def main(argv=None):
    stop_on_sigterm()
    args = parse_args(argv)
    import data
    from superres import inference
    from superres.messages import first_line

    import tensorflow as tf

    try:
        with terminated_intact():
            train(args)
    except (data.DataError, inference.ModelError, UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except tf.errors.OpError as error:  # a file that passed the checks but won't decode
        from superres import sources

        culprit = next(filter(None, (sources.first_undecodable(d, args.scale)
                                     for d in (args.data, args.val_data) if d)), None)
        print(f"error: {culprit or f'while reading {args.data}: {first_line(error.message)}'}"
              "; continue with --resume once it is fixed", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return interrupted(error, "continue with the same command plus --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
