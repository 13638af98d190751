"""Training under tf.distribute: one loop for one device, many GPUs and many machines.

``train.py --distribute none`` runs the same loop on TensorFlow's default
(one-device) strategy, so the single-device and distributed paths cannot drift
apart.  Keras' ``model.fit`` is not used: under MultiWorkerMirroredStrategy it
fails on the first step (keras-team/keras#20585).  The loop keeps what users
know from ``fit``: Keras' progress bar, Keras callbacks (the run recorder)
called at the same points, and a stop on a NaN or infinite loss
(``TerminateOnNaN``'s rule).
"""

import math
import os


def make_strategy(kind, devices=None):
    """The tf.distribute strategy of ``--distribute``; ``devices`` (mirrored) names
    local devices, default every GPU (or the CPU when there is none)."""
    import tensorflow as tf

    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices or None)
    if kind == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--distribute multiworker needs the TF_CONFIG environment variable "
                             "describing the cluster (see docs/distributed.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run folder: the chief task, else worker 0,
    and always when not in a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _total(losses):
    """A loss function's value as (total per patch, {term: per patch} or {})."""
    import tensorflow as tf

    if isinstance(losses, dict):
        return tf.add_n(list(losses.values())), losses
    return losses, {}


def make_train_step(strategy, net, loss_fn, psnr_fn, global_batch, xla=False,
                    discriminator=None, discriminator_loss=None):
    """One distributed step: each replica's share of the global batch, gradients
    summed across replicas by the Keras optimizer.  ``loss_fn(lr, hr, output)`` gives
    one loss per patch, or named terms of it (superres/losses.py).  With a ``discriminator``
    (compiled with its own optimizer) the step then trains it on ``discriminator_loss(hr,
    output)`` with the same outputs, as Real-ESRGAN does.  Returns {"loss", "psnr", each term,
    "d_loss"}: global means over the batch (PSNR always against HR).  Called with
    ``train_generator=False`` the step leaves the generator as it is (its loss still logged)."""
    import tensorflow as tf

    def average(per_patch):
        return tf.nn.compute_average_loss(per_patch, global_batch_size=global_batch)

    def forward(lr, hr):
        output = net(lr, training=True)
        total, terms = _total(loss_fn(lr, hr, output))
        logs = {"loss": average(total), "psnr": average(psnr_fn(hr, output)),
                **{name: average(value) for name, value in terms.items()}}
        return logs, output

    def gradients(lr, hr):
        with tf.GradientTape() as tape:
            logs, output = forward(lr, hr)
        return tape.gradient(logs["loss"], net.trainable_variables), logs, output

    def discriminator_gradients(hr, output):
        with tf.GradientTape() as tape:
            loss = average(discriminator_loss(hr, tf.stop_gradient(output)))
        return tape.gradient(loss, discriminator.trainable_variables), loss

    compile_ = (lambda f: tf.function(f, jit_compile=True)) if xla else (lambda f: f)
    compute, discriminator_compute = compile_(gradients), compile_(discriminator_gradients)
    compute_forward = compile_(forward)

    def replica_step(lr, hr, train_generator):
        if train_generator:
            grads, logs, output = compute(lr, hr)
            net.optimizer.apply_gradients(zip(grads, net.trainable_variables))
        else:
            logs, output = compute_forward(lr, hr)
        if discriminator is not None:
            grads, logs["d_loss"] = discriminator_compute(hr, output)
            discriminator.optimizer.apply_gradients(zip(grads, discriminator.trainable_variables))
        return logs

    def make_step(train_generator):
        @tf.function
        def step(iterator):
            lr, hr = next(iterator)
            logs = strategy.run(replica_step, args=(lr, hr, train_generator))
            return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                    for name, value in logs.items()}
        return step

    steps = {True: make_step(True), False: make_step(False)}   # each traced on first use
    return lambda iterator, train_generator=True: steps[train_generator](iterator)


