"""Image intake: every mode to RGB, orientation, and a clear error for everything that is not an image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from devkit.images import HTML, PDF, SVG, animated_gif, encode, exif_rotated_jpeg, photo, png_declaring
from models.images import DECODE_MIN_SIDE, ImageIntakeError, decode_image, to_model_input


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return image.getpixel(xy)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (np.random.default_rng(0).bytes(5000), "not an image"),
    (encode(photo(), "JPEG")[:300], "damaged or truncated"),
    (encode(photo(), "PNG")[:200], "damaged or truncated"),
    (SVG, "not an image"),
    (HTML, "not an image"),
    (PDF, "not an image"),
    (png_declaring(30_000, 30_000), "megapixels"),
])
def test_non_images_get_a_clear_error(data, message):
    with pytest.raises(ImageIntakeError, match=message):
        decode_image(data)


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((1, 1), (0, 0, 255, 255))
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.mode == "RGB" and pixel(decoded) == (255, 255, 255) and pixel(decoded, (1, 1)) == (0, 0, 255)


def test_palette_with_transparency_and_la_are_composited_on_white():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    decoded = decode_image(encode(palette, "PNG", transparency=0))
    assert pixel(decoded) == (255, 255, 255) and pixel(decoded, (1, 1)) == (255, 0, 0)
    la = Image.new("LA", (4, 4), (0, 0))
    assert pixel(decode_image(encode(la, "PNG"))) == (255, 255, 255)


def test_cmyk_grayscale_and_16_bit_become_rgb():
    cmyk = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100))
    assert cmyk.mode == "RGB" and pixel(cmyk)[0] > 200 and pixel(cmyk)[1] < 60
    gray = decode_image(encode(Image.new("L", (8, 8), 77), "PNG"))
    assert pixel(gray) == (77, 77, 77)
    sixteen = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    decoded = decode_image(encode(sixteen, "PNG"))
    assert decoded.mode == "RGB" and abs(pixel(decoded)[0] - 127) <= 1


def test_exif_orientation_is_applied():
    decoded = decode_image(exif_rotated_jpeg())
    assert decoded.size == (20, 40)  # rotated: portrait now
    red, blue = pixel(decoded, (10, 5)), pixel(decoded, (10, 35))
    assert red[0] > 200 and blue[2] > 200  # 90 degrees clockwise: left (red) half ends on top


def smooth_photo(width: int, height: int) -> Image.Image:
    """A photo-like image (smooth gradients and a disc) that JPEG and downscaling both treat kindly."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 97.0)], axis=-1)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 3) ** 2
    rgb[disc] = (220, 40, 40)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def test_big_jpegs_decode_at_a_reduced_scale_that_keeps_min_side():
    data = encode(smooth_photo(4000, 3000), "JPEG", quality=90)
    full = decode_image(data)
    reduced = decode_image(data, min_side=DECODE_MIN_SIDE)
    assert full.size == (4000, 3000) and full.info["original_size"] == (4000, 3000)
    assert reduced.size == (500, 375)  # 1/8 scale: the smallest that keeps both sides >= 256
    assert reduced.info["original_size"] == (4000, 3000)
    # What the models see hardly changes: the 32x32 inputs differ by a couple of grey levels on average.
    difference = to_model_input([full], 32).astype(int) - to_model_input([reduced], 32).astype(int)
    assert np.abs(difference).mean() < 2.0
    # Small images and non-JPEG formats are decoded as they are.
    assert decode_image(encode(smooth_photo(300, 200), "JPEG"), min_side=DECODE_MIN_SIDE).size == (300, 200)
    assert decode_image(encode(smooth_photo(1200, 900), "PNG"), min_side=DECODE_MIN_SIDE).size == (1200, 900)


def test_original_size_follows_exif_orientation_when_decoded_smaller():
    image = smooth_photo(2400, 1200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise: portrait once shown
    data = encode(image, "JPEG", exif=exif.tobytes(), quality=90)
    reduced = decode_image(data, min_side=DECODE_MIN_SIDE)
    assert reduced.info["original_size"] == (1200, 2400)
    assert reduced.size == (300, 600)  # 1/4 scale keeps the short side >= 256, then rotated


def test_first_frame_of_an_animation():
    decoded = decode_image(animated_gif())
    assert decoded.mode == "RGB" and pixel(decoded)[0] > 200 and pixel(decoded)[1] < 50


@pytest.mark.parametrize("size", [(1, 1), (10_000, 20), (20, 10_000)])
def test_extreme_shapes_decode(size):
    decoded = decode_image(encode(Image.new("RGB", size, (0, 128, 0)), "PNG"))
    assert decoded.size == size


def test_pixel_cap_is_configurable():
    data = encode(photo(100, 100), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageIntakeError, match="megapixels"):
        decode_image(data, max_pixels=9_999)


SEEDS = [encode(photo(12, 9), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")] + [animated_gif()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_mutated_images_decode_or_raise_the_intake_error(seed, data):
    """Random byte flips, truncations and insertions: a valid RGB image or ImageIntakeError, nothing else."""
    blob = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(blob) - 1)))
        if op == "flip" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(max_size=16))
    try:
        image = decode_image(bytes(blob))
    except ImageIntakeError:
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    np.asarray(image)  # the pixels are really there


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_intake(blob):
    try:
        image = decode_image(blob)
    except ImageIntakeError:
        return
    assert image.mode == "RGB"


def test_decoded_images_feed_the_model_input_path():
    from models.images import to_model_input

    images = [decode_image(encode(photo(300, 200), "JPEG")), decode_image(exif_rotated_jpeg())]
    assert to_model_input(images, 32).shape == (2, 32, 32, 3)
