"""superres/training/settings.py: one declaration per setting; recipes as files; old run folders resume."""

import csv
import json
import os

import pytest
from conftest import REPO

import train
from superres.training import settings

# Each shipped recipe and the config.json of the run it reproduces.
RECIPES = [("three_conv_x4", "weights/three_conv_x4.config.json"),
           ("three_conv_64x32_x4", "weights/three_conv_64x32_x4.config.json"),
           ("edsr_x4_1", "docs/runs/edsr_x4_1/config.json"),
           ("edsr_x4_2", "docs/runs/edsr_x4_2/config.json"),
           ("edsr_x4_3", "docs/runs/edsr_x4_3/config.json"),
           ("edsr_x4_4", "docs/runs/edsr_x4_4/config.json"),
           ("edsr_x4_5", "weights/edsr_x4.config.json"),
           ("edsr_real_x4_1", "docs/runs/edsr_real_x4/config.json"),
           ("edsr_real_x4_2", "docs/runs/edsr_real_x4_2/config.json"),
           ("edsr_real_x4_3", "weights/edsr_real_x4.config.json"),
           ("edsr_real_gan", "docs/runs/edsr_real_gan_x4/config.json"),
           ("photo_l1", "docs/runs/photo_l1_x4/config.json"),
           ("photo_plus_l1", "docs/runs/photo_plus_l1_x4/config.json"),
           ("photo", "docs/runs/photo_x4_2/config.json"),
           ("photo_spectrum_1", "docs/runs/photo_spectrum_x4/config.json"),
           ("photo_spectrum_2", "docs/runs/photo_spectrum_x4_2/config.json"),
           ("photo_spectrum_3", "docs/runs/photo_x4_3/config.json"),
           ("photo_mscn", "weights/photo_x4.config.json"),
           ("photo_plus", "docs/runs/photo_plus_x4_2/config.json"),
           ("photo_plus_spectrum_1", "docs/runs/photo_plus_spectrum_x4/config.json"),
           ("photo_plus_spectrum_2", "docs/runs/photo_plus_spectrum_x4_2/config.json"),
           ("photo_plus_spectrum_3", "docs/runs/photo_plus_x4_3/config.json"),
           ("photo_plus_mscn_1", "docs/runs/photo_plus_mscn_x4/config.json"),
           ("photo_plus_mscn_2", "weights/photo_plus_x4.config.json")]
# Where each leg's run folder and starting point lived then, and speed options (no effect on
# what is learned) are not part of a recipe.
NOT_RECIPE = {"out", "init_from", "xla", "stop_after"}
DEMO = ["--data", "demo", "--steps-per-epoch", "3", "--batch-size", "4", "--val-crops", "2",
        "--patches-per-image", "2"]


def _differences(resolved, saved, ignore=()):
    """Recorded settings of ``resolved`` that differ from a run's config.json ``saved``
    (a setting the run predates counts at its legacy value)."""
    differ = {}
    for s in settings.TRAINING:
        if not s.record or s.name in ignore:
            continue
        then = saved.get(s.name, saved.get(s.formerly, s.legacy) if s.formerly else s.legacy)
        if then != resolved[s.name]:
            differ[s.name] = (then, resolved[s.name])
    return differ


def _inert(saved):
    """Settings of the loss terms a run had switched off (weight 0), of the discriminator of a
    run without one, and of models other than the run's (model.MODELS says which settings each
    reads): they changed nothing."""
    import model as models
    from superres import losses

    defaults = {s.name: s.default for s in settings.TRAINING}
    inert = {setting for _, options, weight, _ in losses.TERMS.values()
             if not saved.get(weight, defaults[weight]) for setting in options.values()}
    if not saved.get("adversarial_weight", defaults["adversarial_weight"]):   # no discriminator
        inert |= {s.name for s in settings.TRAINING
                  if s.name.startswith("discriminator_") or s.name == "adversarial_loss"}
    read = {name: set(options.values()) for name, (_, options) in models.MODELS.items()}
    inert |= set().union(*read.values()) - read[saved.get("model", defaults["model"])]
    return inert


def _saved_settings(path):
    with open(os.path.join(REPO, path)) as f:
        return json.load(f)["settings"]


