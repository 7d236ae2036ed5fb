"""Image intake: every mode to RGB, orientation, and a clear error for everything that is not an image."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from devkit.images import (
    HTML,
    PDF,
    SVG,
    animated_gif,
    encode,
    exif_rotated_jpeg,
    many_scan_jpeg,
    photo,
    png_declaring,
    sixteen_bit_png,
)
from models.images import DECODE_MIN_SIDE, ImageIntakeError, PixelBudget, decode_image, to_model_input


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
    # Small images are decoded as they are; other formats are shrunk by an integer factor after decoding,
    # with the same small effect on the model's input.
    assert decode_image(encode(smooth_photo(300, 200), "JPEG"), min_side=DECODE_MIN_SIDE).size == (300, 200)
    png = encode(smooth_photo(1200, 900), "PNG")
    shrunk = decode_image(png, min_side=DECODE_MIN_SIDE)
    assert shrunk.size == (400, 300) and shrunk.info["original_size"] == (1200, 900)
    difference = to_model_input([decode_image(png)], 32).astype(int) - to_model_input([shrunk], 32).astype(int)
    assert np.abs(difference).mean() < 2.0


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


SEEDS = [encode(photo(12, 9), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP")] + [animated_gif()]


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


# ----------------------------------------------------------------------------- CPU and memory bounds
def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding():
    bomb = many_scan_jpeg(1000, 750, 4000)  # 0.05 MB; decoding it took ~2 s (31 s at 4000x3000)
    start = time.perf_counter()
    with pytest.raises(ImageIntakeError, match="4000 progressive scans"):
        decode_image(bomb, min_side=DECODE_MIN_SIDE)
    assert time.perf_counter() - start < 0.1
    ordinary = encode(smooth_photo(800, 600), "JPEG", progressive=True)
    assert decode_image(ordinary).size == (800, 600)  # an encoder's usual ~10 scans are fine


def test_high_bit_depth_images_have_a_lower_pixel_limit():
    with pytest.raises(ImageIntakeError, match="12 megapixels for 16-bit"):
        decode_image(sixteen_bit_png(4000, 3100))
    small = decode_image(sixteen_bit_png(300, 200))
    assert small.mode == "RGB" and small.size == (300, 200)


def test_images_are_shrunk_right_after_decoding_but_keep_their_declared_size():
    decoded = decode_image(encode(smooth_photo(1800, 1200), "PNG"), min_side=DECODE_MIN_SIDE)
    assert decoded.size == (450, 300) and decoded.info["original_size"] == (1800, 1200)  # reduced 4x, >= 256
    assert decode_image(encode(smooth_photo(500, 300), "PNG"), min_side=DECODE_MIN_SIDE).size == (500, 300)


def test_a_request_budget_refuses_the_image_that_would_overdraw_it():
    budget = PixelBudget(1_000_000)
    image = encode(smooth_photo(800, 800), "PNG")  # 0.64 MP each
    decode_image(image, budget=budget)
    with pytest.raises(ImageIntakeError, match="1-megapixel decoding budget"):
        decode_image(image, budget=budget)
    assert budget.left == 1_000_000 - 640_000


def test_the_whole_photo_is_padded_to_a_square_with_its_border_colour():
    """Issue 41: a wide photo's centre square cut an eagle's wingtips. "whole" keeps every pixel, centred on a
    square of the mean colour of its border (background, not a black frame); "centre" leaves the image to the
    resize's centre crop; a square image is the same either way."""
    from models.images import CROPS, frame

    wide = Image.new("RGB", (200, 100), (40, 80, 120))
    wide.paste((250, 10, 10), (0, 40, 10, 60))  # a red wingtip at the very left edge
    wide.info["original_size"] = (4000, 2000)
    whole = frame(wide, "whole")
    assert whole.size == (200, 200) and whole.info["original_size"] == (4000, 2000)
    assert np.array_equal(np.asarray(whole)[50:150], np.asarray(wide))  # every pixel, centred
    border = np.concatenate([np.asarray(wide)[0], np.asarray(wide)[-1], np.asarray(wide)[:, 0],
                             np.asarray(wide)[:, -1]]).mean(axis=0).round()
    assert tuple(np.asarray(whole)[0, 0]) == tuple(border.astype(int))
    assert (to_model_input([whole], 32)[0, 14:18, 0, 0] > 150).all()  # the wingtip is in the view
    assert not (to_model_input([wide], 32)[0, :, :, 0] > 200).any()  # the centre square cuts it
    assert frame(wide, "centre") is wide and frame(Image.new("RGB", (50, 50)), "whole").size == (50, 50)
    assert CROPS == ("centre", "whole")
    with pytest.raises(ValueError, match="crop must be one of"):
        frame(wide, "diagonal")


def test_formats_pillow_decodes_in_python_are_refused_before_decoding():
    """Found by an independent attack: a 1.5 kB RLE8 BMP of 40000x100 made only of end-of-line codes took 0.9-2 s
    of a decoding child (Pillow decodes run-length BMPs in Python), and ten a second from five addresses filled
    every child. A decoder written in Python is refused from the header; an ordinary BMP still decodes."""
    from devkit.images import rle8_bmp

    crafted = rle8_bmp(40_000, 100, (b"\x01\x07" + b"\x00\x00") * 100)
    started = time.monotonic()
    with pytest.raises(ImageIntakeError, match="run-length"):
        decode_image(crafted, min_side=32)
    assert time.monotonic() - started < 0.1
    assert decode_image(encode(photo(40, 30), "BMP")).size == (40, 30)
