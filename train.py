"""Train an x4 super-resolution model.

    python train.py                          # three_conv x4 on DIV2K (tfds), the seed's settings
    python train.py --data demo --out runs/demo
    python train.py --data /path/to/DIV2K --resume   # continue an interrupted run

The run folder (--out) gets model.h5 (best validation PSNR), last.h5,
history.csv, loss_curves.png and config.json; every write is atomic.  Resume
state (weights + optimizer) lives in <out>/state/ and is committed by
state.json only after the epoch's files are written, so a run killed at any
moment (SIGKILL included) resumes from its last completed epoch.
"""

import csv
import glob
import json
import os
import platform
import sys
import time

RUN_FILES = ("model.h5", "last.h5", "history.csv", "loss_curves.png", "config.json")
HISTORY_FIELDS = ("epoch", "loss", "val_loss", "psnr", "val_psnr", "lr", "seconds")
# Settings that must match when a run is resumed (epochs may be extended).


def parse_args(argv=None):
    """The resolved settings (settings.TRAINING: defaults, --config file, flags)."""
    import settings

    def prepare(args):
        import tfquiet

        # A cluster's strategy must be made before TensorFlow starts its devices.
        tfquiet.import_tensorflow(start_devices=args.distribute != "multiworker")

    args = settings.parse(argv, "Train an x4 super-resolution model (MSE + Adam by default).",
                          prepare)
    if args.bfloat16 and not args.xla:
        import inference

        # XLA rescues emulated bfloat16; where the CPU has it, oneDNN is faster alone.
        args.xla = not inference.native_bfloat16()
    return args


class UsageError(Exception):
    """A problem with the command line or the run folder; the message is for the user."""


# --------------------------------------------------------------------------- run folder

def library_versions():
    import keras
    import numpy
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__}


def read_history(path, last_epoch):
    """History rows up to ``last_epoch`` (drops rows an interrupted epoch may have left)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return [row for row in rows if row["epoch"] <= last_epoch]


def write_history(path, rows):
    from fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})


def plot_loss_curves(path, rows, title):
    """Training and validation loss per epoch, and validation PSNR beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fileio import atomic_path

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in rows], "o-", label="training")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_psnr.plot(epochs, [r["psnr"] for r in rows], "o-", label="training")
    ax_psnr.plot(epochs, [r["val_psnr"] for r in rows], "s-", label="validation")
    ax_psnr.set_xlabel("epoch")
    ax_psnr.set_ylabel("PSNR-Y (dB, shaved, float outputs)")
    ax_psnr.legend()
    ax_psnr.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# .h5 files are built in memory and written with Python's own file I/O: when the
# disk fills, that fails with a clean OSError, whereas h5py writing to a full disk
# prints tracebacks from its finalizers and can crash the process.

def save_h5(model, path):
    """Inference-only .h5 (no optimizer or compile state), written atomically; a
    training-form model is saved as the plain model it collapses to."""
    import io

    import h5py

    import model as models
    from fileio import write_bytes

    class H5Buffer(h5py.File):  # model.save picks its HDF5 writer by the name's suffix
        def __str__(self):
            return "model.h5"

    buffer = io.BytesIO()
    with H5Buffer(buffer, "w") as f:
        models.collapse(model).save(f, include_optimizer=False)
    write_bytes(path, buffer.getvalue())


def save_weights(model, path):
    """Weights and optimizer state (Keras' .weights.h5), written atomically."""
    import io

    from fileio import write_bytes

    class WeightsBuffer(io.BytesIO):  # save_weights checks the name's suffix
        def __str__(self):
            return "state.weights.h5"

    buffer = WeightsBuffer()
    model.save_weights(buffer)
    write_bytes(path, buffer.getvalue())


def state_file(args):
    """The resume state's commit point: names the last completed epoch and its weights."""
    return os.path.join(args.out, "state", "state.json")


