"""CIFAR-10 classifiers behind one interface: ``load_predictor(name).predict_proba(images)``.

Adding a model = one subpackage with a `Predictor` subclass + one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib
import threading

from models.predictor import Predictor

# name -> "module:class"; modules are imported only when that model is first loaded.
REGISTRY: dict[str, str] = {
    "custom_cnn": "models.custom_cnn.predictor:CustomCnnPredictor",
    "mobilenetv2": "models.mobilenetv2.predictor:MobileNetV2Predictor",
}

_loaded: dict[str, Predictor] = {}
_lock = threading.Lock()


def available_models() -> list[str]:
    return list(REGISTRY)


def load_predictor(name: str) -> Predictor:
    """The predictor called ``name``, loaded and warmed up once per process (thread-safe)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(REGISTRY)}")
    with _lock:
        if name not in _loaded:
            module_name, class_name = REGISTRY[name].split(":")
            predictor = getattr(importlib.import_module(module_name), class_name)()
            predictor.warm_up()
            _loaded[name] = predictor
        return _loaded[name]


__all__ = ["REGISTRY", "Predictor", "available_models", "load_predictor"]
