"""Image intake: the one set of rules for every image a user hands the product (web, API, CLI).

`decode_image(bytes)` turns an upload into an RGB PIL image or raises `ImageIntakeError` with a
message fit to show the user: not an image, truncated, too many pixels (decompression bombs are
refused before decoding), or an unsupported format. EXIF orientation is applied; every Pillow
mode becomes RGB correctly (transparency composited on white, 16-bit scaled, CMYK converted, the
first frame of an animation).

`to_model_input` then turns images into the uint8 (N, S, S, 3) batch a model expects, so a 32x32
CIFAR array, a phone photo and a PNG with alpha all reach the network the same way. Non-square
images are centre-cropped to a square (objects in photos are usually centred; squashing distorts
them) and resized with antialiasing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import struct
import threading
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.image_header import declared_size

# PIL widens the filter when shrinking (antialiased). Lanczos keeps the most accuracy on upscaled
# CIFAR-10 test images among the antialiased filters: bench/bench_resize_filters.py measures it.
RESAMPLE = Image.Resampling.LANCZOS


# 40 megapixels: a 48 MP phone photo is rejected, everything a person normally uploads passes; a
# fully decoded 40 MP RGB image is 120 MB, the most one request may make this process allocate.
MAX_PIXELS = 40_000_000
# 16-bit and float images go through 4 bytes a pixel (and a float32 conversion): a lower limit keeps one of them
# near an 8-bit 40 MP image's memory.
MAX_HIGH_DEPTH_PIXELS = 12_000_000
# Pillow decodes WebP through libwebp's animation decoder, which holds about three full-size RGBA copies at once
# (a 40 MP lossless WebP of 2 kB raised the worker's RSS by 550 MB; bench/bench_attack.py --only budgets): the
# limit keeps one near a 40 MP PNG's cost. WebP photos on the web are far smaller; a 4096x4096 wallpaper (16.8 MP)
# is the largest common one, and an independent check found it refused at 16,000,000.
MAX_WEBP_PIXELS = 4096 * 4096
# A progressive JPEG is decoded once per scan (libjpeg re-reads every block each time): a 0.2 MB file of 4,000
# near-empty scans took 31 s. Encoders write about 10 scans; cost grows with scans x megapixels.
MAX_JPEG_SCANS = 64
MAX_JPEG_SCAN_MEGAPIXELS = 1_000  # ~0.6 s of decoding on the 2-core machine (bench/bench_attack.py)
# Callers that only need a thumbnail and a 32x32 model input shrink every image right after decoding (big
# JPEGs are even decoded at a reduced DCT scale), never below this many pixels per side (decode_image's
# min_side): enough for a 160 px thumbnail and an antialiased shrink to 32x32, and a request never holds more
# than one full-size decode at a time.
DECODE_MIN_SIDE = 256
# Images declaring more pixels than this are decoded one at a time per process (and freed memory is handed back
# after each): concurrent requests cannot stack several 120 MB decodes in one worker, and on 2 cores they would
# not run faster side by side anyway.
LARGE_DECODE_PIXELS = 8_000_000
_large_decode = threading.Lock()


def _return_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim) after a large decode: glibc keeps
    freed blocks for reuse, and a worker that decoded a 40 MP image otherwise stayed ~250 MB larger
    (bench/bench_attack.py). Only after large decodes: trimming on every request would cost time."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")
# Raster formats a browser or phone produces. SVG, PDF, EPS and friends are refused on purpose, and so is TIFF: no
# browser shows it and no phone writes it, and its decoding cost follows its strips and tiles rather than its size
# (2.6 million strips of one 16x16 image took 16 s), which took a hand-written reader of its directory to bound.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "MPO"})
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, either byte order
Image.init()  # every plugin registered, so that Image.open can be limited to the allowed ones
OPENERS = sorted(ALLOWED_FORMATS - {"MPO"})  # Pillow's JPEG opener also reads MPO files


class ImageIntakeError(ValueError):
    """An upload that is not a usable image; the message says why, in words a user understands."""


class DecoderBusy(ImageIntakeError):
    """Not a fault of the image: the server is decoding as many large images as it can right now. The web layer
    answers it with 429 and Retry-After rather than as that image's error."""

    retry_after = 2


