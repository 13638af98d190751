import os
import shutil

import numpy as np
import pytest
from conftest import png_header_only, run_python, smooth_image
from PIL import Image

import predict
from superres import images, inference, limits


def _save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "tiff", "webp", "gif"])
def test_formats_round_trip_rgb(model_path, tmp_path, ext):
    source = _save(str(tmp_path / f"in.{ext}"), smooth_image(13, 17))
    assert predict.main([source, "--model", model_path]) == 0
    out = Image.open(tmp_path / "in_x4.png")
    assert out.size == (68, 52) and out.mode == "RGB"


def test_grayscale_stays_grayscale(model_path, tmp_path):
    source = _save(str(tmp_path / "g.png"), smooth_image(12, 10)[..., 0])
    assert predict.main([source, "--model", model_path]) == 0
    out = Image.open(tmp_path / "g_x4.png")
    assert out.mode == "L" and out.size == (40, 48)


def test_rgba_keeps_upscaled_alpha(model_path, tmp_path):
    from superres import bicubic

    rgba = np.concatenate([smooth_image(12, 14), np.full((12, 14, 1), 255, np.uint8)], -1)
    rgba[:6, :, 3] = 0
    source = _save(str(tmp_path / "a.png"), rgba)
    assert predict.main([source, "--model", model_path]) == 0
    out = np.array(Image.open(tmp_path / "a_x4.png"))
    assert out.shape == (48, 56, 4)
    np.testing.assert_array_equal(out[..., 3], bicubic.upscale(rgba[..., 3]))


def test_palette_with_transparency_and_gray_alpha(model_path, tmp_path):
    palette = Image.fromarray(smooth_image(10, 10)).convert("P", palette=Image.ADAPTIVE)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    assert predict.main([str(tmp_path / "p.png"), "--model", model_path]) == 0
    assert Image.open(tmp_path / "p_x4.png").mode == "RGBA"
    la = Image.fromarray(smooth_image(10, 10)[..., 0]).convert("LA")
    la.save(tmp_path / "la.png")
    assert predict.main([str(tmp_path / "la.png"), "--model", model_path]) == 0
    assert Image.open(tmp_path / "la_x4.png").mode == "LA"


def test_sixteen_bit_stays_sixteen_bit(model_path, tmp_path):
    import tensorflow as tf

    rgb16 = (smooth_image(9, 11).astype(np.uint16) * 257)
    (tmp_path / "c16.png").write_bytes(tf.io.encode_png(rgb16).numpy())
    gray16 = rgb16[..., :1]
    (tmp_path / "g16.png").write_bytes(tf.io.encode_png(gray16).numpy())
    assert predict.main([str(tmp_path / "c16.png"), str(tmp_path / "g16.png"),
                         "--model", model_path]) == 0
    c16 = tf.io.decode_png((tmp_path / "c16_x4.png").read_bytes(), dtype=tf.uint16).numpy()
    g16 = tf.io.decode_png((tmp_path / "g16_x4.png").read_bytes(), dtype=tf.uint16).numpy()
    assert c16.shape == (36, 44, 3) and g16.shape == (36, 44, 1)
    assert images._png_bit_depth(str(tmp_path / "c16_x4.png")) == 16


def test_exif_orientation_comes_out_upright(model_path, tmp_path):
    image = Image.fromarray(smooth_image(8, 16))          # 16 wide, 8 tall as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    image.save(tmp_path / "photo.jpg", exif=exif)
    assert predict.main([str(tmp_path / "photo.jpg"), "--model", model_path]) == 0
    assert Image.open(tmp_path / "photo_x4.png").size == (32, 64)   # upright: 8 wide


