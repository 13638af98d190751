"""tf.distribute on CPU: two logical devices (mirrored), two local worker
processes on loopback ports (multiworker), and --tensorboard's event files."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

from conftest import REPO, run_python

DEMO = ["--data", "demo", "--batch-size", "4", "--val-crops", "2", "--patches-per-image", "2",
        "--widths", "16,8"]
CHIEF_FILES = {"model.h5", "last.h5", "history.csv", "loss_curves.png", "config.json", "state"}


def _epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_mirrored_on_two_devices_equals_one_device_and_trains(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        import model as models, train
        from superres import losses, metrics
        from superres.training import distribute

        rng = np.random.default_rng(0)
        lr = rng.uniform(size=(48, 8, 8, 3)).astype(np.float32)
        hr = rng.uniform(size=(48, 32, 32, 3)).astype(np.float32)
        def batches(context, epoch):
            return tf.data.Dataset.from_tensor_slices((lr, hr)).batch(
                context.get_per_replica_batch_size(16), drop_remainder=True).repeat()
        val = tf.data.Dataset.from_tensor_slices((lr[:8], hr[:8])).batch(8)
        weights = []
        for strategy in (tf.distribute.get_strategy(),
                         tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
            with strategy.scope():
                keras.utils.set_random_seed(0)
                net = models.three_conv(4, (16, 8))
                net.compile(keras.optimizers.Adam(1e-3), "mse")
                net.optimizer.build(net.trainable_variables)
            distribute.fit(strategy, net, batches, val, epochs=1, steps_per_epoch=3,
                           initial_epoch=0, global_batch=16, loss=losses.pixel("mse"),
                           psnr_fn=metrics.make_psnr_y_metric(4), callbacks=[], verbose=False)
            weights.append(net.get_weights())
            print("replicas", strategy.num_replicas_in_sync)
        for one, two in zip(*weights):
            np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
        start = models.three_conv(4, (16, 8))
        assert max(np.abs(a - b).max() for a, b in zip(weights[0], start.get_weights())) > 1e-4
        # The whole train.py on the two devices: a complete run folder.
        assert train.main({DEMO!r} + ["--steps-per-epoch", "5", "--epochs", "2",
                                      "--distribute", "mirrored", "--devices", "/cpu:0,/cpu:1",
                                      "--out", {str(tmp_path / "run")!r}]) == 0
        print("ok")
    """)
    path = tmp_path / "mirrored.py"
    path.write_text(script)
    result = run_python([str(path)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 1" in result.stdout and "replicas 2" in result.stdout
    assert result.stdout.strip().endswith("ok")
    assert set(os.listdir(tmp_path / "run")) == CHIEF_FILES
    assert _epochs(tmp_path / "run") == [1, 2]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(out, epochs, steps, extra=()):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        command = [sys.executable, "train.py"] + DEMO + [
            "--distribute", "multiworker", "--steps-per-epoch", str(steps),
            "--epochs", str(epochs), "--out", out] + list(extra)
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    return processes


def _finish(processes, timeout=300):
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout)[0])
        finally:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


def test_two_workers_write_one_run_folder_and_resume_after_sigkill(tmp_path):
    out = str(tmp_path / "cluster")
    state = os.path.join(out, "state", "state.json")
    processes = _start_workers(out, epochs=2, steps=80)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not os.path.exists(state):
            ended = [p for p in processes if p.poll() is not None]
            assert not ended, ended[0].stdout.read()[-3000:]
            time.sleep(0.2)
        time.sleep(0.5)   # into epoch 2 (80 steps)
        assert all(p.poll() is None for p in processes), "finished before the kill"
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait()
    with open(state) as f:
        assert json.load(f)["epoch"] == 1
    outputs = _finish(_start_workers(out, epochs=2, steps=80, extra=["--resume"]))
    assert "resuming" in outputs[0] and "after epoch 1" in outputs[0]
    assert "done:" in outputs[0] and "done:" not in outputs[1]   # the chief reports
    assert _epochs(out) == [1, 2]
    assert set(os.listdir(out)) == CHIEF_FILES   # the other worker left nothing
    with open(os.path.join(out, "config.json")) as f:
        assert len(json.load(f)["resumed"]) == 1   # written once, by the chief


