"""superres/training/runfolder.py: one committed state for all of a run's networks."""

import os

import numpy as np

from superres.training import runfolder


def _net(width, seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    net = keras.Model(inputs, keras.layers.Conv2D(width, 3, padding="same")(inputs))
    net.compile(keras.optimizers.Adam(1e-3))
    net.optimizer.build(net.trainable_variables)
    return net


def test_a_generator_and_a_discriminator_commit_in_one_state(tmp_path):
    import keras

    import model as models

    out = str(tmp_path / "run")
    os.makedirs(out)
    generator = models.three_conv(4, (8, 8))
    generator.compile(keras.optimizers.Adam(1e-3))
    generator.optimizer.build(generator.trainable_variables)
    networks = {runfolder.MAIN: generator, "discriminator": _net(4, 1)}
    history = []
    row = {"epoch": 1, "loss": 0.5, "val_loss": 0.4, "psnr": 20.0, "val_psnr": 21.0,
           "lr": 1e-3, "seconds": 1.0, "d_loss": 0.7}
    best = runfolder.commit_epoch(out, row, history, networks, None, "test")
    assert best == 21.0 and history == [row]
    state = runfolder.read_state(out)
    assert state["epoch"] == 1 and set(state["weights"]) == {"model", "discriminator"}
    assert all(os.path.exists(p) for p in state["weights"].values())
    # Epoch 2 replaces both; leftovers of neither survive; a fresh pair loads them back.
    networks["discriminator"].layers[1].kernel.assign(
        np.full(networks["discriminator"].layers[1].kernel.shape, 0.25, np.float32))
    runfolder.commit_epoch(out, dict(row, epoch=2, val_psnr=20.5), history, networks, best,
                           "test")
    state = runfolder.read_state(out)
    assert state["epoch"] == 2 and len(os.listdir(os.path.join(out, "state"))) == 3
    runfolder.remove_leftovers(out)
    assert len(os.listdir(os.path.join(out, "state"))) == 3
    fresh = _net(4, 2)
    fresh.load_weights(state["weights"]["discriminator"])
    np.testing.assert_array_equal(fresh.layers[1].kernel.numpy(), 0.25)
    assert [r["epoch"] for r in runfolder.read_history(os.path.join(out, "history.csv"), 2)] \
        == [1, 2]
    assert runfolder.read_history(os.path.join(out, "history.csv"), 2)[1]["d_loss"] == 0.7


def test_saved_models_hold_the_averaged_weights_and_training_goes_on_from_its_own(tmp_path):
    """With the optimizer's moving average (use_ema), last.h5 and model.h5 hold the average,
    the resume state the weights as trained (and the average among the optimizer's), and
    the weights are back as trained after the save."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    net = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs))
    net.compile(keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5))
    net.optimizer.build(net.trainable_variables)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(net(x)))
        grads = tape.gradient(loss, net.trainable_variables)
        net.optimizer.apply_gradients(zip(grads, net.trainable_variables))
    trained = [v.numpy().copy() for v in net.trainable_variables]
    average = [v.numpy().copy() for v in net.optimizer._model_variables_moving_average]
    assert not np.allclose(trained[0], average[0])
    out = str(tmp_path / "run")
    os.makedirs(out)
    row = {"epoch": 1, "loss": 0.5, "val_loss": 0.4, "psnr": 20.0, "val_psnr": 21.0,
           "lr": 0.1, "seconds": 1.0}
    runfolder.commit_epoch(out, row, [], {runfolder.MAIN: net}, None, "test")
    for name in ("last.h5", "model.h5"):
        saved = keras.models.load_model(os.path.join(out, name))
        np.testing.assert_allclose(saved.get_weights()[0], average[0], rtol=1e-6)
    np.testing.assert_array_equal(net.trainable_variables[0].numpy(), trained[0])
    net.load_weights(runfolder.read_state(out)["weights"][runfolder.MAIN])
    np.testing.assert_array_equal(net.trainable_variables[0].numpy(), trained[0])


def test_before_its_first_step_a_model_with_a_moving_average_is_its_own_weights():
    """A run that starts with the discriminator alone (--discriminator-only-steps) validates
    and saves its generator before the generator's first step, when Keras' moving average
    is still zeros: the weights themselves stand in for it."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    net = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs))
    net.compile(keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5))
    net.optimizer.build(net.trainable_variables)
    weights = [v.numpy().copy() for v in net.trainable_variables]
    assert not np.any(net.optimizer._model_variables_moving_average[0].numpy())
    with runfolder.averaged_weights(net):
        for variable, value in zip(net.trainable_variables, weights):
            np.testing.assert_array_equal(variable.numpy(), value)


def test_a_gan_runs_best_model_is_its_lowest_niqe(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    net = _net(3, 0)
    history = []
    best = None
    for epoch, niqe, psnr in ((1, 6.0, 22.0), (2, 5.0, 21.0), (3, 5.5, 23.0)):
        if epoch == 2:
            net.layers[1].kernel.assign(np.full(net.layers[1].kernel.shape, 0.5, np.float32))
        row = {"epoch": epoch, "loss": 1.0, "val_loss": 1.0, "psnr": psnr, "val_psnr": psnr,
               "val_niqe": niqe, "lr": 1e-4, "seconds": 1.0}
        best = runfolder.commit_epoch(out, row, history, {runfolder.MAIN: net}, best, "t",
                                      best_by="val_niqe")
        if epoch == 2:
            net.layers[1].kernel.assign(np.zeros(net.layers[1].kernel.shape, np.float32))
    import keras

    assert best == 5.0
    np.testing.assert_array_equal(keras.models.load_model(
        os.path.join(out, "model.h5")).layers[1].kernel.numpy(), 0.5)
    assert runfolder.make_recorder(out, history, "t", best_by="val_niqe").best == 5.0
