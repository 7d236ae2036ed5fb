"""Fine-tune ImageNet MobileNetV2 on CIFAR-10 (45k train split), selecting on the 5k validation split.

    python -m models.mobilenetv2.train [--preset NAME] [--epochs N] [--out DIR] [--resume] [--set FIELD=VALUE ...]
                                       [--imagenet-weights PATH] [--cache-dir DIR]

Read top to bottom. On a 2-core CPU even the forward pass at 160 px runs only ~210 img/s
(bench/bench_mobilenetv2.py), and a full training step costs several times that, so:
  0. cache   the frozen lower blocks (input -> `CUT_LAYER`) run once over every training image and
             its mirror image, and over the validation images; stored as float16 .npy files.
  1. head    a linear classifier on the frozen network's pooled features (those are cached too,
             so this phase takes seconds).
  2. tune    the upper blocks + head train on the cached features, a random mirror view per image
             per epoch, BatchNorm kept in inference mode; the epoch with the best validation
             accuracy is kept. A checkpoint is written after every epoch (`--resume`).
The test split is never loaded here; `python -m models.evaluate mobilenetv2` does that, once.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import cifar10, commands, settings
from models.machine import describe_machine
from models.mobilenetv2 import net
from models.photo_damage import photo_damage

DEFAULT_CACHE = settings.get_path("XDG_CACHE_HOME") / "cifar10-compare" / "mobilenetv2"


# ----------------------------------------------------------------------------- hyperparameters
@dataclass
class Recipe:
    image_size: int = 160  # CIFAR's 32 px upscaled inside the graph; chosen by bench/bench_mobilenetv2.py
    cut_layer: str = net.CUT_LAYER  # layers up to here are frozen and cached; the rest is fine-tuned
    seed: int = 0
    batch_size: int = 128
    # phase 1: linear head on frozen pooled features
    head_epochs: int = 15
    head_lr: float = 1e-3
    # phase 2: fine-tune the upper blocks (AdamW, linear warm-up then cosine decay to 0)
    epochs: int = 10
    lr: float = 3e-4
    warmup_epochs: float = 0.5
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    dropout: float = 0.2
    cache_batch_size: int = 250
    # Photo damage (issue 20): `damaged_views` extra cached views of the training set (alternately from the
    # image and its mirror, each with its own draws) in which a share `noise_prob` of the images gets Gaussian
    # noise (std drawn from [0, noise_max], [0, 1] pixel units) and a share `fade_prob` is faded (contrast
    # x [fade_min, 1]); models/photo_damage.py. Each epoch draws one of all the views per image, uniformly.
    damaged_views: int = 2
    noise_prob: float = 0.7
    noise_max: float = 0.1
    fade_prob: float = 0.3
    fade_min: float = 0.15
    max_train_images: int | None = None  # a prefix of the training split (smoke tests, exploration)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


# ----------------------------------------------------------------------------- phase 0: feature cache
def compute_features(model: keras.Model, images: np.ndarray, batch: int, desc: str, progress: bool) -> np.ndarray:
    """Run `model` over uint8 images in batches; float16 output (half the memory, ample precision)."""
    from tqdm import tqdm

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    out = None
    for start in tqdm(range(0, len(images), batch), desc=desc, unit="batch", disable=not progress):
        chunk = forward(images[start : start + batch]).numpy().astype(np.float16)
        if out is None:
            out = np.empty((len(images), *chunk.shape[1:]), np.float16)
        out[start : start + len(chunk)] = chunk
    return out


def cached(path: Path, compute) -> np.ndarray:
    """Load `path` if a previous run wrote it, else compute and save it (atomically)."""
    if path.is_file():
        return np.load(path)
    array = compute()
    partial = path.with_suffix(".partial.npy")
    np.save(partial, array)
    partial.replace(path)
    return array


# ----------------------------------------------------------------------------- phase 2 data
class CachedViews(keras.utils.PyDataset):
    """One epoch of cached features: a shuffled order and, per image, one view (original, mirror or damaged).

    Epoch e's randomness depends only on (seed, e), so a resumed run replays the same epochs.
    """

    def __init__(self, views: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, epoch: int):
        super().__init__(workers=1, use_multiprocessing=False)
        rng = np.random.default_rng([seed, epoch])
        self.views, self.labels, self.batch_size = views, labels, batch_size
        self.order = rng.permutation(len(labels))
        self.view = rng.integers(0, len(views), len(labels))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        idx = self.order[rows]
        return self.views[self.view[rows], idx].astype(np.float32), keras.utils.to_categorical(self.labels[idx], 10)


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup_steps), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup_steps,
    )


def best_of(history: list[dict]) -> dict:
    """The selected epoch: highest validation accuracy, the later epoch on a tie (its weights were saved last)."""
    return max(history, key=lambda h: (h["val_acc"], h["epoch"]))


def accuracy_of(model: keras.Model, features: np.ndarray, labels: np.ndarray, batch: int) -> tuple[float, float]:
    logits = model.predict(features.astype(np.float32), batch_size=batch, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    return float((logits.argmax(1) == labels).mean()), float(loss)


# ----------------------------------------------------------------------------- phase 1
def fit_linear_head(recipe: Recipe, cache: Path, upper: keras.Model, head: keras.Model, train_features: np.ndarray,
                    mirror_features: np.ndarray, val_features: np.ndarray, train_labels: np.ndarray,
                    val_labels: np.ndarray, progress: bool) -> float:
    """Fit `head`'s logits layer on the pooled output of `upper` (as loaded: the pretrained blocks) over the cached
    lower-block features of the training images and their mirrors; the pooled features are cached too. Returns the
    linear probe's validation accuracy. Also the probe that models/mobilenetv2/average.py interpolates with."""
    bs = recipe.cache_batch_size
    pool = keras.Sequential([upper, keras.layers.GlobalAveragePooling2D()])
    pooled = [cached(cache / f"pooled_{name}.npy",
                     lambda a=array, n=name: compute_features(pool, a.astype(np.float32), bs, f"pool {n}", progress))
              for name, array in (("train", train_features), ("train_mirror", mirror_features), ("val", val_features))]
    dense = head.get_layer("logits")
    linear = keras.Sequential([keras.Input(pooled[0].shape[1:]), keras.layers.Dropout(recipe.dropout), dense])
    linear.compile(optimizer=keras.optimizers.Adam(recipe.head_lr),
                   loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing),
                   metrics=["accuracy"])
    onehot = keras.utils.to_categorical(np.concatenate([train_labels, train_labels]), 10)
    linear.fit(np.concatenate(pooled[:2]).astype(np.float32), onehot, batch_size=256, epochs=recipe.head_epochs,
               verbose=0, shuffle=True)
    return float((linear.predict(pooled[2].astype(np.float32), verbose=0).argmax(1) == val_labels).mean())


