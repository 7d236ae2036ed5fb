"""The served out-of-scope gate: ImageNet MobileNetV2 features of the 32x32 view -> a linear probe -> a score.

Runs with LiteRT only (no TensorFlow in the serving image). Files, written by `python -m models.scope.fit`:
`features.tflite` (uint8 (1, 32, 32, 3) -> float32 (1, 1280): bilinear upscale inside the graph, ImageNet
MobileNetV2 without its classifier, global average pooling) and `probe.npz` (standardisation and the
logistic-regression weights). The score is the probe's logit: larger = further from CIFAR-10's training images.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from models.batching import CoalescingRunner
from models.predictor import ModelLoadError, loading, sha256_of
from models.scope import load_once

PACKAGE_DIR = Path(__file__).resolve().parent
FEATURES_FILE = "features.tflite"
PROBE_FILE = "probe.npz"
CONFIG_FILE = "config.json"
VIEW_SIZE = 32


class ScopeGate:
    """Scores 32x32 views; one interpreter, used only by its runner's thread (LiteRT is not thread-safe)."""

    def __init__(self, directory: Path = PACKAGE_DIR) -> None:
        self.directory = Path(directory)
        with loading(self.directory / CONFIG_FILE):
            self.config: dict[str, Any] = json.loads((self.directory / CONFIG_FILE).read_text())
        with loading(self.directory / PROBE_FILE):
            probe = np.load(self.directory / PROBE_FILE)
            self._mean = probe["mean"].astype(np.float32)
            self._scale = probe["scale"].astype(np.float32)
            self._weights = (probe["coef"].reshape(-1) / probe["scale"]).astype(np.float32)
            self._bias = float(probe["intercept"].reshape(-1)[0] - np.dot(self._weights, probe["mean"]))
        with loading(self.directory / FEATURES_FILE):
            self._interpreter = Interpreter(model_path=str(self.directory / FEATURES_FILE), num_threads=1)
            self._interpreter.allocate_tensors()
            (source,), (sink,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
            if list(source["shape"]) != [1, VIEW_SIZE, VIEW_SIZE, 3] or source["dtype"] != np.uint8:
                raise ModelLoadError(f"{FEATURES_FILE}: expected a uint8 (1, 32, 32, 3) input, found "
                                     f"{source['dtype']} {source['shape']}")
            self._input, self._output = source["index"], sink["index"]
        if len(self._weights) != int(sink["shape"][-1]):
            raise ModelLoadError(f"{PROBE_FILE} has {len(self._weights)} weights for {sink['shape'][-1]} features")
        self._runner = CoalescingRunner(self._forward, name="scope-gate")

    def features(self, views: np.ndarray) -> np.ndarray:
        """float32 (N, 1280) ImageNet features of uint8 (N, 32, 32, 3) views."""
        views = np.asarray(views)
        if views.dtype != np.uint8 or views.ndim != 4 or views.shape[1:] != (VIEW_SIZE, VIEW_SIZE, 3):
            raise ValueError(f"expected uint8 (N, 32, 32, 3) views, got {views.dtype} {views.shape}")
        if not len(views):
            return np.zeros((0, len(self._weights)), np.float32)
        # Through the same queue as the models (models/batching.py): an evaluation's 64 views under one lock held
        # another user's one view for a few hundred ms under load; the queue takes small jobs first, in slices.
        return self._runner.run(views)

    def _forward(self, views: np.ndarray) -> np.ndarray:
        rows = []
        for view in views:  # always on the runner's one thread: the interpreter is never shared
            self._interpreter.set_tensor(self._input, view[None])
            self._interpreter.invoke()
            rows.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.stack(rows)

    def scores(self, views: np.ndarray) -> np.ndarray:
        """float64 (N,) probe logits: larger = less like CIFAR-10's training images."""
        return (self.features(views) @ self._weights + self._bias).astype(np.float64)

    @cached_property
    def sha256(self) -> str:
        """One digest of both files: the verdict's thresholds were fitted for exactly these."""
        return hashlib.sha256((sha256_of(self.directory / FEATURES_FILE)
                               + sha256_of(self.directory / PROBE_FILE)).encode()).hexdigest()


# The process's gate, loaded once; None when its files are missing or broken, so verdicts fall back to the
# classifiers' own signals rather than failing a request.
load_gate = load_once(ScopeGate)
