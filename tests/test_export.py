import os
import sys

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, one_line_error, smooth_image

import export
import model as models
from superres import inference, metrics
from superres.architectures import layers
from superres.upscaling import upscale

FLOAT_FORMATS = [("saved_model", "none", 1e-5), ("tflite", "none", 1e-5),
                 ("tflite", "float16", 5e-3), ("onnx", "none", 1e-5)]


def _suffix(fmt, quantize):
    return {"saved_model": "_sm", "tflite": f"_{quantize}.tflite", "onnx": ".onnx"}[fmt]


@pytest.fixture(scope="module", params=["three_conv", "edsr", "edsr_input_colours", "rrdbnet",
                                        "srvgg"])
def small(request):
    import keras

    keras.utils.set_random_seed(0)
    if request.param == "three_conv":
        return request.param, models.three_conv(4, widths=(16, 8))
    if request.param == "rrdbnet":
        return request.param, models.rrdbnet(4, blocks=1, features=8, growth=4, reflect_pad=3)
    if request.param == "srvgg":
        return request.param, models.srvgg(4, convs=2, features=8, reflect_pad=3)
    net = models.edsr(4, blocks=1, width=8)
    return request.param, (layers.with_input_colours(net) if "colours" in request.param else net)


@pytest.mark.parametrize("fmt,quantize,tolerance", FLOAT_FORMATS)
def test_float_exports_match_keras_whole_and_tiled(small, fmt, quantize, tolerance, tmp_path):
    name, net = small
    path = export.export_model(net, str(tmp_path / f"{name}{_suffix(fmt, quantize)}"), fmt,
                               quantize)
    exported = inference.load_model(path)
    assert exported.scale == 4
    assert exported.radius == models.receptive_radius(net)
    image = smooth_image(37, 53)                       # odd-sized
    expected = upscale(image, net, dtype=np.float32)
    whole = upscale(image, exported, dtype=np.float32)
    np.testing.assert_allclose(whole, expected, atol=tolerance)
    tiled = upscale(image, exported, tile=16, dtype=np.float32)  # 3 x 4 tiles
    np.testing.assert_allclose(tiled, expected, atol=tolerance)


@pytest.mark.parametrize("fmt,suffix", [("tflite", ".tflite"), ("onnx", ".onnx")])
def test_int8_is_close_to_keras_on_a_real_image(fmt, suffix, tmp_path):
    from PIL import Image

    lr_path = os.path.join(SHARED_DATA, "Set5", "LR_bicubic_X4", "baby.png")
    if not os.path.exists(lr_path):
        pytest.skip(f"{lr_path} not found (../shared/data is beside the project in CI)")
    net = inference.load_model(os.path.join(REPO, "weights", "three_conv_x4.h5"))
    path = export.export_model(net, str(tmp_path / f"int8{suffix}"), fmt, "int8",
                               data="demo", count=8)
    lr = np.asarray(Image.open(lr_path).convert("RGB"))
    expected = upscale(lr, net, dtype=np.uint8)
    exported = inference.load_model(path)
    assert exported.radius == models.receptive_radius(net)    # read through the QDQ nodes
    quantized = upscale(lr, exported, tile=64, dtype=np.uint8)
    assert metrics.psnr(expected, quantized) > 35
    if fmt == "onnx":   # DepthToSpace and the output Transpose move uint8, not float
        import onnx
        assert [n.op_type for n in onnx.load(path).graph.node][-1] == "DequantizeLinear"
    assert os.path.getsize(path) < os.path.getsize(
        os.path.join(REPO, "weights", "three_conv_x4.h5")) / 3


@pytest.mark.parametrize("suffix,content", [(".tflite", b"TFL3" + b"\0" * 100),
                                            (".onnx", b"\x08\x07garbage"),
                                            (".tflite", b"<html>not a model</html>")])
