"""What several test modules need: where things are, a synthetic CIFAR-10 on disk, and fake predictors.

Route and form tests use `fake_predictors()` (fast, deterministic, no framework imported); the
predictor contract, parity, deployment and browser tests use the committed models.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from models import cifar10, registry
from models.predictor import Predictor

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR = REPO.parent / "shared" / "cifar10"

def require_tool(name: str, present: bool) -> None:
    """A system tool a test needs: missing, the test is skipped with the reason, except under CI (`CI` set, as
    .ci/run does), where a missing tool is a failure: CI must run every test."""
    if present:
        return
    reason = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason + " and CI is set: every test must run in CI")
    pytest.skip(reason)


def poppler(tool: str, *args: str) -> str:
    """Run pdftotext or pdftoppm (poppler-utils): skipped when missing, a failure when CI is set."""
    import shutil
    import subprocess

    require_tool("poppler-utils", shutil.which(tool) is not None)
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True, timeout=120).stdout


def pdf_text(pdf: Path | str, *options: str) -> str:
    return poppler("pdftotext", *options, str(pdf), "-")


def overlapping_words(pdf: Path | str, min_share: float = 0.25) -> list[tuple[int, str, str]]:
    """(page, word, word) for every two words of a page whose boxes (pdftotext -bbox) cover each other by more
    than min_share of the smaller box: text painted over other text, as a row's long reason over the next row."""
    import re

    pages = pdf_text(pdf, "-bbox").split("<page ")[1:]
    word = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>')
    found = []
    for number, page in enumerate(pages, 1):
        boxes = [(float(a), float(b), float(c), float(d), text) for a, b, c, d, text in word.findall(page)]
        boxes.sort()
        for i, (x0, y0, x1, y1, text) in enumerate(boxes):
            for u0, v0, u1, v1, other in boxes[i + 1:]:
                if u0 >= x1:
                    break  # sorted by xMin: no later box reaches back over this one
                width, height = min(x1, u1) - max(x0, u0), min(y1, v1) - max(y0, v0)
                smaller = min((x1 - x0) * (y1 - y0), (u1 - u0) * (v1 - v0))
                if width > 0 and height > 0 and width * height > min_share * smaller:
                    found.append((number, text, other))
    return found


PER_CLASS = 550  # 500 go to validation, 50 per class stay for training
BATCHES = 5


