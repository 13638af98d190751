"""A training run's folder: prepared, locked, committed epoch by epoch, resumed.

    OUT/config.json        the resolved settings, the config file's text, versions
    OUT/history.csv        one row per completed epoch
    OUT/loss_curves.png    the history as a figure
    OUT/last.h5, model.h5  the last and the best-validation model (inference only)
    OUT/state/             resume state: per network, weights + optimizer state of one
                           epoch; OUT/state/state.json names them and commits the epoch

Every file is written atomically; state.json is written last, so it only ever names a
complete epoch, and a run killed at any instant resumes from its last one.  A run of
several networks (a generator and a discriminator) commits them all in one state.json.
"""

import contextlib
import csv
import glob
import json
import os
import platform
import sys
import time

from superres.messages import UsageError

RUN_FILES = ("model.h5", "last.h5", "history.csv", "loss_curves.png", "config.json")
HISTORY_FIELDS = ("epoch", "loss", "val_loss", "psnr", "val_psnr", "lr", "seconds")
MAIN = "model"   # the network that model.h5 / last.h5 hold




# --------------------------------------------------------------------------- state

def _state_path(out):
    return os.path.join(out, "state", "state.json")


def read_state(out):
    """The committed state, or None: {"epoch", "weights": {network: path}, "best_val_psnr"
    (or best_val_niqe)}.
    (A one-network state.json of older runs names a single weights file.)"""
    path = _state_path(out)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        state = json.load(f)
    weights = state["weights"]
    if isinstance(weights, str):
        weights = {MAIN: weights}
    state["weights"] = {name: os.path.join(out, "state", file) for name, file in weights.items()}
    return state


def committed(out, resume):
    """(epoch, {network: weights path}) a resumed run starts from, or (0, {})."""
    state = read_state(out) if resume else None
    return (int(state["epoch"]), state["weights"]) if state else (0, {})


def library_versions():
    import keras
    import numpy
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__}


def _read_config(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} is unreadable ({error}); choose another --out") from None


def lock(out):
    """Make ``out`` and hold its lock for the life of the process (a descriptor)."""
    from superres.fileio import FolderLocked, lock_folder

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    try:
        os.makedirs(out, exist_ok=True)
        return lock_folder(out)
    except FolderLocked:
        raise UsageError(f"--out {out} is in use by another train.py; wait for it to "
                         "finish or stop it first") from None
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create the run folder "
                         f"({error.strerror})") from None


def discard(out):
    """Remove a run's own files from ``out`` (--restart): nothing else in the folder."""
    import shutil

    for name in RUN_FILES:
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    for name in ("state", "tensorboard"):
        if os.path.isdir(os.path.join(out, name)):
            shutil.rmtree(os.path.join(out, name))


