"""Photo damage for robust training (issue 20): Gaussian sensor noise and fading, on uint8 images.

The custom CNN's trainer draws the same two kinds of damage on the fly, in torch, on its normalised batches;
this numpy version is for MobileNetV2, whose trainer caches each augmented view of the training set once
(models/mobilenetv2/train.py), so a damaged view is a fixed array of uint8 images like the clean one.
"""

from __future__ import annotations

import numpy as np


def photo_damage(images: np.ndarray, rng: np.random.Generator, noise_prob: float, noise_max: float,
                 fade_prob: float, fade_min: float) -> np.ndarray:
    """A damaged copy of uint8 (N, H, W, C) images.

    A share `fade_prob` of the images has its contrast scaled by a factor drawn from [fade_min, 1] around each
    channel's mean (a washed-out photo); then a share `noise_prob` gets Gaussian noise of a standard deviation
    drawn from [0, noise_max] in [0, 1] pixel units (a dim, grainy photo). The result is clipped and rounded
    back to uint8, as a saved photo would be.
    """
    n = len(images)
    draws = rng.random((n, 4))
    fade = np.where(draws[:, 0] < fade_prob, fade_min + draws[:, 1] * (1 - fade_min), 1.0).astype(np.float32)
    sigma = np.where(draws[:, 2] < noise_prob, draws[:, 3] * noise_max * 255, 0.0).astype(np.float32)
    out = np.empty_like(images)
    for start in range(0, n, 1000):  # bounded float32 temporaries
        rows = slice(start, start + 1000)
        x = images[rows].astype(np.float32)
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = mean + (x - mean) * fade[rows, None, None, None]
        x += rng.standard_normal(x.shape, dtype=np.float32) * sigma[rows, None, None, None]
        out[rows] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out
