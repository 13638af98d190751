"""Faults a user or the machine can cause: kills at any instant, a full disk, a
read-only filesystem, two processes on one run, mistyped flags, bad files.
Each asserts the exit code, one line without a traceback, and that the user's
files are untouched."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, mounted_tmpfs, one_line_error, remount_read_only, smooth_image, write_png

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
    """Bounded: four kills at random moments (start-up, training, saving), then the
    same command plus --resume finishes with every epoch exactly once."""
    out = str(tmp_path / "run")
    command = [sys.executable, "train.py"] + DEMO + ["--epochs", "3", "--out", out]
    rng = random.Random(11)
    for attempt in range(4):
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


# --------------------------------------------------------------------------- disk

def test_full_disk_stops_with_one_line_and_resumes_after_space_is_freed(tmp_path):
    with mounted_tmpfs(str(tmp_path / "disk"), "4m") as disk:
        out = os.path.join(disk, "run")
        assert _train(DEMO + ["--epochs", "1", "--out", out]).returncode == 0
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(os.path.join(disk, "filler"), "wb") as f:
            f.write(b"\0" * (free - 64 * 1024))
        result = _train(DEMO + ["--epochs", "2", "--resume", "--out", out])
        assert result.returncode == 2
        line = one_line_error(result.stderr)
        assert "disk full" in line and "epoch 1" in line and "--resume" in line
        assert _epochs(out) == [1]
        os.remove(os.path.join(disk, "filler"))
        result = _train(DEMO + ["--epochs", "2", "--resume", "--out", out])
        assert result.returncode == 0, result.stderr[-2000:]
        assert _epochs(out) == [1, 2]


def test_write_failing_with_no_space_mid_save_is_one_line(tmp_path):
    """When the space check passes but a write still hits ENOSPC (another process
    filled the disk meanwhile), the same message, and the last epoch intact."""
    with mounted_tmpfs(str(tmp_path / "disk"), "4m") as disk:
        out = os.path.join(disk, "run")
        assert _train(DEMO + ["--epochs", "1", "--out", out]).returncode == 0
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(os.path.join(disk, "filler"), "wb") as f:
            f.write(b"\0" * (free - 200 * 1024))
        script = ("import sys, fileio, train\n"
                  "fileio.check_free_space = lambda *a: None\n"
                  f"sys.exit(train.main({DEMO + ['--epochs', '2', '--resume', '--out', out]!r}))\n")
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "disk full" in one_line_error(result.stderr)
        os.remove(os.path.join(disk, "filler"))
        result = _train(DEMO + ["--epochs", "2", "--resume", "--out", out])
        assert result.returncode == 0, result.stderr[-2000:]
        assert _epochs(out) == [1, 2]


def test_out_and_cache_on_a_read_only_filesystem(tmp_path):
    with mounted_tmpfs(str(tmp_path / "ro"), "1m") as disk:
        remount_read_only(disk)
        result = _train(DEMO + ["--epochs", "1", "--out", os.path.join(disk, "run")])
        assert result.returncode == 2 and "--out" in one_line_error(result.stderr)
        result = _train(DEMO + ["--epochs", "1", "--cache", os.path.join(disk, "cache"),
                                "--out", str(tmp_path / "run")])
        assert result.returncode == 2 and "--cache" in one_line_error(result.stderr)
        assert not os.path.exists(tmp_path / "run")


# --------------------------------------------------------------------------- run folder

def test_a_second_process_cannot_resume_a_running_run(tmp_path, capsys):
    from fileio import lock_folder

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
    (["--init", "nosuch"], "nosuch"),
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
