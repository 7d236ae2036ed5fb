"""Two cheap ideas for a noise-robust custom CNN, measured on validation only (issue 20; docs/custom-cnn.md).

    .venv/bin/python bench/probe_robust_cnn.py bn MODEL_DIR        # BatchNorm statistics recomputed on clean images
    .venv/bin/python bench/probe_robust_cnn.py denoise MODEL_DIR... # blur only the images that look noisy

`bn`: after training with photo damage, the running statistics mix clean and noisy batches; recompute them
on 10,000 clean training images (or a given share noised) and compare clean and held-out accuracy.
`denoise`: estimate each image's noise level (Immerkaer 1996: the mean absolute response to a Laplacian-difference
kernel), and blur (Gaussian, sigma 0.8 px) or median-filter the images above the 99th percentile of clean
validation images before the model sees them. Both lost to training with photo damage; the output is in
docs/measurements/cnn-probes.txt.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from models import cifar10
from models.custom_cnn.net import CIFAR_STD, preprocess
from models.custom_cnn.predictor import CustomCnnPredictor
from models.holdout_corruptions import PER_CLASS, corrupt_holdout, holdout_accuracy
from models.machine import describe_machine

LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)


def noise_level(images: np.ndarray) -> np.ndarray:
    """Per uint8 image: estimated noise standard deviation (0-255 scale) of its luma."""
    luma = images.astype(float) @ [0.299, 0.587, 0.114]
    return np.array([np.sqrt(np.pi / 2) * np.abs(ndimage.convolve(im, LAPLACIAN_DIFFERENCE)[1:-1, 1:-1]).mean() / 6
                     for im in luma])


def bn_probe(folder: Path, val: cifar10.Split, rows: np.ndarray) -> None:
    train = cifar10.load_split("train")
    predictor = CustomCnnPredictor(folder)
    trained = copy.deepcopy(predictor.model.state_dict())

    def full_val() -> float:
        return float((predictor.predict_proba(val.images).argmax(1) == val.labels).mean())

    def score() -> str:
        held = holdout_accuracy(predictor.predict_proba, val.images[rows], val.labels[rows])
        return f"full val {100 * full_val():.2f}%, held-out mean {100 * held['holdout_mean']:.2f}%"

    print(f"{folder} as trained: {score()}", flush=True)
    for share in (0.0, 0.25):
        predictor.model.load_state_dict(trained)
        for module in predictor.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a plain average over every batch
        images = preprocess(train.images[:10_000])
        gen = torch.Generator().manual_seed(1)
        std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
        predictor.model.train()
        with torch.no_grad():
            for chunk in images.split(500):
                sigma = torch.rand(len(chunk), generator=gen) * 0.1 * (torch.rand(len(chunk), generator=gen) < share)
                chunk = chunk + torch.randn(chunk.shape, generator=gen) * sigma.view(-1, 1, 1, 1) / std
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=predictor.bf16):
                    predictor.model(chunk.contiguous(memory_format=torch.channels_last))
        predictor.model.eval()
        print(f"{folder} BatchNorm recomputed, {share:.0%} of the images noised: {score()}", flush=True)


def denoise_probe(folders: list[Path], val: cifar10.Split, rows: np.ndarray) -> None:
    threshold = np.percentile(noise_level(val.images), 99)
    print(f"noise-level threshold (99th percentile of clean validation): {threshold:.2f}", flush=True)

    def gated(images: np.ndarray, how: str) -> tuple[np.ndarray, float]:
        noisy = noise_level(images) > threshold
        out = images.copy()
        if how == "blur":
            blurred = ndimage.gaussian_filter(images[noisy].astype(float), (0, 0.8, 0.8, 0))
            out[noisy] = np.clip(np.rint(blurred), 0, 255)
        elif how == "median":
            out[noisy] = ndimage.median_filter(images[noisy], size=(1, 3, 3, 1))
        return out, float(noisy.mean()) if how != "none" else 0.0

    for folder in folders:
        predictor = CustomCnnPredictor(folder)
        for how in ("none", "blur", "median"):
            x, share = gated(val.images, how)
            cells = [f"clean {100 * (predictor.predict_proba(x).argmax(1) == val.labels).mean():.2f}% "
                     f"(filtered {100 * share:.1f}%)"]
            for severity in range(1, 6):
                x, share = gated(corrupt_holdout(val.images[rows], "speckle_noise", severity), how)
                accuracy = (predictor.predict_proba(x).argmax(1) == val.labels[rows]).mean()
                cells.append(f"speckle {severity}: {100 * accuracy:.1f}% (filtered {100 * share:.0f}%)")
            print(f"{folder} {how}: " + ", ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=("bn", "denoise"))
    parser.add_argument("model_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {describe_machine()}", flush=True)
    val = cifar10.load_split("val")
    rows = np.sort(np.concatenate([np.flatnonzero(val.labels == c)[:PER_CLASS] for c in range(10)]))
    if args.probe == "bn":
        for folder in args.model_dirs:
            bn_probe(folder, val, rows)
    else:
        denoise_probe(args.model_dirs, val, rows)


if __name__ == "__main__":
    main()