# ----------------------------------------------------------------------------- data
def class_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images whose colour and a stripe position depend on the class, so a tiny net can learn them."""
    n = len(labels)
    images = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    for cls in range(10):
        sel = labels == cls
        images[sel, :, :, cls % 3] += 120
        images[sel, 3 * cls : 3 * cls + 3, :, :] = 250
    return images


def write_official_layout(folder: Path, seed: int = 0) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta exactly as the official files are shaped."""
    rng = np.random.default_rng(seed)
    batches_dir = folder / cifar10.BATCHES_DIR
    batches_dir.mkdir(parents=True)
    labels = rng.permutation(np.repeat(np.arange(10), PER_CLASS))
    images = class_images(labels, rng)
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes, row-major
    size = len(labels) // BATCHES
    for i in range(BATCHES):
        part = slice(i * size, (i + 1) * size)
        batch = {b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": labels[part].tolist(),
                 b"data": data[part], b"filenames": [f"img_{j}.png".encode() for j in range(size)]}
        (batches_dir / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test_labels = np.repeat(np.arange(10), 20)
    test_data = class_images(test_labels, rng).transpose(0, 3, 1, 2).reshape(len(test_labels), -1)
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels.tolist(), b"data": test_data,
            b"filenames": [f"t_{j}.png".encode() for j in range(len(test_labels))]}
    (batches_dir / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"num_cases_per_batch": size, b"label_names": [n.encode() for n in cifar10.CLASS_NAMES], b"num_vis": 3072}
    (batches_dir / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def real_cifar_dir() -> Path | None:
    """The real dataset: $CIFAR10_DIR as the test run started, else the shared copy next to the repo."""
    for candidate in (os.environ.get(cifar10.ENV_VAR), SHARED_CIFAR):
        if candidate and (Path(candidate) / cifar10.BATCHES_DIR / "test_batch").is_file():
            return Path(candidate)
    return None


REAL_CIFAR = real_cifar_dir()
needs_real_cifar = pytest.mark.skipif(REAL_CIFAR is None, reason="the real CIFAR-10 copy is not available")


# ----------------------------------------------------------------------------- fake models
class FakePredictor(Predictor):
    """A real `Predictor` (batching, calibration, info, top-k: the base class) whose forward pass is a fixed
    random linear map of each image's mean colour: deterministic, instant, and different per model."""

    framework = "NumPy (test double)"
    preprocessing = "centre square crop, resize to 32x32"
    description = "A test double standing in for a trained model."
    input_size = 32
    weights_file = "weights.bin"
    warm_up_sizes = (1,)

    def __init__(self, model_dir: Path, name: str, display_name: str, seed: int):
        self.name, self.display_name = name, display_name
        super().__init__(model_dir)
        self._map = np.random.default_rng(seed).normal(0, 4, (3, 10))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        logits = (batch.mean(axis=(1, 2)) / 255.0) @ self._map
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    @property
    def framework_version(self) -> str:
        return np.__version__

    def parameter_count(self) -> int:
        return self._map.size


# The committed models' names and display names, so pages read as they do in production.
FAKE_MODELS = {"custom_cnn": "Custom CNN (PyTorch, from scratch)",
               "mobilenetv2": "MobileNetV2 (TensorFlow/Keras, ImageNet-pretrained, fine-tuned)"}


@contextmanager
def fake_predictors(folder: Path) -> Iterator[dict[str, FakePredictor]]:
    """While inside, `load_predictor(name)` returns a FakePredictor for every registered name; the models
    loaded before (real ones, loaded once per test session) are back afterwards."""
    saved_loaded, saved_failed = dict(registry._loaded), dict(registry._failed)
    registry.forget_loaded_models()
    fakes = {}
    for seed, (name, display_name) in enumerate(FAKE_MODELS.items()):
        model_dir = folder / name
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps({"class_names": list(cifar10.CLASS_NAMES),
                                                           "recipe": {"epochs": 1}, "train_images": 45_000,
                                                           "wall_seconds": 1.0}))
        (model_dir / FakePredictor.weights_file).write_bytes(name.encode())
        fakes[name] = FakePredictor(model_dir, name, display_name, seed)
    registry._loaded.update(fakes)
    try:
        yield fakes
    finally:
        registry.forget_loaded_models()
        registry._loaded.update(saved_loaded)
        registry._failed.update(saved_failed)


_held: list[bytearray] = []


def hold_memory(megabytes: int) -> int:
    """Run in a decoding child (tests/test_decoder.py): keep `megabytes` of touched memory, as a leak would; returns
    the child's pid."""
    _held.append(bytearray(b"\1" * (megabytes << 20)))
    return os.getpid()


def page_contents(html: str) -> tuple[list[str], list[str], int]:
    """What a report page shows, read from its HTML: the text of every table cell, of every heading and
    caption, and how many pictures it has."""
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.headings, self.images, self.open, self.text = [], [], 0, None, []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.images += 1
            elif tag in ("td", "th", "h1", "h2", "h3", "figcaption") and self.open is None:
                self.open, self.text = tag, []

        def handle_endtag(self, tag):
            if tag == self.open:
                text = " ".join("".join(self.text).split())
                if text:
                    (self.cells if tag in ("td", "th") else self.headings).append(text)
                self.open = None

        def handle_data(self, data):
            if self.open is not None:
                self.text.append(data)

    reader = Reader()
    reader.feed(html)
    return reader.cells, reader.headings, reader.images


def pdf_images(pdf: Path | str) -> int:
    """How many pictures a PDF draws (pdfimages -list; soft masks are not pictures)."""
    listing = poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]
    return sum(line.split()[2] == "image" for line in listing if line.strip())
