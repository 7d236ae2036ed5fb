"""Out of scope: is an image one of the 10 CIFAR-10 classes at all? A gate beside the classifiers.

The classifiers answer with one of the 10 classes whatever they are shown, and their confidence does not say when
an image is none of them (a portrait comes back "dog" at 80%). The gate reads the same 32x32 view with an
ImageNet-pretrained MobileNetV2 (which has seen people, food and rooms; never fine-tuned here) and a linear
probe fitted to tell CIFAR-10 training images from out-of-scope images of some benchmark families
(`fit.py`); the other families are held out to measure it (`bench/bench_out_of_scope.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def load_once(build: Callable[[], T]) -> Callable[[], T | None]:
    """A loader that builds the process's one instance on first call (under a lock, so once) and returns it after;
    None, and the same None afterwards, when building failed: a missing or broken file must not fail a request."""
    lock = threading.Lock()
    built: list[T | None] = []

    def load() -> T | None:
        with lock:
            if not built:
                try:
                    built.append(build())
                except Exception:  # verdicts then rest on what did load
                    built.append(None)
            return built[0]

    return load
