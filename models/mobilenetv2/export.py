"""Export the trained Keras model for serving: the TensorFlow Serving SavedModel and the LiteRT file the app uses.

    python -m models.mobilenetv2.export [--model-dir models/mobilenetv2] [--out build/mobilenetv2-export]

- `serving/<version>/` (TF Serving), signature `serving_default`: `images` uint8 (N, H, W, 3) RGB of any
  size (resized to 32x32 with area averaging, as CIFAR-10 images are) -> `probabilities` float32 (N, 10).
- `model.tflite` (LiteRT, run by the web app's predictor): the same graph for uint8 (1, 32, 32, 3) inputs.
  LiteRT's XNNPACK kernels run MobileNetV2's depthwise convolutions about 4x faster than TensorFlow at
  batch size 1 on this CPU (bench/bench_mobilenetv2.py) with the same outputs (max difference ~1e-6).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from models.commands import announce_committed
from models.mobilenetv2.net import CIFAR_SIZE

PACKAGE_DIR = Path(__file__).resolve().parent


def export_saved_model(model: keras.Model, directory: Path) -> Path:
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(images)
        needs_resize = tf.logical_or(shape[1] != CIFAR_SIZE, shape[2] != CIFAR_SIZE)
        cifar = tf.cond(
            needs_resize,
            lambda: tf.cast(tf.round(tf.image.resize(images, (CIFAR_SIZE, CIFAR_SIZE), method="area")), tf.uint8),
            lambda: images,
        )
        cifar = tf.ensure_shape(cifar, [None, CIFAR_SIZE, CIFAR_SIZE, 3])
        return {"probabilities": model(cifar, training=False)}

    archive.add_endpoint("serving_default", serve)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(directory), verbose=False)
    return directory


def export_tflite(model: keras.Model, path: Path) -> Path:
    """A float32 LiteRT flatbuffer of the whole model (no quantisation: the outputs must match Keras)."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda images: model(images, training=False),
                             input_signature=[tf.TensorSpec([1, CIFAR_SIZE, CIFAR_SIZE, 3], tf.uint8)])
        archive.write_out(scratch, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=["serve"]).convert()
    path = Path(path)
    path.with_suffix(".partial").write_bytes(flatbuffer)
    path.with_suffix(".partial").replace(path)
    return path


def export_all(model_dir: Path, out: Path) -> None:
    """Both serving formats from `model_dir/model.keras`, written to `out` (training already did this once)."""
    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    export_saved_model(model, out / "serving" / "1")
    export_tflite(model, out / "model.tflite")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=PACKAGE_DIR, help="where model.keras is")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR.parent.parent / "build" / "mobilenetv2-export",
                        help="where the exports go (default: build/mobilenetv2-export/; --out models/mobilenetv2 "
                             "replaces the committed model.tflite and serving/)")
    args = parser.parse_args(argv)
    if args.out.resolve() == PACKAGE_DIR.resolve():
        announce_committed("models/mobilenetv2/model.tflite and serving/1")
    export_all(args.model_dir, args.out)
    print(f"wrote {args.out / 'serving' / '1'} and {args.out / 'model.tflite'}")


if __name__ == "__main__":
    main()
