"""The discriminator of GAN training: Real-ESRGAN's U-Net."""

import keras


def unet_discriminator(width=64, channels=3):
    """Real-ESRGAN's U-Net discriminator with spectral normalization (Wang et al., 2021):
    three stride-2 4x4 convolutions down, three bilinear x2 + 3x3 convolutions up with skips,
    two more 3x3 convolutions; a realness logit per pixel, so it judges local texture.
    ``width`` is the first level's channels (64 in Real-ESRGAN)."""
    def conv(filters, kernel_size=3, strides=1, name=None):
        return keras.layers.SpectralNormalization(keras.layers.Conv2D(
            filters, kernel_size, strides, padding="same", use_bias=False), name=name)

    def act(x):
        return keras.layers.LeakyReLU(0.2)(x)

    inputs = keras.Input(shape=(None, None, channels), name="image")
    x0 = act(keras.layers.Conv2D(width, 3, padding="same", name="conv0")(inputs))
    x1 = act(conv(width * 2, 4, 2, name="down1")(x0))
    x2 = act(conv(width * 4, 4, 2, name="down2")(x1))
    x = act(conv(width * 8, 4, 2, name="down3")(x2))
    for skip, filters, name in ((x2, width * 4, "up1"), (x1, width * 2, "up2"), (x0, width, "up3")):
        x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = keras.layers.Add()([act(conv(filters, name=name)(x)), skip])
    x = act(conv(width, name="conv7")(x))
    x = act(conv(width, name="conv8")(x))
    logits = keras.layers.Conv2D(1, 3, padding="same", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"unet_discriminator_{width}")
