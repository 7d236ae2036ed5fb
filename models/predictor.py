"""The one seam between callers (web app, CLI, evaluation) and a model: preprocess -> forward -> postprocess.

A backend implements `_forward(batch)` on a uint8 (N, S, S, 3) batch and returns probabilities; the
base class handles the input forms, batching, and the output checks, so no caller ever branches
on which model it is talking to.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.cifar10 import CLASS_NAMES
from models.images import to_model_input


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Predictor(ABC):
    """A CIFAR-10 classifier with a framework-independent interface."""

    name: str
    input_size: int
    class_names: tuple[str, ...] = CLASS_NAMES
    batch_size: int = 256

    @property
    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Facts about the model (name, framework, version, parameters, input size, weights sha256, ...)."""

    def _test_accuracy(self) -> float | None:
        """Accuracy from the evaluation command's metrics file, only if it was computed for these weights."""
        metrics_path: Path = self.metrics_path  # type: ignore[attr-defined]
        if not metrics_path.is_file():
            return None
        metrics = json.loads(metrics_path.read_text())
        return metrics.get("accuracy") if metrics.get("weights_sha256") == self._sha256 else None  # type: ignore

    @abstractmethod
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S, 3) -> float (n, 10) probabilities in official class order."""

    def predict_proba(self, images: np.ndarray | Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities, float64 (N, 10), each row summing to 1."""
        batch = to_model_input(images, self.input_size)
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)))
        chunks = [self._forward(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        probs = np.concatenate(chunks).astype(np.float64)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict_topk(self, images: np.ndarray | Sequence[Image.Image], k: int = 3) -> list[list[tuple[str, float]]]:
        """For each image, the k most probable (class name, probability) pairs, best first."""
        if not 1 <= k <= len(self.class_names):
            raise ValueError(f"k must be between 1 and {len(self.class_names)}, got {k}")
        probs = self.predict_proba(images)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]
