import csv
import json
import os

import numpy as np
import pytest
from conftest import (SHARED_DATA, needs_shared_data, run_python, save_small_model, smooth_image,
                      write_png)

import evaluate
from superres.upscaling import upscale

# Published x4 bicubic rows (EDSR / SwinIR tables): PSNR-Y, SSIM-Y, 4-pixel shave.
PUBLISHED_BICUBIC = {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027), "B100": (25.96, 0.6675)}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("model"), widths=(8, 8))


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "mini"
    write_png(str(folder / "a.png"), smooth_image(64, 80, seed=1))
    write_png(str(folder / "b.png"), smooth_image(72, 48, seed=2))
    write_png(str(folder / "g.png"), smooth_image(48, 48, seed=3)[..., 0])
    return str(folder)


@needs_shared_data
def test_bicubic_rows_reproduce_published_numbers(model_path, tmp_path, capsys):
    sets = [os.path.join(SHARED_DATA, name) for name in PUBLISHED_BICUBIC]
    assert evaluate.main(["--model", model_path, "--data", *sets,
                          "--json", str(tmp_path / "scores.json")]) == 0
    with open(tmp_path / "scores.json") as f:
        scores = json.load(f)
    assert scores["scale"] == 4 and "Y" in scores["convention"]
    for name, (psnr, ssim) in PUBLISHED_BICUBIC.items():
        bicubic_row = scores["sets"][name]["bicubic"]
        assert bicubic_row["psnr"] == pytest.approx(psnr, abs=0.02), name
        assert bicubic_row["ssim"] == pytest.approx(ssim, abs=0.002), name
    assert scores["sets"]["Set14"]["n"] == 14 and scores["sets"]["B100"]["n"] == 100
    table = capsys.readouterr().out
    assert "Set5" in table and "B100" in table and "shaved" in table


