"""Serve the committed from-scratch CNN through the common `Predictor` interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.custom_cnn.net import CifarNet, bf16_supported, preprocess, tta_logits
from models.predictor import Predictor, sha256_of

PACKAGE_DIR = Path(__file__).resolve().parent


class CustomCnnPredictor(Predictor):
    name = "custom_cnn"
    display_name = "Custom CNN (PyTorch, from scratch)"
    input_size = 32

    def __init__(self, model_dir: Path = PACKAGE_DIR):
        self.weights_path = Path(model_dir) / "weights.pt"
        self.config = json.loads((Path(model_dir) / "config.json").read_text())
        self.class_names = tuple(self.config["class_names"])
        self.tta_level = int(self.config.get("tta_level", 2))
        self.model = CifarNet(self.config["architecture"]["widths"]).to(memory_format=torch.channels_last)
        self.model.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True))
        self.model.eval()
        self.bf16 = bf16_supported()
        self._sha256 = sha256_of(self.weights_path)
        self.metrics_path = Path(model_dir) / "metrics.json"

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = tta_logits(self.model, preprocess(batch), self.tta_level)
        return torch.softmax(logits.float(), dim=1).numpy()

    @property
    def info(self) -> dict[str, Any]:
        recipe = self.config.get("recipe", {})
        return {
            "name": self.name,
            "display_name": self.display_name,
            "framework": "PyTorch",
            "framework_version": torch.__version__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "input_size": [self.input_size, self.input_size, 3],
            "weights_file": self.weights_path.name,
            "weights_bytes": self.weights_path.stat().st_size,
            "weights_sha256": self._sha256,
            "preprocessing": "centre square crop, antialiased (Lanczos) resize to 32x32, "
                             "per-channel mean/std normalisation",
            "test_time_augmentation": ["none", "mirror", "mirror + 1px shifts (6 views)"][self.tta_level],
            "precision": "bf16 autocast" if self.bf16 else "fp32",
            "training": {
                "epochs": recipe.get("epochs"),
                "train_images": self.config.get("train_images"),
                "seconds": self.config.get("wall_seconds"),
                "val_accuracy": self.config.get("final_val_acc_tta"),
            },
            "test_accuracy": self._test_accuracy(),
            "class_names": list(self.class_names),
        }
