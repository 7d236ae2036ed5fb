"""Write the examples gallery (`static/examples/`): CIFAR-10 test images and out-of-scope photos.

    .venv/bin/python scripts/make_examples.py [--data-dir DIR]   # CIFAR-10 and scikit-image (make venv)

Ten official test images, the first of each class, then the first two on which the committed models
disagree (from their cached test probabilities): the comparison is most interesting where they differ.
Three photos of things that are none of the 10 classes come from scikit-image's bundled data (public
domain / CC0; see static/examples/README.md). The manifest, examples.json, is what the app reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models import cifar10  # noqa: E402

OUT = REPO / "static" / "examples"
OUT_OF_SCOPE = {  # scikit-image data file -> (what it shows, licence)
    "astronaut.png": ("a person (astronaut Eileen Collins)", "public domain, NASA"),
    "coffee.png": ("a cup of coffee", "CC0, Rachel Michetti"),
    "rocket.jpg": ("a rocket on its launch pad", "public domain, NASA / SpaceX"),
}
LONGEST_SIDE = 256  # the models see 32x32; this keeps the files small


def cifar_examples(test: cifar10.Split) -> list[tuple[int, str]]:
    """(test index, why it is here) for the first image of each class and the first two disagreements."""
    picks = [(int(np.flatnonzero(test.labels == c)[0]), "first of its class") for c in range(10)]
    with np.load(REPO / "models" / "custom_cnn" / "test_probabilities.npz") as a, \
            np.load(REPO / "models" / "mobilenetv2" / "test_probabilities.npz") as b:
        disagree = np.flatnonzero(a["probabilities"].argmax(1) != b["probabilities"].argmax(1))
    picks += [(int(i), "the models disagree on it") for i in disagree[:2]]
    return picks


def main(argv: list[str] | None = None) -> None:
    import argparse

    import skimage.data

    from models.commands import announce_committed, user_errors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 folder (default: $CIFAR10_DIR, else download)")
    args = parser.parse_args(argv)
    with user_errors():
        test = cifar10.load_split("test", args.data_dir)
    announce_committed("static/examples/")
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for index, why in cifar_examples(test):
        label = test.class_names[test.labels[index]]
        name = f"cifar-{index:04d}-{label}.png"
        Image.fromarray(test.images[index]).save(OUT / name, optimize=True)
        manifest.append({"file": name, "title": f"{label} (CIFAR-10 test image {index})", "label": label,
                         "in_scope": True, "note": why, "licence": "CIFAR-10 (Krizhevsky, 2009)"})
    data_dir = Path(skimage.data.__file__).parent
    for source, (what, licence) in OUT_OF_SCOPE.items():
        image = Image.open(data_dir / source).convert("RGB")
        image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
        name = "outside-" + Path(source).stem + ".jpg"
        image.save(OUT / name, quality=88, optimize=True)
        manifest.append({"file": name, "title": what, "label": None, "in_scope": False,
                         "note": "none of the 10 classes", "licence": licence})
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{len(manifest)} examples -> {OUT}")


if __name__ == "__main__":
    main()
