"""models/image_header.py: the declared size of an upload, read without a decoder, against Pillow and a fuzzer."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from models.image_header import declared_size

ENCODINGS = {
    "PNG": dict(format="PNG"),
    "GIF": dict(format="GIF"),
    "BMP": dict(format="BMP"),
    "JPEG": dict(format="JPEG", quality=80),
    "JPEG with EXIF": dict(format="JPEG", exif=b"Exif\x00\x00" + bytes(4000)),
    "progressive JPEG": dict(format="JPEG", progressive=True),
    "lossy WebP": dict(format="WEBP", quality=60),
    "lossless WebP": dict(format="WEBP", lossless=True),
}


def encoded(width: int, height: int, mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (30, 120, 200) if mode == "RGB" else (30, 120, 200, 128)).save(buffer, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(ENCODINGS))
@pytest.mark.parametrize(("width", "height"), [(1, 1), (640, 480), (31, 4097), (5000, 3)])
def test_the_declared_size_is_the_one_pillow_reads(kind, width, height):
    data = encoded(width, height, **ENCODINGS[kind])
    with Image.open(io.BytesIO(data)) as image:
        assert declared_size(data) == (image.format, *image.size) == (image.format, width, height)


def test_webp_with_alpha_declares_its_canvas_and_unknown_formats_are_none():
    assert declared_size(encoded(300, 200, mode="RGBA", format="WEBP")) == ("WEBP", 300, 200)
    assert declared_size(encoded(300, 200, format="TIFF")) is None  # read by the decoder only: heavy
    assert declared_size(b"") is None and declared_size(b"not an image") is None


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_size_or_none_never_an_error(data):
    result = declared_size(data)
    assert result is None or (result[1] > 0 and result[2] > 0)


@settings(max_examples=1500, deadline=None)
@given(kind=st.sampled_from(list(ENCODINGS)), cut=st.integers(0, 400), flips=st.lists(
    st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=4))
def test_cut_or_damaged_real_headers_give_a_size_or_none(kind, cut, flips):
    data = bytearray(encoded(64, 48, **ENCODINGS[kind])[:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    result = declared_size(bytes(data))
    assert result is None or (result[1] > 0 and result[2] > 0)
