"""Fit a temperature on the validation split so that a model's probabilities mean what they say.

    python -m models.calibrate custom_cnn [--data-dir DIR]

Label smoothing (used by both recipes) leaves a network under-confident: the committed CNN said
74% on average while being right 94% of the time. One scalar T, fitted by minimising the negative
log-likelihood of the validation images (never the test split), rescales the log-probabilities:
p' = softmax(log(p) / T). The predicted class never changes, so accuracy is untouched. The result
is written to models/<name>/calibration.json, which the predictor applies when it loads.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.optimize import minimize_scalar

from models import cifar10
from models.commands import announce_committed
from models.predictor import temper
from models.registry import REGISTRY, load_predictor
from models.scoring import calibration, negative_log_likelihood


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising validation NLL of softmax(log(probs) / T)."""
    result = minimize_scalar(lambda t: negative_log_likelihood(temper(probs, t), labels), bounds=(0.05, 20.0),
                             method="bounded", options={"xatol": 1e-4})
    return float(result.x)


def calibrate(name: str, data_dir: str | None = None) -> dict:
    predictor = load_predictor(name)
    val = cifar10.load_split("val", data_dir)
    probs = predictor.predict_proba(val.images, calibrated=False)
    temperature = fit_temperature(probs, val.labels)
    tempered = temper(probs, temperature)
    return {
        "model": name,
        "weights_sha256": predictor.weights_sha256,
        "split": "validation",
        "n_images": len(val),
        "temperature": temperature,
        "val_nll_before": negative_log_likelihood(probs, val.labels),
        "val_nll_after": negative_log_likelihood(tempered, val.labels),
        "val_ece_before": calibration(probs, val.labels)["ece"],
        "val_ece_after": calibration(tempered, val.labels)["ece"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(REGISTRY))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        result = calibrate(args.model, args.data_dir)
    except cifar10.Cifar10Error as exc:
        raise SystemExit(f"error: {exc}") from None
    out = load_predictor(args.model).model_dir / "calibration.json"
    announce_committed(f"{out} (the served temperature)")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model}: temperature {result['temperature']:.3f}; validation ECE "
          f"{100 * result['val_ece_before']:.2f}% -> {100 * result['val_ece_after']:.2f}%, NLL "
          f"{result['val_nll_before']:.4f} -> {result['val_nll_after']:.4f} -> {out}")


if __name__ == "__main__":
    main()
