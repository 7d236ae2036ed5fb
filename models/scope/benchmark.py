"""The out-of-scope benchmark as the gate's fitting and the reports read it (scripts/build_ood_benchmark.py
builds it into build/ood-benchmark/).

The split into families was fixed before any score was fitted: the gate is fitted, and its settings chosen, on
FITTING_FAMILIES only; HELD_OUT_FAMILIES (every family whose subject is a person among them) are for reporting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.images import to_model_input

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_DIR = REPO / "build" / "ood-benchmark"
FITTING_FAMILIES = ("patches", "procedural", "icons", "emoji-food", "portraits")
HELD_OUT_FAMILIES = ("faces", "photos", "documents", "emoji-people")


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an out-of-scope image scores above an in-scope one), ties counted half (Mann-Whitney U / n1 n2)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([inside, outside]))
    above = ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2
    return float(above / (len(inside) * len(outside)))


def fpr_at_tpr(inside: np.ndarray, outside: np.ndarray, tpr: float = 0.95) -> float:
    """Share of in-scope images scoring at least the threshold that keeps `tpr` of the out-of-scope ones."""
    return float((inside >= np.quantile(outside, 1 - tpr)).mean())


class BenchmarkMissing(RuntimeError):
    """The benchmark has not been built here."""


@dataclass(frozen=True)
class Benchmark:
    images: list[Image.Image]
    family: np.ndarray  # str (N,)
    person: np.ndarray  # bool (N,): the image's subject is a person
    names: list[str]

    def views(self) -> np.ndarray:
        """The uint8 (N, 32, 32, 3) views the models and the gate see."""
        return to_model_input(self.images, 32)

    def subset(self, families: tuple[str, ...]) -> Benchmark:
        keep = np.isin(self.family, families)
        return Benchmark([im for im, k in zip(self.images, keep, strict=True) if k], self.family[keep],
                         self.person[keep], [n for n, k in zip(self.names, keep, strict=True) if k])


def read_built(directory: Path, builder: str) -> tuple[list[dict], list[Image.Image]]:
    """A built benchmark's manifest entries and their images (RGB), or BenchmarkMissing naming its builder."""
    manifest_path = Path(directory) / "manifest.json"
    if not manifest_path.is_file():
        raise BenchmarkMissing(f"{manifest_path} not found: build the benchmark first with "
                               f".venv/bin/python {builder}")
    manifest = json.loads(manifest_path.read_text())
    images = []
    for entry in manifest:
        with Image.open(Path(directory) / entry["file"]) as image:
            images.append(image.convert("RGB"))
    return manifest, images


def load_benchmark(directory: Path = DEFAULT_DIR) -> Benchmark:
    manifest, images = read_built(directory, "scripts/build_ood_benchmark.py")
    return Benchmark(images, np.array([e["family"] for e in manifest]),
                     np.array([bool(e.get("person")) for e in manifest]), [e["name"] for e in manifest])


PHOTOS_DIR = REPO / "build" / "photo-benchmark"


@dataclass(frozen=True)
class Photos:
    """The real-photo benchmark (scripts/build_photo_benchmark.py): photos, each with its label (one of the 10
    classes, "mammal", or "everyday:<kind>"), source and role ("fitting" or "held-out")."""

    images: list[Image.Image]
    label: np.ndarray  # str (N,)
    source: np.ndarray  # str (N,)
    role: np.ndarray  # str (N,)

    @property
    def group(self) -> np.ndarray:
        """"class" (one of the 10), "mammal" (another mammal) or "everyday" (anything else), per photo."""
        return np.array(["everyday" if label.startswith("everyday") else "mammal" if label == "mammal" else "class"
                         for label in self.label])

    def fitting_class_photos(self) -> tuple[Photos, np.ndarray]:
        """The photos of the 10 classes from the fitting sources, and their class indices: what a recipe or a line
        may be chosen on (never the held-out sources)."""
        from models.cifar10 import CLASS_NAMES

        chosen = self.subset((self.role == "fitting") & (self.group == "class"))
        return chosen, np.array([CLASS_NAMES.index(label) for label in chosen.label], dtype=int)

    def subset(self, keep: np.ndarray) -> Photos:
        return Photos([im for im, k in zip(self.images, keep, strict=True) if k], self.label[keep],
                      self.source[keep], self.role[keep])


def load_photos(directory: Path = PHOTOS_DIR) -> Photos:
    manifest, images = read_built(directory, "scripts/build_photo_benchmark.py")
    return Photos(images, np.array([e["label"] for e in manifest]), np.array([e["source"] for e in manifest]),
                  np.array([e["role"] for e in manifest]))
