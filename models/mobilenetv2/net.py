"""MobileNetV2 for CIFAR-10, split in two so training can cache the frozen half.

The served model is one Keras graph: uint8 (N, 32, 32, 3) -> resize to `size` -> scale to [-1, 1]
-> frozen lower blocks -> fine-tuned upper blocks -> pooled 1280-d features -> 10 softmax
probabilities. No caller can get the preprocessing wrong because there is none outside the graph.

For training, the same graph is cut at `CUT_LAYER`: the lower half never changes, so its outputs
(for every training image and its mirror image) are computed once and cached, and each epoch only
pays for the upper half.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from models import settings

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + WEIGHTS_FILE
# Default cut: blocks 1-5 (all the layers at 1/2, 1/4 and 1/8 resolution) stay frozen; blocks 6-16 and Conv_1
# are fine-tuned. Cutting after block 12 instead trains 2.4x faster but reached 2.5 points less on validation.
CUT_LAYER = "block_5_add"
CIFAR_SIZE = 32


class ImagenetWeightsError(RuntimeError):
    """The ImageNet MobileNetV2 weights are not available (and could not be downloaded)."""


def find_imagenet_weights(explicit: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The no-top ImageNet weights file: an explicit path, Keras's cache ($KERAS_HOME/models), or a download."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ImagenetWeightsError(f"--imagenet-weights {path}: no such file (expected {WEIGHTS_FILE})")
        return path
    keras_home = settings.get_path("KERAS_HOME")
    cached = keras_home / "models" / WEIGHTS_FILE
    if cached.is_file():
        return cached
    problem = "downloading is disabled"
    if allow_download:
        try:
            return Path(keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models"))
        except Exception as exc:  # offline, DNS, HTTP error: all mean the same thing to the user
            problem = f"download from {WEIGHTS_URL} failed ({type(exc).__name__})"
    raise ImagenetWeightsError(
        f"MobileNetV2 ImageNet weights not found at {cached} and {problem}. Either pass "
        f"--imagenet-weights PATH (the file {WEIGHTS_FILE}) or set KERAS_HOME to a directory whose "
        f"models/ folder holds it."
    )


def backbone_halves(size: int, weights: str | os.PathLike | None, cut_layer: str = CUT_LAYER
                    ) -> tuple[keras.Model, keras.Model]:
    """(lower, upper): MobileNetV2 up to and after `cut_layer`, for [-1, 1] images of `size` px."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=1.0, include_top=False, weights=None if weights is None else str(weights)
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Keras 3 runs a BatchNormalization layer with trainable=False in inference mode whatever
            # `training` says; `upper(x, training=False)` alone does not reach layers of a nested model.
            layer.trainable = False
    cut = backbone.get_layer(cut_layer).output
    lower = keras.Model(backbone.input, cut, name="mobilenetv2_lower")
    upper = keras.Model(cut, backbone.output, name="mobilenetv2_upper")
    return lower, upper


def preprocessing(size: int) -> keras.Sequential:
    """uint8 CIFAR images -> float32 [-1, 1] at `size` px, exactly as MobileNetV2 was trained on ImageNet."""
    return keras.Sequential(
        [keras.layers.Resizing(size, size, interpolation="bilinear"), keras.layers.Rescaling(1 / 127.5, offset=-1.0)],
        name="preprocess",
    )


def classifier_head(dropout: float, num_classes: int = 10) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes, name="logits"),
        ],
        name="head",
    )


def lower_model(size: int, lower: keras.Model) -> keras.Model:
    """uint8 images -> cached features (what training computes once)."""
    images = keras.Input((CIFAR_SIZE, CIFAR_SIZE, 3), dtype="uint8", name="images")
    return keras.Model(images, lower(preprocessing(size)(images), training=False), name="lower_with_preprocess")


def trainable_model(upper: keras.Model, head: keras.Model) -> keras.Model:
    """Cached features -> logits. BatchNorm stays frozen in inference mode while the convolutions train."""
    features = keras.Input(upper.input.shape[1:], name="features")
    return keras.Model(features, head(upper(features, training=False)), name="upper_with_head")


def full_model(size: int, lower: keras.Model, upper: keras.Model, head: keras.Model) -> keras.Model:
    """The served model: uint8 (N, 32, 32, 3) -> (N, 10) probabilities."""
    images = keras.Input((CIFAR_SIZE, CIFAR_SIZE, 3), dtype="uint8", name="images")
    features = lower(preprocessing(size)(images), training=False)
    logits = head(upper(features, training=False), training=False)
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(images, probs, name="mobilenetv2_cifar10")
