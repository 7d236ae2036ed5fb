"""Serve the fine-tuned MobileNetV2 through the common `Predictor` interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.mobilenetv2 import net
from models.predictor import Predictor, loading

PACKAGE_DIR = Path(__file__).resolve().parent


class MobileNetV2Predictor(Predictor):
    name = "mobilenetv2"
    display_name = "MobileNetV2 (TensorFlow/Keras, ImageNet-pretrained, fine-tuned)"
    framework = "TensorFlow/Keras"
    input_size = net.CIFAR_SIZE
    description = (
        "Keras MobileNetV2 (alpha 1.0) with ImageNet weights. Images are upscaled to 160 px inside the graph; "
        "the first five inverted-residual blocks stay frozen (their outputs for every training image and its "
        "mirror image are computed once and cached), a linear head is trained on the frozen features, then "
        "blocks 6-16 and the head are fine-tuned with AdamW (warm-up + cosine decay, label smoothing), "
        "BatchNorm kept in inference mode; the epoch with the best validation accuracy is kept."
    )
    batch_size = 128

    def __init__(self, model_dir: Path = PACKAGE_DIR):
        super().__init__()
        self.weights_path = Path(model_dir) / "model.keras"
        with loading(Path(model_dir) / "config.json"):
            self.config = json.loads((Path(model_dir) / "config.json").read_text())
            self.class_names = tuple(self.config["class_names"])
            size = self.config["architecture"]["image_size"]
        self.preprocessing = (f"centre square crop, antialiased (Lanczos) resize to 32x32; inside the graph: "
                              f"bilinear upscale to {size}x{size}, scale to [-1, 1]")
        with loading(self.weights_path):
            self.model = keras.models.load_model(self.weights_path, compile=False)
        # One trace for every batch size (no retracing on a user's first odd-sized batch); no autograph:
        # there is no Python control flow, and autograph would write generated files to /tmp.
        self._call = tf.function(
            lambda images: self.model(images, training=False), autograph=False,
            input_signature=[tf.TensorSpec([None, self.input_size, self.input_size, 3], tf.uint8)])

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._call(tf.constant(batch, dtype=tf.uint8)).numpy()

    @property
    def framework_version(self) -> str:
        return f"TensorFlow {tf.__version__}, Keras {keras.__version__}"

    def parameter_count(self) -> int:
        return int(self.model.count_params())

    def details(self) -> dict[str, Any]:
        return {"test_time_augmentation": "none", "precision": "fp32",
                "serving_savedmodel": "models/mobilenetv2/serving/1"}
