"""The 15 CIFAR-10-C corruptions (Hendrycks & Dietterich, ICLR 2019) at their 5 severities, with the CIFAR-10
parameters of the authors' generator (`make_cifar_c.py`), written here from those definitions with numpy, scipy
and Pillow, and seeded so that every run makes the same images.

    corrupt(images, "gaussian_noise", severity=3, seed=0)    # uint8 (N, 32, 32, 3) -> uint8 (N, 32, 32, 3)

Two departures, both documented in docs/robustness.md:
- motion blur (and the streaks of snow) re-implements ImageMagick's MotionBlurImage kernel (a one-sided
  Gaussian-weighted line at a random angle), since Wand/ImageMagick is not a dependency;
- frost blends procedurally drawn ice textures: the six frost photographs the original ships are not
  available offline, so the frost cells are not comparable with published CIFAR-10-C numbers.
Results are cast to uint8 by truncation, as the original's `np.uint8(...)` does.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
NOT_COMPARABLE = ("frost",)  # a substitute texture: published numbers for these cells do not apply


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian on (N, H, W, C) floats: spatial axes only, 'nearest' borders, truncate 4."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def gaussian_noise(x, severity, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    return np.clip(x / 255 + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    return np.clip(rng.poisson(x / 255 * c) / c, 0, 1) * 255


def impulse_noise(x, severity, rng):
    """Salt and pepper on a share `amount` of the values (skimage's random_noise 's&p', half salt)."""
    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    out = x / 255
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[hit & salt], out[hit & ~salt] = 1.0, 0.0
    return out * 255


def defocus_blur(x, severity, rng):
    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    # cv2.GaussianBlur(disk, (3, 3), alias_blur): a 3-tap Gaussian both ways, reflect-101 borders
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur**2))
    taps /= taps.sum()
    kernel = ndimage.convolve1d(ndimage.convolve1d(disk, taps, axis=0, mode="mirror"), taps, axis=1, mode="mirror")
    out = ndimage.convolve(x / 255, kernel[None, :, :, None], mode="mirror")  # cv2.filter2D: reflect-101
    return np.clip(out, 0, 1) * 255


def glass_blur(x, severity, rng):
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    out = (np.clip(_gaussian(x / 255, sigma), 0, 1) * 255).astype(np.uint8)
    rows = np.arange(len(x))
    for _ in range(iterations):  # bottom-right to top-left, each pixel takes a random neighbour's value
        for h in range(32 - delta, delta, -1):
            for w in range(32 - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, len(x)))  # like randint(-d, d): d excluded
                # The original writes `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on numpy views: the first
                # assignment overwrites what the second reads, so x[h', w'] keeps its value and x[h, w] takes it.
                # That copy, not a swap, is what the published CIFAR-10-C images were made with.
                out[rows, h, w] = out[rows, h + dy, w + dx]
    return np.clip(_gaussian(out / 255, sigma), 0, 1) * 255


def _motion_kernel_offsets(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """ImageMagick's MotionBlurImage: weights exp(-i^2 / 2 sigma^2) for i = 0..2r, at rounded offsets along
    the angle (one-sided)."""
    width = 2 * int(np.ceil(radius)) + 1
    i = np.arange(width)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angle)
    offsets = np.stack([np.ceil(i * np.sin(theta) - 0.5), np.ceil(i * np.cos(theta) - 0.5)], 1).astype(int)
    return weights, offsets  # offsets: (dy, dx)


