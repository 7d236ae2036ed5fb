"""What each stage of the MobileNetV2 recipe costs on this machine, and what the served model does.

    python bench/bench_mobilenetv2.py [--sizes 96,128,160,224] [--seconds 5]

Per input size: full-network forward img/s (fp32 and mixed bf16), the frozen lower half (the
one-off feature cache), the upper half's training step (what every fine-tuning epoch pays), and
the implied minutes for caching 45k images + mirrors and for one epoch. Then the committed model's
inference img/s at batch 1 and 64 through the `Predictor` the app uses.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import load_predictor
from models.machine import describe_machine
from models.mobilenetv2 import net
from models.mobilenetv2.train import Recipe

REPO = Path(__file__).resolve().parent.parent


def rate(fn, batch: int, seconds: float) -> float:
    """Images per second of `fn()` processing `batch` images, after one warm-up call."""
    fn()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - start)


def stage_rates(size: int, weights: Path, seconds: float, batch: int = 128) -> dict[str, float]:
    out = {}
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        lower, upper = net.backbone_halves(size, weights)
        full = net.full_model(size, lower, upper, net.classifier_head(0.2))
        forward = tf.function(lambda x, m=full: m(x, training=False))
        out[f"forward {policy}"] = rate(lambda f=forward: f(images), batch, seconds)
    keras.mixed_precision.set_global_policy("float32")
    lower, upper = net.backbone_halves(size, weights)
    lower_half = net.lower_model(size, lower)
    cache = tf.function(lambda x: lower_half(x, training=False))
    out["cache (lower half)"] = rate(lambda: cache(images), batch, seconds)
    model = net.trainable_model(upper, net.classifier_head(0.2))
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    features = np.random.rand(batch, *upper.input.shape[1:]).astype(np.float32)
    targets = keras.utils.to_categorical(np.arange(batch) % 10, 10)
    out["train step (upper half)"] = rate(lambda: model.train_on_batch(features, targets), batch, seconds)
    return out


def served_rates(seconds: float) -> dict[str, dict[int, float]]:
    """img/s of the committed model: through the served Predictor (LiteRT) and as a TensorFlow graph."""
    predictor = load_predictor("mobilenetv2")
    model = keras.models.load_model(REPO / "models" / "mobilenetv2" / "model.keras", compile=False)
    graph = tf.function(lambda x: model(x, training=False), autograph=False,
                        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)])
    rng = np.random.default_rng(0)
    runs = {"Predictor (LiteRT, model.tflite)": predictor.predict_proba,
            "TensorFlow graph of model.keras": lambda x: graph(tf.constant(x)).numpy()}
    return {name: {b: rate(lambda b=b, f=f: f(rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8)), b, seconds)
                   for b in (1, 64)} for name, f in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="96,128,160,224")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--imagenet-weights", default=None)
    args = parser.parse_args()
    weights = net.find_imagenet_weights(args.imagenet_weights)
    tf.config.threading.set_intra_op_parallelism_threads(Recipe().threads)
    print(f"machine: {describe_machine()}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; cut after {net.CUT_LAYER}; img/s")
    n = 45_000
    for size in (int(s) for s in args.sizes.split(",") if s):
        r = stage_rates(size, weights, args.seconds)
        cache_min = (2 * n + 5_000) / r["cache (lower half)"] / 60
        epoch_min = n / r["train step (upper half)"] / 60
        cells = "  ".join(f"{k} {v:7.1f}" for k, v in r.items())
        print(f"{size:4d} px: {cells}  => cache {cache_min:.1f} min, fine-tune epoch {epoch_min:.1f} min", flush=True)
    if (REPO / "models" / "mobilenetv2" / "model.tflite").is_file():
        for name, rates in served_rates(args.seconds).items():
            for b, v in rates.items():
                print(f"committed model, {name:32s} batch {b:3d}: {v:7.1f} img/s ({1000 / v:.1f} ms/img)")


if __name__ == "__main__":
    main()