def _read_config(config_path):
    if not os.path.exists(config_path):
        return None
    try:
        with open(config_path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise UsageError(f"{config_path} is unreadable ({error}); choose another --out") from None


def _check_same_settings(args, saved):
    import settings

    differ = settings.resume_differences(saved["settings"], args)
    if differ:
        raise UsageError(f"cannot resume {args.out} with other settings: " + "; ".join(differ))


def committed_state(args):
    """(epoch, weights path) of the run's last committed epoch, or (0, None): what
    a cluster's non-chief workers start from.  They only read; the chief checks
    and writes the folder (two processes checking it would race)."""
    if not (args.resume and os.path.exists(state_file(args))):
        return 0, None
    with open(state_file(args)) as f:
        state = json.load(f)
    return int(state["epoch"]), os.path.join(args.out, "state", state["weights"])


def prepare_run_folder(args):
    """Return (initial_epoch, history rows, state weights path or None); writes config.json."""
    from fileio import write_text

    state_path = state_file(args)
    config_path = os.path.join(args.out, "config.json")
    saved = _read_config(config_path)
    if args.resume and os.path.exists(state_path):
        if saved is None:
            raise UsageError(f"{args.out} has resume state but no config.json; "
                             "choose another --out")
        _check_same_settings(args, saved)
        with open(state_path) as f:
            state = json.load(f)
        epoch = int(state["epoch"])
        history = read_history(os.path.join(args.out, "history.csv"), epoch)
        if len(history) != epoch:
            raise UsageError(f"{args.out}/history.csv has {len(history)} rows for {epoch} epochs")
        saved["settings"]["epochs"] = args.epochs
        saved.setdefault("resumed", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                "from_epoch": epoch})
        write_text(config_path, json.dumps(saved, indent=2) + "\n")
        return epoch, history, os.path.join(args.out, "state", state["weights"])
    existing = [f for f in RUN_FILES if os.path.exists(os.path.join(args.out, f))]
    if existing and not args.resume:
        raise UsageError(f"{args.out} already holds a run ({', '.join(existing)}); "
                         "add --resume to continue it or choose another --out")
    if args.resume and saved is None and existing:
        raise UsageError(f"{args.out} holds run files ({', '.join(existing)}) but no "
                         "config.json: not a run train.py can resume; choose another --out")
    if args.resume and saved is None:
        print(f"note: nothing to resume in {args.out}; starting a new run")
    elif args.resume:
        # Killed before the first epoch was committed (state.json): whatever that
        # epoch had written so far is discarded and the run starts over.
        _check_same_settings(args, saved)
        for name in set(existing) - {"config.json"}:
            os.remove(os.path.join(args.out, name))
        print(f"note: {args.out} has no completed epoch; starting the run over")
    import settings

    config = {"settings": settings.recorded(args), "config_file": args.config_file,
              "versions": library_versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": sys.argv}
    write_text(config_path, json.dumps(config, indent=2) + "\n")
    return 0, [], None


def remove_leftovers(args):
    """Temporary files of killed atomic writes, and resume weights that no committed
    state.json names (a kill during their write leaves them partial)."""
    from fileio import remove_leftover_temps

    state_dir = os.path.join(args.out, "state")
    remove_leftover_temps(args.out)
    remove_leftover_temps(state_dir)
    committed = None
    if os.path.exists(state_file(args)):
        with open(state_file(args)) as f:
            committed = json.load(f)["weights"]
    for path in glob.glob(os.path.join(state_dir, "epoch-*.weights.h5")):
        if os.path.basename(path) != committed:
            os.remove(path)


def bytes_per_epoch_save(net):
    """About what one epoch's files take: the resume weights with Adam's two moments,
    two plain .h5 files, the curves and csv, plus room for the temporary copies."""
    import numpy

    import model as models

    training = sum(int(numpy.prod(w.shape)) for w in net.weights) * 4
    plain = sum(int(numpy.prod(w.shape)) for w in models.collapse(net).weights) * 4
    return int(1.25 * (3 * training + 2 * plain) + 2 * 2**20)


# --------------------------------------------------------------------------- callback

def make_run_recorder(args, history, best_val_psnr):
    import keras

    from fileio import write_text

    state_dir = os.path.join(args.out, "state")

    class RunRecorder(keras.callbacks.Callback):
        """Per epoch: history.csv, loss_curves.png, last.h5, model.h5 (if best),
        then the resume state; state.json is written last, so it only ever
        names a complete epoch.  (Keras' BackupAndRestore writes in place,
        which a kill mid-write can corrupt.)"""

        def __init__(self):
            super().__init__()
            self.best = best_val_psnr
            self.started = time.time()
            self.needed = None

        def on_train_begin(self, logs=None):
            self.needed = bytes_per_epoch_save(self.model)

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            from fileio import DiskFull, check_free_space, is_disk_full

            try:
                check_free_space(args.out, self.needed, f"saving epoch {epoch + 1}")
                self.save_epoch(epoch, logs or {})
            except OSError as error:
                if not (isinstance(error, DiskFull) or is_disk_full(error)):
                    raise
                reason = error.strerror if isinstance(error, DiskFull) else \
                    f"disk full while saving epoch {epoch + 1} in {args.out}"
                raise UsageError(f"{reason}; the run is intact up to epoch {epoch}: free some "
                                 "space, then rerun the same command with --resume") from None

        def save_epoch(self, epoch, logs):
            lr = self.model.optimizer.learning_rate
            row = {"epoch": epoch + 1, "loss": logs.get("loss"), "val_loss": logs.get("val_loss"),
                   "psnr": logs.get("psnr"), "val_psnr": logs.get("val_psnr"),
                   "lr": float(keras.ops.convert_to_numpy(lr)),
                   "seconds": round(time.time() - self.started, 1)}
            rows = history + [row]
            write_history(os.path.join(args.out, "history.csv"), rows)
            plot_loss_curves(os.path.join(args.out, "loss_curves.png"), rows,
                             f"{args.model} x{args.scale} on {args.data}")
            save_h5(self.model, os.path.join(args.out, "last.h5"))
            val_psnr = row["val_psnr"]
            best = self.best
            if val_psnr is not None and (best is None or val_psnr > best):
                best = val_psnr
                save_h5(self.model, os.path.join(args.out, "model.h5"))
            os.makedirs(state_dir, exist_ok=True)
            weights_name = f"epoch-{epoch + 1:04d}.weights.h5"
            save_weights(self.model, os.path.join(state_dir, weights_name))  # new file each epoch
            write_text(state_file(args),
                       json.dumps({"epoch": epoch + 1, "weights": weights_name,
                                   "best_val_psnr": best}) + "\n")
            # Committed: only now does the epoch count.
            history.append(row)
            self.best = best
            for old in glob.glob(os.path.join(state_dir, "epoch-*.weights.h5")):
                if os.path.basename(old) != weights_name:
                    os.remove(old)

    return RunRecorder()


# --------------------------------------------------------------------------- training

def completed_epochs(args):
    """Epochs a resumable run in --out has completed (0 for a new run)."""
    if not (args.resume and os.path.exists(state_file(args))):
        return 0
    with open(state_file(args)) as f:
        return int(json.load(f)["epoch"])


def build_datasets(args):
    import data
    import degradations

    degradation = degradations.settings_from(args.realesrgan) \
        if args.degradation == "realesrgan" else None
    if args.data == "div2k":
        data.check_tfds_available(args.scale, args.tfds_dir)  # fail in seconds, not minutes
    if args.cache:
        folder = os.path.dirname(os.path.abspath(args.cache))
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
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

    def training_batches(context):
        """One input pipeline's share of the training images (tf.distribute calls
        this once per worker), in batches of one replica's share of --batch-size."""
        count, index = context.num_input_pipelines, context.input_pipeline_id
        pairs = train_pairs if count == 1 else data.pair_dataset(
            args.data, "train", args.scale, holdout=holdout, tfds_data_dir=args.tfds_dir,
            shard=(count, index))
        if args.rescale != [1.0]:
            pairs = data.rescaled_pairs(pairs, args.rescale, args.scale)
        # A resumed run draws new patches rather than replaying those of epoch 1.
        seed = args.seed + 1000 * completed_epochs(args) + 7919 * index
        cache = f"{args.cache}.{index}" if args.cache and count > 1 else args.cache
        return data.training_dataset(pairs, args.patch_size, args.scale,
                                     context.get_per_replica_batch_size(args.batch_size),
                                     args.patches_per_image, cache=cache, seed=seed,
                                     degradation=degradation)

    return training_batches, val.apply(tf.data.experimental.assert_cardinality(batches))


def compile_model(args):
    import keras

    import metrics
    import model as models

    keras.utils.set_random_seed(args.seed)
    options = {"kernel_initializer": args.kernel_initializer}
    if args.model == "three_conv":
        options.update(widths=tuple(args.widths), expand=args.expand, branches=args.branches)
    elif args.model == "edsr":
        options.update(blocks=args.blocks, width=args.features)
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
    loss = "mean_squared_error" if args.loss == "mse" else "mean_absolute_error"
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=args.clip_norm or None)
    net.compile(optimizer=optimizer, loss=loss,
                metrics=[metrics.make_psnr_y_metric(args.scale)])
    return net