def test_tensorboard_event_files_hold_scalars_and_images(tmp_path):
    import train
    from tensorboard.backend.event_processing import event_accumulator

    out = str(tmp_path / "tb")
    assert train.main(DEMO + ["--steps-per-epoch", "3", "--epochs", "2", "--tensorboard",
                              "--out", out]) == 0
    events = event_accumulator.EventAccumulator(os.path.join(out, "tensorboard"),
                                                size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    for name in ("loss", "val_loss", "psnr", "val_psnr", "learning_rate"):
        assert name in tags
        assert [e.step for e in events.Tensors(name)] == [1, 2]
    image_tag = next(t for t in tags if t.startswith("validation"))
    image_event = events.Tensors(image_tag)[-1]
    # An image summary holds width, height, then the encoded PNGs (3 crops here).
    assert len(image_event.tensor_proto.string_val) == 2 + 3
    import tensorflow as tf

    with open(os.path.join(out, "history.csv"), newline="") as f:
        history = list(csv.DictReader(f))
    last_val_psnr = float(tf.make_ndarray(events.Tensors("val_psnr")[-1].tensor_proto))
    assert abs(last_val_psnr - float(history[-1]["val_psnr"])) < 1e-3


def test_the_discriminator_trains_alone_for_its_first_steps_counted_across_epochs():
    """--discriminator-only-steps N: the run's first N steps train the discriminator alone.
    The count is the run's, not the epoch's: a run resumed after epoch 1 (of 2 steps each)
    with N = 3 trains only the discriminator in its first step and both in its second."""
    import keras
    import numpy as np
    import tensorflow as tf

    import model as models
    import train
    from superres import losses, metrics
    from superres.architectures.unet_discriminator import unet_discriminator
    from superres.training import distribute

    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(8, 8, 8, 3)).astype(np.float32)
    hr = rng.uniform(size=(8, 32, 32, 3)).astype(np.float32)
    settings = train.parse_args(["--model", "three_conv", "--loss", "l1", "--val-patch-size",
                                 "192", "--adversarial-weight", "0.1"])

    def batches(context, epoch):
        return tf.data.Dataset.from_tensor_slices((lr, hr)).batch(4).repeat()

    def run(only_steps):
        keras.utils.set_random_seed(0)
        net = models.three_conv(4, (8, 4))
        net.compile(keras.optimizers.Adam(1e-2))
        net.optimizer.build(net.trainable_variables)
        discriminator = unet_discriminator(4)
        discriminator.compile(keras.optimizers.Adam(1e-2))
        discriminator.optimizer.build(discriminator.trainable_variables)
        loss, discriminator_loss = losses.from_settings(settings, discriminator)
        before = net.get_weights(), discriminator.get_weights()
        val = tf.data.Dataset.from_tensor_slices((lr[:4], hr[:4])).batch(4)
        distribute.fit(tf.distribute.get_strategy(), net, batches, val, epochs=2,
                       steps_per_epoch=2, initial_epoch=1, global_batch=4, loss=loss,
                       psnr_fn=metrics.make_psnr_y_metric(4), callbacks=[], verbose=False,
                       discriminator=discriminator, discriminator_loss=discriminator_loss,
                       discriminator_only_steps=only_steps)
        moved = lambda old, new: any(not np.array_equal(a, b) for a, b in zip(old, new))  # noqa: E731
        return (moved(before[0], net.get_weights()),
                moved(before[1], discriminator.get_weights()), int(net.optimizer.iterations))

    assert run(4) == (False, True, 0)   # steps 3 and 4 of the run: the discriminator's
    assert run(3) == (True, True, 1)    # step 4 trains the generator too
    assert run(0) == (True, True, 2)
