import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED_DATA, needs_shared_data, smooth_image, write_png

import data
from superres import bicubic, sources


def _materialize(dataset):
    return list(dataset.as_numpy_iterator())


@pytest.fixture
def div2k_root(tmp_path):
    """A tiny DIV2K tree in the official layout, LR made by our MATLAB-style bicubic."""
    root = tmp_path / "DIV2K"
    for split, first, count in (("train", 1, 3), ("valid", 801, 2)):
        for i in range(first, first + count):
            hr = smooth_image(96 + 4 * i % 16, 128, seed=i)
            write_png(str(root / f"DIV2K_{split}_HR" / f"{i:04d}.png"), hr)
            write_png(str(root / f"DIV2K_{split}_LR_bicubic" / "X4" / f"{i:04d}x4.png"),
                      bicubic.downscale(hr))
    return root


def test_local_div2k_pairs(div2k_root):
    assert sources.source_kind(str(div2k_root)) == "div2k_local"
    train = _materialize(data.pair_dataset(str(div2k_root), "train"))
    valid = _materialize(data.pair_dataset(str(div2k_root), "validation"))
    assert [p["name"] for p in train] == [b"0001", b"0002", b"0003"]
    assert [p["name"] for p in valid] == [b"0801", b"0802"]
    for pair in train + valid:
        assert pair["hr"].dtype == np.uint8 and pair["hr"].shape[2] == 3
        assert pair["hr"].shape[:2] == tuple(4 * np.array(pair["lr"].shape[:2]))


def test_local_div2k_missing_lr_names_the_file(div2k_root):
    os.remove(div2k_root / "DIV2K_train_LR_bicubic" / "X4" / "0002x4.png")
    with pytest.raises(data.DataError, match="0002.png"):
        data.pair_dataset(str(div2k_root), "train")


def test_local_div2k_with_only_validation(div2k_root, tmp_path):
    import shutil

    shutil.rmtree(div2k_root / "DIV2K_train_HR")
    assert len(_materialize(data.pair_dataset(str(div2k_root), "validation"))) == 2
    with pytest.raises(data.DataError, match="DIV2K_train_HR"):
        data.pair_dataset(str(div2k_root), "train")


def test_hr_folder_makes_matlab_lr_and_modcrops(tmp_path):
    hr = smooth_image(70, 83, seed=5)
    write_png(str(tmp_path / "imgs" / "sub" / "a.png"), hr)
    write_png(str(tmp_path / "imgs" / "b.png"), smooth_image(64, 64, seed=6))
    pairs = _materialize(data.pair_dataset(str(tmp_path / "imgs"), "train", holdout=False))
    assert sorted(p["name"] for p in pairs) == [b"b", b"sub/a"]
    pair = [p for p in pairs if p["name"] == b"sub/a"][0]
    np.testing.assert_array_equal(pair["hr"], hr[:68, :80])
    np.testing.assert_array_equal(pair["lr"], bicubic.downscale(hr))


def test_rescaled_pairs_add_smaller_matlab_versions_of_each_image(tmp_path):
    hr = smooth_image(101, 90, seed=3)
    write_png(str(tmp_path / "hr" / "a.png"), hr)
    pairs = data.pair_dataset(str(tmp_path / "hr"), "train", holdout=False)
    items = list(data.rescaled_pairs(pairs, [1.0, 0.7], 4).as_numpy_iterator())
    assert len(items) == 2
    original = next(pairs.as_numpy_iterator())
    np.testing.assert_array_equal(items[0]["hr"], original["hr"])
    np.testing.assert_array_equal(items[0]["lr"], original["lr"])
    smaller = bicubic.imresize(hr, scale=0.7)              # 71 x 63, then modcrop to 68 x 60
    assert items[1]["hr"].shape == (68, 60, 3)
    np.testing.assert_array_equal(items[1]["hr"], bicubic.modcrop(smaller, 4))
    np.testing.assert_array_equal(items[1]["lr"], bicubic.downscale(items[1]["hr"]))


def test_gray_files_are_flagged(tmp_path):
    write_png(str(tmp_path / "g" / "gray.png"), smooth_image(32, 32)[..., 0])
    (pair,) = _materialize(data.pair_dataset(str(tmp_path / "g"), "validation", holdout=False))
    assert pair["gray"] and pair["hr"].shape == (32, 32, 3)


def test_jpeg_files_decode_as_pillow_decodes_them(tmp_path):
    """The training pipeline and evaluate.py (Pillow) see a JPEG's same colours: TensorFlow's
    default fast IDCT would lower red and blue by about a grey level."""
    from PIL import Image

    path = str(tmp_path / "photo.jpg")
    Image.fromarray(smooth_image(96, 128, seed=3)).save(path, quality=60)
    expected = np.asarray(Image.open(path).convert("RGB"), np.int16)
    got = data._decode_file(tf.constant(path))[0].numpy().astype(np.int16)
    assert np.abs(got - expected).max() <= 1
    np.testing.assert_allclose(got.reshape(-1, 3).mean(0), expected.reshape(-1, 3).mean(0),
                               atol=0.05)


def test_missing_folder_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(data.DataError, match="no such folder"):
        data.pair_dataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no images"):
        data.pair_dataset(str(tmp_path / "empty"))


def test_holdout_is_deterministic_and_disjoint(tmp_path):
    for i in range(25):
        write_png(str(tmp_path / "many" / f"{i:02d}.png"), smooth_image(32, 32, seed=i))
    train = {p["name"] for p in _materialize(data.pair_dataset(str(tmp_path / "many"), "train"))}
    val = {p["name"] for p in _materialize(data.pair_dataset(str(tmp_path / "many"),
                                                             "validation"))}
    assert val == {b"05", b"15"} and len(train) == 23 and not train & val  # every 10th


