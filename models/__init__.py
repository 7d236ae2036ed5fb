"""CIFAR-10 classifiers behind one interface: ``load_predictor(name).predict_proba(images)``.

Adding a model = one subpackage with a `Predictor` subclass + one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path

from models.predictor import ModelLoadError, Predictor

# name -> "module:class"; modules are imported only when that model is first loaded.
REGISTRY: dict[str, str] = {
    "custom_cnn": "models.custom_cnn.predictor:CustomCnnPredictor",
    "mobilenetv2": "models.mobilenetv2.predictor:MobileNetV2Predictor",
}

# Deployments and fault tests can point every model at another folder: $CIFAR10_MODELS_DIR/<name>/.
MODELS_DIR_ENV = "CIFAR10_MODELS_DIR"

_loaded: dict[str, Predictor] = {}
_failed: dict[str, Exception] = {}  # a model that failed to load is not retried on every request
_lock = threading.Lock()


def available_models() -> list[str]:
    return list(REGISTRY)


def load_predictor(name: str) -> Predictor:
    """The predictor called ``name``, loaded and warmed up once per process (thread-safe)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(REGISTRY)}")
    with _lock:
        if name in _failed:
            raise _failed[name]
        if name not in _loaded:
            try:
                module_name, class_name = REGISTRY[name].split(":")
                cls = getattr(importlib.import_module(module_name), class_name)
                root = os.environ.get(MODELS_DIR_ENV)
                predictor = cls(Path(root) / name) if root else cls()
                predictor.warm_up()
            except Exception as exc:
                _failed[name] = exc if isinstance(exc, ModelLoadError) else ModelLoadError(f"{name}: {exc}")
                raise _failed[name] from exc
            _loaded[name] = predictor
        return _loaded[name]


def forget_loaded_models() -> None:
    """Drop every loaded or failed model (tests that swap model folders)."""
    with _lock:
        _loaded.clear()
        _failed.clear()


__all__ = ["REGISTRY", "ModelLoadError", "Predictor", "available_models", "forget_loaded_models", "load_predictor"]
