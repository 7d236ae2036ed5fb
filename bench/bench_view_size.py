"""Would a larger view of a photo help MobileNetV2? The served weights, fed the photo at other sizes (issue 39).

    .venv/bin/python bench/bench_view_size.py    # -> docs/measurements/mobilenetv2-view-size.txt

The served model sees every image as a 32x32 view (centre crop, Lanczos), which its graph upscales to 160 px:
a photo's detail beyond 32 px never reaches the ImageNet features. Here the same weights get the view at other
sizes (the graph still resizes it to 160 px), scored on what a recipe is chosen on: the class photos of the
real-photo benchmark's fitting sources, and the validation split (32 px images, upscaled to the view's size
first, as the seam would). The held-out sources and the test split are not read.
"""

from __future__ import annotations

import argparse

import keras

from devkit.transcript import MEASUREMENTS, Transcript
from models.cifar10 import load_split
from models.images import to_model_input
from models.machine import describe_machine
from models.mobilenetv2 import net
from models.registry import model_dir
from models.scope.benchmark import PHOTOS_DIR, load_photos

SIZES = (32, 48, 64, 96, 160)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--photos-dir", default=PHOTOS_DIR)
    parser.add_argument("--out", default=MEASUREMENTS / "mobilenetv2-view-size.txt")
    args = parser.parse_args(argv)
    folder = model_dir("mobilenetv2")
    served = keras.models.load_model(folder / "model.keras")
    size = int(served.get_layer("preprocess").layers[0].height)
    lower, upper, head = (served.get_layer(n) for n in ("mobilenetv2_lower", "mobilenetv2_upper", "head"))
    photos = load_photos(args.photos_dir)
    chosen, truth = photos.fitting_class_photos()
    val = load_split("val", args.data_dir)
    say = Transcript()
    say(f"machine: {describe_machine()}; {folder.name} weights, upscaled to {size} px inside the graph")
    say(f"view  validation ({len(val)})  fitting class photos ({len(truth)})")
    for side in SIZES:
        images = keras.Input((side, side, 3), dtype="uint8")
        features = lower(net.preprocessing(size)(images), training=False)
        variant = keras.Model(images, head(upper(features, training=False), training=False))
        val_right = variant.predict(to_model_input(val.images, side), batch_size=250, verbose=0).argmax(1) == val.labels
        right = variant.predict(to_model_input(chosen.images, side), batch_size=64, verbose=0).argmax(1) == truth
        say(f"{side:4d}  {val_right.mean():.4f}            {right.mean():.4f}")
    say.save(args.out)


if __name__ == "__main__":
    main()
