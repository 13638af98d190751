import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO, run_python

import train
from superres.training import runfolder

DEMO_ARGS = ["--data", "demo", "--steps-per-epoch", "6", "--batch-size", "4",
             "--val-crops", "2", "--patches-per-image", "2"]


def _epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "demo")
    assert train.main(DEMO_ARGS + ["--epochs", "2", "--out", out]) == 0
    return out


def test_demo_run_writes_the_five_files(demo_run):
    for name in runfolder.RUN_FILES:
        assert os.path.getsize(os.path.join(demo_run, name)) > 0, name
    assert _epochs(demo_run) == [1, 2]
    with open(os.path.join(demo_run, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(("loss", "val_loss", "psnr", "val_psnr")) <= set(rows[0])
    assert all(np.isfinite(float(row["val_psnr"])) for row in rows)
    with open(os.path.join(demo_run, "config.json")) as f:
        config = json.load(f)
    assert config["settings"]["batch_size"] == 4 and "tensorflow" in config["versions"]
    from PIL import Image

    assert Image.open(os.path.join(demo_run, "loss_curves.png")).size[0] > 300


def test_saved_model_reproduces_outputs_in_a_new_process(demo_run, tmp_path):
    import keras

    from superres.architectures import layers  # noqa: F401  (registers the custom layers)

    net = keras.models.load_model(os.path.join(demo_run, "model.h5"))
    lr = np.random.default_rng(0).uniform(size=(1, 10, 13, 3)).astype(np.float32)
    np.save(tmp_path / "lr.npy", lr)
    np.save(tmp_path / "out.npy", np.asarray(net(lr)))
    script = ("import numpy as np, keras\nimport model\n"
              f"net = keras.models.load_model({os.path.join(demo_run, 'model.h5')!r})\n"
              f"out = np.asarray(net(np.load({str(tmp_path / 'lr.npy')!r})))\n"
              f"assert np.array_equal(out, np.load({str(tmp_path / 'out.npy')!r}))\n")
    result = run_python(["-c", script])
    assert result.returncode == 0, result.stderr[-2000:]


def test_existing_run_is_not_overwritten(demo_run, capsys):
    before = os.path.getmtime(os.path.join(demo_run, "model.h5"))
    assert train.main(DEMO_ARGS + ["--epochs", "2", "--out", demo_run]) == 2
    assert "--resume" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(demo_run, "model.h5")) == before


def test_resume_with_other_settings_is_refused(demo_run, capsys):
    assert train.main(DEMO_ARGS[:-2] + ["--patches-per-image", "3", "--epochs", "3",
                                        "--resume", "--out", demo_run]) == 2
    assert "patches-per-image" in capsys.readouterr().err


def test_resume_extends_a_finished_run(demo_run):
    assert train.main(DEMO_ARGS + ["--epochs", "3", "--resume", "--out", demo_run]) == 0
    assert _epochs(demo_run) == [1, 2, 3]


def test_div2k_without_network_stops_with_one_message(monkeypatch, tmp_path, capsys):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    code = train.main(["--out", str(tmp_path / "run"), "--tfds-dir", str(tmp_path / "tfds")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: DIV2K") and "--data demo" in err[-1]


GAN = ["--model", "edsr", "--blocks", "1", "--features", "8", "--loss", "l1",
       "--adversarial-weight", "0.1", "--perceptual-weight", "1", "--perceptual-layers",
       "1,0,0,0,0", "--discriminator-width", "4", "--ema", "0.9", "--val-patch-size", "192",
       "--val-crops", "1", "--steps-per-epoch", "20"]


# A plain model's kill -9 and resume: test_faults.py (random instants, and mid-save); a GAN
# here runs the same loop with more to keep (two networks, two optimizers, the EMA).
@pytest.mark.parametrize("form", [GAN], ids=["gan"])
def test_sigkill_during_second_epoch_then_resume(tmp_path, form):
    out = str(tmp_path / "killed")
    command = [sys.executable, "train.py"] + DEMO_ARGS[:2] + [
        "--steps-per-epoch", "150", "--batch-size", "4", "--val-crops", "2",
        "--epochs", "2", "--out", out] + form
    state = os.path.join(out, "state", "state.json")
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(240, process.kill)   # bounded even if it never gets there
    watchdog.start()
    try:
        # Epoch 1 is committed before "Epoch 2/2" is printed; kill a moment into epoch 2.
        for line in process.stdout:
            if line.startswith("Epoch 2/"):
                break
        else:
            raise AssertionError("training ended before its second epoch began")
        time.sleep(0.3)
        assert process.poll() is None, "training finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    with open(state) as f:
        assert json.load(f)["epoch"] == 1
    result = subprocess.run(command + ["--resume"], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming" in result.stdout and "after epoch 1" in result.stdout
    assert _epochs(out) == [1, 2]
    if form == GAN:   # both networks resumed; the GAN's terms and NIQE in the history
        with open(state) as f:
            assert set(json.load(f)["weights"]) == {"model", "discriminator"}
        with open(os.path.join(out, "history.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert all(float(r[k]) > 0 for r in rows
                   for k in ("l1", "perceptual", "adversarial", "d_loss", "val_niqe"))
    else:  # the resume state keeps the training form; the .h5 files are plain
        import h5py

        with open(state) as f:
            weights = os.path.join(out, "state", json.load(f)["weights"])
        with h5py.File(weights) as f:
            names = []
            f.visit(names.append)
        assert "layers/collapsible_conv2d/vars/2" in names  # the 1x1 projection
        assert _layer_classes(os.path.join(out, "model.h5")) == PLAIN_LAYERS


def test_a_model_taught_by_itself_through_the_teacher_cache_stays_close(tmp_path):
    """--teacher: the targets are the teacher's outputs on the cache's degraded crops. A
    model taught by itself starts at its own outputs (8-bit rounding apart); here one that
    paints every pixel mid-grey, far from any HR."""
    import model as models
    from superres import teacher_cache
    from conftest import smooth_image, write_png

    grey = models.three_conv(4)
    grey.set_weights([np.zeros_like(w) for w in grey.get_weights()[:-1]]
                     + [np.full_like(grey.get_weights()[-1], 0.5)])
    source = str(tmp_path / "grey.h5")
    grey.save(source)
    for i in range(3):
        write_png(str(tmp_path / "photos" / f"p{i}.png"), smooth_image(160, 200, seed=i))
    cache = str(tmp_path / "cache")
    assert teacher_cache.fill(cache, source, 8, sources=[str(tmp_path / "photos")]) == 8
    out = str(tmp_path / "self_taught")
    assert train.main(["--teacher", source, "--teacher-cache", cache, "--teacher-pairs", "8",
                       "--init-from", source, "--lr", "1e-6", "--epochs", "1",
                       "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "32",
                       "--val-patch-size", "64", "--val-crops", "1", "--out", out]) == 0
    with open(os.path.join(out, "config.json")) as f:
        settings = json.load(f)["settings"]
    assert settings["teacher"] == source
    with open(os.path.join(out, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["val_psnr"]) > 45    # against HR it would be about 25 dB


@pytest.mark.parametrize("extra", [[], ["--degradation", "realesrgan", "--patch-size", "76",
                                     "--val-patch-size", "76"]], ids=["bicubic", "realesrgan"])
def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(extra, tmp_path):
    """Each epoch's crops, flips and degradations are a function of (seed, epoch): a run
    stopped after epoch 1 and resumed trains epoch 2 on the batches the whole run did."""
    import keras

    args = DEMO_ARGS + extra + ["--steps-per-epoch", "3", "--val-crops", "1"]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert train.main(args + ["--epochs", "2", "--out", whole]) == 0
    assert train.main(args + ["--epochs", "1", "--out", split]) == 0      # killed after 1
    assert train.main(args + ["--epochs", "2", "--resume", "--out", split]) == 0
    for name in ("last.h5", "model.h5"):
        ours = keras.models.load_model(os.path.join(split, name)).get_weights()
        theirs = keras.models.load_model(os.path.join(whole, name)).get_weights()
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
    with open(os.path.join(whole, "history.csv")) as a, open(os.path.join(split, "history.csv")) as b:
        strip = lambda rows: [row.rsplit(",", 1)[0] for row in rows]   # noqa: E731 (seconds differ)
        assert strip(a.read().splitlines()) == strip(b.read().splitlines())


def test_init_from_a_trained_model(demo_run, tmp_path, capsys):
    out = str(tmp_path / "finetune")
    source = os.path.join(demo_run, "model.h5")
    assert train.main(DEMO_ARGS + ["--epochs", "1", "--init-from", source, "--out", out]) == 0
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["settings"]["init_from"] == source
    # Resuming continues from the run's own state: the --init-from file may be gone.
    moved = str(tmp_path / "moved.h5")
    os.rename(source, moved)
    try:
        assert train.main(DEMO_ARGS + ["--epochs", "2", "--init-from", source, "--out", out,
                                       "--resume"]) == 0
    finally:
        os.rename(moved, source)
    assert _epochs(out) == [1, 2]
    wider = str(tmp_path / "wider")
    assert train.main(DEMO_ARGS + ["--epochs", "1", "--widths", "16,8", "--init-from", source,
                                   "--out", wider]) == 2
    assert "--init-from" in capsys.readouterr().err


def test_init_from_a_model_with_input_colours(demo_run, tmp_path, capsys):
    # A shipped photo model carries fixed InputColours kernels; fine-tuning starts from its
    # network's weights alone.
    import keras
    from superres import inference
    from superres.architectures import layers

    trained = inference.load_model(os.path.join(demo_run, "model.h5"))
    coloured = str(tmp_path / "coloured.h5")
    layers.with_input_colours(trained, 1.5).save(coloured)
    net = keras.models.clone_model(trained)
    train.start_from(net, coloured)
    for ours, theirs in zip(net.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert "input-colours layer" in capsys.readouterr().err


PLAIN_LAYERS = ["InputLayer", "Conv2D", "Conv2D", "Conv2D", "DepthToSpace"]


def _layer_classes(path):
    import keras

    from superres.architectures import layers  # noqa: F401  (registers the custom layers)

    return [layer.__class__.__name__ for layer in keras.models.load_model(path).layers]


@pytest.mark.parametrize("flags,message", [
    (["--warmup-steps", "10"], "--warmup-steps needs --lr-schedule cosine"),
    (["--clip-norm", "-1"], "--clip-norm must be"),
    (["--rescale", "1,0.8,x"], "--rescale must be comma-separated numbers"),
    (["--rescale", "1,1.5"], "--rescale factors must be distinct, above 0 and at most 1"),
    (["--teacher-pairs", "1"], "--teacher-pairs must be at least 2"),
    (["--lr", "-1e-3"], "--lr must be positive"),               # not taken for a flag
    (["--lr", "-0.001"], "--lr must be positive"),
    (["--rescale", "-1e-1,1"], "--rescale factors must be distinct, above 0 and at most 1"),
    (["--epochs", "-2"], "--epochs must be at least 1"),
    (["--lr"], "argument --lr: expected one argument"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_training_flags_are_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--out", str(tmp_path / "run")] + flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err    # no usage
    assert err.rstrip().endswith("(see train.py --help)")
    assert not os.path.exists(tmp_path / "run")


def test_edsr_in_bfloat16_saves_float32_models_and_resumes(tmp_path):
    import keras

    out = str(tmp_path / "edsr")
    args = DEMO_ARGS + ["--model", "edsr", "--blocks", "2", "--features", "8", "--bfloat16",
                        "--out", out]
    assert train.main(args + ["--epochs", "1"]) == 0
    assert train.main(args + ["--epochs", "2", "--resume"]) == 0
    assert _epochs(out) == [1, 2]
    last = keras.models.load_model(os.path.join(out, "last.h5"))
    assert {layer.dtype_policy.name for layer in last.layers} == {"float32"}
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in last.layers) == 2 * 2 + 3
    # last.h5 holds exactly the float32 master weights the resume state holds.
    net = train.compile_model(train.parse_args(args + ["--epochs", "2"]))
    assert net.layers[1].dtype_policy.name == "mixed_bfloat16"
    with open(os.path.join(out, "state", "state.json")) as f:
        net.optimizer.build(net.trainable_variables)
        net.load_weights(os.path.join(out, "state", json.load(f)["weights"]))
    for saved, trained in zip(last.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(saved, trained)


@pytest.mark.parametrize("cpu_bfloat16,flags,xla", [([], [], True),
                                                    (["avx512_bf16"], [], False),
                                                    (["avx512_bf16"], ["--xla"], True)])
def test_bfloat16_uses_xla_only_where_the_cpu_emulates_it(cpu_bfloat16, flags, xla,
                                                          monkeypatch):
    from superres import inference

    monkeypatch.setattr(inference, "native_bfloat16", lambda: cpu_bfloat16)
    assert train.parse_args(["--bfloat16"] + flags).xla is xla
    assert train.parse_args(flags).xla is bool(flags)


def test_warmup_and_clipping_reach_the_optimizer():
    args = train.parse_args(["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "10",
                             "--epochs", "2", "--steps-per-epoch", "50", "--clip-norm", "0.5"])
    optimizer = train.compile_model(args).optimizer
    schedule = optimizer._learning_rate  # the schedule (optimizer.learning_rate is its value)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(100)) == pytest.approx(1e-5)  # --lr-floor 0.01 at the last step
    assert optimizer.global_clipnorm == 0.5


def test_images_smaller_than_the_patch_are_a_clear_error(tmp_path, capsys):
    from conftest import smooth_image, write_png

    for i in range(12):
        write_png(str(tmp_path / "tiny" / f"{i}.png"), smooth_image(40, 40, seed=i))
    code = train.main(["--data", str(tmp_path / "tiny"), "--epochs", "1", "--steps-per-epoch",
                       "2", "--val-patch-size", "32", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "lower --patch-size" in capsys.readouterr().err


@pytest.mark.parametrize("own_validation", [False, True])
def test_a_folder_trains_on_every_image_when_validation_comes_from_elsewhere(
        tmp_path, own_validation):
    import tensorflow as tf
    from conftest import smooth_image, write_png

    # Ten flat images, each its own grey level, so a patch says which image it came from.
    for i in range(10):
        write_png(str(tmp_path / "hr" / f"{i}.png"), np.full((64, 64, 3), 20 * i + 10, np.uint8))
    write_png(str(tmp_path / "val" / "v.png"), smooth_image(64, 64))
    argv = ["--data", str(tmp_path / "hr"), "--patch-size", "64", "--val-patch-size", "64",
            "--batch-size", "10", "--patches-per-image", "1", "--val-crops", "1"]
    if own_validation:
        argv += ["--val-data", str(tmp_path / "val")]
    training_batches, _ = train.build_datasets(train.parse_args(argv))
    seen = set()
    for _, hr in training_batches(tf.distribute.InputContext(), 0).take(20):
        seen.update(np.round(hr.numpy().mean(axis=(1, 2, 3)) * 255).astype(int).tolist())
    held_out = 20 * 5 + 10   # every 10th image from the 6th (data._holdout)
    assert seen <= {20 * i + 10 for i in range(10)}
    if own_validation:
        assert len(seen) == 10
    else:
        assert len(seen) == 9 and held_out not in seen


def test_init_from_a_shallower_edsr_grows_it(tmp_path, capsys):
    import model as models

    shallow = models.edsr(4, blocks=2, width=8)
    path = str(tmp_path / "shallow.h5")
    shallow.save(path)
    net = models.edsr(4, blocks=3, width=8)
    train.start_from(net, path)
    assert "has 2 blocks; the other 1 start as identities" in capsys.readouterr().err
    x = np.random.default_rng(0).uniform(size=(1, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(shallow(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(train.UsageError, match="another architecture"):
        train.start_from(models.edsr(4, blocks=3, width=16), path)


def test_a_nan_stopped_run_names_what_it_kept_and_can_resume_or_restart(tmp_path, capsys):
    out = str(tmp_path / "nan")
    assert train.main(DEMO_ARGS + ["--epochs", "2", "--lr", "1e12", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stopped in epoch 1" in err and "--resume" in err and "--restart" in err
    named = err.split("(")[1].split(")")[0]
    assert os.path.exists(named), named
    # The same settings resume (here: start over, nothing was completed) ...
    assert train.main(DEMO_ARGS + ["--epochs", "1", "--lr", "1e12", "--resume",
                                   "--out", out]) == 2
    # ... and --restart starts it anew with other settings.
    assert train.main(DEMO_ARGS + ["--epochs", "1", "--restart", "--out", out]) == 0
    assert _epochs(out) == [1]
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["settings"]["lr"] == 1e-3
    with pytest.raises(SystemExit):
        train.parse_args(["--restart", "--resume"])


def test_the_quick_start_prints_no_tensorflow_noise_and_plain_progress(tmp_path):
    """Run as a user runs it (a new process, output to a log): no C++ log lines, no
    retracing warnings, no progress-bar escape codes, but a plain line every tenth of
    an epoch."""
    result = subprocess.run([sys.executable, "train.py", "--config", "configs/demo.toml",
                             "--epochs", "2", "--steps-per-epoch", "20", "--val-crops", "2",
                             "--batch-size", "4", "--out", str(tmp_path / "demo")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if line[:5] in ("E0000", "W0000", "I0000") or "retracing" in line
             or "\x1b[" in line or "\r" in line]
    assert noise == [], noise[:5]
    progress = [line for line in result.stdout.splitlines() if "/20 " in line]
    assert len(progress) == 2 * 10 and progress[0].startswith("2/20") and "loss:" in progress[0]
    assert progress[-1].startswith("20/20") and "val_psnr:" in progress[-1]
