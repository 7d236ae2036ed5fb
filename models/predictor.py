"""The one seam between callers (web app, CLI, evaluation) and a model: preprocess -> forward -> postprocess.

A backend implements `_forward(batch)` on a uint8 (N, S, S, 3) batch and returns probabilities; the
base class handles the input forms, batching, and the output checks, so no caller ever branches
on which model it is talking to.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.batching import CoalescingRunner
from models.cifar10 import CLASS_NAMES
from models.images import to_model_input
from models.machine import trained_on

# Each model's accuracy on real photographs (bench/bench_real_photos.py writes it; committed).
REAL_PHOTOS_FILE = Path(__file__).resolve().parent / "real_photos.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ModelLoadError(RuntimeError):
    """A model's files are missing or unreadable; the message names the file."""


@contextmanager
def loading(path: Path) -> Iterator[None]:
    """Turn whatever a framework raises on a missing or damaged model file into one clear ModelLoadError."""
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing")
    try:
        yield
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"{path} could not be loaded: the file is damaged or not in the expected format "
                             f"({type(exc).__name__}: {detail})") from exc


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): temperature scaling applied to probabilities (argmax unchanged)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def top_k_labels(probs: np.ndarray, class_names: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """Per row, the k most probable (class name, probability) pairs, best first; ties go to the lower class index."""
    if not 1 <= k <= len(class_names):
        raise ValueError(f"k must be between 1 and {len(class_names)}, got {k}")
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(class_names[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]


class Predictor(ABC):
    """A CIFAR-10 classifier with a framework-independent interface.

    A backend sets the class attributes (`weights_file` among them), loads its weights in `__init__`
    after calling this one (which reads `config.json` from the model folder), and implements
    `_forward`, `framework_version` and `parameter_count`; everything a caller sees
    (`predict_proba`, `predict_topk`, `info`) is defined here, once.
    """

    name: str
    display_name: str
    framework: str
    preprocessing: str  # one line, for people
    description: str  # a short paragraph: what the model is and how it was trained
    input_size: int
    class_names: tuple[str, ...] = CLASS_NAMES
    batch_size: int = 256
    weights_file: str  # inside the model folder

    coalesce_images: int = 8  # concurrent callers' images share one forward pass up to this many

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.weights_path = self.model_dir / self.weights_file
        config_path = self.model_dir / "config.json"
        with loading(config_path):
            self.config: dict[str, Any] = json.loads(config_path.read_text())
            self.class_names = tuple(self.config["class_names"])
        # One forward pass at a time per model, and concurrent callers' images merged into it
        # (models/batching.py): under load, requests share passes instead of queueing one by one.
        self._runner = CoalescingRunner(self._forward_in_chunks, self.coalesce_images, name=self.name)

    @abstractmethod
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S, 3) -> float (n, 10) probabilities in official class order."""

    def _forward_in_chunks(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._forward(batch[i : i + self.batch_size])
                               for i in range(0, len(batch), self.batch_size)])

    @property
    @abstractmethod
    def framework_version(self) -> str: ...

    @abstractmethod
    def parameter_count(self) -> int: ...

    def details(self) -> dict[str, Any]:
        """Backend-specific facts added to `info` (test-time augmentation, precision, ...)."""
        return {}

    @property
    def short_name(self) -> str:
        """The display name without its parenthesis ("Custom CNN"): for headings that must not wrap."""
        return self.display_name.split(" (")[0]

    @cached_property
    def weights_sha256(self) -> str:
        return sha256_of(self.weights_path)

    @property
    def metrics_path(self) -> Path:
        return self.model_dir / "metrics.json"

    @cached_property
    def temperature(self) -> float:
        """From calibration.json (`python -m models.calibrate`), if it was fitted for these weights; else 1."""
        path = self.model_dir / "calibration.json"
        if path.is_file():
            fitted = json.loads(path.read_text())
            if fitted.get("weights_sha256") == self.weights_sha256:
                return float(fitted["temperature"])
        return 1.0

    @property
    def info(self) -> dict[str, Any]:
        """Facts about the model, the same keys for every backend."""
        recipe = self.config.get("recipe", {})
        return {
            "name": self.name,
            "display_name": self.display_name,
            "short_name": self.short_name,
            "framework": self.framework,
            "framework_version": self.framework_version,
            "parameters": self.parameter_count(),
            "input_size": [self.input_size, self.input_size, 3],
            "weights_file": self.weights_path.name,
            "weights_bytes": self.weights_path.stat().st_size,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "description": self.description,
            "training": {
                "epochs": recipe.get("epochs"),
                "train_images": self.config.get("train_images"),
                "seconds": self.config.get("wall_seconds"),
                "machine": trained_on(self.config),
                "val_accuracy": self.validation_accuracy(),
            },
            "test_accuracy": self.test_accuracy(),
            "photo_accuracy": self.photo_accuracy(),
            "temperature": self.temperature,
            "class_names": list(self.class_names),
            **self.details(),
        }

    def validation_accuracy(self) -> float | None:
        """Accuracy of the served model (as served, e.g. with its test-time augmentation) on the validation split."""
        return self.config.get("final_val_acc")

    def test_accuracy(self) -> float | None:
        """Accuracy from the evaluation command's metrics file, only if it was computed for these weights."""
        return self._test_accuracy

    @cached_property
    def _test_accuracy(self) -> float | None:
        # Read once: metrics.json carries 10,000 per-image predictions and `info` is on every page view.
        if not self.metrics_path.is_file():
            return None
        metrics = json.loads(self.metrics_path.read_text())
        return metrics.get("accuracy") if metrics.get("weights_sha256") == self.weights_sha256 else None

    def photo_accuracy(self) -> dict[str, Any] | None:
        """Accuracy on the real-photo benchmark's held-out sources ({"accuracy", "interval", "images"}), from
        bench/bench_real_photos.py's summary, only if it was measured for these weights: the test split's figure
        does not apply to people's photos, so the cards show both."""
        return self._photo_accuracy

    @cached_property
    def _photo_accuracy(self) -> dict[str, Any] | None:
        if not REAL_PHOTOS_FILE.is_file():
            return None
        entry = json.loads(REAL_PHOTOS_FILE.read_text()).get("models", {}).get(self.name)
        return entry if entry and entry.get("weights_sha256") == self.weights_sha256 else None

    warm_up_sizes: tuple[int, ...] = (1, 8, 32)

    def warm_up(self) -> None:
        """Predictions at each batch size the backend will see, so the first user requests do not pay for graph
        building and kernel selection (and memory reaches its working size at start-up, not under load)."""
        for n in self.warm_up_sizes:
            probs = self.predict_proba(np.zeros((n, self.input_size, self.input_size, 3), dtype=np.uint8))
            if probs.shape != (n, len(self.class_names)) or not np.isfinite(probs).all():
                raise RuntimeError(f"{self.name}: warm-up prediction returned {probs.shape} / non-finite values")

    def predict_proba(self, images: np.ndarray | Sequence[Image.Image], calibrated: bool = True) -> np.ndarray:
        """Class probabilities, float64 (N, 10), each row summing to 1 (temperature-calibrated by default)."""
        batch = to_model_input(images, self.input_size)
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)))
        probs = self._runner.run(batch).astype(np.float64)
        probs /= probs.sum(axis=1, keepdims=True)
        return temper(probs, self.temperature) if calibrated else probs

    def predict_topk(self, images: np.ndarray | Sequence[Image.Image], k: int = 3) -> list[list[tuple[str, float]]]:
        """For each image, the k most probable (class name, probability) pairs, best first."""
        if not 1 <= k <= len(self.class_names):
            raise ValueError(f"k must be between 1 and {len(self.class_names)}, got {k}")
        return top_k_labels(self.predict_proba(images), self.class_names, k)
