"""superres/losses.py: the pixel losses, distillation, and the GAN's terms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from superres import losses
from superres.architectures.unet_discriminator import unet_discriminator
from superres.metrics import YCBCR_ROWS


def test_pixel_loss_in_ycbcr_weights_chroma():
    rng = np.random.default_rng(0)
    hr = rng.random((2, 5, 6, 3)).astype(np.float32)
    output = rng.random((2, 5, 6, 3)).astype(np.float32)
    rgb = losses.pixel("mse")(None, hr, output).numpy()
    np.testing.assert_allclose(rgb, ((output - hr) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    ycc = (output - hr).astype(np.float64) @ YCBCR_ROWS.T
    for name, power in (("mse", 2), ("l1", 1)):
        expected = (np.abs(ycc) ** power * [1, 0.1, 0.1]).mean(axis=(1, 2, 3))
        got = losses.pixel(name, chroma_weight=0.1)(None, hr, output).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # An error of pure chroma (no luminance change) costs nothing at weight 0.
    chroma_only = np.linalg.solve(YCBCR_ROWS, [0.0, 0.05, -0.03]).astype(np.float32)
    zero = losses.pixel("mse", chroma_weight=0.0)(None, hr, hr + chroma_only).numpy()
    np.testing.assert_allclose(zero, 0, atol=1e-9)


def test_unsharp_leaves_flat_areas_and_sharpens_edges():
    flat = np.full((1, 64, 64, 3), 0.4, np.float32)
    np.testing.assert_allclose(losses.unsharp(flat).numpy(), flat, atol=1e-6)
    edge = np.zeros((1, 64, 64, 3), np.float32)
    edge[:, :, 32:] = 0.8
    sharp = losses.unsharp(edge).numpy()
    # Overshoot on both sides of the step (clipped at 0 on the dark side), none far away.
    assert sharp[0, 10, 33, 0] > 0.8 + 0.01 and sharp[0, 10, 62, 0] == pytest.approx(0.8, 1e-3)
    assert sharp.min() >= 0 and sharp.max() <= 1


def test_vgg_features_are_taken_before_the_relu_at_the_chosen_blocks():
    features = losses.vgg_features("hed_vgg16", (0, 1, 1, 0, 0), weights=None)
    assert not features.trainable
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    maps = features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 128), (2, 8, 8, 256)]
    assert all(float(tf.reduce_min(m)) < 0 for m in maps)      # not post-ReLU
    convs = [layer for layer in features.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 2 + 2 + 3                             # blocks 1-3 only
    assert features.layers[-1].name != "re_lu"                 # ends at conv3_3


def test_vgg19_without_weights_to_download_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(ValueError, match="vgg19: cannot load weights 'imagenet'.*hed_vgg16"):
        losses.vgg_features("vgg19", weights="trained")


def test_perceptual_loss_is_zero_for_the_target_and_weights_the_layers():
    features = losses.vgg_features("hed_vgg16", (0, 1, 1, 0, 0), weights=None)
    rng = np.random.default_rng(1)
    hr = rng.random((2, 32, 32, 3)).astype(np.float32)
    output = rng.random((2, 32, 32, 3)).astype(np.float32)
    both = losses.perceptual(features, (0, 1, 1, 0, 0))
    np.testing.assert_allclose(both(None, hr, hr).numpy(), 0, atol=1e-6)
    a, b = features(output), features(hr)
    weighted = losses.perceptual(features, (0, 2, 0.5, 0, 0))(None, hr, output).numpy()
    second = np.abs(np.asarray(a[1]) - np.asarray(b[1])).mean(axis=(1, 2, 3))
    first = np.abs(np.asarray(a[0]) - np.asarray(b[0])).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(weighted, 2 * first + 0.5 * second, rtol=1e-4)


def test_colour_blind_perceptual_loss_ignores_tints_and_tone_but_sees_texture():
    features = losses.vgg_features("hed_vgg16", (0, 1, 1, 0, 0), weights=None)
    detail = losses.perceptual(features, (0, 1, 1, 0, 0), colour_blind=True)
    rng = np.random.default_rng(3)
    hr = rng.random((2, 64, 64, 3)).astype(np.float32) * 0.5 + 0.25
    # a tint, and chroma texture of no luma (tf.image.rgb_to_grayscale's weights)
    chroma = rng.normal(0, 0.05, hr.shape[:3] + (1,)) * np.array([0.587, -0.2989, 0])
    tint = np.array([0.03, -0.02, 0.01], np.float32)
    tinted = tf.constant(hr + tint + chroma.astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(tinted)
        blind = detail(None, hr, tinted)
    offset_gradient = tf.reduce_sum(tape.gradient(blind, tinted), axis=[1, 2]).numpy()
    np.testing.assert_allclose(blind.numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(offset_gradient, 0, atol=1e-3)
    assert (losses.perceptual(features, (0, 1, 1, 0, 0))(None, hr, tinted).numpy() > 1e-3).all()
    noisy = hr + rng.normal(0, 0.05, hr.shape).astype(np.float32)
    assert (detail(None, hr, noisy).numpy() > 1e-3).all()


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_adversarial_losses_match_their_formulas(kind):
    # A "discriminator" that returns its input's first channel as the logit of each pixel.
    discriminator = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Lambda(
        lambda x: x[..., :1])])
    hr = np.full((2, 4, 4, 3), 2.0, np.float32)
    output = np.full((2, 4, 4, 3), -1.0, np.float32)
    generator_term, discriminator_loss = losses.adversarial(kind, discriminator)

    def bce(logit, real):
        return np.log1p(np.exp(-logit if real else logit))

    if kind == "vanilla":
        g, d = bce(-1.0, True), bce(2.0, True) + bce(-1.0, False)
    else:   # real - mean(fake) = 3, fake - mean(real) = -3
        g = (bce(3.0, False) + bce(-3.0, True)) / 2
        d = (bce(3.0, True) + bce(-3.0, False)) / 2
    np.testing.assert_allclose(generator_term(None, hr, output).numpy(), [g, g], rtol=1e-5)
    np.testing.assert_allclose(discriminator_loss(hr, output).numpy(), [d, d], rtol=1e-5)


def test_colour_term_sees_block_means_not_texture():
    rng = np.random.default_rng(4)
    hr = rng.random((2, 32, 48, 3)).astype(np.float32) * 0.5 + 0.25
    assert np.allclose(losses.colour(None, hr, hr).numpy(), 0)
    stripes = np.where(np.arange(48) % 2, 0.2, -0.2).astype(np.float32)[None, None, :, None]
    # zero-mean texture within each 16 x 16 block costs nothing; a tint costs its size
    np.testing.assert_allclose(losses.colour(None, hr, hr + stripes).numpy(), 0, atol=1e-6)
    tint = np.array([0.02, 0.0, -0.01], np.float32)
    np.testing.assert_allclose(losses.colour(None, hr, hr + tint).numpy(), [0.01, 0.01],
                               rtol=1e-4)


def test_spectrum_term_sees_texture_energy_not_where_it_falls():
    rng = np.random.default_rng(5)
    hr = rng.random((2, 32, 48, 3)).astype(np.float32)
    assert np.allclose(losses.spectrum(None, hr, hr).numpy(), 0)
    # each 16 x 16 block's content shifted round within the block: the same amplitudes
    blocks = hr.reshape(2, 2, 16, 3, 16, 3)
    shifted = np.roll(blocks, (3, 5), axis=(2, 4)).reshape(hr.shape)
    np.testing.assert_allclose(losses.spectrum(None, hr, shifted).numpy(), 0, atol=1e-6)
    assert (losses.pixel("l1")(None, hr, shifted).numpy() > 0.2).all()
    # a tint moves only the DC term, which is left out; a blur loses energy, which costs
    np.testing.assert_allclose(losses.spectrum(None, hr, hr + 0.1).numpy(), 0, atol=1e-6)
    assert (losses.spectrum(None, hr, losses.blur(hr, 5)).numpy() > 0.05).all()
    # flat blocks (zero amplitudes) still give a finite gradient
    flat = tf.Variable(np.full((1, 16, 16, 3), 0.5, np.float32))
    with tf.GradientTape() as tape:
        loss = losses.spectrum(None, hr[:1, :16, :16], flat)
    assert np.isfinite(tape.gradient(loss, flat).numpy()).all()


def test_the_settings_name_and_weigh_the_generators_terms():
    import argparse

    discriminator = unet_discriminator(4)
    settings = argparse.Namespace(unsharp_target=True, pixel_weight=2.0, loss="l1",
                                  chroma_weight=None, perceptual_weight=0.5,
                                  perceptual_layers=[0, 1, 0, 0, 0],
                                  adversarial_loss="vanilla", adversarial_weight=0.1,
                                  colour_weight=3.0, perceptual_colour_blind=True,
                                  spectrum_weight=1.5, mscn_weight=0.7)
    features = losses.vgg_features("hed_vgg16", settings.perceptual_layers, weights=None)
    perceptual = losses.perceptual(features, settings.perceptual_layers, colour_blind=True)
    loss, discriminator_loss = losses.from_settings(settings, discriminator,
                                                    built={"perceptual": perceptual})
    rng = np.random.default_rng(2)
    hr = rng.random((2, 32, 32, 3)).astype(np.float32)
    output = rng.random((2, 32, 32, 3)).astype(np.float32)
    terms = loss(None, hr, output)
    assert set(terms) == {"l1", "perceptual", "adversarial", "colour", "spectrum", "mscn"}
    np.testing.assert_allclose(terms["colour"].numpy(),   # against HR, not the sharpened HR
                               3 * losses.colour(None, hr, output).numpy(), rtol=1e-6)
    sharp = losses.unsharp(hr).numpy()
    np.testing.assert_allclose(terms["l1"].numpy(), 2 * np.abs(output - sharp).mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(
        terms["perceptual"].numpy(),
        0.5 * losses.perceptual(features, settings.perceptual_layers, colour_blind=True)(
            None, sharp, output).numpy(),
        rtol=1e-5)
    np.testing.assert_allclose(terms["spectrum"].numpy(),   # against the sharpened HR
                               1.5 * losses.spectrum(None, sharp, output).numpy(), rtol=1e-5)
    np.testing.assert_allclose(terms["mscn"].numpy(),
                               0.7 * losses.mscn(None, sharp, output).numpy(), rtol=1e-5)
    np.testing.assert_allclose(terms["adversarial"].numpy(), 0.1 * losses.adversarial(
        "vanilla", discriminator)[0](None, hr, output).numpy(), rtol=1e-5)
    assert discriminator_loss(hr, output).shape == (2,)


def test_a_pixel_loss_alone_compares_with_the_unsharp_masked_target_when_asked():
    import argparse

    rng = np.random.default_rng(3)
    hr = rng.random((2, 32, 32, 3)).astype(np.float32)
    output = rng.random((2, 32, 32, 3)).astype(np.float32)
    for sharpen, goal in ((True, losses.unsharp(hr).numpy()), (False, hr)):
        settings = argparse.Namespace(unsharp_target=sharpen, pixel_weight=1.0, loss="l1",
                                      chroma_weight=None, perceptual_weight=0.0,
                                      colour_weight=0.0, spectrum_weight=0.0,
                                      mscn_weight=0.0)
        loss, discriminator_loss = losses.from_settings(settings)
        assert discriminator_loss is None
        np.testing.assert_allclose(loss(None, hr, output).numpy(),
                                   np.abs(output - goal).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_mscn_coefficients_are_niqes():
    from scipy.ndimage import correlate

    from superres import metrics

    rng = np.random.default_rng(6)
    y = losses.blur(rng.random((1, 40, 48, 1)).astype(np.float32), 3).numpy()[..., 0]
    image = 255.0 * y[0].astype(np.float64)
    window = metrics._niqe_model()[2]
    mu = correlate(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
    expected = (image - mu) / (sigma + 1)
    ours = losses.mscn_coefficients(y).numpy()[0]
    # the edges differ (reflected here, repeated there) and so does the variance's floor
    np.testing.assert_allclose(ours[3:-3, 3:-3], expected[3:-3, 3:-3], atol=2e-3)


def test_mscn_term_asks_for_the_targets_local_contrast_not_its_pixels():
    rng = np.random.default_rng(7)
    # a stationary texture: the same statistics in every block
    hr = 0.5 + 0.2 * losses.blur(rng.standard_normal((2, 64, 64, 1)).astype(np.float32), 3)
    hr = tf.tile(hr, (1, 1, 1, 3)).numpy()
    assert np.allclose(losses.mscn(None, hr, hr).numpy(), 0)
    moved = np.roll(hr, (5, 7), axis=(1, 2))
    blurred = losses.blur(hr, 9).numpy()
    # L1 prefers the blur (the mean) to the texture moved; this term the other way round
    assert (losses.pixel("l1")(None, hr, moved).numpy()
            > losses.pixel("l1")(None, hr, blurred).numpy()).all()
    assert (losses.mscn(None, hr, moved).numpy()
            < 0.25 * losses.mscn(None, hr, blurred).numpy()).all()
    # where the target is flat, faint grain costs; the spectrum term's energy is one reading
    # of it, the mscn term's normalized contrast another
    flat = np.full((1, 64, 64, 3), 0.5, np.float32)
    grain = flat + rng.normal(0, 2 / 255, flat.shape).astype(np.float32)
    assert losses.mscn(None, flat, grain).numpy()[0] > 0.1
    # a flat output still gives a finite gradient
    output = tf.Variable(flat)
    with tf.GradientTape() as tape:
        loss = losses.mscn(None, hr[:1], output)
    assert np.isfinite(tape.gradient(loss, output).numpy()).all()
