"""What a recipe is chosen on: the validation split and the real-photo benchmark's fitting sources (issue 39).

    .venv/bin/python bench/bench_fitting_photos.py                                   # the committed models
    CIFAR10_MODELS_DIR=build/candidates .venv/bin/python bench/bench_fitting_photos.py --models custom_cnn

Each model's accuracy on the 5,000 validation images and on the photos of the 10 classes from the benchmark's
fitting sources (by source), as the served predictor answers them (the same 32x32 view, test-time augmentation and
all). The held-out sources and the test split are not read: bench/bench_real_photos.py and `make report` report on
them once a recipe is chosen. docs/custom-cnn.md and docs/mobilenetv2.md record each variant's line.
"""

from __future__ import annotations

import argparse

from models import available_models, load_predictor
from models.cifar10 import CLASS_NAMES, load_split
from models.machine import describe_machine
from models.scope.benchmark import PHOTOS_DIR, load_photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=available_models(), default=available_models())
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--photos-dir", default=PHOTOS_DIR)
    args = parser.parse_args(argv)
    val = load_split("val", args.data_dir)
    photos = load_photos(args.photos_dir)
    chosen, truth = photos.fitting_class_photos()
    sources = sorted(set(chosen.source))
    print(f"machine: {describe_machine()}")
    print(f"{len(val)} validation images; {len(truth)} class photos of the fitting sources "
          f"({', '.join(f'{s} {int((chosen.source == s).sum())}' for s in sources)})")
    for name in args.models:
        predictor = load_predictor(name)
        val_right = predictor.predict_proba(val.images).argmax(1) == val.labels
        right = predictor.predict_proba(chosen.images).argmax(1) == truth
        by_source = ", ".join(f"{s} {right[chosen.source == s].mean():.3f}" for s in sources)
        by_class = ", ".join(f"{c} {right[truth == i].mean():.2f}" for i, c in enumerate(CLASS_NAMES)
                             if (truth == i).any())
        print(f"{name} ({predictor.weights_sha256[:12]}): val {val_right.mean():.4f}; fitting photos "
              f"{right.mean():.4f} ({by_source}; {by_class})")


if __name__ == "__main__":
    main()