def evaluate(net, val_ds, loss_fn, psnr_fn, forward=None, niqe_crops=0):
    """Mean loss and PSNR over the fixed validation crops, on this process alone
    (every worker holds the same weights and the whole validation set, so the
    figures are those of a one-device run), and with ``niqe_crops`` (the crops of each
    image, which come in a row) the mean over images of their crops' NIQE taken as one
    (metrics.pooled_niqe_of: close to the whole image's; a crop's own NIQE, of a few blocks,
    is not); None when the crops are too small for it.  ``forward``: the net as one
    tf.function kept across epochs (traced once, not once per epoch and batch shape)."""
    import numpy as np
    import tensorflow as tf

    from superres import metrics

    forward = forward or tf.function(lambda lr: net(lr, training=False), reduce_retracing=True)
    loss_sum = psnr_sum = count = 0.0
    outputs = []
    for lr, hr in val_ds:
        output = forward(lr)
        loss_sum += float(tf.reduce_sum(_total(loss_fn(lr, hr, output))[0]))
        psnr_sum += float(tf.reduce_sum(psnr_fn(hr, output)))
        count += int(lr.shape[0])
        if niqe_crops:
            outputs += list(np.round(np.clip(np.asarray(output, np.float32), 0, 1) * 255)
                            .astype(np.uint8))
    scores = []
    if niqe_crops:
        try:
            scores = [metrics.pooled_niqe_of(outputs[i:i + niqe_crops])
                      for i in range(0, len(outputs), niqe_crops)]
        except ValueError:   # crops smaller than NIQE's two blocks
            pass
    return loss_sum / count, psnr_sum / count, (float(np.mean(scores)) if scores else None)


class _Progress:
    """Keras' progress bar on a terminal; in a log (stdout not a terminal) a plain line
    every tenth of the epoch and at its end, instead of a bar's escape codes."""

    def __init__(self, steps, verbose):
        import sys
        import time

        import keras

        self.steps, self.verbose, self.time, self.keras = steps, verbose, time, keras
        self.terminal = sys.stdout.isatty()
        self.started = time.time()
        self.bar = None   # made at the first update, once the names of the values are known

    def update(self, done, values, finalize=False):
        if not self.verbose:
            return
        if self.terminal:
            if self.bar is None:   # the values are running means: all "stateful"
                self.bar = self.keras.utils.Progbar(
                    self.steps, stateful_metrics=[name for name, _ in values] +
                    ["val_loss", "val_psnr", "val_niqe"])
            self.bar.update(done, values, finalize=finalize)
        elif finalize or done % max(1, self.steps // 10) == 0 and done < self.steps:
            shown = " - ".join(f"{name}: {value:.4f}" for name, value in values)
            print(f"{done}/{self.steps} {self.time.time() - self.started:.0f}s - {shown}",
                  flush=True)


def fit(strategy, net, dataset_fn, val_ds, *, epochs, steps_per_epoch, initial_epoch,
        global_batch, loss, psnr_fn, callbacks, xla=False, verbose=True, discriminator=None,
        discriminator_loss=None, discriminator_only_steps=0, val_niqe_crops=0):
    """Train ``net`` (built under ``strategy.scope()``) from ``initial_epoch`` to
    ``epochs`` on ``loss(lr, hr, output)`` (per patch, or named terms; superres/losses.py), with a
    ``discriminator`` trained on ``discriminator_loss`` beside it, alone for the run's first
    ``discriminator_only_steps`` steps (counted from epoch 0, so a resumed run keeps the count).
    ``dataset_fn(input_context, epoch)`` gives one input pipeline's batches of per-replica
    size for one epoch: made anew each epoch, so that an epoch's batches depend on the epoch
    alone and a resumed run trains on what the uninterrupted one would have.
    With ``val_niqe_crops`` (validation crops per image) validation scores NIQE too.
    With an averaging optimizer (use_ema) validation scores the averaged weights.
    Returns False if a NaN or infinite loss stopped it."""
    import tensorflow as tf

    from superres.training.runfolder import averaged_weights

    forward = tf.function(lambda lr: net(lr, training=False), reduce_retracing=True)
    step = make_train_step(strategy, net, loss, psnr_fn, global_batch, xla, discriminator,
                           discriminator_loss)
    for callback in callbacks:
        callback.set_model(net)
        callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        progress = _Progress(steps_per_epoch, verbose)
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda context, epoch=epoch: dataset_fn(context, epoch)))
        sums = {}
        for i in range(steps_per_epoch):
            train_generator = epoch * steps_per_epoch + i >= discriminator_only_steps
            values = {name: float(v) for name, v in step(iterator, train_generator).items()}
            bad = [name for name, v in values.items() if not math.isfinite(v)]
            if bad:
                print(f"\nbatch {i}: invalid {bad[0]} {values[bad[0]]}, terminating training")
                return False
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            progress.update(i + 1, [(name, total / (i + 1)) for name, total in sums.items()])
        with averaged_weights(net):
            val_loss, val_psnr, niqe = evaluate(net, val_ds, loss, psnr_fn, forward,
                                                val_niqe_crops)
        logs = {name: total / steps_per_epoch for name, total in sums.items()}
        logs.update(val_loss=val_loss, val_psnr=val_psnr)
        if niqe is not None:
            logs["val_niqe"] = niqe
        progress.update(steps_per_epoch, list(logs.items()), finalize=True)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
    return True
