"""A web page to try the models: drop a photo, slide between bicubic and the model's result,
download the full-resolution result.

    python app.py                          # http://127.0.0.1:7860, this machine only
    python app.py --port 8000 --host 0.0.0.0

The page calls what predict.py calls (superres.upscaling: read_checked, upscale_to_file), so
its download is byte for byte predict.py's output for the same input and model, in the
input's format family (PNG for PNG, JPEG for JPEG, WebP, TIFF; PNG for the rest). Uploads are
upscaled one at a time, in the order they come (a queue). Everything the app writes, Gradio's
own copies of uploads and results included, stays in one temporary folder, removed on exit.
"""

import os
import shutil
import sys
import tempfile
import time

from superres.messages import ArgumentParser, stop_on_sigterm

# The slider shows the result whole up to this side; a larger one as a crop at 100% of it.
PREVIEW_SIDE = 1024
# Output extension by input extension: the input's format family where we write it.
FORMAT_FAMILY = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".webp": ".webp",
                 ".tif": ".tif", ".tiff": ".tif"}


def parse_args(argv=None):
    parser = ArgumentParser(description="Serve a web page that upscales dropped images.")
    parser.add_argument("--port", type=int, default=7860, help="the port to serve on")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to serve on (0.0.0.0: every interface)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    return args


def model_names():
    """The models the page offers: the shipped ones present and Real-ESRGAN's, in
    predict.py --help's order."""
    from superres import inference, ncnn_weights

    present = set(inference.shipped_models()) | set(ncnn_weights.PUBLISHED)
    return [name for name in inference.DESCRIPTIONS if name in present]


def output_name(source):
    """NAME_x4.EXT of an upload, EXT of its format family."""
    stem, ext = os.path.splitext(os.path.basename(source))
    return f"{stem}_x4{FORMAT_FAMILY.get(ext.lower(), '.png')}"


def previews(image, target, scale):
    """(bicubic, result) as 8-bit RGB arrays for the slider: whole, or the busiest crop of
    PREVIEW_SIDE at 100% when the result is larger."""
    from superres import bicubic, figures, images

    lr8 = images.to_uint8(image.rgb)
    side = PREVIEW_SIDE // scale
    top, left = 0, 0
    if max(lr8.shape[:2]) > side:
        top, left = figures.busiest_window(lr8, min(side, *lr8.shape[:2]))
    crop = lr8[top:top + side, left:left + side]
    result = images.read_image(target, keep_8bit=True).rgb
    after = result[top * scale:(top + crop.shape[0]) * scale,
                   left * scale:(left + crop.shape[1]) * scale]
    return images.to_uint8(bicubic.upscale(crop, scale)), images.to_uint8(after)


def upscale_upload(path, name, workdir, progress=None):
    """The page's one action: (bicubic and result previews, the result's path, a line of
    what was done).  Errors the user can fix raise ValueError with the message."""
    from superres import images, inference, limits
    from superres.upscaling import load, read_checked, upscale_to_file

    if not path:
        raise ValueError("drop an image first")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{os.path.basename(path)} is empty (0 bytes)")
    folder = tempfile.mkdtemp(dir=workdir)
    target = os.path.join(folder, output_name(path))
    print(f"upscaling {os.path.basename(path)} with {name}", flush=True)
    started = time.perf_counter()
    try:
        net = load(name)
        image = read_checked(net, path, target)
        tiles = inference.tile_count(image.rgb.shape, inference.default_tile(net))
        done = []

        def on_tile():
            done.append(1)
            if progress:
                progress(len(done) / tiles, desc=f"tile {len(done)} of {tiles}")

        (height, width), _ = upscale_to_file(net, image, target, on_tile=on_tile)
    except (images.ImageReadError, images.ImageWriteError, limits.DiskTooFull,
            inference.ModelError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        message = str(error).replace(path, os.path.basename(path))
        print(f"refused: {message}", flush=True)
        raise ValueError(message) from None
    seconds = time.perf_counter() - started
    print(f"{os.path.basename(path)} -> {os.path.basename(target)} ({width}x{height}) in "
          f"{seconds:.1f} s", flush=True)
    before, after = previews(image, target, inference.model_scale(net))
    size = os.path.getsize(target)
    from superres.fileio import human_size

    shown = "" if after.shape[:2] == (height, width) else \
        f"; the slider shows a {after.shape[1]}x{after.shape[0]} crop at 100%"
    info = (f"{name}: {width}x{height} in {seconds:.1f} s, {os.path.basename(target)} "
            f"{human_size(size)}{shown}")
    return (before, after), target, info


def build(workdir):
    """The page (a gr.Blocks), working in ``workdir``."""
    import gradio as gr

    from superres import inference

    names = model_names()
    default = inference.photo_model() or names[0]
    labels = [(f"{name}: {inference.DESCRIPTIONS[name]}", name) for name in names]

    def run(path, name, progress=gr.Progress()):
        try:
            return upscale_upload(path, name, workdir, progress)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None

    with gr.Blocks(title="x4 super-resolution", analytics_enabled=False,
                   delete_cache=(600, 3600)) as page:
        gr.Markdown("# x4 super-resolution\nDrop a photo, pick a model, slide between "
                    "bicubic (left) and the model (right), download the full result.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="image (PNG, JPEG, WebP, TIFF, BMP, GIF; alpha and "
                                       "16 bits kept)", type="filepath",
                                 elem_id="upload")
                model = gr.Dropdown(labels, value=default, label="model", elem_id="model")
                button = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="bicubic | model", type="numpy", format="png",
                                        elem_id="slider")
                result = gr.File(label="full-resolution result", interactive=False,
                                 elem_id="result")
                info = gr.Markdown(elem_id="info")
        # Both run the same queue: one upscale at a time, in order.
        button.click(run, [upload, model], [slider, result, info], api_name="upscale",
                     concurrency_id="upscale")
        upload.upload(run, [upload, model], [slider, result, info],
                      api_visibility="private", concurrency_id="upscale")
    return page


def launch(page, host, port, block=True):
    """Serve ``page``; uploads are processed one at a time, in order (the queue)."""
    import gradio as gr

    # System fonts: the default theme's web fonts cannot be fetched offline.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, quiet=True, max_file_size="200mb",
                allowed_paths=[], theme=theme, ssr_mode=False, prevent_thread_lock=not block)
    return page


def serve(host, port, workdir):
    """Serve the page until interrupted."""
    page = build(workdir)
    print(f"app: http://{host}:{port} (Ctrl-C stops it)", flush=True)
    launch(page, host, port)


def main(argv=None):
    stop_on_sigterm()
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="sr-app-")
    # Gradio's copies of uploads and results, and every library's temporary files (set before
    # they are imported), go in this folder too.
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(workdir, "gradio")
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from superres import tfquiet

    tfquiet.import_tensorflow()
    try:
        serve(args.host, args.port, workdir)
    except KeyboardInterrupt:
        pass
    except OSError as error:   # the port is taken, or the address is not this machine's
        print(f"error: cannot serve on {args.host}:{args.port} ({error})", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
