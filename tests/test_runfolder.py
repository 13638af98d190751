"""runfolder.py: one committed state for all of a run's networks."""

import os

import numpy as np

import runfolder


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