def _motion_blur_one(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """image: float (H, W, C); edge pixels repeat beyond the border (ImageMagick's default)."""
    weights, offsets = _motion_kernel_offsets(radius, sigma, angle)
    pad = int(np.abs(offsets).max())
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    for weight, (dy, dx) in zip(weights, offsets, strict=True):
        out += weight * padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out


def motion_blur(x, severity, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angles = rng.uniform(-45, 45, len(x))
    return np.stack([np.clip(_motion_blur_one(img.astype(np.float64), radius, sigma, a), 0, 255)
                     for img, a in zip(x, angles, strict=True)])


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of (N, H, W, C) by `factor` (bilinear) and crop back to H x W."""
    h = x.shape[1]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    zoomed = ndimage.zoom(x[:, top : top + ch, top : top + ch], (1, factor, factor, 1), order=1)
    trim = (zoomed.shape[1] - h) // 2
    return zoomed[:, trim : trim + h, trim : trim + h]


def zoom_blur(x, severity, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    x = (x / 255).astype(np.float32)
    out = np.zeros_like(x)
    factors = np.arange(1, top, 0.01)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _plasma_fractal(rng: np.random.Generator, mapsize: int = 32, wibbledecay: float = 3) -> np.ndarray:
    """Diamond-square height map in [0, 1] (the original's plasma_fractal)."""
    grid = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        corners = grid[0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        grid[step // 2 : mapsize : step, step // 2 : mapsize : step] = (
            square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape))
        dr = grid[step // 2 : mapsize : step, step // 2 : mapsize : step]
        ul = grid[0:mapsize:step, 0:mapsize:step]
        left = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        grid[0:mapsize:step, step // 2 : mapsize : step] = left / 4 + wibble * rng.uniform(-wibble, wibble, left.shape)
        top = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        grid[step // 2 : mapsize : step, 0:mapsize:step] = top / 4 + wibble * rng.uniform(-wibble, wibble, top.shape)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min()
    return grid / grid.max()


def fog(x, severity, rng):
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    out = np.empty(x.shape)
    for i, img in enumerate(x / 255):
        top = img.max()
        foggy = img + strength * _plasma_fractal(rng, 32, decay)[..., None]
        out[i] = np.clip(foggy * top / (top + strength), 0, 1) * 255
    return out


@cache
def frost_textures(count: int = 6, size: int = 160) -> tuple[np.ndarray, ...]:
    """Ice-like textures drawn here (seeded): branching bright needles over a cold haze. They stand in for the
    six frost photographs of the original generator, which are not available offline."""
    rng = np.random.default_rng(2019)
    textures = []
    for _ in range(count):
        haze = ndimage.gaussian_filter(rng.random((size, size)), 6)
        haze = (haze - haze.min()) / (haze.max() - haze.min())
        canvas = Image.fromarray((60 + 70 * haze).astype(np.uint8), "L")
        draw = ImageDraw.Draw(canvas)
        for _ in range(260):
            x0, y0 = rng.uniform(0, size, 2)
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(int(rng.integers(1, 4))):  # a needle and its side branches
                length = rng.uniform(4, 26)
                x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
                draw.line([(x0, y0), (x1, y1)], fill=int(rng.integers(170, 255)), width=1)
                x0, y0, angle = (x0 + x1) / 2, (y0 + y1) / 2, angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        grey = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float64)
        textures.append(np.clip(np.stack([grey * 0.92, grey * 0.97, grey * 1.04], -1), 0, 255))
    return tuple(textures)


def frost(x, severity, rng):
    keep, add = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    textures = frost_textures()
    out = np.empty(x.shape)
    for i, img in enumerate(x):
        texture = textures[rng.integers(len(textures))]
        top, left = rng.integers(0, texture.shape[0] - 32, 2)
        out[i] = np.clip(keep * img + add * texture[top : top + 32, left : left + 32], 0, 255)
    return out


def snow(x, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    x = x.astype(np.float32) / 255
    layers = rng.normal(size=(len(x), 32, 32, 1), loc=loc, scale=scale)
    layers = _clipped_zoom(layers, zoom)
    layers[layers < threshold] = 0
    layers = np.floor(np.clip(layers, 0, 1) * 255) / 255  # the original round-trips the layer through 8-bit PNG
    angles = rng.uniform(-135, -45, len(x))
    streaks = np.stack([np.floor(_motion_blur_one(layer, radius, sigma, a) * 255) / 255
                        for layer, a in zip(layers, angles, strict=True)])
    grey = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]  # cv2's RGB2GRAY
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + streaks + np.rot90(streaks, k=2, axes=(1, 2)), 0, 1) * 255


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(x)


def brightness(x, severity, rng):
    from matplotlib.colors import hsv_to_rgb

    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    hsv = _rgb_to_hsv(x / 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def contrast(x, severity, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = x / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x, severity, rng):
    alpha, sigma, affine = (32 * v for v in [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                               (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][severity - 1])
    out = np.empty(x.shape)
    centre, half = 16.0, 32 // 3
    src = np.array([[centre + half, centre + half], [centre + half, centre - half], [centre - half, centre - half]])
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    for i, img in enumerate(x.astype(np.float32) / 255):
        dst = src + rng.uniform(-affine, affine, size=src.shape)
        # cv2.getAffineTransform + warpAffine: points are (x, y); warpAffine maps output <- input by the inverse
        forward = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # 2x3, (x, y) -> (x', y')
        inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
        matrix = inverse[::-1, :2][:, ::-1]  # to (row, col) order
        offset = inverse[::-1, 2]
        warped = np.stack([ndimage.affine_transform(img[..., ch], matrix, offset=offset, order=1, mode="mirror")
                           for ch in range(3)], -1)
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (32, 32)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (32, 32)), sigma, mode="reflect", truncate=3) * alpha
        out[i] = np.stack([ndimage.map_coordinates(warped[..., ch], [yy + dy, xx + dx], order=1, mode="reflect")
                           for ch in range(3)], -1)
    return np.clip(out, 0, 1) * 255


def pixelate(x, severity, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    small = int(32 * c)
    return np.stack([np.asarray(Image.fromarray(img).resize((small, small), Image.Resampling.BOX)
                                .resize((32, 32), Image.Resampling.BOX)) for img in x])


def jpeg_compression(x, severity, rng):
    quality = [80, 65, 58, 50, 40][severity - 1]
    out = []
    for img in x:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return np.stack(out)


CORRUPTIONS: dict[str, Callable] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "contrast": contrast,
    "elastic_transform": elastic_transform, "pixelate": pixelate, "jpeg_compression": jpeg_compression,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, 32, 32, 3) -> the same images corrupted; the same (images, name, severity, seed) give the same
    output."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"expected uint8 (N, 32, 32, 3) images, got {images.dtype} {images.shape}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1 to 5, got {severity}")
    index = list(CORRUPTIONS).index(name)
    rng = np.random.default_rng([seed, index, severity])
    out = np.asarray(CORRUPTIONS[name](images.copy(), severity, rng))
    return out if out.dtype == np.uint8 else np.clip(out, 0, 255).astype(np.uint8)
