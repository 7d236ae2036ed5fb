"""Serve the fine-tuned MobileNetV2 through the common `Predictor` interface.

The trained Keras model (`model.keras`) is exported to LiteRT (`model.tflite`, `python -m
models.mobilenetv2.export`) and that file is what runs here: XNNPACK's kernels are ~4x faster than
TensorFlow's for one image (tests check both give the same probabilities). The interpreter has a
fixed batch size of 1: resizing it re-plans the XNNPACK graph (~20 ms), while per-image cost is the
same at batch 1 as at 64, so a batch runs image by image.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from models import settings
from models.predictor import Predictor, loading

PACKAGE_DIR = Path(__file__).resolve().parent


def runtime_threads() -> int:
    """LITERT_NUM_THREADS, else the math-library thread budget of the process (gunicorn.conf.py sets
    OMP_NUM_THREADS per worker), else the number of cores."""
    value = settings.get("LITERT_NUM_THREADS") or settings.get("OMP_NUM_THREADS") or os.cpu_count() or 1
    return max(1, int(value))


class MobileNetV2Predictor(Predictor):
    name = "mobilenetv2"
    display_name = "MobileNetV2 (TensorFlow/Keras, ImageNet-pretrained, fine-tuned)"
    framework = "TensorFlow/Keras"
    input_size = 32  # the graph upscales inside (net.CIFAR_SIZE; not imported: that would load TensorFlow)
    description = (  # {size}: the served model's config.json says what it was trained at
        "Keras MobileNetV2 (alpha 1.0) with ImageNet weights. Images are upscaled to {size} px inside the graph; "
        "the first five inverted-residual blocks stay frozen (their outputs for every training image and its "
        "mirror image, and for two copies with photo damage (noise, fading), are computed once and cached), "
        "a linear head is trained on the frozen features, then "
        "blocks 6-16 and the head are fine-tuned with AdamW (warm-up + cosine decay, label smoothing), "
        "BatchNorm kept in inference mode; the epoch with the best validation accuracy is kept. "
        "Served with LiteRT (the Keras model exported as a float32 .tflite file)."
    )
    batch_size = 64

    weights_file = "model.tflite"

    def __init__(self, model_dir: Path = PACKAGE_DIR):
        super().__init__(model_dir)
        with loading(self.model_dir / "config.json"):
            size = self.config["architecture"]["image_size"]
        self.description = self.description.format(size=size)
        self.preprocessing = (f"centre square crop (or the whole photo padded, on request), antialiased (Lanczos) "
                              f"resize to 32x32; inside the graph: "
                              f"bilinear upscale to {size}x{size}, scale to [-1, 1]")
        with loading(self.weights_path):
            self.interpreter = Interpreter(model_path=str(self.weights_path), num_threads=runtime_threads())
            self.interpreter.allocate_tensors()
            (source,), (sink,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
            if list(source["shape"]) != [1, self.input_size, self.input_size, 3] or source["dtype"] != np.uint8:
                raise ValueError(f"expected a uint8 (1, 32, 32, 3) input, found {source['dtype']} {source['shape']}")
            self._input, self._output = source["index"], sink["index"]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        rows = []
        for image in batch:
            self.interpreter.set_tensor(self._input, image[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self._output)[0].copy())
        return np.stack(rows)

    @property
    def framework_version(self) -> str:
        trained = f"TensorFlow {self.config.get('tensorflow_version')}, Keras {self.config.get('keras_version')}"
        return f"trained with {trained}; served with LiteRT {importlib.metadata.version('ai-edge-litert')}"

    def parameter_count(self) -> int:
        return int(self.config["architecture"].get("parameters", 0))

    def details(self) -> dict[str, Any]:
        return {"test_time_augmentation": "none", "precision": "fp32",
                "runtime": "LiteRT (XNNPACK), exported from model.keras",
                "serving_savedmodel": "models/mobilenetv2/serving/1"}