@pytest.mark.parametrize("name,shipped", RECIPES, ids=[r[0] for r in RECIPES])
def test_each_recipe_is_the_run_of_the_shipped_model(name, shipped, monkeypatch):
    monkeypatch.chdir(REPO)
    args = train.parse_args(["--config", f"configs/{name}.toml"])
    saved = _saved_settings(shipped)
    assert _differences(settings.recorded(args), saved, NOT_RECIPE | _inert(saved)) == {}
    assert args.config_file["path"] == f"configs/{name}.toml"


def test_every_config_file_resolves(monkeypatch):
    monkeypatch.chdir(REPO)
    names = sorted(f for f in os.listdir("configs") if f.endswith(".toml"))
    assert {f"{n}.toml" for n, _ in RECIPES} | {"demo.toml"} == set(names)
    for name in names:
        train.parse_args(["--config", f"configs/{name}"])
    real = train.parse_args(["--config", "configs/edsr_real_x4_2.toml"])
    assert real.degradation == "realesrgan" and real.realesrgan["jpeg_range"] == [30.0, 95.0]


def test_the_three_conv_recipe_trains_and_records_its_settings(tmp_path, monkeypatch):
    """The recipe runs; its config.json equals the shipped model's settings apart from
    what the command overrides (here also the images, to keep the test short)."""
    monkeypatch.chdir(REPO)
    out = str(tmp_path / "run")
    overrides = ["--epochs", "1", "--steps-per-epoch", "5", "--out", out]
    assert train.main(["--config", "configs/three_conv_x4.toml", "--data", "demo",
                       "--val-data", "demo", "--val-crops", "1"] + overrides) == 0
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    shipped = _saved_settings("weights/three_conv_x4.config.json")
    assert _differences(config["settings"], shipped) == {
        "data": ("../shared/data/train", "demo"), "val_data": ("../shared/data/train", "demo"),
        "val_crops": (8, 1), "epochs": (120, 1), "steps_per_epoch": (1000, 5),
        "out": ("runs/scratch_all291_cw_rs", out)}
    with open("configs/three_conv_x4.toml") as f:
        assert config["config_file"] == {"path": "configs/three_conv_x4.toml", "text": f.read()}


