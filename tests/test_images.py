"""Image intake: every mode to RGB, orientation, and a clear error for everything that is not an image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models.images import ImageIntakeError, decode_image
from tests.images_factory import HTML, PDF, SVG, animated_gif, encode, exif_rotated_jpeg, photo, png_declaring


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