def test_json_csv_and_saved_images_agree_with_an_independent_scorer(model_path, hr_folder,
                                                                    tmp_path):
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    from superres import metrics

    out = tmp_path / "out"
    args = ["--model", model_path, "--data", hr_folder, "--rgb", "--json", str(out / "s.json"),
            "--csv", str(out / "s.csv"), "--save-images", str(out / "sr")]
    assert evaluate.main(args) == 0
    with open(out / "s.json") as f:
        scores = json.load(f)["sets"]["mini"]
    assert scores["n"] == 3
    with open(out / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["a", "b", "g"]
    for image in scores["images"]:
        hr = np.array(Image.open(os.path.join(hr_folder, image["name"] + ".png")))
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        sr = np.array(Image.open(out / "sr" / "mini" / (image["name"] + ".png")))
        assert sr.shape == hr.shape                  # gray in, gray out
        reference = peak_signal_noise_ratio(metrics.shave(metrics.rgb_to_y(hr), 4),
                                            metrics.shave(metrics.rgb_to_y(sr), 4),
                                            data_range=255)
        assert image["model_psnr"] == pytest.approx(reference, abs=0.01)
    mean = np.mean([i["model_psnr"] for i in scores["images"]])
    assert scores["model"]["psnr"] == pytest.approx(mean)


def test_limit_takes_the_first_images(model_path, hr_folder, tmp_path):
    assert evaluate.main(["--model", model_path, "--data", hr_folder, "--limit", "1",
                          "--json", str(tmp_path / "s.json")]) == 0
    with open(tmp_path / "s.json") as f:
        assert json.load(f)["sets"]["mini"]["n"] == 1


def test_missing_model_is_a_clear_error(hr_folder, tmp_path, capsys):
    assert evaluate.main(["--model", str(tmp_path / "none.h5"), "--data", hr_folder]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "train.py" in err and "\n" not in err


def test_bad_data_is_a_clear_error(model_path, tmp_path, capsys):
    assert evaluate.main(["--model", model_path, "--data", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_existing_json_is_not_overwritten(model_path, hr_folder, tmp_path, capsys):
    target = tmp_path / "keep.json"
    target.write_text("mine")
    assert evaluate.main(["--model", model_path, "--data", hr_folder,
                          "--json", str(target)]) == 2
    assert target.read_text() == "mine" and "--overwrite" in capsys.readouterr().err


def test_shipped_weights_exist_and_load():
    from superres import inference

    net = inference.load_model()             # the default: the strongest shipped model
    assert inference.model_scale(net) == 4
    lr = smooth_image(10, 12)
    assert upscale(lr, net, dtype=np.uint8).shape == (40, 48, 3)


# Set5 PSNR-Y floors of the shipped models (README: 30.76, 30.47, 31.58); three_conv must stay
# above FSRCNN's 30.72, the target it ships for; edsr 0.03 dB below its score, above VDSR's 31.35.
SET5_FLOORS = {"three_conv": 30.72, "three_conv_64x32": 30.4, "edsr": 31.55}


@needs_shared_data
@pytest.mark.parametrize("name", sorted(SET5_FLOORS))
def test_shipped_weights_keep_their_set5_score(name):
    from superres import inference

    if name not in inference.shipped_models():
        pytest.skip(f"{name} is not shipped (no {inference.shipped_path(name)})")
    net = inference.load_model(name, runtime="auto")      # what evaluate.py runs
    _, rows = evaluate.evaluate_source(net, os.path.join(SHARED_DATA, "Set5"), 4)
    model_psnr = np.mean([row["model_psnr"] for row in rows])
    assert model_psnr > SET5_FLOORS[name], f"{name} fell to {model_psnr:.2f} dB on Set5"


# edsr on the other sets (README: 28.04 / 27.33), 0.02 dB of slack: still above VDSR's
# 28.01 / 27.29, the target it ships for (issue 10).
EDSR_FLOORS = {"Set14": 28.02, "B100": 27.31}


@needs_shared_data
def test_shipped_edsr_keeps_its_set14_and_b100_scores():
    from superres import inference

    if "edsr" not in inference.shipped_models():
        pytest.skip(f"edsr is not shipped (no {inference.shipped_path('edsr')})")
    net = inference.load_model("edsr", runtime="auto")
    for name, floor in EDSR_FLOORS.items():
        _, rows = evaluate.evaluate_source(net, os.path.join(SHARED_DATA, name), 4)
        model_psnr = np.mean([row["model_psnr"] for row in rows])
        assert model_psnr > floor, f"edsr fell to {model_psnr:.3f} dB on {name}"


def test_an_exported_model_is_scored_without_importing_tensorflow(hr_folder, tmp_path):
    """An ONNX model on a folder and a benchmark-style folder: NumPy reads the pairs,
    ONNX Runtime runs the model, TensorFlow never loads; the scores equal the .h5's."""
    pytest.importorskip("onnxruntime")
    import export
    from superres import bicubic, inference

    h5 = save_small_model(tmp_path, widths=(8, 8))
    onnx = str(tmp_path / "m.onnx")
    export.export_model(inference.load_model(h5), onnx, "onnx")
    bench = tmp_path / "bench"
    write_png(str(bench / "HR" / "p.png"), smooth_image(64, 48, seed=4))
    write_png(str(bench / "LR_bicubic_X4" / "p.png"),
              bicubic.downscale(smooth_image(64, 48, seed=4), 4))
    script = ("import sys, json, evaluate\n"
              f"code = evaluate.main(['--model', {onnx!r}, '--data', {hr_folder!r}, "
              f"{str(bench)!r}, '--json', {str(tmp_path / 'onnx.json')!r}])\n"
              "print('exit', code, 'tensorflow' in sys.modules)\n")
    result = run_python(["-c", script])
    assert result.stdout.strip().endswith("exit 0 False"), result.stdout + result.stderr[-2000:]
    assert evaluate.main(["--model", h5, "--data", hr_folder, str(bench), "--runtime",
                          "tensorflow", "--json", str(tmp_path / "h5.json")]) == 0
    with open(tmp_path / "onnx.json") as f:
        by_onnx = json.load(f)["sets"]
    with open(tmp_path / "h5.json") as f:
        by_keras = json.load(f)["sets"]
    assert by_onnx.keys() == by_keras.keys() == {"mini", "bench"}
    for name in by_onnx:
        assert by_onnx[name]["model"]["psnr"] == pytest.approx(by_keras[name]["model"]["psnr"],
                                                               abs=1e-3)
        assert by_onnx[name]["bicubic"] == by_keras[name]["bicubic"]


def test_niqe_columns_and_no_reference_scoring(model_path, hr_folder, tmp_path, capsys):
    from superres import metrics

    write_png(os.path.join(hr_folder, "large.png"), smooth_image(120, 200, seed=4))
    assert evaluate.main(["--model", model_path, "--data", hr_folder, "--niqe",
                          "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "NIQE bic/model" in out and "3 of 4 outputs are smaller than NIQE's" in out
    with open(tmp_path / "s.json") as f:
        scored = json.load(f)["sets"]["mini"]
    assert {"psnr", "ssim", "niqe"} <= set(scored["model"])
    large = next(i for i in scored["images"] if i["name"] == "large")
    assert scored["model"]["niqe"] == pytest.approx(large["model_niqe"])
    # No reference: the folder's images are inputs; NIQE of each upscale, nothing else.
    inputs = tmp_path / "photos"
    write_png(str(inputs / "p.png"), smooth_image(30, 50, seed=5))
    assert evaluate.main(["--model", model_path, "--data", str(inputs), "--no-reference",
                          "--csv", str(tmp_path / "n.csv"), "--save-images",
                          str(tmp_path / "sr")]) == 0
    with open(tmp_path / "n.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["model_psnr"] == "" and float(row["model_niqe"]) > 0
    from superres.images import read_image, to_uint8

    sr = to_uint8(read_image(str(tmp_path / "sr" / "photos" / "p.png")).rgb)
    assert sr.shape == (120, 200, 3)
    assert float(row["model_niqe"]) == pytest.approx(metrics.niqe_of(sr))
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--data", str(inputs), "--no-reference", "--rgb"])


def test_gray_hr_with_an_rgb_lr_scores_both_upscales_on_luma(model_path, tmp_path):
    """A degraded set may pair a grayscale HR with a colour LR: bicubic and the model are
    both made gray by BT.601 luma, never one by its first channel."""
    from superres import bicubic, metrics

    gray = smooth_image(48, 48, seed=3)[..., 0]
    lr = bicubic.downscale(np.repeat(gray[..., None], 3, -1), 4).astype(np.int16)
    lr[..., 0] = np.clip(lr[..., 0] + 40, 0, 255)          # the LR's channels differ
    lr = lr.astype(np.uint8)
    folder = tmp_path / "set"
    write_png(str(folder / "HR" / "g.png"), gray)
    write_png(str(folder / "LR_bicubic_X4" / "g.png"), lr)
    assert evaluate.main(["--model", model_path, "--data", str(folder), "--json",
                          str(tmp_path / "g.json")]) == 0
    with open(tmp_path / "g.json") as f:
        image = json.load(f)["sets"]["set"]["images"][0]
    on_luma = metrics.psnr_ssim_y(gray, metrics.rgb_to_gray(bicubic.upscale(lr, 4)), 4)[0]
    assert image["bicubic_psnr"] == pytest.approx(on_luma)


# No colour shift (issue 30): on B100, each output's per-channel means within 1.5 grey levels
# of the bicubic upscale's (the photo models keep them by InputColours), and no tint: each
# channel's shift averaged over B100 within 1 grey level.
COLOUR_SHIFT_LIMIT = 1.5
TINT_LIMIT = 1.0


@needs_shared_data
@pytest.mark.parametrize("name", ["edsr", "photo", "photo_plus"])
def test_shipped_photo_models_keep_the_colours_of_b100(name):
    from superres import bicubic, inference, metrics

    if name not in inference.shipped_models():
        pytest.skip(f"{name} is not shipped (no {inference.shipped_path(name)})")
    net = inference.load_model(name, runtime="auto")        # what predict.py runs
    pairs, _ = evaluate.source_pairs(os.path.join(SHARED_DATA, "B100"), 4)
    shifts = {item["name"]: metrics.channel_mean_shift(bicubic.upscale(item["lr"], 4),
                                                       upscale(item["lr"], net, dtype=np.uint8))
              for item in pairs}
    assert len(shifts) == 100
    tint = np.mean(list(shifts.values()), axis=0)
    assert np.abs(tint).max() <= TINT_LIMIT, f"{name} tints B100 by {tint.round(2)} (R, G, B)"
    worst = max(shifts, key=lambda n: np.abs(shifts[n]).max())
    assert np.abs(shifts[worst]).max() <= COLOUR_SHIFT_LIMIT, \
        f"{name} shifts {worst}'s channel means by {shifts[worst].round(2)}"


def test_an_image_too_small_to_score_is_one_line_naming_it(model_path, tmp_path, capsys):
    folder = tmp_path / "tiny"
    write_png(str(folder / "ok.png"), smooth_image(64, 64))
    write_png(str(folder / "speck.png"), smooth_image(8, 8))
    assert evaluate.main(["--model", model_path, "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"error: {folder / 'speck'}: HR 8x8 is too small to score (SSIM needs")


def test_a_model_that_does_not_upscale_is_refused(tmp_path, capsys):
    import keras

    same_size = keras.Sequential([keras.Input((None, None, 3)),
                                  keras.layers.Conv2D(3, 3, padding="same")])
    path = str(tmp_path / "x1.h5")
    same_size.save(path)
    folder = tmp_path / "set"
    write_png(str(folder / "HR" / "a.png"), smooth_image(64, 64))
    write_png(str(folder / "LR_bicubic_X4" / "a.png"), smooth_image(16, 16))
    assert evaluate.main(["--model", path, "--data", str(folder)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {path} does not upscale (its output is x1 its input); evaluate.py scores x2 "
        "and larger models")


def test_lr_files_are_never_scored_as_hr(tmp_path):
    from superres import sources

    folder = tmp_path / "set"
    write_png(str(folder / "HR" / "a.png"), smooth_image(48, 48))
    write_png(str(folder / "LR_bicubic_X4" / "a.png"), smooth_image(12, 12))
    plan = sources.plan(str(folder), "validation", scale=3, holdout=False)   # no X3 LR
    assert [name for name, _ in plan.hr] == ["a"]


def test_left_out_images_are_named(model_path, tmp_path, capsys):
    photos = tmp_path / "photos"
    for name in ("chip.png", "chip_x4.png", "other_x2.png"):
        write_png(str(photos / name), smooth_image(24, 24))
    result = evaluate.main(["--model", model_path, "--no-reference", "--data", str(photos),
                            "--json", str(tmp_path / "s.json")])
    assert result == 0
    with open(tmp_path / "s.json") as f:
        assert json.load(f)["sets"]["photos"]["n"] == 2
    assert "left out 1 earlier result(s) of predict.py, each beside its input (chip_x4.png)" \
        in capsys.readouterr().err
    pairs = tmp_path / "pairs"
    write_png(str(pairs / "HR" / "a.png"), smooth_image(48, 48))
    write_png(str(pairs / "LR_bicubic_X4" / "a.png"), smooth_image(12, 12))
    write_png(str(pairs / "LR_bicubic_X4" / "lonely.png"), smooth_image(12, 12))
    assert evaluate.main(["--model", model_path, "--data", str(pairs)]) == 0
    assert "left out 1 LR image(s) with no HR image" in capsys.readouterr().err
