"""Faults a user or the machine can cause: kills at any instant, a full disk, a
read-only filesystem, two processes on one run, mistyped flags, bad files.
Each asserts the exit code, one line without a traceback, and that the user's
files are untouched."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (REPO, mounted_tmpfs, one_line_error, remount_read_only, save_small_model,
                      smooth_image, write_png)

import train

DEMO = ["--data", "demo", "--steps-per-epoch", "4", "--batch-size", "4", "--val-crops", "2",
        "--patches-per-image", "2"]


def _epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _train(args, timeout=300):
    return subprocess.run([sys.executable, "train.py"] + args, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _snapshot(folder):
    """Every file's bytes under ``folder`` (to show nothing was touched)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return found


# --------------------------------------------------------------------------- kills

def test_kill_during_the_first_epochs_save_resumes(tmp_path):
    """The state a kill leaves between history.csv and state.json of epoch 1."""
    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
    os.remove(os.path.join(out, "state", "state.json"))
    with open(os.path.join(out, ".last.abcd1234.tmp.h5"), "wb") as f:
        f.write(b"partial")                                   # a killed atomic write
    assert train.main(DEMO + ["--epochs", "2", "--out", out]) == 2   # plain rerun: refused
    assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 0
    assert _epochs(out) == [1, 2]
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    assert os.listdir(os.path.join(out, "state")) == ["epoch-0002.weights.h5", "state.json"] or \
        sorted(os.listdir(os.path.join(out, "state"))) == ["epoch-0002.weights.h5", "state.json"]


def test_sigkill_at_random_instants_always_resumes(tmp_path):
    """Bounded: three kills at random moments (start-up, training, saving), then the
    same command plus --resume finishes with every epoch exactly once."""
    out = str(tmp_path / "run")
    command = [sys.executable, "train.py"] + DEMO + ["--epochs", "3", "--out", out]
    rng = random.Random(11)
    for attempt in range(3):
        args = command + (["--resume"] if attempt else [])
        process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # Wait for the run folder's first file, then kill a random moment later:
        # early attempts land in the first epoch or its save, later ones anywhere.
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None and not os.path.exists(
                os.path.join(out, "history.csv")):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
    result = _train(DEMO + ["--epochs", "3", "--resume", "--out", out])
    assert result.returncode == 0, result.stderr[-2000:]
    assert _epochs(out) == [1, 2, 3]


def _wait_for(condition, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None and not condition():
        time.sleep(0.02)


def test_sigterm_stops_training_with_one_line_and_143_and_it_resumes(tmp_path):
    out = str(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "train.py"] + DEMO + ["--epochs", "3",
                                                                      "--out", out],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    _wait_for(lambda: os.path.exists(os.path.join(out, "history.csv")), process)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("terminated (SIGTERM); continue with the same "
                                            "command plus --resume")
    result = _train(DEMO + ["--epochs", "3", "--resume", "--out", out])
    assert result.returncode == 0, result.stderr[-2000:]
    assert _epochs(out) == [1, 2, 3]


def test_sigterm_stops_predict_with_one_line_and_143_and_leaves_no_temporary(tmp_path):
    model = save_small_model(tmp_path, widths=(32, 16))
    source = str(tmp_path / "big.png")
    write_png(source, smooth_image(600, 700))
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, "predict.py", source, "--model", model,
                                "--tile", "64", "-o", str(out / "big.png")], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(".tmp" in n for n in os.listdir(out)), process)
    assert process.poll() is None, "predict finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == ("terminated (SIGTERM); no output was left "
                                            "half-written")
    assert os.listdir(out) == []


# --------------------------------------------------------------------------- disk