def test_a_flag_overrides_the_config_file_and_the_file_overrides_defaults(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('widths = [16, 8]\nlr = 5e-4\nxla = true\n')
    args = train.parse_args(["--config", str(recipe), "--lr", "1e-4", "--no-xla"])
    assert args.widths == [16, 8] and args.lr == 1e-4 and args.xla is False
    assert args.batch_size == settings.BY_NAME["batch_size"].default


@pytest.mark.parametrize("text,named", [
    ("widths = [16, 8\n", "not valid TOML"),
    ("widht = [16, 8]\n", "unknown setting widht"),
    ("lr = 'fast'\n", "lr must be a number"),
    ("epochs = 1.5\n", "epochs must be an integer"),
    ("loss = 'l2'\n", "loss must be one of mse, l1"),
    ("[realesrgan]\njpeg_range = [30, 95]\n", "needs degradation"),
    ("degradation = 'realesrgan'\npatch_size = 128\n[realesrgan]\njpeg_rnage = [1, 2]\n",
     "jpeg_rnage"),
    ("resume = true\n", "belongs on the command line"),
])
def test_bad_config_files_are_one_line(text, named, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--config", str(recipe)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert named in err


def test_missing_config_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--config", str(tmp_path / "nope.toml")])
    assert "nope.toml" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--lr", "-0.001"], "--lr must be positive"),
    (["--lr", "0"], "--lr must be positive"),
    (["--init", "model.h5"], "--init is now --kernel-initializer"),
    (["--kernel-initializer", "runs/x/model.h5"], "use --init-from"),
    (["--degradation", "realesrgan"], "--patch-size must be at least 74"),
])
def test_value_checks_come_from_the_declarations(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_every_command_line_setting_in_its_group(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = capsys.readouterr().out
    for s in settings.TRAINING:
        assert (s.flag in text) == s.cli, s.name
    body = text[text.index("options:"):]
    assert body.index("--ema") > body.index("adversarial and perceptual") > body.index("--lr")


def test_a_run_folder_of_the_previous_train_py_still_resumes(tmp_path, capsys):
    """A run written before superres/training/settings.py (config.json with 'init', without the settings
    added since) resumes; one with another value of a setting is refused in one line."""
    out = str(tmp_path / "old")
    assert train.main(DEMO + ["--epochs", "1", "--out", out]) == 0
    path = os.path.join(out, "config.json")
    with open(path) as f:
        config = json.load(f)
    old = dict(config["settings"])
    old["init"] = old.pop("kernel_initializer")
    for name in ("degradation", "realesrgan", "stop_after"):
        del old[name]
    config = {"settings": old, "versions": config["versions"], "started": config["started"],
              "command": config["command"]}
    with open(path, "w") as f:
        json.dump(config, f)
    assert train.main(DEMO + ["--epochs", "2", "--resume", "--out", out]) == 0
    with open(os.path.join(out, "history.csv"), newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    capsys.readouterr()
    assert train.main(DEMO + ["--epochs", "3", "--resume", "--kernel-initializer", "he_normal",
                              "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume") and "--kernel-initializer" in err
    assert "\n" not in err
    # A run that used a setting since removed (three_conv's --expand) is refused, not
    # continued as another model.
    config["settings"]["expand"] = 64
    with open(path, "w") as f:
        json.dump(config, f)
    assert train.main(DEMO + ["--epochs", "3", "--resume", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume") and "--expand 64 (run)" in err
    assert "\n" not in err


def test_stop_after_ends_a_longer_schedule_early(tmp_path):
    out = str(tmp_path / "leg")
    assert train.main(DEMO + ["--epochs", "5", "--stop-after", "1", "--lr-schedule", "cosine",
                              "--out", out]) == 0
    with open(os.path.join(out, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1]
    # The learning rate follows the 5-epoch cosine, not a 1-epoch one.
    assert float(rows[0]["lr"]) > 0.5e-3


@pytest.mark.parametrize("flags,message", [
    (["--adversarial-weight", "0.1"], "--val-patch-size must be at least 192"),
    (["--spectrum-weight", "1"], "--val-patch-size must be at least 192"),
    (["--mscn-weight", "1"], "--val-patch-size must be at least 192"),
    (["--perceptual-weight", "1", "--val-patch-size", "192", "--perceptual-layers", "0,0,0,0,0"],
     "--perceptual-layers must be 5 weights"),
    (["--adversarial-weight", "0.1", "--val-patch-size", "192", "--ema", "1"],
     "--ema must be at least 0, below 1"),
    (["--teacher", "edsr", "--degradation", "realesrgan"],
     "--teacher trains and validates on its cache's degraded pairs"),
    (["--adversarial-loss", "wgan"], "--adversarial-loss must be one of vanilla, relativistic"),
    (["--discriminator-only-steps", "10"], "--discriminator-only-steps needs --adversarial-weight"),
])
def test_gan_settings_are_checked_before_anything_runs(flags, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert message in capsys.readouterr().err


def test_the_gan_recipe_resolves_to_real_esrgans_terms(monkeypatch):
    monkeypatch.chdir(REPO)
    args = train.parse_args(["--config", "configs/edsr_real_gan.toml"])
    assert (args.pixel_weight, args.perceptual_weight, args.adversarial_weight) == (1, 1, 0.1)
    assert args.perceptual_layers == [0.1, 0.1, 1, 1, 1] and args.unsharp_target
    assert args.init_from == "weights/edsr_real_x4.h5" and args.ema == 0.999


def test_the_choices_of_settings_are_their_registries_names():
    """A registered loss, backbone or degradation model is a choice of its setting (settings
    are declared without importing TensorFlow, so the names are written there too)."""
    from superres import degradations, losses

    choices = {s.name: s.choices for s in settings.TRAINING}
    assert set(choices["loss"]) == set(losses.PIXEL)
    assert set(choices["adversarial_loss"]) == set(losses.ADVERSARIAL)
    assert set(choices["perceptual_backbone"]) == set(losses.VGG_CONVS)
    assert set(choices["degradation"]) == {"bicubic"} | set(degradations.MODELS)
    assert set(settings.DEGRADATION_TABLES) == set(degradations.MODELS)