def test_first_frame_of_animated_gif(model_path, tmp_path):
    frames = [Image.fromarray(smooth_image(8, 8, seed=s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert predict.main([str(tmp_path / "anim.gif"), "--model", model_path]) == 0
    assert Image.open(tmp_path / "anim_x4.png").size == (32, 32)


def test_no_overwrite_without_flag(model_path, tmp_path, capsys):
    source = _save(str(tmp_path / "x.png"), smooth_image(8, 8))
    target = tmp_path / "x_x4.png"
    target.write_bytes(b"precious")
    assert predict.main([source, "--model", model_path]) == 1
    assert target.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    assert predict.main([source, "--model", model_path, "--overwrite"]) == 0
    assert Image.open(target).size == (32, 32)


def test_a_rerun_over_a_folder_says_once_what_exists_and_both_remedies(model_path, tmp_path,
                                                                        capsys):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _save(str(folder / name), smooth_image(8, 8))
    assert predict.main([str(folder), "--model", model_path]) == 0
    capsys.readouterr()
    assert predict.main([str(folder), "--model", model_path]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err == [f"error: 3 outputs exist ({folder / 'a_x4.png'}, {folder / 'b_x4.png'} and 1 "
                   "more); pass --skip-existing to keep them or --overwrite to replace them"]


def test_an_output_another_run_claims_meanwhile_is_left_alone(model_path, tmp_path,
                                                             monkeypatch, capsys):
    source = _save(str(tmp_path / "x.png"), smooth_image(8, 8))
    target = tmp_path / "x_x4.png"
    checked = limits.check_input_size

    def another_run_writes_first(path, scale, max_mp):   # after this run found no x_x4.png
        target.write_bytes(b"the other run's")
        return checked(path, scale, max_mp)

    monkeypatch.setattr(limits, "check_input_size", another_run_writes_first)
    assert predict.main([source, "--model", model_path]) == 1
    assert target.read_bytes() == b"the other run's"
    assert f"error: {target} was written by another run meanwhile" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_input_over_the_pixel_limit_is_refused_before_decoding(model_path, tmp_path,
                                                                   capsys):
    huge = png_header_only(str(tmp_path / "huge.png"), 30000, 30000)
    assert predict.main([huge, "--model", model_path]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"error: {huge}: 30000x30000 is 900 MP, over the limit of 100 MP an input "
                    "(its x4 output would be 14400 MP); pass --max-pixels 900 to upscale it "
                    "anyway")
    assert not (tmp_path / "huge_x4.png").exists()


def test_two_inputs_into_one_named_file_are_refused(model_path, tmp_path, capsys):
    one = _save(str(tmp_path / "one.png"), smooth_image(8, 8))
    two = _save(str(tmp_path / "two.png"), smooth_image(8, 8))
    assert predict.main([one, two, "--model", model_path, "-o", str(tmp_path / "k.png")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: -o {tmp_path / 'k.png'} names one file, but there are 2 "
                           f"inputs ({one}, {two})")
    assert not (tmp_path / "k.png").exists()


def test_named_output_and_output_folder(model_path, tmp_path):
    one = _save(str(tmp_path / "one.png"), smooth_image(8, 8))
    assert predict.main([one, "-o", str(tmp_path / "named.png"), "--model", model_path]) == 0
    assert Image.open(tmp_path / "named.png").size == (32, 32)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        _save(str(folder / f"{i}.jpg"), smooth_image(8, 12, seed=i))
    assert predict.main([str(folder), "-o", str(tmp_path / "out"), "--model", model_path]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["0_x4.png", "1_x4.png", "2_x4.png"]


def test_bad_files_are_reported_in_one_line_and_skipped(model_path, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _save(str(folder / "good.png"), smooth_image(8, 8))
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    good = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    code = predict.main([str(folder), "-o", str(tmp_path / "out"), "--model", model_path])
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 1
    assert os.listdir(tmp_path / "out") == ["good_x4.png"]
    assert len(err_lines) == 3
    assert any("empty.png" in line and "empty" in line for line in err_lines)
    assert any("truncated.png" in line for line in err_lines)
    assert any("text.jpg" in line for line in err_lines)


def test_missing_input_and_missing_model(model_path, tmp_path, capsys):
    assert predict.main([str(tmp_path / "nope.png"), "--model", model_path]) == 1
    assert "no such file" in capsys.readouterr().err
    source = _save(str(tmp_path / "x.png"), smooth_image(8, 8))
    assert predict.main([source, "--model", str(tmp_path / "none.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "train.py" in err and "\n" not in err


def test_a_read_only_folder_is_left_alone_even_by_root(model_path, tmp_path, monkeypatch,
                                                       capsys):
    # A dataset's folder made read-only (chmod a-w) keeps outputs out of it, whoever runs
    # predict.py: NAME_x4.png goes to the current folder instead, and where that is the
    # read-only folder too, nothing is written.
    folder = tmp_path / "dataset"
    folder.mkdir()
    source = _save(str(folder / "x.png"), smooth_image(8, 8))
    folder.chmod(0o555)
    try:
        monkeypatch.chdir(tmp_path)
        assert predict.main([source, "--model", model_path]) == 0
        assert "is read-only" in capsys.readouterr().err
        assert Image.open(tmp_path / "x_x4.png").size == (32, 32)
        monkeypatch.chdir(folder)
        assert predict.main(["x.png", "--model", model_path]) == 2
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot write in" in err and str(folder) in err and "-o" in err
    assert os.listdir(folder) == ["x.png"]


def test_compare_figure(model_path, tmp_path):
    source = _save(str(tmp_path / "c.png"), smooth_image(40, 50))
    assert predict.main([source, "--model", model_path, "--compare"]) == 0
    figure = Image.open(tmp_path / "c_x4_compare.png")
    assert figure.size[0] >= 800


def test_bfloat16_option_stays_close(model_path, tmp_path, capsys):
    source = _save(str(tmp_path / "b.png"), smooth_image(20, 24))
    assert predict.main([source, "--model", model_path, "-o", str(tmp_path / "f.png")]) == 0
    assert "computed in bfloat16" not in capsys.readouterr().out
    assert predict.main([source, "--model", model_path, "-o", str(tmp_path / "h.png"),
                         "--bfloat16"]) == 0
    assert f"model: {model_path}, computed in bfloat16" in capsys.readouterr().out
    full = np.array(Image.open(tmp_path / "f.png")).astype(int)
    half = np.array(Image.open(tmp_path / "h.png")).astype(int)
    assert full.shape == half.shape
    assert np.abs(full - half).mean() < 2.0


def test_rerun_on_a_folder_skips_its_own_outputs(model_path, tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    _save(str(folder / "a.png"), smooth_image(8, 8))
    assert predict.main([str(folder), "--model", model_path, "--compare"]) == 0
    assert sorted(os.listdir(folder)) == ["a.png", "a_x4.png", "a_x4_compare.png"]
    assert predict.main([str(folder), "--model", model_path, "--overwrite"]) == 0
    assert sorted(os.listdir(folder)) == ["a.png", "a_x4.png", "a_x4_compare.png"]


@pytest.mark.parametrize("names,inputs", [
    (["Canon_10_x1.png", "Canon_11_x1.png"], ["Canon_10_x1.png", "Canon_11_x1.png"]),  # DRealSR
    (["holiday_x2.png"], ["holiday_x2.png"]),
    (["holiday.jpg", "holiday_x2.png", "holiday_x4.png"], ["holiday.jpg", "holiday_x2.png"]),
    (["a.png", "a_compare.png", "b_x4.png", "b_x4_compare.png"], ["a.png", "b_x4.png"]),
])
def test_a_users_photo_is_never_taken_for_an_earlier_result(names, inputs, model_path,
                                                             tmp_path, capsys):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in names:
        _save(str(folder / name), smooth_image(8, 8))
    out = tmp_path / "out"
    assert predict.main([str(folder), "-o", f"{out}/", "--model", model_path]) == 0
    stems = [os.path.splitext(n)[0] for n in inputs]
    assert sorted(os.listdir(out)) == sorted(f"{s}_x4.png" for s in stems)
    err = capsys.readouterr().err
    left_out = len(names) - len(inputs)
    assert (f"left out {left_out} earlier result(s)" in err) == bool(left_out)


def test_a_second_run_over_a_folder_upscales_nothing_twice(model_path, tmp_path, capsys):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("p.png", "q_x2.png"):
        _save(str(folder / name), smooth_image(8, 8))
    assert predict.main([str(folder), "--model", model_path]) == 0
    assert predict.main([str(folder), "--model", model_path, "--skip-existing"]) == 0
    assert sorted(os.listdir(folder)) == ["p.png", "p_x4.png", "q_x2.png", "q_x2_x4.png"]
    assert "left out 2 earlier result(s) of predict.py" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["rgb", "gray16", "rgba"])
def test_streamed_png_equals_whole_image_output(kind, model_path, tmp_path):
    """Bands written as tiles complete give the same file content as one whole pass."""
    rgb = smooth_image(70, 45, seed=4)
    if kind == "gray16":
        array = (rgb[..., 0].astype(np.uint16) * 257)
    elif kind == "rgba":
        array = np.concatenate([rgb, rgb[..., :1]], -1)
    else:
        array = rgb
    source = str(tmp_path / "in.png")
    images.write_png(source, array)
    outputs = {}
    for tile in (0, 32):
        target = str(tmp_path / f"out_{tile}.png")
        assert predict.main([source, "--model", model_path, "--tile", str(tile), "-o", target,
                             "--compare"]) == 0
        outputs[tile] = images.read_image(target)
        assert os.path.getsize(str(tmp_path / f"out_{tile}_compare.png")) > 0
    whole, banded = outputs[0], outputs[32]
    assert banded.rgb.shape == whole.rgb.shape == (280, 180, 3)
    assert (banded.gray, banded.bits, banded.alpha is None) == (
        whole.gray, whole.bits, whole.alpha is None)
    step = 1 / (65535 if whole.bits == 16 else 255)
    assert np.abs(banded.rgb - whole.rgb).max() <= step + 1e-6   # round-off at most
    if whole.alpha is not None:
        np.testing.assert_array_equal(banded.alpha, whole.alpha)


def test_png_stream_round_trips_every_layout(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3, 4):
        for dtype in (np.uint8, np.uint16):
            array = rng.integers(0, np.iinfo(dtype).max, (23, 17, channels), dtype=dtype)
            path = str(tmp_path / f"s{channels}{dtype.__name__}.png")
            with images.PngStream(path, 17, 23, channels, 8 * dtype().itemsize) as png:
                for row in range(0, 23, 5):
                    png.write(array[row:row + 5])
            with Image.open(path) as image:
                assert image.size == (17, 23)
            import tensorflow as tf

            back = tf.io.decode_png(open(path, "rb").read(), channels=0,
                                    dtype=tf.uint16 if dtype == np.uint16 else tf.uint8).numpy()
            np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantizing_rounds_half_up_and_clips_as_a_saved_png(dtype):
    values = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 0.4999, 254.5 / 255, 1.0, 1.3], dtype)
    x = np.random.default_rng(1).uniform(-0.1, 1.1, (31, 7, 3)).astype(dtype)
    x.flat[:len(values)] = values
    for convert, top, out in ((images.to_uint8, 255.0, np.uint8),
                              (images.to_uint16, 65535.0, np.uint16)):
        result = convert(x)
        assert result.dtype == out
        np.testing.assert_array_equal(result, np.clip(np.floor(x * top + 0.5), 0, top).astype(out))
    assert images.to_uint8(x).flat[[0, 1, 4, 6, 7]].tolist() == [0, 0, 127, 255, 255]
    assert images.to_uint8(x[:1, :1, :1].astype(np.uint8)).dtype == np.uint8   # 8 bits pass through


def test_input_too_large_for_memory_is_refused_before_decoding(model_path, tmp_path, capsys,
                                                               monkeypatch):
    import collections

    import psutil

    source = str(tmp_path / "in.png")
    images.write_png(source, smooth_image(40, 40))
    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(100 * 2**20))
    assert predict.main([source, "--model", model_path, "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs about" in err[0] and "memory" in err[0]
    assert not os.path.exists(tmp_path / "o.png")


def test_gray_with_alpha_to_tiff_keeps_gray_and_alpha(model_path, tmp_path):
    gray = smooth_image(20, 24, seed=2)[..., 0]
    source = str(tmp_path / "la.png")
    Image.fromarray(np.stack([gray, gray], -1), "LA").save(source)
    assert predict.main([source, "--model", model_path, "-o", str(tmp_path / "out.tif")]) == 0
    result = images.read_image(str(tmp_path / "out.tif"))
    assert result.gray and result.alpha is not None and result.rgb.shape == (80, 96, 3)


def test_model_by_shipped_name_and_strongest_default(model_path, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(inference, "WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(inference.ModelError, match="no shipped model"):
        inference.resolve_model_path(None)
    os.makedirs(tmp_path / "weights")
    shutil.copy(model_path, tmp_path / "weights" / "three_conv_x4.h5")
    assert inference.resolve_model_path(None) == inference.shipped_path("three_conv")
    shutil.copy(model_path, tmp_path / "weights" / "edsr_x4.h5")
    assert inference.resolve_model_path(None) == inference.shipped_path("edsr")  # strongest
    assert inference.resolve_model_path("three_conv") == inference.shipped_path("three_conv")
    assert inference.resolve_model_path(model_path) == model_path
    with pytest.raises(inference.ModelError, match=r"shipped models: edsr, three_conv\)"):
        inference.resolve_model_path("vdsr")
    # predict.py says which model it used.
    source = _save(str(tmp_path / "x.png"), smooth_image(8, 8))
    assert predict.main([source, "--model", "three_conv", "-o", str(tmp_path / "y.png")]) == 0
    assert "model: three_conv (" in capsys.readouterr().out
    # predict.py's default is the model for real photos once it is shipped; evaluate's is not.
    assert predict.main([source, "-o", str(tmp_path / "z.png")]) == 0
    assert "model: edsr (" in capsys.readouterr().out
    shutil.copy(model_path, tmp_path / "weights" / "photo_plus_x4.h5")
    assert predict.main([source, "-o", str(tmp_path / "w.png")]) == 0
    assert "model: photo_plus (" in capsys.readouterr().out
    shutil.copy(model_path, tmp_path / "weights" / "photo_x4.h5")
    assert predict.main([source, "-o", str(tmp_path / "v.png")]) == 0
    assert "model: photo (" in capsys.readouterr().out
    assert inference.resolve_model_path(None) == inference.shipped_path("edsr")


def test_an_onnx_model_runs_without_importing_tensorflow(net, model_path, tmp_path):
    # TensorFlow's import is most of a one-photo run's start-up; ONNX Runtime needs none of it.
    pytest.importorskip("onnxruntime")
    import export

    twin = os.path.splitext(model_path)[0] + "_twin.h5"
    shutil.copy(model_path, twin)
    export.export_model(net, os.path.splitext(twin)[0] + ".onnx", "onnx", source=twin)
    source = _save(str(tmp_path / "x.png"), smooth_image(20, 24))
    script = ("import sys, predict\n"
              f"code = predict.main([{source!r}, '--model', {twin!r}, '-o', {str(tmp_path / 'y.png')!r}])\n"
              "print('exit', code, 'tensorflow' in sys.modules)\n")
    result = run_python(["-c", script])
    assert "run by ONNX Runtime" in result.stdout, result.stderr[-2000:]
    assert result.stdout.strip().endswith("exit 0 False"), result.stdout + result.stderr[-2000:]


