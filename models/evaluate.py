"""Evaluate a committed model on the official 10,000-image CIFAR-10 test split, once.

    python -m models.evaluate custom_cnn [--data-dir DIR] [--out PATH]

Runs the same `Predictor` the web app serves (uint8 images in, probabilities out) and writes a
metrics JSON (default: next to the model's weights). The test-split probabilities are cached next to
the weights too (models/<model>/test_probabilities.npz, keyed by the weights' sha256), so the report
build (`python -m reports.build`) reuses them instead of scoring the test set again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models import cifar10
from models.commands import announce_committed
from models.machine import describe_machine
from models.predictor import temper
from models.registry import REGISTRY, load_predictor
from models.scoring import classification_metrics

PREDICTIONS_FILE = "test_probabilities.npz"
UNRECORDED_MACHINE = "not recorded (a cache written before caches named their machine)"


def test_probabilities(name: str, test: cifar10.Split) -> tuple[np.ndarray, float]:
    """(calibrated probabilities (N, 10), seconds the model took) on the test split.

    The cache holds the uncalibrated probabilities, keyed by the weights' sha256, so fitting a new
    temperature (`python -m models.calibrate`) does not need another pass over the test split.
    """
    probs, seconds, _ = scored_test_split(name, test)
    return probs, seconds


def scored_test_split(name: str, test: cifar10.Split) -> tuple[np.ndarray, float, str]:
    """As `test_probabilities`, plus the machine that scored the split: the cache's, when it was read, so
    that a figure names the machine that produced it, not the one that copied it."""
    predictor = load_predictor(name)
    if tuple(test.class_names) != tuple(predictor.class_names):
        raise SystemExit(f"class order of the dataset {test.class_names} differs from the model's")
    cache = predictor.model_dir / PREDICTIONS_FILE
    raw = None
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["weights_sha256"]) == predictor.weights_sha256 and np.array_equal(stored["labels"],
                                                                                              test.labels):
                raw, seconds = stored["probabilities"].astype(np.float64), float(stored["seconds"])
                machine = str(stored["machine"]) if "machine" in stored.files else UNRECORDED_MACHINE
    if raw is None:
        start = time.perf_counter()
        raw = predictor.predict_proba(test.images, calibrated=False)
        seconds = time.perf_counter() - start
        machine = describe_machine()
        np.savez_compressed(cache, probabilities=raw.astype(np.float32), labels=test.labels,
                            weights_sha256=predictor.weights_sha256, seconds=seconds, machine=np.array(machine))
    raw /= raw.sum(axis=1, keepdims=True)
    return temper(raw, predictor.temperature), seconds, machine


def evaluate(name: str, data_dir: str | None = None) -> dict[str, Any]:
    test = cifar10.load_split("test", data_dir)
    probs, seconds, machine = scored_test_split(name, test)
    info = load_predictor(name).info
    return {
        "model": name,
        "split": "test",
        **classification_metrics(test.labels, probs, test.class_names),
        "weights_sha256": info["weights_sha256"],
        "parameters": info["parameters"],
        "inference_seconds": seconds,
        "inference_images_per_second": len(test.labels) / seconds,
        "machine": machine,  # the one that scored the split (timed it): the cache's when it was read
        "class_names": list(test.class_names),
        # Per-image predicted class, in test-split order: lets a test re-check any slice of the split.
        "predictions": probs.argmax(axis=1).tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(REGISTRY))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="default: models/<model>/metrics.json")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate(args.model, args.data_dir)
    except cifar10.Cifar10Error as exc:
        raise SystemExit(f"error: {exc}") from None
    out = args.out or Path(__file__).resolve().parent / args.model / "metrics.json"
    if out.resolve().is_relative_to(Path(__file__).resolve().parent):
        announce_committed(f"{out.name} in models/{args.model}/")
    predictions = metrics.pop("predictions")
    text = json.dumps(metrics, indent=2)[:-2] + ',\n  "predictions": ' + json.dumps(predictions) + "\n}\n"
    out.write_text(text)  # indented, but the 10,000 predictions on one line
    print(f"{args.model}: test accuracy {metrics['accuracy']:.4f} (top-3 {metrics['top3_accuracy']:.4f}, "
          f"macro F1 {metrics['macro_f1']:.4f}) on {metrics['n_images']} images -> {out}")


if __name__ == "__main__":
    main()
