"""train.py --tensorboard: per-epoch scalars and validation images for TensorBoard.

    tensorboard --logdir runs/NAME/tensorboard
"""

import keras
import numpy as np

IMAGES = 3   # validation crops shown each epoch


class TensorBoardLog(keras.callbacks.Callback):
    """loss, PSNR (train and validation) and the learning rate each epoch, and a
    few fixed validation crops as bicubic | model | HR strips.  Written by the
    chief only (train.py gives it to no other worker)."""

    def __init__(self, folder, val_ds, scale):
        super().__init__()
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(folder)
        lr, hr = next(iter(val_ds))
        self.lr, self.hr = lr[:IMAGES], hr[:IMAGES]
        self.bicubic = np.stack([self._bicubic(image, scale) for image in self.lr.numpy()])

    @staticmethod
    def _bicubic(lr, scale):
        from superres import bicubic

        return np.clip(bicubic.imresize(lr, scale=scale), 0.0, 1.0)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        logs = logs or {}
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        from superres.training.runfolder import averaged_weights

        with averaged_weights(self.model) as net:   # what model.h5 holds
            output = np.clip(np.asarray(net(self.lr, training=False), np.float32), 0.0, 1.0)
        strips = np.concatenate([self.bicubic, output, self.hr.numpy()], axis=2)
        with self.writer.as_default(step=epoch + 1):
            for name, value in logs.items():   # a GAN's terms and d_loss, val_niqe too
                if value is not None:
                    tf.summary.scalar(name, value)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.image("validation: bicubic | model | HR", strips, max_outputs=IMAGES)
        self.writer.flush()
