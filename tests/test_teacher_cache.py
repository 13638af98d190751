import os

import numpy as np
import pytest
from conftest import SHARED_DATA, run_python, save_small_model, smooth_image, write_png

from superres import teacher_cache
from superres.upscaling import upscale


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i, (h, w) in enumerate([(160, 200), (120, 90), (300, 260)]):
        write_png(str(folder / f"p{i}.png"), smooth_image(h, w, seed=i))
    return str(folder)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("teacher"))


def test_pairs_are_the_teachers_output_on_degraded_crops_and_a_function_of_the_index(
        photos, teacher, tmp_path):
    from superres import inference

    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    assert teacher_cache.fill(first, teacher, 6, sources=[photos]) == 6
    assert teacher_cache.pair_indices(first) == list(range(6))
    net = inference.load_model(teacher)
    kinds = set()
    for index in range(6):
        with np.load(teacher_cache.pair_path(first, index)) as pair:
            lr, target, hr = pair["lr"], pair["teacher"], pair["hr"]
            kinds.add(str(pair["kind"]))
        assert target.shape == hr.shape == (4 * lr.shape[0], 4 * lr.shape[1], 3)
        assert lr.shape[0] <= teacher_cache.LR_SIDE
        np.testing.assert_array_equal(target, upscale(lr, net, dtype=np.uint8))
    assert kinds == {"mild", "realesrgan"}
    # Made again elsewhere, in another order of work, pair 4 is the same pair.
    assert teacher_cache.fill(second, teacher, 5, sources=[photos]) == 5
    with np.load(teacher_cache.pair_path(first, 4)) as a, \
            np.load(teacher_cache.pair_path(second, 4)) as b:
        np.testing.assert_array_equal(a["lr"], b["lr"])


def test_a_killed_job_continues_where_it_stopped(photos, teacher, tmp_path):
    folder = str(tmp_path / "cache")
    assert teacher_cache.fill(folder, teacher, 3, sources=[photos]) == 3
    os.remove(teacher_cache.pair_path(folder, 1))
    (tmp_path / "cache" / ".pair-000005.99999.abcd.tmp.npz").write_bytes(b"half")  # a kill
    assert teacher_cache.fill(folder, teacher, 6, sources=[photos]) == 4   # 1, 3, 4, 5
    assert teacher_cache.pair_indices(folder) == list(range(6))
    assert not [n for n in os.listdir(folder) if n.startswith(".")]
    assert teacher_cache.fill(folder, teacher, 6, sources=[photos]) == 0


def test_a_cache_of_other_settings_is_refused(photos, teacher, tmp_path):
    folder = str(tmp_path / "cache")
    teacher_cache.fill(folder, teacher, 2, sources=[photos])
    with pytest.raises(teacher_cache.CacheError, match=r"other settings \(seed\)"):
        teacher_cache.fill(folder, teacher, 2, seed=1, sources=[photos])
    result = run_python(["-m", "superres.teacher_cache", "--teacher", teacher, "--out", folder,
                         "--count", "3", "--seed", "1", "--sources", photos])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {folder} was made with")


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "train")),
                    reason=f"training images not found at {SHARED_DATA}")
def test_train_builds_a_small_cache_from_the_shared_training_images(teacher, tmp_path):
    import json

    import train

    cache, out = str(tmp_path / "cache"), str(tmp_path / "run")
    assert train.main(["--teacher", teacher, "--teacher-cache", cache, "--teacher-pairs", "21",
                       "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
                       "--patch-size", "32", "--val-patch-size", "64", "--val-crops", "1",
                       "--out", out]) == 0
    assert len(teacher_cache.pair_indices(cache)) == 21    # pairs 0 and 20 validate
    with open(os.path.join(cache, "cache.json")) as f:
        assert json.load(f)["sources"] == ["../shared/data/train", "../shared/data/train_more"]
    assert os.path.exists(os.path.join(out, "model.h5"))


def test_a_teacher_that_is_not_a_model_is_one_line(photos, tmp_path):
    result = run_python(["-m", "superres.teacher_cache", "--teacher", "no_such_model", "--out",
                         str(tmp_path / "c"), "--count", "2", "--sources", photos])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --teacher no_such_model: no such file, and not a shipped model's name")
