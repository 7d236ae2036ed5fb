"""Serve the fine-tuned MobileNetV2 through the common `Predictor` interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.mobilenetv2 import net
from models.predictor import Predictor, sha256_of

PACKAGE_DIR = Path(__file__).resolve().parent


class MobileNetV2Predictor(Predictor):
    name = "mobilenetv2"
    display_name = "MobileNetV2 (TensorFlow/Keras, ImageNet-pretrained, fine-tuned)"
    input_size = net.CIFAR_SIZE
    batch_size = 128

    def __init__(self, model_dir: Path = PACKAGE_DIR):
        self.weights_path = Path(model_dir) / "model.keras"
        self.config = json.loads((Path(model_dir) / "config.json").read_text())
        self.class_names = tuple(self.config["class_names"])
        self.model = keras.models.load_model(self.weights_path, compile=False)
        self._call = tf.function(lambda images: self.model(images, training=False), reduce_retracing=True)
        self._sha256 = sha256_of(self.weights_path)
        self.metrics_path = Path(model_dir) / "metrics.json"

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._call(tf.constant(batch, dtype=tf.uint8)).numpy()

    @property
    def info(self) -> dict[str, Any]:
        arch, recipe = self.config["architecture"], self.config.get("recipe", {})
        size = arch["image_size"]
        return {
            "name": self.name,
            "display_name": self.display_name,
            "framework": "TensorFlow/Keras",
            "framework_version": f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
            "parameters": int(self.model.count_params()),
            "input_size": [self.input_size, self.input_size, 3],
            "weights_file": self.weights_path.name,
            "weights_bytes": self.weights_path.stat().st_size,
            "weights_sha256": self._sha256,
            "preprocessing": f"centre square crop, antialiased (Lanczos) resize to 32x32; inside the graph: "
                             f"bilinear upscale to {size}x{size}, scale to [-1, 1]",
            "test_time_augmentation": "none",
            "precision": "fp32",
            "training": {
                "epochs": recipe.get("epochs"),
                "train_images": self.config.get("train_images"),
                "seconds": self.config.get("wall_seconds"),
                "val_accuracy": self.config.get("final_val_acc"),
            },
            "test_accuracy": self._test_accuracy(),
            "class_names": list(self.class_names),
        }
