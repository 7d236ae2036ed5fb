"""Corruptions kept apart from the evaluation suite, for choosing robust training recipes on the validation split
(issue 20): the four "extra" corruptions of CIFAR-10-C (Hendrycks & Dietterich, 2019), which the benchmark's
15 do not include — speckle noise, Gaussian blur, saturate — at their CIFAR-10 parameters, seeded.

    python -m models.holdout_corruptions MODEL_DIR [MODEL_DIR ...]   # clean and held-out accuracy on validation

Selection never looks at the 15 evaluation corruptions (models/corruptions.py) or the test split.
(Spatter, the fourth extra, needs OpenCV's Canny and distance transform; it is left out.)
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

HOLDOUT = ("speckle_noise", "gaussian_blur", "saturate")
PER_CLASS = 200  # validation images per class: 2,000 per cell


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.06, 0.1, 0.12, 0.16, 0.2][severity - 1]
    x = x / 255
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.4, 0.6, 0.7, 0.8, 1.0][severity - 1]
    return np.clip(ndimage.gaussian_filter(x / 255, sigma=(0, c, c, 0), mode="nearest", truncate=4.0), 0, 1) * 255


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = rgb_to_hsv(x / 255)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def corrupt_holdout(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    function = {"speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "saturate": saturate}[name]
    rng = np.random.default_rng([seed, 100 + HOLDOUT.index(name), severity])
    return np.clip(function(images.copy(), severity, rng), 0, 255).astype(np.uint8)


def holdout_accuracy(predict, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Clean accuracy, per-corruption mean over the 5 severities, and the mean over all held-out cells."""
    result = {"clean": float((predict(images).argmax(1) == labels).mean())}
    for name in HOLDOUT:
        result[name] = float(np.mean([(predict(corrupt_holdout(images, name, s)).argmax(1) == labels).mean()
                                      for s in range(1, 6)]))
    result["holdout_mean"] = float(np.mean([result[name] for name in HOLDOUT]))
    return result


def predictor_for(folder: Path):
    """The served predictor for a trained model folder of either kind (custom CNN or MobileNetV2)."""
    from models.registry import REGISTRY

    name = "custom_cnn" if (folder / "weights.pt").is_file() else "mobilenetv2"
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(folder)


def main(argv: list[str] | None = None) -> None:
    from models import cifar10

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path,
                        help="trained model folders (custom CNN: weights.pt; MobileNetV2: model.tflite)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--save", type=Path, default=None, help="also write the lines to this file")
    parser.add_argument("--append", action="store_true",
                        help="add the lines to the end of the --save file (runs measured on another machine or day)")
    args = parser.parse_args(argv)
    if args.append and not args.save:
        parser.error("--append needs --save FILE")
    from models.machine import describe_machine
    from models.predictor import ModelLoadError

    try:  # every folder loads before the first one is scored: a typo fails at once, not minutes later
        predictors = {folder: predictor_for(folder) for folder in args.model_dirs}
        val = cifar10.load_split("val", args.data_dir)
    except (ModelLoadError, cifar10.Cifar10Error) as exc:
        raise SystemExit(f"error: {exc}") from None

    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"machine: {describe_machine()}; {PER_CLASS * 10:,} validation images per cell")
    rows = np.sort(np.concatenate([np.flatnonzero(val.labels == c)[:PER_CLASS] for c in range(10)]))
    for folder, predictor in predictors.items():
        scores = holdout_accuracy(predictor.predict_proba, val.images[rows], val.labels[rows])
        config = json.loads((folder / "config.json").read_text())
        damage = {k: config["recipe"][k] for k in ("noise_prob", "fade_prob", "damaged_views")
                  if config["recipe"].get(k)}
        minutes = f"{config['wall_seconds'] / 60:.1f} min"
        if config.get("device") == "cuda":  # a GPU run: its time is not a CPU figure
            minutes += f" on {config['machine'].rsplit(',', 1)[-1].strip()}"
        say(f"{folder} {damage or '(no damage augmentation)'}, trained in {minutes}: "
            + ", ".join(f"{k} {100 * v:.2f}%" for k, v in scores.items()))
    if args.save:
        earlier = args.save.read_text() if args.append and args.save.is_file() else ""
        args.save.write_text(earlier + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
