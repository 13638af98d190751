"""One image through the web page against predict.py: seconds from the upload to the result
the page shows (the page's own round trip, through Gradio's client, the app already running
and warmed up by one upload), beside `python predict.py IMAGE` as a user runs it (a fresh
process: start-up included) and the upscale alone that the page reports.

    python benchmarks/app.py [--image ../shared/data/RealSRSet/dog.png] [--model photo]
                             [--repeats 3]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
from machine import cpu_line  # noqa: E402  (benchmarks/machine.py)


def start_app(port):
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "app.py"), "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(360):
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("error: the app did not start within 3 minutes")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=os.path.join(SHARED_DATA, "RealSRSet", "dog.png"))
    parser.add_argument("--model", default="photo")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from gradio_client import Client, handle_file

    print(cpu_line())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process, url = start_app(port)
    try:
        client = Client(url, verbose=False, download_files=tempfile.mkdtemp())
        client.predict(handle_file(args.image), args.model, 1.0, api_name="/upscale")  # warm-up
        page, upscale = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            _, _, info = client.predict(handle_file(args.image), args.model, 1.0,
                                        api_name="/upscale")
            page.append(time.perf_counter() - started)
            upscale.append(float(re.search(r" in ([0-9.]+) s", info).group(1)))
    finally:
        process.terminate()
        process.wait()
    cli = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), args.image,
                            "--model", args.model, "-o", os.path.join(folder, f"{i}.png")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cli.append(time.perf_counter() - started)
    print(f"{os.path.basename(args.image)} with {args.model}, best of {args.repeats}:")
    print(f"  page, upload to result shown:   {min(page):6.2f} s (the upscale itself "
          f"{min(upscale):.2f} s)")
    print(f"  predict.py, a fresh process:    {min(cli):6.2f} s")


if __name__ == "__main__":
    main()
