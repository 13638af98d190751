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


def test_camera_pairs_are_blurred_before_the_resize_and_live_in_their_own_cache(photos,
                                                                                 teacher,
                                                                                 tmp_path):
    import json

    from superres import bicubic

    detailed = tmp_path / "detailed"
    detailed.mkdir()
    grain = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    write_png(str(detailed / "grain.png"), grain)
    shares = teacher_cache.parse_shares(["camera=1"])
    folder = str(tmp_path / "camera")
    assert teacher_cache.fill(folder, teacher, 4, sources=[str(detailed)], shares=shares) == 4
    for index in range(4):
        with np.load(teacher_cache.pair_path(folder, index)) as pair:
            assert str(pair["kind"]) == "camera"
            lr, hr = pair["lr"].astype(np.float64), pair["hr"]
        plain = bicubic.downscale(hr.astype(np.float32) / 255.0, 4) * 255.0
        # Blur takes out detail: the LR varies less from pixel to pixel than a plain resize.
        assert np.abs(np.diff(lr, axis=1)).mean() < 0.9 * np.abs(np.diff(plain, axis=1)).mean()
    with open(os.path.join(folder, "cache.json")) as f:
        assert json.load(f)["shares"] == {"camera": 1.0}
    assert teacher_cache.default_folder("realesrgan_x4plus", shares).endswith(
        os.path.join("teacher", "realesrgan_x4plus-camera"))
    assert teacher_cache.default_folder("realesrgan_x4plus", dict(teacher_cache.SHARES)).endswith(
        os.path.join("teacher", "realesrgan_x4plus"))
    with pytest.raises(teacher_cache.CacheError, match=r"other settings \(shares\)"):
        teacher_cache.fill(folder, teacher, 4, sources=[str(detailed)])


def test_a_cache_made_before_the_camera_kind_is_still_the_default_mix(photos, teacher, tmp_path):
    import json

    folder = str(tmp_path / "cache")
    teacher_cache.fill(folder, teacher, 2, sources=[photos])
    path = os.path.join(folder, "cache.json")
    with open(path) as f:
        saved = json.load(f)
    old = {k: v for k, v in saved.items() if k != "shares"}
    old["mild_share"] = 0.25   # what such a cache.json said
    with open(path, "w") as f:
        json.dump(old, f)
    assert teacher_cache.fill(folder, teacher, 3, sources=[photos]) == 1
    with pytest.raises(teacher_cache.CacheError, match="other settings"):
        teacher_cache.fill(folder, teacher, 3, sources=[photos], shares={"mild": 1.0})


@pytest.mark.parametrize("words, message", [
    (["fog=1"], "--shares fog=1: the kinds are mild, camera, realesrgan"),
    (["camera=half"], "--shares camera=half: give KIND=SHARE"),
    (["camera=0.5"], "--shares camera=0.5: the shares sum to 1"),
])
def test_shares_that_make_no_mix_are_one_line(photos, tmp_path, words, message):
    result = run_python(["-m", "superres.teacher_cache", "--out", str(tmp_path / "c"),
                         "--count", "2", "--sources", photos, "--shares", *words])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not os.path.exists(tmp_path / "c")


def test_training_reads_several_caches_together(photos, teacher, tmp_path):
    import data

    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    teacher_cache.fill(first, teacher, 22, sources=[photos])
    teacher_cache.fill(second, teacher, 3, sources=[photos], shares={"camera": 1.0})
    names = [item["name"].numpy().decode() for item in
             data.teacher_pair_dataset([first, second], "validation")]
    assert names == [os.path.join("a", "pair-000000.npz"), os.path.join("a", "pair-000020.npz"),
                     os.path.join("b", "pair-000000.npz")]
    assert len(list(data.teacher_pair_dataset([first, second], "train"))) == 20 + 2
    assert teacher_cache.folders("", "realesrgan_x4plus") == [
        teacher_cache.default_folder("realesrgan_x4plus")]
    assert teacher_cache.folders(f"realesrgan_x4plus-camera,{second}", "x") == [
        teacher_cache.default_folder("realesrgan_x4plus", {"camera": 1.0}), second]


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
