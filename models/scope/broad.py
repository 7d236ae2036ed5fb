"""The broad view: what the upload looks like to a model that knows 1,000 kinds of things, not 10.

The gate (gate.py) reads only the 32x32 view, where a bookcase and a truck look alike, and both classifiers answer
with one of the 10 classes whatever they are shown. The broad view reads the upload's centre square (the part the
models see) at 224x224 with an ImageNet-1k classifier (Keras MobileNetV2, post-training quantised, from the Coral
project's test data, Apache-2.0: IMAGENET_CLASSIFIER_LICENSE.txt), and adds its 1,000 probabilities up by CIFAR-10
class through WordNet's tree (imagenet_classes.json, scripts/build_imagenet_map.py): `inside` is its probability
that the photo shows one of the 10 classes at all, `classes` how it splits between them, `looks_like` its most
likely class outside the 10 ("bookcase"). Images under MIN_SIDE pixels are not read: at 32 px a thumbnail carries
too little for it (CIFAR-10's own images), and the gate alone judges them. How these feed the verdicts, and the
lines, are models/uncertainty.py's, fitted on the real-photo benchmark's fitting sources.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from models.cifar10 import CLASS_NAMES
from models.predictor import ModelLoadError, loading, sha256_of
from models.scope import load_once

PACKAGE_DIR = Path(__file__).resolve().parent
CLASSIFIER_FILE = "imagenet_classifier.tflite"
CLASSIFIER_SHA256 = "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c"
CLASSES_FILE = "imagenet_classes.json"
INPUT_SIDE = 224
MIN_SIDE = 64  # as the face check: below this the image is a thumbnail (CIFAR-10's are 32 px)


@dataclass(frozen=True)
class BroadAnswer:
    """The broad view of one image."""

    inside: float  # probability that the photo shows one of the 10 classes
    classes: dict[str, float]  # CIFAR-10 class -> its share of the probability (they sum to `inside`)
    looks_like: str  # the most likely ImageNet class outside the 10, in WordNet's words
    looks_like_probability: float
    top: str  # its most likely ImageNet class of all ("Siberian husky")
    top_class: str | None  # that class's CIFAR-10 class, if any

    @property
    def best_class(self) -> str:
        return max(self.classes, key=self.classes.__getitem__)


class BroadView:
    """Reads uploads; one interpreter, used by one thread at a time (LiteRT is not thread-safe)."""

    def __init__(self, directory: Path = PACKAGE_DIR) -> None:
        self.directory = Path(directory)
        path = self.directory / CLASSIFIER_FILE
        with loading(path):
            if sha256_of(path) != CLASSIFIER_SHA256:
                raise ModelLoadError(f"{CLASSIFIER_FILE} is not the classifier the lines were chosen for (sha256)")
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
            self._interpreter.allocate_tensors()
            (source,), (sink,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
            if list(source["shape"]) != [1, INPUT_SIDE, INPUT_SIDE, 3] or source["dtype"] != np.uint8:
                raise ModelLoadError(f"{CLASSIFIER_FILE}: expected a uint8 (1, 224, 224, 3) input, found "
                                     f"{source['dtype']} {source['shape']}")
            self._input, self._output = source["index"], sink["index"]
            self._scale, self._zero = sink["quantization"]
            outputs = int(sink["shape"][-1])
        with loading(self.directory / CLASSES_FILE):
            classes = json.loads((self.directory / CLASSES_FILE).read_text())["classes"]
        if outputs != len(classes) + 1:  # output 0 is the background class of the TF-slim layout
            raise ModelLoadError(f"{CLASSIFIER_FILE} has {outputs} outputs for {len(classes)} classes")
        self.names = [entry["name"] for entry in classes]
        self.cifar10: list[str | None] = [entry["cifar10"] for entry in classes]
        # (11, 1000): row c adds up CIFAR-10 class c's ImageNet classes; the last row, everything else
        self._groups = np.zeros((len(CLASS_NAMES) + 1, len(classes)), np.float32)
        for index, entry in enumerate(classes):
            group = CLASS_NAMES.index(entry["cifar10"]) if entry["cifar10"] else len(CLASS_NAMES)
            self._groups[group, index] = 1.0
        self._outside = self._groups[-1].astype(bool)
        self._lock = threading.Lock()

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """float32 (1000,) ImageNet probabilities of the image's centre square (renormalised without background)."""
        width, height = image.size
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, (width - side) // 2 + side, (height - side) // 2 + side)
        square = image.convert("RGB").resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR, box=box,
                                             reducing_gap=2.0)
        with self._lock:
            self._interpreter.set_tensor(self._input, np.asarray(square, np.uint8)[None])
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output)[0].astype(np.float32)
        probs = np.maximum((raw - self._zero) * self._scale, 0.0)[1:]
        return probs / max(float(probs.sum()), 1e-9)

    def answer(self, probs: np.ndarray) -> BroadAnswer:
        grouped = self._groups @ probs
        outside = np.where(self._outside, probs, -1.0)
        best, top = int(outside.argmax()), int(probs.argmax())
        return BroadAnswer(inside=float(grouped[:-1].sum()),
                           classes={name: float(p) for name, p in zip(CLASS_NAMES, grouped[:-1], strict=True)},
                           looks_like=self.names[best], looks_like_probability=float(probs[best]),
                           top=self.names[top], top_class=self.cifar10[top])

    def read(self, images: Sequence[Image.Image | np.ndarray]) -> list[BroadAnswer | None]:
        """One answer per image; None for an image under MIN_SIDE on its shorter side."""
        answers: list[BroadAnswer | None] = []
        for image in images:
            image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
            answers.append(self.answer(self.probabilities(image)) if min(image.size) >= MIN_SIDE else None)
        return answers

    @property
    def sha256(self) -> str:
        return CLASSIFIER_SHA256


# The process's broad view, loaded once; None when its files are missing or broken (verdicts then rest on the gate,
# the face check and the classifiers).
load_broad = load_once(BroadView)
