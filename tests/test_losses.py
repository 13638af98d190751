"""losses.py: the pixel losses and distillation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import distribute
import losses
import metrics
import model as models
from metrics import YCBCR_ROWS


def test_pixel_loss_in_ycbcr_weights_chroma():
    rng = np.random.default_rng(0)
    hr = rng.random((2, 5, 6, 3)).astype(np.float32)
    sr = rng.random((2, 5, 6, 3)).astype(np.float32)
    rgb = losses.pixel("mse")(None, hr, sr).numpy()
    np.testing.assert_allclose(rgb, ((sr - hr) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    ycc = (sr - hr).astype(np.float64) @ YCBCR_ROWS.T
    for name, power in (("mse", 2), ("l1", 1)):
        expected = (np.abs(ycc) ** power * [1, 0.1, 0.1]).mean(axis=(1, 2, 3))
        got = losses.pixel(name, chroma_weight=0.1)(None, hr, sr).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # An error of pure chroma (no luminance change) costs nothing at weight 0.
    chroma_only = np.linalg.solve(YCBCR_ROWS, [0.0, 0.05, -0.03]).astype(np.float32)
    zero = losses.pixel("mse", chroma_weight=0.0)(None, hr, hr + chroma_only).numpy()
    np.testing.assert_allclose(zero, 0, atol=1e-9)


def test_distillation_loss_mixes_hr_and_teacher_targets():
    keras.utils.set_random_seed(0)
    student = models.three_conv(4, widths=(8, 8))
    teacher = models.three_conv(4, widths=(8, 4))
    student.compile(optimizer=keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    lr = rng.uniform(size=(4, 8, 8, 3)).astype(np.float32)
    hr = rng.uniform(size=(4, 32, 32, 3)).astype(np.float32)
    loss_fn = losses.pixel("l1")
    sr = student(lr)
    expected = float(tf.reduce_mean(0.3 * loss_fn(lr, hr, sr)
                                    + 0.7 * loss_fn(lr, teacher(lr), sr)))
    hr_psnr = float(tf.reduce_mean(metrics.make_psnr_y_metric(4)(hr, sr)))
    step = distribute.make_train_step(tf.distribute.get_strategy(), student,
                                      losses.distillation(loss_fn, teacher, 0.7),
                                      metrics.make_psnr_y_metric(4), 4)
    loss, psnr = step(iter(tf.data.Dataset.from_tensors((lr, hr)).repeat()))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(psnr) == pytest.approx(hr_psnr, rel=1e-5)      # PSNR stays against HR
