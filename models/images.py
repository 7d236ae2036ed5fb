"""Turn whatever a caller hands a predictor into the uint8 (N, S, S, 3) RGB batch a model expects.

Every predictor goes through `to_model_input`, so a 32x32 CIFAR array, a phone photo and a PNG with
alpha all reach the network the same way. Non-square images are centre-cropped to a square (objects
in photos are usually centred; squashing distorts them) and resized with antialiasing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# PIL widens the filter when shrinking (antialiased). Lanczos keeps the most accuracy on upscaled
# CIFAR-10 test images among the antialiased filters: bench/bench_resize_filters.py measures it.
RESAMPLE = Image.Resampling.LANCZOS


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB view of a PIL image; transparent pixels are composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to size x size (antialiased)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if side != width or side != height:
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return image


def to_model_input(images: np.ndarray | Sequence[Image.Image] | Sequence[np.ndarray], size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) array, or a list of PIL images / HxWx3 uint8 arrays -> uint8 (N, size, size, 3)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected a uint8 array of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        if images.shape[1:3] == (size, size):
            return images
        images = list(images)
    batch = []
    for item in images:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[-1] != 3:
                raise ValueError(f"expected uint8 (H, W, 3) arrays, got {item.dtype} {item.shape}")
            item = Image.fromarray(item, "RGB")
        elif not isinstance(item, Image.Image):
            raise TypeError(f"expected PIL images or uint8 arrays, got {type(item).__name__}")
        batch.append(np.asarray(square_resize(as_rgb(item), size), dtype=np.uint8))
    if not batch:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(batch)