def prepare(out, resume, epochs, settings, differences, config_file=None, restart=False):
    """Check and start (or continue) the run in the locked ``out``: returns (epoch,
    history rows, {network: weights path}).  ``differences(saved settings)`` lists the
    settings --resume refuses; config.json is written (or its resume log extended).
    ``restart`` first discards what the folder holds of a run."""
    from superres.fileio import write_text

    if restart:
        discard(out)
    remove_leftovers(out)
    config_path = os.path.join(out, "config.json")
    saved = _read_config(config_path)
    state = read_state(out)

    def check_same():
        differ = differences(saved["settings"])
        if differ:
            raise UsageError(f"cannot resume {out} with other settings: " + "; ".join(differ))

    if resume and state:
        if saved is None:
            raise UsageError(f"{out} has resume state but no config.json; choose another --out")
        check_same()
        epoch = int(state["epoch"])
        history = read_history(os.path.join(out, "history.csv"), epoch)
        if len(history) != epoch:
            raise UsageError(f"{out}/history.csv has {len(history)} rows for {epoch} epochs")
        saved["settings"]["epochs"] = epochs
        saved.setdefault("resumed", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                "from_epoch": epoch})
        write_text(config_path, json.dumps(saved, indent=2) + "\n")
        return epoch, history, state["weights"]
    existing = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if existing and not resume:
        raise UsageError(f"{out} already holds a run ({', '.join(existing)}); "
                         "add --resume to continue it or choose another --out")
    if resume and saved is None and existing:
        raise UsageError(f"{out} holds run files ({', '.join(existing)}) but no "
                         "config.json: not a run train.py can resume; choose another --out")
    if resume and saved is None:
        print(f"note: nothing to resume in {out}; starting a new run")
    elif resume:
        # Killed before the first epoch was committed: whatever that epoch had written
        # so far is discarded and the run starts over.
        check_same()
        for name in set(existing) - {"config.json"}:
            os.remove(os.path.join(out, name))
        print(f"note: {out} has no completed epoch; starting the run over")
    config = {"settings": settings, "config_file": config_file, "versions": library_versions(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv}
    write_text(config_path, json.dumps(config, indent=2) + "\n")
    return 0, [], {}


def remove_leftovers(out):
    """Temporary files of killed atomic writes, and resume weights that no committed
    state.json names (a kill during their write leaves them partial)."""
    from superres.fileio import remove_leftover_temps

    state_dir = os.path.join(out, "state")
    remove_leftover_temps(out)
    remove_leftover_temps(state_dir)
    state = read_state(out)
    keep = set(state["weights"].values()) if state else set()
    for path in glob.glob(os.path.join(state_dir, "*.weights.h5")):
        if path not in keep:
            os.remove(path)


# --------------------------------------------------------------------------- files

def read_history(path, last_epoch):
    """History rows up to ``last_epoch`` (drops rows an interrupted epoch may have left)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return [row for row in rows if row["epoch"] <= last_epoch]


def write_history(path, rows):
    from superres.fileio import atomic_path

    fields = list(HISTORY_FIELDS) + sorted({k for r in rows for k in r} - set(HISTORY_FIELDS))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in fields})


def plot_loss_curves(path, rows, title):
    """Training and validation loss per epoch and validation PSNR; a GAN run's generator
    terms and discriminator loss, and validation NIQE, when the history has them."""
    from superres import figures

    terms = sorted({k for r in rows for k in r} - set(HISTORY_FIELDS) - {"val_niqe"})
    niqe = any("val_niqe" in r for r in rows)
    panels = 2 + bool(terms) + niqe
    fig, axes = figures.subplots(1, panels, figsize=(5 * panels, 4))
    epochs = [r["epoch"] for r in rows]
    for ax, key, label in ((axes[0], "loss", "loss"),
                           (axes[1], "psnr", "PSNR-Y (dB, shaved, float outputs)")):
        ax.plot(epochs, [r[key] for r in rows], "o-", label="training")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], "s-", label="validation")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    if terms:
        for key in terms:
            axes[2].plot(epochs, [r.get(key) for r in rows], "o-", label=key)
        axes[2].set_ylabel("training terms (weighted) and d_loss")
        axes[2].set_yscale("log")
    if niqe:
        axes[-1].plot(epochs, [r.get("val_niqe") for r in rows], "s-", label="validation")
        axes[-1].set_ylabel("NIQE (lower: more natural)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    figures.save(fig, path)


@contextlib.contextmanager
def averaged_weights(net):
    """Inside, ``net`` holds its optimizer's moving average of its weights (Keras'
    use_ema), if it keeps one: what validation scores and model.h5 / last.h5 hold.  The
    weights as trained come back after, so training and the resume state go on unchanged.
    Before the optimizer's first step (a discriminator-only start) the average is Keras'
    zeros, not yet a copy of the weights: the weights themselves stand in for it."""
    optimizer = getattr(net, "optimizer", None)
    if not (optimizer is not None and optimizer.use_ema and optimizer.built
            and int(optimizer.iterations) > 0):
        yield net
        return
    trained = [v.numpy() for v in net.trainable_variables]
    optimizer.finalize_variable_values(net.trainable_variables)
    try:
        yield net
    finally:
        for variable, value in zip(net.trainable_variables, trained):
            variable.assign(value)


# .h5 files are built in memory and written with Python's own file I/O: when the
# disk fills, that fails with a clean OSError, whereas h5py writing to a full disk
# prints tracebacks from its finalizers and can crash the process.

def save_h5(model, path):
    """Inference-only float32 .h5 (no optimizer or compile state), written atomically."""
    import io

    import h5py

    import model as models
    from superres.fileio import write_bytes

    class H5Buffer(h5py.File):  # model.save picks its HDF5 writer by the name's suffix
        def __str__(self):
            return "model.h5"

    buffer = io.BytesIO()
    with H5Buffer(buffer, "w") as f:
        models.as_float32(model).save(f, include_optimizer=False)
    write_bytes(path, buffer.getvalue())


def save_weights(model, path):
    """Weights and optimizer state (Keras' .weights.h5), written atomically."""
    import io

    from superres.fileio import write_bytes

    class WeightsBuffer(io.BytesIO):  # save_weights checks the name's suffix
        def __str__(self):
            return "state.weights.h5"

    buffer = WeightsBuffer()
    model.save_weights(buffer)
    write_bytes(path, buffer.getvalue())


def epoch_bytes(out):
    """What the last committed epoch wrote (resume state, models, history, curves), or
    None for a run with no committed epoch."""
    state = read_state(out)
    if not state:
        return None
    files = list(state["weights"].values()) + [os.path.join(out, name) for name in RUN_FILES
                                               if name != "config.json"]
    return sum(os.path.getsize(f) for f in files if os.path.exists(f))


def bytes_per_epoch_save(networks, out=None):
    """About what saving one epoch takes: 1.2 x what the run's last epoch wrote, or,
    before its first, the same worked out from the networks' sizes (each network's
    weights with Adam's two moments, two plain .h5 files of the main one, the curves)."""
    import numpy

    import model as models

    written = epoch_bytes(out) if out else None
    if written:
        return int(1.2 * written)

    def size(weights):
        return sum(int(numpy.prod(w.shape)) for w in weights) * 4

    training = sum(size(net.weights) for net in networks.values())
    plain = size(models.as_float32(networks[MAIN]).weights)
    return int(1.2 * (3 * training + 2 * plain) + 128 * 1024)


def _better(best_by, value, best):
    """Whether ``value`` of the validation score ``best_by`` beats ``best`` (NIQE: lower)."""
    return value is not None and (best is None or
                                  (value < best if best_by == "val_niqe" else value > best))


def commit_epoch(out, row, history, networks, best, title, best_by="val_psnr"):
    """Write epoch ``row["epoch"]``'s files, then commit it; returns the new best
    validation score ``best_by`` (model.h5 holds the epoch that had it).  ``history``
    (rows before it) gains the row once committed."""
    from superres.fileio import write_text

    epoch = row["epoch"]
    rows = history + [row]
    write_history(os.path.join(out, "history.csv"), rows)
    plot_loss_curves(os.path.join(out, "loss_curves.png"), rows, title)
    with averaged_weights(networks[MAIN]) as main:
        save_h5(main, os.path.join(out, "last.h5"))
        if _better(best_by, row.get(best_by), best):
            best = row[best_by]
            save_h5(main, os.path.join(out, "model.h5"))
    state_dir = os.path.join(out, "state")
    os.makedirs(state_dir, exist_ok=True)
    files = {}
    for name, net in networks.items():   # new files each epoch; the old stay until committed
        files[name] = f"epoch-{epoch:04d}.weights.h5" if name == MAIN \
            else f"epoch-{epoch:04d}-{name}.weights.h5"
        save_weights(net, os.path.join(state_dir, files[name]))
    weights = files[MAIN] if list(files) == [MAIN] else files
    write_text(_state_path(out), json.dumps({"epoch": epoch, "weights": weights,
                                             f"best_{best_by}": best}) + "\n")
    # Committed: only now does the epoch count.
    history.append(row)
    for old in glob.glob(os.path.join(state_dir, "*.weights.h5")):
        if os.path.basename(old) not in files.values():
            os.remove(old)
    return best


def make_recorder(out, history, title, networks=None, best_by="val_psnr"):
    """A Keras callback committing every epoch (``networks``: {name: model} beyond the
    callback's own model, which is MAIN; model.h5: the epoch best by ``best_by``); the free
    space is checked first, and a full disk stops the run with one line, the last completed
    epoch intact."""
    import keras

    class RunRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = None
            for row in history:
                if _better(best_by, row.get(best_by), self.best):
                    self.best = row[best_by]
            self.started = time.time()
            self.needed = None

        def networks(self):
            return {MAIN: self.model, **(networks or {})}

        def on_epoch_begin(self, epoch, logs=None):
            from superres.fileio import check_free_space, DiskFull

            self.started = time.time()
            self.needed = bytes_per_epoch_save(self.networks(), out)
            try:   # before the epoch's work, not only before its save
                check_free_space(out, self.needed, f"training epoch {epoch + 1}")
            except DiskFull as error:
                raise UsageError(f"{error.strerror}; the run is intact up to epoch {epoch}: "
                                 "free some space, then rerun the same command with "
                                 "--resume") from None

        def on_epoch_end(self, epoch, logs=None):
            from superres.fileio import check_free_space, DiskFull, is_disk_full

            logs = dict(logs or {})
            lr = self.model.optimizer.learning_rate
            row = {"epoch": epoch + 1, **logs, "lr": float(keras.ops.convert_to_numpy(lr)),
                   "seconds": round(time.time() - self.started, 1)}
            try:
                check_free_space(out, self.needed, f"saving epoch {epoch + 1}")
                self.best = commit_epoch(out, row, history, self.networks(), self.best, title,
                                         best_by)
            except OSError as error:
                if not (isinstance(error, DiskFull) or is_disk_full(error)):
                    raise
                reason = error.strerror if isinstance(error, DiskFull) else \
                    f"disk full while saving epoch {epoch + 1} in {out}"
                raise UsageError(f"{reason}; the run is intact up to epoch {epoch}: free some "
                                 "space, then rerun the same command with --resume") from None

    return RunRecorder()