def feature_cache(recipe: Recipe, n_train: int, weights_path: Path, cache_dir: Path) -> Path:
    """The folder of cached features, keyed by everything that changes them."""
    key = hashlib.sha256(f"{recipe.image_size}|{recipe.cut_layer}|{n_train}|{weights_path.stat().st_size}".encode())
    cache = cache_dir / key.hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    return cache


# ----------------------------------------------------------------------------- the run
def train(recipe: Recipe, data_dir: str | None, imagenet_weights: str | None, out_dir: Path, work_dir: Path,
          cache_dir: Path, resume: bool, progress: bool = True) -> dict:
    started = time.time()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(recipe.threads)
        tf.config.threading.set_inter_op_parallelism_threads(recipe.threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process (e.g. a test): its thread pools are fixed by now
    keras.utils.set_random_seed(recipe.seed)
    weights_path = net.find_imagenet_weights(imagenet_weights)
    train_split = cifar10.load_split("train", data_dir)
    val_split = cifar10.load_split("val", data_dir)
    n_train = min(len(train_split), recipe.max_train_images or len(train_split))
    if recipe.batch_size > n_train:
        raise SystemExit(f"error: --batch-size {recipe.batch_size} exceeds the {n_train} training images")
    train_images, train_labels = train_split.images[:n_train], train_split.labels[:n_train]
    lower, upper = net.backbone_halves(recipe.image_size, weights_path, recipe.cut_layer)
    head = net.classifier_head(recipe.dropout)

    # ---- phase 0: lower-block features, cached on disk (keyed by everything that changes them)
    cache = feature_cache(recipe, n_train, weights_path, cache_dir)
    t0 = time.time()
    feature_model = net.lower_model(recipe.image_size, lower)
    bs = recipe.cache_batch_size
    views = [
        cached(cache / "train.npy", lambda: compute_features(feature_model, train_images, bs, "cache train", progress)),
        cached(cache / "train_mirror.npy",
               lambda: compute_features(feature_model, train_images[:, :, ::-1], bs, "cache mirror", progress)),
    ]
    damage = (recipe.noise_prob, recipe.noise_max, recipe.fade_prob, recipe.fade_min)
    damage_key = hashlib.sha256(f"{recipe.seed}|{damage}".encode()).hexdigest()[:8]
    for i in range(recipe.damaged_views):
        def damaged(i=i):
            base = train_images if i % 2 == 0 else train_images[:, :, ::-1]
            images = photo_damage(base, np.random.default_rng([recipe.seed, 20, i]), *damage)
            return compute_features(feature_model, images, bs, f"cache damaged view {i + 1}", progress)
        views.append(cached(cache / f"train_damaged{i}_{damage_key}.npy", damaged))
    views = np.stack(views)
    val_features = cached(cache / "val.npy",
                          lambda: compute_features(feature_model, val_split.images, bs, "cache val", progress))
    cache_seconds = time.time() - t0

    # ---- phase 1: linear head on the frozen network's pooled features
    t0 = time.time()
    head_val_acc = fit_linear_head(recipe, cache, upper, head, views[0], views[1], val_features, train_labels,
                                   val_split.labels, progress)
    print(f"phase 1 (linear head on frozen features): val acc {head_val_acc:.4f}", flush=True)
    head_seconds = time.time() - t0

    # ---- phase 2: fine-tune upper blocks + head on cached features
    model = net.trainable_model(upper, head)
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            warmup_cosine(recipe.lr, int(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch),
            weight_decay=recipe.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    last, best_weights, state_path = work_dir / "last.keras", work_dir / "best.weights.h5", work_dir / "state.json"
    recipe_dict = dataclasses.asdict(recipe)
    history: list[dict] = []
    resumed = False
    if resume and last.is_file() and state_path.is_file():
        state = json.loads(state_path.read_text())
        if {k: v for k, v in state["recipe"].items() if k != "threads"} != \
                {k: v for k, v in recipe_dict.items() if k != "threads"}:
            raise SystemExit(f"{last} was written with a different recipe; drop --resume or delete {work_dir}.")
        model = keras.models.load_model(last)
        upper, head = model.get_layer("mobilenetv2_upper"), model.get_layer("head")
        history, resumed = state["history"], True
        print(f"resuming after epoch {len(history)} of {recipe.epochs}", flush=True)
    for epoch in range(len(history), recipe.epochs):
        t0 = time.time()
        keras.utils.set_random_seed(recipe.seed * 1_000 + epoch)  # dropout masks replay on resume
        fit = model.fit(CachedViews(views, train_labels, recipe.batch_size, recipe.seed, epoch), epochs=1,
                        verbose=1 if progress else 0)
        train_seconds = time.time() - t0
        val_acc, val_loss = accuracy_of(model, val_features, val_split.labels, recipe.cache_batch_size)
        lr = float(model.optimizer.learning_rate)
        history.append({
            "epoch": epoch + 1, "phase": "fine-tune",
            "train_loss": fit.history["loss"][-1], "train_acc": fit.history["accuracy"][-1],
            "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
            "train_seconds": train_seconds, "seconds": time.time() - t0,
        })
        print(f"epoch {epoch + 1}/{recipe.epochs}: train acc {history[-1]['train_acc']:.4f}  val acc {val_acc:.4f}  "
              f"val loss {val_loss:.4f}  ({history[-1]['seconds']:.0f} s)", flush=True)
        if best_of(history) is history[-1]:
            model.save_weights(best_weights)
        partial = work_dir / "last.partial.keras"
        model.save(partial)
        partial.replace(last)
        state_path.write_text(json.dumps({"recipe": recipe_dict, "history": history}, indent=2))

    # ---- artefacts: the best epoch (by validation accuracy) as one uint8-in, probabilities-out model
    best = best_of(history)
    model.load_weights(best_weights)
    served = net.full_model(recipe.image_size, lower, upper, head)
    out_dir.mkdir(parents=True, exist_ok=True)
    served.save(out_dir / "model.keras")
    from models.mobilenetv2.export import export_saved_model, export_tflite

    export_saved_model(served, out_dir / "serving" / "1")
    export_tflite(served, out_dir / "model.tflite")
    wall = time.time() - started
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    config = {
        "architecture": {"backbone": "MobileNetV2 (alpha 1.0, ImageNet)", "cut_layer": recipe.cut_layer,
                         "image_size": recipe.image_size, "trainable_parameters": int(model.count_params()),
                         "parameters": int(served.count_params())},
        "class_names": list(train_split.class_names),
        "recipe": recipe_dict,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "imagenet_weights": weights_path.name,
        "train_images": n_train,
        "val_images": len(val_split),
        "head_only_val_acc": head_val_acc,
        "best_epoch": best["epoch"],
        "final_val_acc": best["val_acc"],
        "phase_seconds": {"cache": cache_seconds, "head": head_seconds,
                          "fine_tune": sum(h["seconds"] for h in history)},
        "wall_seconds": wall,
        "resumed": resumed,
        "threads": recipe.threads,
        "machine": describe_machine(),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"done in {wall / 60:.1f} min: best epoch {best['epoch']} val acc {best['val_acc']:.4f}", flush=True)
    return config


NO_DAMAGE = dict(damaged_views=0, noise_prob=0.0, fade_prob=0.0)
PRESETS: dict[str, dict] = {
    # The committed model: two extra cached views with photo damage, so half of each epoch's images come from
    # them (issue 20; 60.0 min on an AMD EPYC, 2 cores).
    "default": {},
    # The first committed model, without photo damage (run clean-10ep: 52.5 min on the same machine).
    "clean": NO_DAMAGE,
    # The exploration runs in runs/: 4 epochs on 10,000 images, to compare input sizes and cuts in minutes.
    "explore": dict(epochs=4, max_train_images=10_000, **NO_DAMAGE),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = commands.parser_for("mobilenetv2", __doc__, PRESETS)
    parser.add_argument("--imagenet-weights", default=None,
                        help=f"{net.WEIGHTS_FILE} (default: $KERAS_HOME/models/ or download)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="cached lower-block features")
    return parser.parse_args(argv)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The Recipe a command line asks for, checked (a bad value exits with a one-line error)."""
    recipe = commands.recipe_from_args(Recipe, PRESETS, args)
    if recipe.image_size < 32:
        raise SystemExit("error: image_size must be at least 32 (MobileNetV2 downsamples 32x)")
    if recipe.head_epochs < 0:
        raise SystemExit("error: head_epochs must be at least 0")
    return recipe


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    commands.announce_output("mobilenetv2", args.out)
    if not args.resume and args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    try:
        train(recipe, args.data_dir, args.imagenet_weights, args.out, args.work_dir, args.cache_dir, args.resume,
              progress=not args.no_progress)
    except (cifar10.Cifar10Error, net.ImagenetWeightsError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
