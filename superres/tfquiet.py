"""Start TensorFlow without its start-up chatter.

On a machine without a GPU, importing TensorFlow prints notices such as
"Could not find cuda drivers" and "failed call to cuInit: ... CUDA error" from
C++ code that runs before any Python setting can reach it.  They read as
failures and carry nothing a user of these CLIs needs, so the C-level stderr
is closed while TensorFlow imports and starts its devices.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Close the C-level stderr for the duration (Python's own errors still raise)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(start_devices=True):
    """Import TensorFlow quietly (once per process) and return the module.
    ``start_devices=False`` leaves the runtime unstarted, for code that must
    configure it first (a MultiWorkerMirroredStrategy; start it in quiet_stderr)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # 3: C++ errors too (e.g. oneDNN's "DT_UINT8 only on platforms with AVX-512", logged
    # as an error for an op it then runs anyway); a failing op still raises in Python.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import tensorflow as tf

        if start_devices:
            tf.config.list_logical_devices()   # device start-up prints the cuInit error
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)   # e.g. legacy-.h5 notices
    return tf
