"""superres/architectures: the builders, their shared layers, and the discriminator."""
import keras
import numpy as np
import pytest

import model as models
from superres.architectures import layers
from superres.architectures.edsr import deepen_from, edsr_blocks
from superres.architectures.unet_discriminator import unet_discriminator


def _randomize(net_or_layer, seed):
    rng = np.random.default_rng(seed)
    for weight in net_or_layer.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape).astype(np.float32))


def _tiny(name):
    import keras

    keras.utils.set_random_seed(0)
    return {"rrdbnet": lambda: models.rrdbnet(4, blocks=2, features=8, growth=4),
            "srvgg": lambda: models.srvgg(4, convs=3, features=8)}[name]()



def test_seed_architecture():
    net = models.three_conv(scale=4)
    convs = [layer for layer in net.layers if layer.__class__.__name__ == "Conv2D"]
    assert [(c.kernel_size, c.filters, c.activation.__name__) for c in convs] == [
        ((5, 5), 64, "relu"), ((3, 3), 32, "relu"), ((3, 3), 48, "linear")]
    assert isinstance(net.layers[-1], layers.DepthToSpace)
    assert models.receptive_radius(net) == 4


def test_deepen_from_starts_exactly_at_the_shallower_edsr():
    shallow = models.edsr(4, blocks=2, width=8)
    _randomize(shallow, 10)
    net = models.edsr(4, blocks=4, width=8)
    assert (edsr_blocks(shallow), edsr_blocks(net)) == (2, 4)
    deepen_from(net, shallow)
    x = np.random.default_rng(11).uniform(size=(1, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(shallow(x)), rtol=1e-5, atol=1e-6)
    # The new blocks can learn: their first conv is random, their second receives gradients.
    import tensorflow as tf

    assert np.abs(net.get_layer("block3_conv1").get_weights()[0]).max() > 0
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(net(x) - 0.5))
    grad = tape.gradient(loss, net.get_layer("block4_conv2").kernel)
    assert float(tf.reduce_max(tf.abs(grad))) > 0


def test_deepen_from_refuses_what_it_cannot_grow():
    with pytest.raises(ValueError, match="shallower"):
        deepen_from(models.edsr(4, blocks=2, width=8), models.edsr(4, blocks=2, width=8))
    with pytest.raises(ValueError, match="shallower"):
        deepen_from(models.edsr(4, blocks=2, width=8), models.three_conv(4))
    with pytest.raises(ValueError):                      # another width
        deepen_from(models.edsr(4, blocks=4, width=8), models.edsr(4, blocks=2, width=16))


def test_the_unet_discriminator_judges_every_pixel_under_spectral_norm(tmp_path):
    keras.utils.set_random_seed(0)
    discriminator = unet_discriminator(8)
    x = np.random.default_rng(0).random((2, 64, 48, 3)).astype(np.float32)
    assert discriminator(x).shape == (2, 64, 48, 1)
    normed = [layer for layer in discriminator.layers
              if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(normed) == 8 and not isinstance(discriminator.get_layer("conv0"),
                                               keras.layers.SpectralNormalization)
    for _ in range(20):   # each training call takes a power-iteration step
        discriminator(x, training=True)
    for layer in normed:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert sigma == pytest.approx(1.0, abs=0.05), layer.name
    path = str(tmp_path / "d.h5")
    discriminator.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x), discriminator(x), atol=1e-6)


def _nearest_upscaler(scale=4):
    """A 'network' whose scale x scale block means are its input exactly."""
    inputs = keras.Input(shape=(None, None, 3))
    copies = keras.layers.Concatenate()([inputs] * scale * scale)
    return keras.Model(inputs, layers.DepthToSpace(scale)(copies))


def test_input_colours_keep_the_inputs_low_frequencies_and_the_networks_detail(tmp_path):
    rng = np.random.default_rng(0)
    lr = rng.uniform(0.2, 0.8, size=(1, 23, 31, 3)).astype(np.float32)
    consistent = layers.with_input_colours(_nearest_upscaler())
    np.testing.assert_allclose(consistent(lr), _nearest_upscaler()(lr), atol=1e-6)

    keras.utils.set_random_seed(0)
    net = models.edsr(4, blocks=1, width=8)
    tinted = keras.Model(net.input, keras.layers.Lambda(
        lambda x: x + np.float32([0.1, -0.05, 0.0]))(net.output))   # an off-colour network
    fixed = layers.with_input_colours(tinted)
    assert not fixed.trainable_weights[len(net.trainable_weights):]   # the fix learns nothing
    assert models.receptive_radius(fixed) == models.receptive_radius(net) + 6   # 3 sigma + 1
    out, raw = np.asarray(fixed(lr)), np.asarray(tinted(lr))
    means = lambda image: image.reshape(-1, 3).mean(axis=0)   # noqa: E731
    np.testing.assert_allclose(means(out), means(lr), atol=2e-3)
    assert np.abs(means(raw) - means(lr)).max() > 0.04
    # What the fix adds is smooth: the network's detail passes unchanged.
    added = out - raw
    assert np.abs(np.diff(added, axis=1)).max() < 0.2 * np.abs(np.diff(raw, axis=1)).max()

    path = str(tmp_path / "fixed.h5")
    layers.with_input_colours(net).save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again(lr), layers.with_input_colours(net)(lr), atol=1e-6)