def train(args):
    """Run (or resume) training; returns the history rows."""
    import distribute
    import tfquiet

    with tfquiet.quiet_stderr():
        strategy = distribute.make_strategy(args.distribute, args.devices)
    chief = distribute.is_chief(strategy)
    # Everything that can be wrong with the data, model or flags fails here,
    # before --out is touched.
    dataset_fn, val_ds = build_datasets(args)
    with strategy.scope():
        net = compile_model(args)
        net.optimizer.build(net.trainable_variables)
        teacher = load_teacher(args) if args.teacher else None
    if args.init_from and not committed_state(args)[1]:   # resuming loads the run's own state
        start_from(net, args.init_from)
    if not chief:   # a cluster's other workers read the run folder, never write it
        return train_in_folder(args, net, dataset_fn, val_ds, strategy, chief=False,
                               teacher=teacher)
    from fileio import FolderLocked, lock_folder

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file; give a folder for the run")
    try:
        os.makedirs(args.out, exist_ok=True)
        lock = lock_folder(args.out)   # held for the life of the process
    except FolderLocked:
        raise UsageError(f"--out {args.out} is in use by another train.py; wait for it to "
                         "finish or stop it first") from None
    except OSError as error:
        raise UsageError(f"--out {args.out}: cannot create the run folder "
                         f"({error.strerror})") from None
    try:
        return train_in_folder(args, net, dataset_fn, val_ds, strategy, teacher=teacher)
    finally:
        os.close(lock)