@needs_shared_data
def test_benchmark_folder_pairs():
    pairs = _materialize(data.pair_dataset(os.path.join(SHARED_DATA, "Set5"), "validation",
                                           holdout=False))
    assert [p["name"] for p in pairs] == [b"baby", b"bird", b"butterfly", b"head", b"woman"]
    assert all(p["hr"].shape[:2] == tuple(4 * np.array(p["lr"].shape[:2])) for p in pairs)


def test_demo_source_has_disjoint_splits():
    train = _materialize(data.pair_dataset("demo", "train"))
    val = _materialize(data.pair_dataset("demo", "validation"))
    assert len(train) >= 5 and len(val) >= 2
    assert not {p["name"] for p in train} & {p["name"] for p in val}


class _FakeConnection:
    def close(self):
        pass


def test_tfds_div2k_path_with_mock_data(monkeypatch):
    import socket

    import tensorflow_datasets as tfds

    # Pretend the DIV2K host answers; mock_data then stands in for the download.
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _FakeConnection())

    hr = smooth_image(64, 96, seed=9)
    lr = bicubic.downscale(hr)

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensors({"hr": hr, "lr": lr}).repeat(2)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        pairs = _materialize(data._tfds_dataset("validation", 4))
    assert [p["name"] for p in pairs] == [b"0801", b"0802"]
    np.testing.assert_array_equal(pairs[0]["hr"], hr)


def test_div2k_unreachable_is_one_clear_error(monkeypatch, tmp_path):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(data.DataError, match="--data demo"):
        data.check_tfds_available(4, data_dir=str(tmp_path))


# ------------------------------------------------------------------ patches

def _pair(seed=0):
    hr = smooth_image(160, 192, seed=seed)
    return hr, bicubic.downscale(hr)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotations", [0, 1, 2, 3])
def test_crops_stay_aligned_under_every_flip_and_rotation(flip, rotations):
    hr, lr = _pair()
    hr_crops, lr_crops = data.random_crops(tf.constant(hr), tf.constant(lr),
                                           tf.constant([3, 4], tf.int64), 64, 4, count=6)
    for hr_crop, lr_crop in zip(hr_crops, lr_crops):
        hr_t = data.transform(hr_crop, tf.constant(flip), rotations).numpy()
        lr_t = data.transform(lr_crop, tf.constant(flip), rotations).numpy()
        assert hr_t.shape == (64, 64, 3) and lr_t.shape == (16, 16, 3)
        # Away from the crop border (the kernel reaches 2 LR pixels), the LR crop
        # is the downscale of the HR crop.
        difference = np.abs(bicubic.downscale(hr_t).astype(int) - lr_t.astype(int))[3:-3, 3:-3]
        assert difference.max() <= 1


def test_misaligned_crop_would_be_detected():
    # The alignment check above has teeth: shifting HR by one LR pixel breaks it.
    hr, lr = _pair()
    shifted = bicubic.downscale(hr[4:68, 0:64]).astype(int)
    assert np.abs(shifted - lr[0:16, 0:16].astype(int))[3:-3, 3:-3].max() > 1


def test_training_batches_shapes_types_ranges(tmp_path):
    hr, lr = _pair()
    pairs = tf.data.Dataset.from_tensors({"name": "x", "hr": hr, "lr": lr, "gray": False})
    batches = data.training_dataset(pairs, patch_size=64, batch_size=5, patches_per_image=3)
    for lr_batch, hr_batch in batches.take(3):
        assert lr_batch.shape == (5, 16, 16, 3) and hr_batch.shape == (5, 64, 64, 3)
        assert lr_batch.dtype == tf.float32 and hr_batch.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(hr_batch)) and float(tf.reduce_max(hr_batch)) <= 1.0
        # Each LR patch is (nearly) the area average of its HR patch.
        pooled = tf.nn.avg_pool2d(hr_batch, 4, 4, "VALID")
        assert float(tf.reduce_mean(tf.abs(pooled - lr_batch))) < 0.03


def test_augmentation_uses_all_eight_symmetries():
    hr = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    seen = set()
    for i in range(64):
        out, _ = data.augment(tf.constant(hr), tf.constant(hr), tf.constant([i, 7], tf.int64))
        seen.add(out.numpy().tobytes())
    assert len(seen) == 8


def test_validation_crops_are_the_same_every_epoch():
    hr, lr = _pair(seed=2)
    pairs = tf.data.Dataset.from_tensors({"name": "x", "hr": hr, "lr": lr, "gray": False})
    val = data.validation_dataset(pairs, patch_size=64, crops_per_image=4, batch_size=4)
    first = [b.numpy() for b, _ in val]
    second = [b.numpy() for b, _ in val]
    fresh = [b.numpy() for b, _ in data.validation_dataset(pairs, 64, 4, 4, 4)]
    for a, b, c in zip(first, second, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_degraded_batches_keep_their_static_shapes(tmp_path):
    """The discriminator's bilinear upsampling needs static shapes in a graph; the
    degradation ops alone would lose them."""
    from superres import degradations

    folder = tmp_path / "hr"
    folder.mkdir()
    write_png(folder / "a.png", smooth_image(160, 160))
    pairs = data.pair_dataset(str(folder), "train", 4, holdout=False)
    batches = data.training_dataset(pairs, 128, 4, 2, degradation=degradations.chosen("realesrgan"))
    lr, hr = batches.element_spec
    assert lr.shape == (2, 32, 32, 3) and hr.shape == (2, 128, 128, 3)