def test_rrdbnet_is_real_esrgans_generator_at_its_published_size():
    net = models.build_model("rrdbnet", 4, blocks=23, features=64, growth=32)
    assert net.count_params() == 16_697_987            # RRDBNet_x4plus in BasicSR
    dense = [layer for layer in net.layers if layer.name.startswith("rrdb1_rdb1_conv")]
    assert [(layer.input.shape[-1], layer.filters) for layer in dense] == [
        (64, 32), (96, 32), (128, 32), (160, 32), (192, 64)]
    # 347 convolutions in LR space, then two x2 stages: about 1.1M per output pixel.
    assert round(models.multiply_adds_per_output_pixel(net)) == 1_120_428
    with pytest.raises(ValueError, match="powers of 2"):
        models.rrdbnet(3, blocks=1)


def test_srvgg_is_real_esrgans_compact_network():
    net = models.build_model("srvgg", 4, convs=16, features=64)
    assert net.count_params() == 621_424               # SRVGGNetCompact(num_conv=16)
    assert round(models.multiply_adds_per_output_pixel(net)) == (
        3 * 3 * 3 * 64 + 16 * 3 * 3 * 64 * 64 + 3 * 3 * 64 * 48) / 16


@pytest.mark.parametrize("name", ["rrdbnet", "srvgg"])
def test_real_esrgan_generators_upscale_any_size_and_round_trip(name, tmp_path):
    net = _tiny(name)
    lr = np.random.default_rng(1).uniform(size=(1, 7, 10, 3)).astype(np.float32)
    out = np.asarray(net(lr))
    assert out.shape == (1, 28, 40, 3)
    net.save(tmp_path / "net.h5")
    loaded = keras.models.load_model(tmp_path / "net.h5")
    np.testing.assert_array_equal(np.asarray(loaded(lr)), out)


def test_srvgg_adds_the_nearest_neighbour_upscaled_input():
    net = _tiny("srvgg")
    last = net.get_layer("conv_last")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    lr = np.random.default_rng(2).uniform(size=(1, 5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(net(lr))[0], lr[0].repeat(4, 0).repeat(4, 1))


@pytest.mark.parametrize("name, options", [("srvgg", {"convs": 2, "features": 8}),
                                           ("rrdbnet", {"blocks": 1, "features": 8,
                                                        "growth": 4})])
def test_input_colours_fix_networks_whose_last_layer_is_not_their_depth_to_space(
        name, options, tmp_path):
    """srvgg adds the input upsampled after its DepthToSpace and rrdbnet has none: the fix
    works on the whole output, so the network's detail (the nearest base included) stays."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    lr = rng.uniform(0.2, 0.8, size=(1, 19, 23, 3)).astype(np.float32)
    net = models.build_model(name, 4, **options)
    tinted = keras.Model(net.input, keras.layers.Lambda(
        lambda x: x + np.float32([0.1, -0.05, 0.0]))(net.output))   # an off-colour network
    fixed = layers.with_input_colours(tinted)
    out, raw = np.asarray(fixed(lr)), np.asarray(tinted(lr))
    assert out.shape == raw.shape == (1, 76, 92, 3)
    means = lambda image: image.reshape(-1, 3).mean(axis=0)   # noqa: E731
    np.testing.assert_allclose(means(out), means(lr), atol=2e-3)
    assert np.abs(means(raw) - means(lr)).max() > 0.04
    added = out - raw
    assert np.abs(np.diff(added, axis=1)).max() < 0.2 * np.abs(np.diff(raw, axis=1)).max()
    fixed = layers.with_input_colours(net)
    out = np.asarray(fixed(lr))
    path = str(tmp_path / "fixed.h5")
    fixed.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(lr), out, atol=1e-6)