def train_in_folder(args, net, dataset_fn, val_ds, strategy, chief=True, teacher=None):
    """The part of train() that runs with the run folder locked (by the chief)."""
    import distribute
    import metrics

    if chief:
        remove_leftovers(args)
        initial_epoch, history, state_weights = prepare_run_folder(args)
    else:
        (initial_epoch, state_weights), history = committed_state(args), []
    if state_weights:
        net.load_weights(state_weights)
        print(f"resuming {args.out} after epoch {initial_epoch}")
    if initial_epoch >= args.epochs:
        print(f"{args.out} already finished {initial_epoch} epochs")
        return history
    best = max((r["val_psnr"] for r in history), default=None)
    callbacks = []
    if chief:
        callbacks.append(make_run_recorder(args, history, best))
        if args.tensorboard:
            import tensorboard_log

            callbacks.append(tensorboard_log.TensorBoardLog(
                os.path.join(args.out, "tensorboard"), val_ds, args.scale))
    finished = distribute.fit(
        strategy, net, dataset_fn, val_ds, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, initial_epoch=initial_epoch,
        global_batch=args.batch_size, loss=args.loss, chroma_weight=args.chroma_weight,
        psnr_fn=metrics.make_psnr_y_metric(args.scale), callbacks=callbacks, xla=args.xla,
        verbose=chief, teacher=teacher, teacher_weight=args.teacher_weight)
    if not chief:
        return history
    if finished and history and history[-1]["epoch"] == args.epochs:
        best = max(r["val_psnr"] for r in history)
        print(f"done: {args.out}/model.h5 (best val PSNR-Y {best:.2f} dB "
              f"on float outputs, {args.scale}-px shave)")
    else:
        raise UsageError("training stopped early (NaN loss?); see history.csv")
    return history


def load_teacher(args):
    """The --teacher model, frozen; a UsageError unless it upscales by --scale."""
    import inference

    teacher = inference.load_model(args.teacher)
    if inference.model_scale(teacher) != args.scale:
        raise UsageError(f"--teacher {args.teacher} upscales x{inference.model_scale(teacher)}, "
                         f"not x{args.scale}")
    teacher.trainable = False
    return teacher


def start_from(net, path):
    """Load a trained plain model's weights into ``net`` (--init-from); a shallower
    edsr of the same width grows into a deeper one."""
    import inference
    import model as models

    start = inference.load_model(path)
    try:
        if models.is_collapsible(net):
            models.expand_from(net, start)
        elif 0 < models.edsr_blocks(start) < models.edsr_blocks(net):
            models.deepen_from(net, start)
            print(f"note: --init-from {path} has {models.edsr_blocks(start)} blocks; the "
                  f"other {models.edsr_blocks(net) - models.edsr_blocks(start)} start as "
                  "identities", file=sys.stderr)
        else:
            net.set_weights(start.get_weights())
    except ValueError as error:
        raise UsageError(f"--init-from {path}: another architecture ({error})") from None


def main(argv=None):
    args = parse_args(argv)
    import data
    import inference

    import tensorflow as tf

    try:
        train(args)
    except (data.DataError, inference.ModelError, UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except tf.errors.OpError as error:  # e.g. an image that passed the checks but won't decode
        print(f"error: while reading {args.data}: {error.message.splitlines()[0]}; "
              "continue with --resume once it is fixed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with the same command plus --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
