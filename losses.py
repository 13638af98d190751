"""Training losses: small functions of (lr, hr, sr) giving one loss per patch, shape
(batch,), combined by the settings into the one callable the training loop takes.
(The batch mean of ``pixel("mse")`` is exactly Keras' mean_squared_error.)"""

import tensorflow as tf

from metrics import YCBCR_ROWS


def pixel(name="mse", chroma_weight=None):
    """Mean squared ("mse") or absolute ("l1") error over each patch.  With a
    ``chroma_weight`` the error is taken in YCbCr (BT.601, the space the benchmarks
    score Y of) and the Cb, Cr terms are weighted by it."""
    if name not in ("mse", "l1"):
        raise ValueError(f"unknown pixel loss {name!r}")

    def loss(lr, hr, sr):
        error = tf.cast(sr, tf.float32) - tf.cast(hr, tf.float32)
        if chroma_weight is not None:
            error = tf.einsum("bhwc,dc->bhwd", error, tf.constant(YCBCR_ROWS, tf.float32))
        error = tf.square(error) if name == "mse" else tf.abs(error)
        if chroma_weight is not None:
            error *= tf.constant([1.0, chroma_weight, chroma_weight])
        return tf.reduce_mean(error, axis=[1, 2, 3])

    return loss


def distillation(loss, teacher, weight):
    """(1 - weight) x ``loss`` to HR + weight x ``loss`` to a frozen teacher's output on
    the same LR patch."""
    def distilled(lr, hr, sr):
        soft = tf.stop_gradient(tf.cast(teacher(lr, training=False), tf.float32))
        return (1.0 - weight) * loss(lr, hr, sr) + weight * loss(lr, soft, sr)

    return distilled


def load_teacher(path, scale):
    """A --teacher model, frozen; ValueError unless it upscales by ``scale``."""
    import inference

    teacher = inference.load_model(path)
    if inference.model_scale(teacher) != scale:
        raise ValueError(f"--teacher {path} upscales x{inference.model_scale(teacher)}, "
                         f"not x{scale}")
    teacher.trainable = False
    return teacher


def from_settings(args, teacher=None):
    """The training loss that train.py's settings describe."""
    loss = pixel(args.loss, args.chroma_weight)
    return distillation(loss, teacher, args.teacher_weight) if teacher is not None else loss
