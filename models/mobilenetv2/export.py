"""Export the served Keras model as a TensorFlow Serving SavedModel (`serving/<version>/`).

Signature `serving_default`: `images` uint8 (N, H, W, 3) RGB of any size (resized to 32x32 with
area averaging, as CIFAR-10 images are) -> `probabilities` float32 (N, 10) in official class order.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from models.mobilenetv2.net import CIFAR_SIZE


def export_saved_model(model: keras.Model, directory: Path) -> Path:
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(images)
        needs_resize = tf.logical_or(shape[1] != CIFAR_SIZE, shape[2] != CIFAR_SIZE)
        cifar = tf.cond(
            needs_resize,
            lambda: tf.cast(tf.round(tf.image.resize(images, (CIFAR_SIZE, CIFAR_SIZE), method="area")), tf.uint8),
            lambda: images,
        )
        cifar = tf.ensure_shape(cifar, [None, CIFAR_SIZE, CIFAR_SIZE, 3])
        return {"probabilities": model(cifar, training=False)}

    archive.add_endpoint("serving_default", serve)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(directory), verbose=False)
    return directory