class PixelBudget:
    """Decoded pixels one request may spend on all its images (CPU and memory of the decodes), shared by
    `decode_image` calls; an image that would overdraw it is refused with its own error."""

    def __init__(self, pixels: int):
        self.total, self.left = pixels, pixels

    def take(self, pixels: int) -> None:
        if pixels > self.left:
            raise ImageIntakeError(f"this image would take the request past its {self.total / 1e6:.0f}-megapixel "
                                   "decoding budget; send large images in separate requests")
        self.left -= pixels


def jpeg_scans(data: bytes) -> int:
    """Scans in a JPEG: SOS markers (0xFFDA). Entropy-coded data stuffs every 0xFF with 0x00, so the pair
    appears nowhere else (an EXIF thumbnail adds its own one scan)."""
    return data.count(b"\xff\xda")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int | None = None,
                 budget: PixelBudget | None = None) -> Image.Image:
    """Bytes of an uploaded file -> RGB PIL image (EXIF orientation applied, first frame of animations).

    With `min_side`, the image is shrunk right after decoding (by an integer factor, box filter) as long as
    both sides stay >= min_side, and a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling)
    to begin with: a 12 MP phone photo that will become 32x32 then costs a tenth of the decoding time and
    memory. `budget` is charged the pixels actually decoded. `image.info["original_size"]` is the
    (width, height) the file declares, after EXIF orientation, whether or not it was decoded smaller.
    """
    if not data:
        raise ImageIntakeError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged metadata (EXIF) it can skip
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if data[:4] in TIFF_SIGNATURES:
                raise ImageIntakeError("TIFF images are not accepted (no browser shows them); save it as PNG or JPEG")
            # A WebP's size from its header, before libwebp sees the bytes: Pillow's WebP opener decodes while it
            # opens, and over the decoding child's memory limit that failed as "damaged or truncated" (found by an
            # independent attack with a 6320x6320 lossless WebP), not as the limit it is over.
            declared = declared_size(data)
            if declared is not None and declared[0] == "WEBP" and declared[1] * declared[2] > min(max_pixels,
                                                                                                  MAX_WEBP_PIXELS):
                raise ImageIntakeError(f"the image is {declared[1]}x{declared[2]} pixels; the limit is "
                                       f"{min(max_pixels, MAX_WEBP_PIXELS) / 1e6:.3g} megapixels for WebP images")
            # Only the allowed formats' parsers ever see the bytes: Pillow otherwise tries every plugin in turn, and
            # some parse slowly (10 MB that look like EPS took 4.6 s before being refused).
            image = Image.open(io.BytesIO(data), formats=OPENERS)
            if image.format not in ALLOWED_FORMATS:
                raise ImageIntakeError(f"{image.format} images are not supported; send a JPEG, PNG, GIF, WebP "
                                       f"or BMP file")
            if any(tile.codec_name in Image.DECODERS for tile in image.tile):
                # Pillow's decoders written in Python (registered in Image.DECODERS; today the BMP's run-length
                # codings): each pixel a Python step, about 100x the C decoders' cost. A 1.5 kB RLE8 BMP of
                # 40000x100 took 0.9-2 s of a decoding child, and ten a second from five addresses filled every
                # child (found by an independent attack). No camera, browser or phone writes them.
                raise ImageIntakeError(f"this {image.format} uses a compression the server does not decode "
                                       "(run-length); save it as PNG or JPEG")
            width, height = image.size
            high_depth = image.mode in ("I", "F") or image.mode.startswith("I;16")
            limit = min(max_pixels, MAX_HIGH_DEPTH_PIXELS) if high_depth else max_pixels
            kind = " for 16-bit and floating-point images" if high_depth else ""
            if image.format == "WEBP" and limit > MAX_WEBP_PIXELS:
                limit, kind = MAX_WEBP_PIXELS, " for WebP images"
            if width * height > limit:
                raise ImageIntakeError(f"the image is {width}x{height} pixels; the limit is {limit / 1e6:.3g} "
                                       f"megapixels{kind}")
            if width < 1 or height < 1:
                raise ImageIntakeError("the image has no pixels")
            if image.format in ("JPEG", "MPO"):
                scans = jpeg_scans(data)
                if scans > MAX_JPEG_SCANS or scans * width * height / 1e6 > MAX_JPEG_SCAN_MEGAPIXELS:
                    raise ImageIntakeError(f"the JPEG has {scans} progressive scans; at {width}x{height} pixels "
                                           "decoding it would take too long (re-save it as a baseline JPEG)")
            image.seek(0)  # first frame of an animated GIF/WebP/PNG
            if min_side and image.format in ("JPEG", "MPO"):
                image.draft(None, (min_side, min_side))
            if budget is not None:
                budget.take(image.size[0] * image.size[1])
            # By the declared size: a progressive JPEG holds whole-image coefficient buffers even when decoded small;
            # WebP's decoder holds about three full-size copies.
            large = width * height * (3 if image.format == "WEBP" else 1) > LARGE_DECODE_PIXELS
            with _large_decode if large else contextlib.nullcontext():
                image.load()
                decoded_size = image.size
                ImageOps.exif_transpose(image, in_place=True)  # in place: no second full-size copy
                rotated = image.size != decoded_size
                original_size = (height, width) if rotated else (width, height)
                if min_side:
                    image = shrink(image, min_side)
                rgb = as_rgb(image)  # inside: a conversion that fails is the file's fault, never a server error
                del image  # the full-size decode goes before the next large one starts
                if large:
                    _return_freed_memory()
    except ImageIntakeError:
        raise
    except UnidentifiedImageError:
        raise ImageIntakeError("the file is not an image Pillow can read (JPEG, PNG, GIF, WebP, BMP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageIntakeError(f"the image declares too many pixels (limit {max_pixels / 1e6:.0f} megapixels)"
                               ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise ImageIntakeError(f"the image file is damaged or truncated ({type(exc).__name__})") from None
    rgb.info["original_size"] = original_size
    return rgb


def release_memory() -> None:
    """Hand freed heap memory back to the system after a request that decoded much: many mid-size decodes in
    parallel left a worker 2 GB larger (glibc keeps freed blocks)."""
    _return_freed_memory()


def shrink(image: Image.Image, min_side: int) -> Image.Image:
    """Reduce by the largest integer factor that keeps both sides >= min_side (box filter: fast, antialiased);
    the full-size decode can then be freed."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # reduce() takes 32-bit integers, not 16-bit
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce() does not take (e.g. CMYK, 1): shrink after the RGB conversion
        return as_rgb(image).reduce(factor)


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale -> 8-bit "L", scaled by the value range the mode allows."""
    sixteen_bit = image.mode.startswith("I;16")
    values = np.array(image, dtype=np.float32)  # a writable copy (of the already shrunk image)
    np.nan_to_num(values, copy=False)
    top = values.max(initial=0)
    if image.mode == "F" and top <= 1.0:
        values *= 255.0  # float images in [0, 1]
    elif image.mode != "F" and (sixteen_bit or top > 255):
        values /= 257.0  # 16-bit 0..65535 -> 0..255
    return Image.fromarray(np.clip(values, 0, 255, out=values).astype(np.uint8), "L")


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB view of a PIL image; transparent pixels are composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _high_bit_depth_to_8bit(image).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# How a photo becomes the square the models see: its centre square (what CIFAR-10's own images are, and the
# default), or the whole photo, padded to a square. A wide photo's centre square can cut the subject (an eagle's
# wingtips, and MobileNetV2 said "frog"); padding keeps it whole, smaller.
CROPS = ("centre", "whole")


def frame(image: Image.Image, crop: str) -> Image.Image:
    """The square the models see, before their own resizing: `crop` "centre" returns the image as it is (the
    resize centre-crops it); "whole" pads it to a square with the mean colour of its border, so the padding reads
    as background rather than as a black frame around the subject."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    width, height = image.size
    if crop == "centre" or width == height:
        return image
    rgb = as_rgb(image)
    pixels = np.asarray(rgb)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = tuple(int(c) for c in border.mean(axis=0).round())
    side = max(width, height)
    square = Image.new("RGB", (side, side), colour)
    square.paste(rgb, ((side - width) // 2, (side - height) // 2))
    square.info = dict(image.info)  # original_size and the like travel with it
    return square


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
