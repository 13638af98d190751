"""model.py: the registry, building by name, and what a model costs."""
import numpy as np
import pytest
from conftest import run_python

import model as models


@pytest.mark.parametrize("height,width", [(16, 16), (13, 29), (1, 7)])
def test_output_is_scale_times_input_for_any_size(height, width):
    net = models.build_model("three_conv", scale=4)
    out = net(np.random.default_rng(0).uniform(size=(2, height, width, 3)).astype(np.float32))
    assert tuple(out.shape) == (2, 4 * height, 4 * width, 3)


def test_other_scales_and_widths():
    net = models.build_model("three_conv", scale=3, widths=(16, 8))
    assert tuple(net(np.zeros((1, 5, 6, 3), np.float32)).shape) == (1, 15, 18, 3)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="three_conv"):
        models.build_model("srresnet")


def test_multiply_adds_per_output_pixel():
    net = models.three_conv(scale=4)
    per_lr_pixel = 5 * 5 * 3 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 48
    assert models.multiply_adds_per_output_pixel(net) == per_lr_pixel / 16


def test_h5_round_trip_in_a_new_process(tmp_path):
    net = models.three_conv(scale=4)
    path = tmp_path / "net.h5"
    net.save(path)
    lr = np.random.default_rng(3).uniform(size=(1, 11, 9, 3)).astype(np.float32)
    np.save(tmp_path / "lr.npy", lr)
    np.save(tmp_path / "expected.npy", np.asarray(net(lr)))
    script = (
        "import sys, numpy as np, keras\n"
        "import model\n"
        f"net = keras.models.load_model({str(path)!r})\n"
        f"lr = np.load({str(tmp_path / 'lr.npy')!r})\n"
        f"expected = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "assert np.array_equal(np.asarray(net(lr)), expected)\n"
        "print('identical')\n")
    result = run_python(["-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout


def test_as_float32_is_the_mixed_precision_model_in_float32():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = models.edsr(4, blocks=1, width=8)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain = models.as_float32(mixed)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    for a, b in zip(plain.weights, mixed.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    net = models.three_conv(scale=4)
    assert models.as_float32(net) is net