def test_damaged_or_foreign_exports_are_one_line_errors(suffix, content, tmp_path, capsys):
    import evaluate

    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    assert evaluate.main(["--model", str(path), "--data", "demo", "--limit", "1"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(path) in line and "not a valid" in line


def test_missing_runtime_names_the_package(tmp_path, monkeypatch, capsys):
    import predict

    path = tmp_path / "model.onnx"
    path.write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import fails
    source = str(tmp_path / "x.png")
    from PIL import Image
    Image.fromarray(smooth_image(8, 8)).save(source)
    assert predict.main([source, "--model", str(path)]) == 2
    assert "pip install onnxruntime" in one_line_error(capsys.readouterr().err)


def test_export_cli_refuses_overwrite_and_bad_flags(tmp_path, capsys):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"user's file")
    assert export.main(["three_conv_64x32", "--format", "onnx", "-o", str(target)]) == 2
    assert "--overwrite" in one_line_error(capsys.readouterr().err)
    assert target.read_bytes() == b"user's file"
    assert export.main(["three_conv_64x32", "--format", "tflite", "-o",
                        str(tmp_path / "m.onnx")]) == 2
    assert "a tflite export is a .tflite file" in one_line_error(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        export.parse_args(["--format", "onnx", "--quantize", "float16"])
    assert "--quantize float16 applies to --format tflite only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.parse_args(["--quantize", "int8"])           # the default format: SavedModel
    assert "--quantize int8 applies to --format tflite or onnx" in capsys.readouterr().err
    assert export.main(["three_conv_64x32", "--format", "onnx", "-o", str(target),
                        "--overwrite"]) == 0
    assert inference.load_model(str(target)).scale == 4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]   # no temporary left


def test_a_h5_runs_by_its_own_onnx_export_beside_it(tmp_path, capsys):
    import keras
    import onnx

    import predict
    from superres import runtimes
    from conftest import save_small_model

    h5 = save_small_model(tmp_path)
    twin = str(tmp_path / "net.onnx")
    assert export.main([h5, "--format", "onnx", "-o", twin]) == 0
    source = str(tmp_path / "x.png")
    from PIL import Image
    Image.fromarray(smooth_image(8, 8)).save(source)
    capsys.readouterr()
    assert predict.main([source, "--model", h5]) == 0
    assert f"run by ONNX Runtime from {os.path.relpath(twin)}" in capsys.readouterr().out
    assert isinstance(inference.load_model(h5, runtime="auto"), runtimes.Exported)
    assert isinstance(inference.load_model(h5, runtime="tensorflow"), keras.Model)
    assert isinstance(inference.load_model(h5, bfloat16=True, runtime="auto"), keras.Model)

    proto = onnx.load(twin)                   # a quantized file under the twin's name
    next(p for p in proto.metadata_props if p.key == "quantize").value = "int8"
    onnx.save(proto, twin)
    assert isinstance(inference.load_model(h5, runtime="auto"), keras.Model)
    assert "is quantized (int8), not a float export" in capsys.readouterr().err

    keras.utils.set_random_seed(1)            # the .h5 retrained after its export
    models.three_conv(scale=4, widths=(16, 8)).save(h5)
    assert isinstance(inference.load_model(h5, runtime="auto"), keras.Model)
    note = capsys.readouterr().err.strip()
    assert "\n" not in note and "was not exported from this net.h5" in note
    assert "--overwrite" in note and "TensorFlow" in note


def test_input_colours_export_adds_the_stage_to_a_h5_and_refuses_twice(tmp_path, capsys):
    from superres import runtimes
    from conftest import save_small_model

    h5 = save_small_model(tmp_path)
    fixed = str(tmp_path / "fixed.h5")
    assert export.main([h5, "--format", "h5", "--input-colours", "1.5", "-o", fixed]) == 0
    assert "input colours: the output's low frequencies" in capsys.readouterr().out
    image = smooth_image(21, 17)
    expected = layers.with_input_colours(inference.load_model(h5), 1.5)
    np.testing.assert_allclose(upscale(image, inference.load_model(fixed), dtype=np.uint8),
                               upscale(image, expected, dtype=np.uint8), atol=1)
    assert export.main([fixed, "--format", "h5", "--input-colours", "1.5", "-o",
                        str(tmp_path / "twice.h5")]) == 2
    assert "keeps its input's colours already" in one_line_error(capsys.readouterr().err)
    # Exported straight from the plain .h5 with the stage, an ONNX file is not its twin.
    onnx_path = str(tmp_path / "net.onnx")
    assert export.main([h5, "--format", "onnx", "--input-colours", "1.5", "-o", onnx_path]) == 0
    assert runtimes.onnx_export_of(h5)[0] is None
    for flags, message in ((["--input-colours", "0"], "--input-colours must be above 0"),
                           (["--format", "h5", "--quantize", "int8"], "--quantize int8 applies to --format tflite or onnx")):
        with pytest.raises(SystemExit):
            export.parse_args(flags)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", inference.SHIPPED)
def test_shipped_onnx_exports_are_of_the_shipped_h5(name):
    from superres import runtimes

    h5 = inference.shipped_path(name)
    twin = os.path.splitext(h5)[0] + ".onnx"
    if not os.path.exists(twin):
        pytest.skip(f"{name} ships no ONNX export")
    found, problem = runtimes.onnx_export_of(h5)
    assert found == twin, f"{problem}: python export.py {name} --format onnx -o {twin} --overwrite"
    image = smooth_image(37, 53)
    expected = upscale(image, inference.load_model(h5), dtype=np.float32)
    np.testing.assert_allclose(upscale(image, runtimes.load(twin), dtype=np.float32),
                               expected, atol=1e-5)


def test_an_int8_litert_export_prints_nothing_of_the_converters(tmp_path, capfd):
    """The LiteRT converter writes its C++ lines ("fully_quantize: 0, inference_type: 6,
    ...") to the process's stderr: the user is shown only export.py's own line."""
    assert export.main(["three_conv_64x32", "--format", "tflite", "--quantize", "int8",
                        "--data", "demo", "-o", str(tmp_path / "m.tflite")]) == 0
    captured = capfd.readouterr()
    assert "fully_quantize" not in captured.err + captured.out


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "saved_model"])
def test_a_full_disk_is_one_line_and_leaves_nothing(fmt, tmp_path, capsys):
    from conftest import mounted_tmpfs, save_small_model

    model = save_small_model(tmp_path, widths=(64, 32))
    with mounted_tmpfs(str(tmp_path / "small"), "48k") as folder:
        output = os.path.join(folder, "net" + _suffix(fmt, "none"))
        assert export.main([model, "--format", fmt, "-o", output]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert line.startswith(f"error: disk full: cannot write {output} (")
        assert os.listdir(folder) == []
