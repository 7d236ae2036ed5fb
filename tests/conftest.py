"""Shared fixtures: a small synthetic CIFAR-10 in the official pickle layout, the real one if present, the app."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from models import cifar10

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR = REPO.parent / "shared" / "cifar10"

PER_CLASS = 550  # 500 go to validation, 50 per class stay for training
BATCHES = 5


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


@pytest.fixture(scope="session")
def synthetic_cifar(tmp_path_factory) -> Path:
    """A folder holding cifar-10-batches-py/ with 5,500 training and 200 test images."""
    return write_official_layout(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(autouse=True)
def _no_implicit_dataset(monkeypatch, tmp_path):
    """Tests name their data explicitly: no env var, and the default cache points at an empty folder."""
    monkeypatch.delenv(cifar10.ENV_VAR, raising=False)
    monkeypatch.setattr(cifar10, "DEFAULT_CACHE", tmp_path / "empty-cache")


def real_cifar_dir() -> Path | None:
    """The real dataset: $CIFAR10_DIR as the test run started, else the shared copy next to the repo."""
    for candidate in (os.environ.get(cifar10.ENV_VAR), SHARED_CIFAR):
        if candidate and (Path(candidate) / cifar10.BATCHES_DIR / "test_batch").is_file():
            return Path(candidate)
    return None


REAL_CIFAR = real_cifar_dir()
needs_real_cifar = pytest.mark.skipif(REAL_CIFAR is None, reason="the real CIFAR-10 copy is not available")


@pytest.fixture()
def app():
    from webapp import create_app

    return create_app({"TESTING": True})


@pytest.fixture()
def client(app):
    return app.test_client()
