"""Which downscaling filter should the image intake use? Measure it on real data.

    python bench/bench_resize_filters.py [--images 1000]

CIFAR-10 test images are upscaled 4x (as a user's photo would be larger than 32x32), then sent
through the predictor with each PIL filter as the intake's downscaler; prints the accuracy of each
next to the accuracy on the original 32x32 arrays.
"""

from __future__ import annotations

import argparse

from PIL import Image

import models.images as intake
from models import cifar10, load_predictor

FILTERS = ("LANCZOS", "BICUBIC", "HAMMING", "BOX", "BILINEAR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--model", default="custom_cnn")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    predictor = load_predictor(args.model)
    test = cifar10.load_split("test", args.data_dir)
    images, labels = test.images[: args.images], test.labels[: args.images]
    print(f"{args.model}, first {len(labels)} test images")
    print(f"  original 32x32 arrays: {(predictor.predict_proba(images).argmax(1) == labels).mean():.4f}")
    chosen = intake.RESAMPLE
    try:
        for upscale in ("BICUBIC", "NEAREST"):
            big = [Image.fromarray(i).resize((128, 128), Image.Resampling[upscale]) for i in images]
            for name in FILTERS:
                intake.RESAMPLE = Image.Resampling[name]
                accuracy = (predictor.predict_proba(big).argmax(1) == labels).mean()
                marker = "  <- intake default" if Image.Resampling[name] == chosen else ""
                print(f"  upscaled 4x ({upscale.lower():>7}), shrunk with {name.lower():>8}: {accuracy:.4f}{marker}")
    finally:
        intake.RESAMPLE = chosen


if __name__ == "__main__":
    main()
