"""The CPU every benchmark prints beside its figures (model, the vector flags that change
TensorFlow's and ONNX Runtime's speed, cores): figures from different machines differ."""

import os

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def cpu_line():
    if not os.path.exists("/proc/cpuinfo"):
        return f"cpu: {os.cpu_count()} cores"
    with open("/proc/cpuinfo") as f:
        info = f.read()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "?")
    flags = " ".join(w for w in FLAGS if f" {w}" in info)
    return f"cpu: {model} ({flags}), {os.cpu_count()} cores"


def print_cpu():
    print(cpu_line())
