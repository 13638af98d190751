import json
import os

import numpy as np
from conftest import smooth_image, write_png

import evaluate
from superres import make_degraded_set
from superres.images import read_image, to_uint8


def _hr_folder(tmp_path):
    folder = tmp_path / "hr"
    write_png(str(folder / "a.png"), smooth_image(130, 101, seed=1))   # not a multiple of 4
    write_png(str(folder / "b.png"), smooth_image(96, 120, seed=2))
    return str(folder)


def _png(path):
    return to_uint8(read_image(path).rgb)


def test_a_set_is_fixed_by_its_seed_and_each_image_by_its_name(tmp_path, capsys):
    source = _hr_folder(tmp_path)
    out = str(tmp_path / "set")
    assert make_degraded_set.main([source, "-o", out, "--seed", "0"]) == 0
    hr, lr = _png(os.path.join(out, "HR", "a.png")), _png(os.path.join(out, "LR_realesrgan_X4",
                                                                      "a.png"))
    assert hr.shape == (128, 100, 3) and lr.shape == (32, 25, 3)
    np.testing.assert_array_equal(hr, smooth_image(130, 101, seed=1)[:128, :100])
    # The same seed rebuilds the same LR, even with another image beside it.
    os.remove(os.path.join(source, "b.png"))
    again = str(tmp_path / "again")
    assert make_degraded_set.main([source, "-o", again, "--seed", "0"]) == 0
    np.testing.assert_array_equal(_png(os.path.join(again, "LR_realesrgan_X4", "a.png")), lr)
    other = str(tmp_path / "other")
    assert make_degraded_set.main([source, "-o", other, "--seed", "1"]) == 0
    assert not np.array_equal(_png(os.path.join(other, "LR_realesrgan_X4", "a.png")), lr)
    with open(os.path.join(out, "degradation.json")) as f:
        record = json.load(f)
    assert record["seed"] == 0 and record["realesrgan"]["jpeg_range"] == [30.0, 95.0]
    # evaluate.py reads the set as a benchmark folder.
    capsys.readouterr()
    assert evaluate.main(["--model", "three_conv_64x32", "--data", out, "--limit", "1"]) == 0
    assert "set " in capsys.readouterr().out


def test_a_config_file_sets_the_ranges(tmp_path):
    source = _hr_folder(tmp_path)
    mild = tmp_path / "mild.toml"
    mild.write_text("[realesrgan]\njpeg_range = [90, 95]\njpeg_range2 = [90, 95]\n"
                    "noise_range = [0, 1]\nnoise_range2 = [0, 1]\n"
                    "poisson_scale_range = [0, 0.05]\npoisson_scale_range2 = [0, 0.05]\n")
    out = str(tmp_path / "set")
    assert make_degraded_set.main([source, "-o", out, "--config", str(mild)]) == 0
    with open(os.path.join(out, "degradation.json")) as f:
        assert json.load(f)["realesrgan"]["jpeg_range"] == [90.0, 95.0]


def test_refusals_are_one_line(tmp_path, capsys):
    source = _hr_folder(tmp_path)
    out = tmp_path / "set"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert make_degraded_set.main([source, "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert make_degraded_set.main([str(tmp_path / "nope"), "-o", str(tmp_path / "x")]) == 2
    assert "no such folder" in capsys.readouterr().err
    small = tmp_path / "small"
    write_png(str(small / "s.png"), smooth_image(40, 40))
    assert make_degraded_set.main([str(small), "-o", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "s.png" in err and "\n" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[realesrgan]\nsinc_prob = 2\n")
    assert make_degraded_set.main([source, "-o", str(tmp_path / "z"), "--config", str(bad)]) == 2
    assert "sinc_prob" in capsys.readouterr().err
