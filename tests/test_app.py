"""app.py: the web page, served as a user starts it, driven by Gradio's client and by a
headless Chromium."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, png_header_only, smooth_image, write_png

import predict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


class Server:
    """``python app.py`` on a free port, its working folder and temporary folder its own."""

    def __init__(self, root):
        self.cwd, self.tmp = root / "cwd", root / "tmp"
        self.cwd.mkdir(parents=True)
        self.tmp.mkdir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, TMPDIR=str(self.tmp), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "app.py"), "--port", str(self.port)],
            cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "".join(self.lines)
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the app did not serve within 180 s:\n" + "".join(self.lines))

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=str(self.cwd.parent / "got"))

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("app"))
    yield running
    running.stop()


def _upscale(server, path, model):
    from gradio_client import handle_file

    return server.client().predict(handle_file(path), model, api_name="/upscale")


def _predicted(tmp_path, source, suffix, flags):
    out = str(tmp_path / f"predicted{suffix}")
    assert predict.main([source, "-o", out] + flags) == 0
    with open(out, "rb") as f:
        return f.read()


@pytest.mark.parametrize("kind,model,flags", [
    ("png", "three_conv", ["--model", "three_conv"]),
    ("jpg", "edsr", ["--model", "edsr"]),
    ("png16_alpha", "three_conv", ["--model", "three_conv"]),
    ("png", "photo_plus", ["--model", "photo_plus"]),
])
def test_the_download_is_predicts_output_byte_for_byte(server, tmp_path, kind, model, flags):
    from PIL import Image

    source = str(tmp_path / f"photo.{kind[:3]}")
    pixels = smooth_image(30, 41, seed=7)
    if kind == "jpg":
        Image.fromarray(pixels).save(source, quality=85)
    elif kind == "png16_alpha":   # 16-bit gray with alpha
        gray = (pixels[..., 0].astype(np.uint16) * 257)
        alpha = np.linspace(0, 65535, gray.size).reshape(gray.shape).astype(np.uint16)
        from superres import images

        images.write_png(source, np.dstack([gray, alpha]))
    else:
        write_png(source, pixels)
    (before, after), result, info = _upscale(server, source, model)
    suffix = ".jpg" if kind == "jpg" else ".png"
    assert os.path.basename(result) == f"photo_x4{suffix}"
    with open(result, "rb") as f:
        assert f.read() == _predicted(tmp_path, source, suffix, flags)
    assert np.asarray(Image.open(before)).shape == np.asarray(Image.open(after)).shape[:2] + (3,)
    assert "164x120 in" in info and model in info


def test_bad_inputs_get_one_message_and_the_server_stays_up(server, tmp_path):
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bomb = png_header_only(str(tmp_path / "bomb.png"), 30000, 30000)
    for path, message in ((str(text), "notes.png: not a readable image"),
                          (str(empty), "empty.png is empty"),
                          (bomb, "bomb.png: 30000x30000 is 900 MP, over the limit")):
        with pytest.raises(AppError, match=message):
            _upscale(server, path, "three_conv")
    good = str(tmp_path / "good.png")
    write_png(good, smooth_image(12, 12))
    assert "48x48 in" in _upscale(server, good, "three_conv")[2]
    assert server.process.poll() is None


def test_uploads_are_upscaled_one_after_the_other(server, tmp_path):
    from gradio_client import handle_file

    paths = []
    for name in ("first", "second"):
        paths.append(str(tmp_path / f"{name}.png"))
        write_png(paths[-1], smooth_image(160, 200, seed=len(paths)))
    client = server.client()
    jobs = [client.submit(handle_file(p), "edsr", 1.0, api_name="/upscale") for p in paths]
    for job in jobs:
        job.result(timeout=300)
    log = [line for line in server.lines if line.startswith(("upscaling first", "upscaling second",
                                                             "first.png ->", "second.png ->"))]
    # Each job ends before the next begins: never two upscales at once.
    assert [line.split()[0] for line in log] in (
        ["upscaling", "first.png", "upscaling", "second.png"],
        ["upscaling", "second.png", "upscaling", "first.png"]), log


def test_the_app_writes_only_in_its_temporary_folder_and_removes_it(tmp_path):
    source = tmp_path / "inputs" / "photo.png"
    source.parent.mkdir()
    write_png(str(source), smooth_image(20, 20))
    app = Server(tmp_path / "run")
    try:
        _upscale(app, str(source), "three_conv")
        assert [p.name for p in app.tmp.iterdir()]        # it works in its temporary folder
    finally:
        app.stop()
    assert list(app.tmp.iterdir()) == []
    assert list(app.cwd.iterdir()) == []
    assert [p.name for p in source.parent.iterdir()] == ["photo.png"]


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "RealSRSet")),
                    reason=f"RealSRSet not found at {SHARED_DATA}")
def test_a_photo_through_the_page_in_a_real_browser(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(browser, 180)
        browser.get(server.url)
        photo = os.path.join(SHARED_DATA, "RealSRSet", "dog.png")
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(photo)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#slider img")) == 2)
        link = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#result a[href]"))[0]
        assert "dog_x4.png" in browser.find_element(By.ID, "result").text.replace("\n", "")
        with urllib.request.urlopen(link.get_attribute("href")) as response:
            downloaded = response.read()
        assert downloaded == _predicted(tmp_path, photo, ".png", [])   # the default model
        shot = str(tmp_path / "app.png")
        browser.save_screenshot(shot)
        if os.environ.get("SR_APP_SCREENSHOT"):   # how docs/figures/app.png is made
            shutil.copyfile(shot, os.environ["SR_APP_SCREENSHOT"])
        # A text file named .png: one message on the page, and the page goes on.
        browser.get(server.url)
        fake = tmp_path / "notes.png"
        fake.write_text("not an image")
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(fake))
        wait.until(lambda b: "notes.png: not a readable image" in b.page_source)
    finally:
        browser.quit()