def _fill(disk, leave_bytes):
    stat = os.statvfs(disk)
    with open(os.path.join(disk, "filler"), "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - leave_bytes))


def test_full_disk_stops_with_one_line_and_resumes_after_space_is_freed(tmp_path, capsys):
    with mounted_tmpfs(str(tmp_path / "disk"), "4m") as disk:
        out = os.path.join(disk, "run")
        assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
        _fill(disk, 64 * 1024)
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "disk full" in line and "epoch 1" in line and "--resume" in line
        assert _epochs(out) == [1]
        os.remove(os.path.join(disk, "filler"))
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 0
        assert _epochs(out) == [1, 2]


def test_write_failing_with_no_space_mid_save_is_one_line(tmp_path, capsys, monkeypatch):
    """When the space check passes but a write still hits ENOSPC (another process
    filled the disk meanwhile), the same message, and the last epoch intact."""
    from superres import fileio

    with mounted_tmpfs(str(tmp_path / "disk"), "4m") as disk:
        out = os.path.join(disk, "run")
        assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
        _fill(disk, 200 * 1024)
        monkeypatch.setattr(fileio, "check_free_space", lambda *args: None)
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 2
        assert "disk full" in one_line_error(capsys.readouterr().err)
        assert not [n for n in os.listdir(out) if n.startswith(".")]
        monkeypatch.undo()
        os.remove(os.path.join(disk, "filler"))
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 0
        assert _epochs(out) == [1, 2]


def test_out_and_cache_on_a_read_only_filesystem(tmp_path, capsys):
    with mounted_tmpfs(str(tmp_path / "ro"), "1m") as disk:
        remount_read_only(disk)
        assert train.main(DEMO + ["--epochs", "1", "--out", os.path.join(disk, "run")]) == 2
        assert "--out" in one_line_error(capsys.readouterr().err)
        assert train.main(DEMO + ["--epochs", "1", "--cache", os.path.join(disk, "cache"),
                                  "--out", str(tmp_path / "run")]) == 2
        assert "--cache" in one_line_error(capsys.readouterr().err)
        assert not os.path.exists(tmp_path / "run")


# --------------------------------------------------------------------------- run folder

def test_a_second_process_cannot_resume_a_running_run(tmp_path, capsys):
    from superres.fileio import lock_folder

    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
    before = _snapshot(out)
    lock = lock_folder(out)           # as a running train.py holds it
    try:
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 2
    finally:
        os.close(lock)
    assert "in use by another" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize("flags,named", [
    (["--model", "nosuch"], "nosuch"),
    (["--kernel-initializer", "nosuch"], "nosuch"),
    (["--widths", "16,8", "--init-from", "weights/three_conv_x4.h5"], "--init-from"),
    (["--init-from", "no/such.h5"], "no/such.h5"),
])
def test_mistyped_options_leave_no_run_folder(flags, named, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--epochs", "1", "--out", out] + flags) == 2
    err = capsys.readouterr().err
    assert named in one_line_error(err)
    assert not os.path.exists(out)


def test_resume_of_an_empty_folder_says_it_starts_fresh(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--epochs", "1", "--resume", "--out", out]) == 0
    assert "nothing to resume" in capsys.readouterr().out


def test_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert train.main(DEMO + ["--epochs", "1", "--out", str(out)]) == 2
    assert "is a file" in one_line_error(capsys.readouterr().err)
    assert out.read_text() == "mine"


# --------------------------------------------------------------------------- data

def test_corrupt_training_image_is_named_before_the_run_starts(tmp_path, capsys):
    for i in range(12):
        write_png(str(tmp_path / "images" / f"{i:02d}.png"), smooth_image(96, 96, seed=i))
    bad = tmp_path / "images" / "05.png"
    bad.write_bytes(bad.read_bytes()[:300])                  # truncated
    out = str(tmp_path / "run")
    code = train.main(["--data", str(tmp_path / "images"), "--epochs", "1", "--steps-per-epoch",
                       "2", "--val-patch-size", "64", "--out", out])
    assert code == 2
    assert "05.png" in one_line_error(capsys.readouterr().err)
    assert not os.path.exists(out)


def test_val_data_errors_name_the_val_data_flag(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--val-data", "/nope", "--out", out]) == 2
    assert "--val-data '/nope'" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("flag", ["--patch-size", "--val-patch-size"])
def test_patches_too_small_to_score_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args([flag, "4"])
    assert exit_info.value.code == 2
    assert "at least 4 x --scale" in capsys.readouterr().err


# --------------------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def photo(tmp_path):
    path = str(tmp_path / "in" / "photo.png")
    write_png(path, smooth_image(24, 32, seed=1))
    return path


def _predict(args, capsys):
    import predict

    code = predict.main(args)
    return code, capsys.readouterr()


def test_predict_output_on_a_read_only_filesystem(small_model, photo, tmp_path, capsys):
    with mounted_tmpfs(str(tmp_path / "ro"), "1m") as disk:
        remount_read_only(disk)
        for output in (os.path.join(disk, "big.png"), os.path.join(disk, "folder") + "/"):
            code, captured = _predict([photo, "--model", small_model, "-o", output], capsys)
            line = one_line_error(captured.err)
            assert code == 2 and disk in line and ".tmp" not in line


def test_predict_removes_what_a_killed_run_left(small_model, photo, tmp_path, capsys):
    target = tmp_path / "out" / "big.png"
    target.parent.mkdir()
    leftover = target.parent / ".big.k1ll3d00.tmp.png"
    leftover.write_bytes(b"partial")
    mine = target.parent / ".notes.txt"
    mine.write_text("mine")
    code, _ = _predict([photo, "--model", small_model, "-o", str(target)], capsys)
    assert code == 0 and target.exists() and not leftover.exists()
    assert mine.read_text() == "mine"


def test_predict_into_a_new_folder_for_one_input(small_model, photo, tmp_path, capsys):
    code, _ = _predict([photo, "--model", small_model, "-o", str(tmp_path / "new") + "/"], capsys)
    assert code == 0
    assert os.listdir(tmp_path / "new") == ["photo_x4.png"]


def test_predict_full_disk_in_a_folder_run_says_what_was_written(small_model, tmp_path, capsys):
    for i in range(3):
        write_png(str(tmp_path / "in" / f"{i}.png"), smooth_image(64, 64, seed=i))
    with mounted_tmpfs(str(tmp_path / "disk"), "200k") as disk:
        code, captured = _predict([str(tmp_path / "in"), "--model", small_model, "-o", disk],
                                  capsys)
        line = one_line_error(captured.err)
        assert code == 2 and "No space left" in line
        written = sorted(n for n in os.listdir(disk) if not n.startswith("."))
        assert f"{len(written)} of 3 outputs were written" in line
        assert not [n for n in os.listdir(disk) if n.startswith(".")]   # no temp file left


def test_predict_write_failing_in_the_background_stops_with_one_line(small_model, tmp_path,
                                                                     capsys, monkeypatch):
    import errno

    from superres import images

    photo = str(tmp_path / "in" / "tall.png")
    write_png(photo, smooth_image(100, 40, seed=3))       # four bands of 32 LR rows

    calls = []
    write = images.PngStream.write

    def failing_write(self, band):   # the second band of rows hits a full disk
        calls.append(len(band))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, band)

    monkeypatch.setattr(images.PngStream, "write", failing_write)
    target = tmp_path / "out" / "big.png"
    target.parent.mkdir()
    code, captured = _predict([photo, "--model", small_model, "--tile", "32", "-o", str(target)],
                              capsys)
    assert code != 0 and "No space left" in one_line_error(captured.err)
    assert len(calls) == 2 and os.listdir(target.parent) == []   # nothing half-written left


@pytest.mark.parametrize("kind", ["dense", "gray"])
def test_predict_with_a_model_that_is_not_an_upscaler(kind, photo, tmp_path, capsys):
    import keras

    channels = 1 if kind == "gray" else 3
    inputs = keras.Input((None, None, channels))
    layer = keras.layers.Dense(4) if kind == "dense" else keras.layers.Conv2D(1, 3, padding="same")
    path = str(tmp_path / f"{kind}.h5")
    keras.Model(inputs, layer(inputs)).save(path)
    code, captured = _predict([photo, "--model", path, "-o", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "not an image-to-image upscaler" in one_line_error(captured.err)
    assert not os.path.exists(tmp_path / "o.png")


@pytest.mark.parametrize("ext,pil_format", [(".jpg", "JPEG"), (".webp", "WEBP"),
                                            (".tif", "TIFF"), (".png", "PNG")])
def test_predict_writes_the_format_its_extension_names(ext, pil_format, small_model, photo,
                                                       tmp_path, capsys):
    from PIL import Image

    target = str(tmp_path / f"result{ext}")
    code, _ = _predict([photo, "--model", small_model, "-o", target], capsys)
    assert code == 0
    with Image.open(target) as image:
        assert image.format == pil_format and image.size == (128, 96)


def test_predict_refuses_formats_it_cannot_write(small_model, photo, tmp_path, capsys):
    code, captured = _predict([photo, "--model", small_model, "-o", str(tmp_path / "r.gif")],
                              capsys)
    assert code == 2 and ".gif" in one_line_error(captured.err)


def test_predict_never_writes_over_an_input(small_model, photo, capsys):
    with open(photo, "rb") as f:
        before = f.read()
    code, captured = _predict([photo, "--model", small_model, "-o", photo, "--overwrite"], capsys)
    assert code == 2 and "is one of the inputs" in one_line_error(captured.err)
    with open(photo, "rb") as f:
        assert f.read() == before


def test_predict_refuses_tiny_tiles(photo, capsys):
    import predict

    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args([photo, "--tile", "1"])
    assert exit_info.value.code == 2 and "--tile" in capsys.readouterr().err


def test_cli_start_up_prints_nothing_but_the_error(tmp_path):
    """TensorFlow's CUDA/cuInit notices are silenced: the one line is all there is."""
    result = subprocess.run([sys.executable, "predict.py", str(tmp_path / "nosuch.png")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nosuch.png'}: no such file"]


# --------------------------------------------------------------------------- evaluate

def _evaluate(args, capsys):
    import evaluate

    code = evaluate.main(args)
    return code, capsys.readouterr()


@pytest.fixture()
def hr_set(tmp_path):
    for i in range(2):
        write_png(str(tmp_path / "set" / f"{i}.png"), smooth_image(48, 40, seed=i))
    return str(tmp_path / "set")


def test_evaluate_outputs_on_a_read_only_filesystem_fail_before_scoring(small_model, hr_set,
                                                                        tmp_path, capsys):
    with mounted_tmpfs(str(tmp_path / "ro"), "1m") as disk:
        remount_read_only(disk)
        for flag, name in (("--json", "s.json"), ("--csv", "s.csv"), ("--save-images", "sr")):
            code, captured = _evaluate(["--model", small_model, "--data", hr_set, flag,
                                        os.path.join(disk, name)], capsys)
            assert code == 2 and flag in one_line_error(captured.err)
            assert "model PSNR" not in captured.out           # nothing was scored


def test_evaluate_names_an_lr_image_of_the_wrong_size(small_model, tmp_path, capsys):
    for name, (h, w) in (("a", (48, 40)), ("b", (48, 40))):
        write_png(str(tmp_path / "bench" / "HR" / f"{name}.png"), smooth_image(h, w))
        write_png(str(tmp_path / "bench" / "LR_bicubic_X4" / f"{name}.png"),
                  smooth_image(h // 4 + (name == "b"), w // 4))
    code, captured = _evaluate(["--model", small_model, "--data", str(tmp_path / "bench")],
                               capsys)
    line = one_line_error(captured.err)
    assert code == 2 and "b.png" in line and "not 1/4" in line


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_evaluate_limit_must_be_positive(limit, capsys):
    import evaluate

    with pytest.raises(SystemExit):
        evaluate.parse_args(["--data", "demo", "--limit", limit])
    assert "--limit must be at least 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- hostile cases

def _png16(path, image):
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    from superres import images

    images.write_png(path, image.astype(np.uint16) * 257)


def _truncated(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def _write_kind(folder, kind, rgb):
    """One image file of a decoder path: (suffix, how it is written)."""
    from PIL import Image

    gray16 = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    suffix = {"jpeg": ".jpg", "webp": ".webp", "tiff8": ".tif", "tiff16_gray": ".tif"}.get(
        kind, ".png")
    path = str(folder / f"bad{suffix}")
    if kind == "png16":
        _png16(path, rgb)
    elif kind in ("png16_gray", "tiff16_gray"):
        gray16.save(path)
    else:
        image = Image.fromarray(rgb)
        {"png_palette": image.convert("P"), "png_rgba": image.convert("RGBA")}.get(
            kind, image).save(path)
    return path


@pytest.mark.parametrize("kind", ["png8", "png16", "png16_gray", "png_palette", "png_rgba",
                                  "tiff8", "tiff16_gray", "jpeg", "webp"])
def test_every_decoder_refuses_a_truncated_file_in_one_line(kind, tmp_path):
    from superres import images

    path = _truncated(_write_kind(tmp_path, kind, smooth_image(64, 80, seed=7)))
    with pytest.raises(images.ImageReadError) as caught:
        images.read_image(path)
    assert path in str(caught.value) and "\n" not in str(caught.value)


def test_a_truncated_16_bit_png_in_a_folder_is_one_line_and_the_rest_is_done(small_model,
                                                                              tmp_path, capsys):
    folder = tmp_path / "in"
    write_png(str(folder / "good.png"), smooth_image(24, 32, seed=1))
    _png16(str(folder / "deep.png"), smooth_image(24, 32, seed=2))
    _truncated(str(folder / "deep.png"))
    code, captured = _predict([str(folder), "--model", small_model, "-o",
                               str(tmp_path / "out") + "/"], capsys)
    assert code == 1 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "deep.png" in errors[0]
    assert os.listdir(tmp_path / "out") == ["good_x4.png"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_inputs_of_one_stem_never_write_over_each_other(small_model, tmp_path, capsys,
                                                        overwrite):
    from PIL import Image

    folder = tmp_path / "in"
    write_png(str(folder / "photo.png"), smooth_image(24, 32, seed=1))
    Image.fromarray(smooth_image(24, 32, seed=2)).save(folder / "photo.jpg")
    code, captured = _predict([str(folder), "--model", small_model] + overwrite, capsys)
    line = one_line_error(captured.err)
    assert code == 2 and "photo.jpg" in line and "photo.png" in line and "exists" not in line
    assert sorted(os.listdir(folder)) == ["photo.jpg", "photo.png"]


def test_temporaries_of_a_live_writer_are_kept_and_a_dead_ones_removed(tmp_path):
    from superres import fileio

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_file = tmp_path / f".out_x4.{alive.pid}.abcd1234.tmp.png"
        dead_file = tmp_path / f".out_x4.{dead.pid}.abcd1234.tmp.png"
        for path in (live_file, dead_file):
            path.write_bytes(b"partial")
        removed = fileio.remove_leftover_temps(str(tmp_path), bases=("out_x4",))
        assert removed == [dead_file.name] and live_file.exists()
    finally:
        alive.kill()
        alive.wait()
    with fileio.atomic_path(str(tmp_path / "x.png")) as tmp:
        assert f".x.{os.getpid()}." in os.path.basename(tmp)


def test_compare_on_a_one_pixel_image(small_model, tmp_path, capsys):
    write_png(str(tmp_path / "dot.png"), smooth_image(1, 1))
    code, captured = _predict([str(tmp_path / "dot.png"), "--model", small_model, "--compare"],
                              capsys)
    assert code == 0, captured.err[-2000:]
    assert (tmp_path / "dot_x4_compare.png").exists()


def test_a_full_disk_is_said_once_in_units_that_show_it(small_model, tmp_path, capsys,
                                                         monkeypatch):
    import shutil
    from collections import namedtuple

    for i in range(3):
        write_png(str(tmp_path / "in" / f"{i}.png"), smooth_image(24, 24, seed=i))
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: usage(10**9, 10**9, 1000) if "out" in str(p) else real(p))
    (tmp_path / "out").mkdir()
    code, captured = _predict([str(tmp_path / "in"), "--model", small_model, "-o",
                               str(tmp_path / "out") + "/"], capsys)
    line = one_line_error(captured.err)
    assert code == 2 and "0.0 GB" not in line and "KB" in line
    assert "0 of 3 outputs were written" in line
    assert sum(line.startswith("error:") for line in captured.err.splitlines()) == 1


def test_skip_existing_continues_an_interrupted_folder_run(small_model, tmp_path, capsys):
    for name in ("a", "b"):
        write_png(str(tmp_path / "in" / f"{name}.png"), smooth_image(24, 24))
    out = str(tmp_path / "out") + "/"
    assert _predict([str(tmp_path / "in"), "--model", small_model, "-o", out], capsys)[0] == 0
    os.remove(tmp_path / "out" / "b_x4.png")
    before = (tmp_path / "out" / "a_x4.png").stat().st_mtime_ns
    code, captured = _predict([str(tmp_path / "in"), "--model", small_model, "-o", out,
                               "--skip-existing"], capsys)
    assert code == 0 and "skipped 1 input" in captured.out
    assert (tmp_path / "out" / "b_x4.png").exists()
    assert (tmp_path / "out" / "a_x4.png").stat().st_mtime_ns == before


def test_a_named_output_s_comparison_is_not_taken_as_an_input(small_model, tmp_path, capsys):
    write_png(str(tmp_path / "in" / "a.png"), smooth_image(24, 24))
    assert _predict([str(tmp_path / "in" / "a.png"), "--model", small_model, "-o",
                     str(tmp_path / "in" / "big.png"), "--compare"], capsys)[0] == 0
    assert (tmp_path / "in" / "big_compare.png").exists()
    code, captured = _predict([str(tmp_path / "in"), "--model", small_model, "-o",
                               str(tmp_path / "out") + "/"], capsys)
    assert code == 0 and sorted(os.listdir(tmp_path / "out")) == ["a_x4.png", "big_x4.png"]


def test_files_a_folder_run_cannot_read_are_named(small_model, tmp_path, capsys):
    write_png(str(tmp_path / "in" / "a.png"), smooth_image(24, 24))
    (tmp_path / "in" / "phone.heic").write_bytes(b"ftypheic")
    code, captured = _predict([str(tmp_path / "in"), "--model", small_model, "-o",
                               str(tmp_path / "out") + "/"], capsys)
    assert code == 0 and "skipped 1 file(s)" in captured.err and "phone.heic" in captured.err


def test_evaluate_json_into_a_folder_is_refused_before_scoring(small_model, tmp_path, capsys):
    import evaluate

    (tmp_path / "scores").mkdir()
    code = evaluate.main(["--model", small_model, "--data", "demo", "--json",
                          str(tmp_path / "scores"), "--overwrite"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "is a folder" in line


def test_a_training_image_damaged_past_its_checksums_is_named(tmp_path, capsys):
    """Valid chunk CRCs around a broken deflate stream: Pillow's verify() passes it, the
    tf.data decoder fails deep in the pipeline; the error names the file."""
    import struct
    import zlib

    for i in range(12):
        write_png(str(tmp_path / "images" / f"{i:02d}.png"), smooth_image(96, 96, seed=i))
    bad = tmp_path / "images" / "05.png"
    data = bytearray(bad.read_bytes())
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    for k in range(at + 24, at + 64):
        data[k] ^= 0x5A
    data[at + 4 + length:at + 8 + length] = struct.pack(
        ">I", zlib.crc32(bytes(data[at:at + 4 + length])) & 0xFFFFFFFF)
    bad.write_bytes(bytes(data))
    code = train.main(["--data", str(tmp_path / "images"), "--epochs", "1", "--steps-per-epoch",
                       "2", "--val-patch-size", "64", "--out", str(tmp_path / "run")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "05.png" in line and "--resume" in line


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".webp"])
def test_a_wide_gamut_photo_keeps_its_colour_profile(small_model, tmp_path, capsys, suffix):
    """An embedded colour profile (a phone's Display P3; here a profile that is not
    sRGB, LittleCMS's sRGB with its last bytes changed) travels from the input to the
    output byte for byte, so the unconverted pixels keep meaning the same colours."""
    from PIL import Image, ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    icc = profile.tobytes()
    wide = bytearray(icc)
    wide[-8:] = b"P3-test!"
    photo = tmp_path / "in.jpg"
    Image.fromarray(smooth_image(24, 32, seed=3)).save(photo, icc_profile=bytes(wide))
    out = tmp_path / f"out{suffix}"
    code, captured = _predict([str(photo), "--model", small_model, "-o", str(out)], capsys)
    assert code == 0, captured.err[-2000:]
    with Image.open(out) as result:
        assert result.info.get("icc_profile") == bytes(wide)


def test_the_disk_check_asks_about_what_an_epoch_writes_and_comes_before_its_work(tmp_path,
                                                                                  capsys):
    from superres.training import runfolder

    out = str(tmp_path / "run")
    assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
    written = runfolder.epoch_bytes(out)
    net = train.compile_model(train.parse_args(DEMO + ["--out", out]))
    net.optimizer.build(net.trainable_variables)
    before_any = runfolder.bytes_per_epoch_save({runfolder.MAIN: net})
    assert written / 1.5 <= before_any <= 1.5 * written
    assert runfolder.bytes_per_epoch_save({runfolder.MAIN: net}, out) <= 1.5 * written
    with mounted_tmpfs(str(tmp_path / "disk"), "4m") as disk:
        small = os.path.join(disk, "run")
        assert train.main(DEMO + ["--epochs", "1", "--out", small]) == 0
        _fill(disk, int(0.9 * runfolder.epoch_bytes(small)))
        capsys.readouterr()
        assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", small]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "training epoch 2" in line and "intact up to epoch 1" in line
        assert _epochs(small) == [1]
