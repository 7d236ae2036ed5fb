"""Which models exist and the one loaded instance of each per process.

Adding a model = one subpackage with a `Predictor` subclass + one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from models import settings
from models.predictor import ModelLoadError, Predictor

# name -> "module:class"; modules are imported only when that model is first loaded.
REGISTRY: dict[str, str] = {
    "custom_cnn": "models.custom_cnn.predictor:CustomCnnPredictor",
    "mobilenetv2": "models.mobilenetv2.predictor:MobileNetV2Predictor",
}
PACKAGE_DIR = Path(__file__).resolve().parent

_loaded: dict[str, Predictor] = {}
_failed: dict[str, Exception] = {}  # a model that failed to load is not retried on every request
_lock = threading.Lock()


def available_models() -> list[str]:
    return list(REGISTRY)


def model_dir(name: str) -> Path:
    """The folder a model's files are served from: $CIFAR10_MODELS_DIR/<name>/, else models/<name>/."""
    root = settings.get("CIFAR10_MODELS_DIR")
    return Path(root) / name if root else PACKAGE_DIR / name


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
                predictor = cls(model_dir(name))
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
