"""CIFAR-10 classifiers behind one interface.

    from models import classify, load_predictor
    answers = classify(images, ["custom_cnn", "mobilenetv2"], top_k=3)   # the seam every caller uses
    maps = explain(images, ["custom_cnn", "mobilenetv2"], target="cat")   # where each model looked (default: top-1)
    load_predictor("mobilenetv2").predict_proba(images)                  # one model, (N, 10) probabilities

The names below are imported on first use (PEP 562), so `import models.settings` (gunicorn.conf.py)
loads neither NumPy nor a framework.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "REGISTRY": "models.registry",
    "available_models": "models.registry",
    "forget_loaded_models": "models.registry",
    "load_predictor": "models.registry",
    "model_dir": "models.registry",
    "ModelLoadError": "models.predictor",
    "Predictor": "models.predictor",
    "classify": "models.pipeline",
    "explain": "models.pipeline",
    "Classification": "models.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
