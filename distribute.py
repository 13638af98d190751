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

STRATEGIES = ("none", "mirrored", "multiworker")


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


def make_train_step(strategy, net, loss_fn, psnr_fn, global_batch, xla=False):
    """One distributed step: each replica's share of the global batch, gradients
    summed across replicas by the Keras optimizer.  ``loss_fn(lr, hr, sr)`` gives
    one loss per patch (losses.py).  Returns the global mean loss and mean PSNR of
    the batch (PSNR always against HR)."""
    import tensorflow as tf

    def gradients(lr, hr):
        with tf.GradientTape() as tape:
            sr = net(lr, training=True)
            loss = tf.nn.compute_average_loss(loss_fn(lr, hr, sr), global_batch_size=global_batch)
        return tape.gradient(loss, net.trainable_variables), loss, tf.reduce_sum(psnr_fn(hr, sr))

    compute = tf.function(gradients, jit_compile=True) if xla else gradients

    def replica_step(lr, hr):
        grads, loss, psnr_sum = compute(lr, hr)
        net.optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss, psnr_sum

    @tf.function
    def step(iterator):
        lr, hr = next(iterator)
        loss, psnr_sum = strategy.run(replica_step, args=(lr, hr))
        total = tf.distribute.ReduceOp.SUM
        return (strategy.reduce(total, loss, axis=None),
                strategy.reduce(total, psnr_sum, axis=None) / global_batch)

    return step


def evaluate(net, val_ds, loss_fn, psnr_fn, forward=None):
    """Mean loss and PSNR over the fixed validation crops, on this process alone
    (every worker holds the same weights and the whole validation set, so the
    figures are those of a one-device run).  ``forward``: the net as one tf.function
    kept across epochs (traced once, not once per epoch and batch shape)."""
    import tensorflow as tf

    forward = forward or tf.function(lambda lr: net(lr, training=False), reduce_retracing=True)
    loss_sum = psnr_sum = count = 0.0
    for lr, hr in val_ds:
        sr = forward(lr)
        loss_sum += float(tf.reduce_sum(loss_fn(lr, hr, sr)))
        psnr_sum += float(tf.reduce_sum(psnr_fn(hr, sr)))
        count += int(lr.shape[0])
    return loss_sum / count, psnr_sum / count


class _Progress:
    """Keras' progress bar on a terminal; in a log (stdout not a terminal) a plain line
    every tenth of the epoch and at its end, instead of a bar's escape codes."""

    def __init__(self, steps, verbose):
        import sys
        import time

        import keras

        self.steps, self.verbose, self.time = steps, verbose, time
        self.terminal = sys.stdout.isatty()
        self.started = time.time()
        if verbose and self.terminal:
            self.bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "psnr"])

    def update(self, done, values, finalize=False):
        if not self.verbose:
            return
        if self.terminal:
            self.bar.update(done, values, finalize=finalize)
        elif finalize or done % max(1, self.steps // 10) == 0 and done < self.steps:
            shown = " - ".join(f"{name}: {value:.4f}" for name, value in values)
            print(f"{done}/{self.steps} {self.time.time() - self.started:.0f}s - {shown}",
                  flush=True)


def fit(strategy, net, dataset_fn, val_ds, *, epochs, steps_per_epoch, initial_epoch,
        global_batch, loss, psnr_fn, callbacks, xla=False, verbose=True):
    """Train ``net`` (built under ``strategy.scope()``) from ``initial_epoch`` to
    ``epochs`` on ``loss(lr, hr, sr)`` (per patch; losses.py).  ``dataset_fn(input_context)``
    gives one input pipeline's batches of per-replica size.  Returns False if a NaN
    or infinite loss stopped it."""
    import tensorflow as tf

    loss_fn = loss
    forward = tf.function(lambda lr: net(lr, training=False), reduce_retracing=True)
    batches = strategy.distribute_datasets_from_function(dataset_fn)
    iterator = iter(batches)
    step = make_train_step(strategy, net, loss_fn, psnr_fn, global_batch, xla)
    for callback in callbacks:
        callback.set_model(net)
        callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        progress = _Progress(steps_per_epoch, verbose)
        loss_sum = psnr_sum = 0.0
        for i in range(steps_per_epoch):
            batch_loss, batch_psnr = (float(v) for v in step(iterator))
            if not math.isfinite(batch_loss):
                print(f"\nbatch {i}: invalid loss {batch_loss}, terminating training")
                return False
            loss_sum += batch_loss
            psnr_sum += batch_psnr
            progress.update(i + 1, [("loss", loss_sum / (i + 1)), ("psnr", psnr_sum / (i + 1))])
        val_loss, val_psnr = evaluate(net, val_ds, loss_fn, psnr_fn, forward)
        logs = {"loss": loss_sum / steps_per_epoch, "psnr": psnr_sum / steps_per_epoch,
                "val_loss": val_loss, "val_psnr": val_psnr}
        progress.update(steps_per_epoch, [("loss", logs["loss"]), ("psnr", logs["psnr"]),
                                          ("val_loss", val_loss), ("val_psnr", val_psnr)],
                        finalize=True)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
    return True
