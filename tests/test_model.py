import numpy as np
import pytest
from conftest import run_python

import model as models


@pytest.mark.parametrize("height,width", [(16, 16), (13, 29), (1, 7)])
def test_output_is_scale_times_input_for_any_size(height, width):
    net = models.build_model("three_conv", scale=4)
    out = net(np.random.default_rng(0).uniform(size=(2, height, width, 3)).astype(np.float32))
    assert tuple(out.shape) == (2, 4 * height, 4 * width, 3)


def test_seed_architecture():
    net = models.three_conv(scale=4)
    convs = [layer for layer in net.layers if layer.__class__.__name__ == "Conv2D"]
    assert [(c.kernel_size, c.filters, c.activation.__name__) for c in convs] == [
        ((5, 5), 64, "relu"), ((3, 3), 32, "relu"), ((3, 3), 48, "linear")]
    assert isinstance(net.layers[-1], models.DepthToSpace)
    assert models.receptive_radius(net) == 4


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
