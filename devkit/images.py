"""Image files made in memory: ordinary photos, odd formats and hostile ones (tests and benchmarks)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's calling card)."""
    chunk = png_chunk
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def png_with_chunks(kind: bytes, payload: bytes, count: int, size: int = 8) -> bytes:
    """A small PNG with `count` copies of one ancillary chunk before its pixels: private chunks (Pillow keeps each
    in a list) or colour profiles (iCCP: each is decompressed), legal and slow to parse."""
    plain = encode(Image.new("RGB", (size, size), (90, 120, 150)), "PNG")
    cut = plain.index(b"IDAT") - 4
    return plain[:cut] + png_chunk(kind, payload) * count + plain[cut:]


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG (left half red, right half blue) whose EXIF says 'rotate 90 CW' (orientation 6)."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


# ----------------------------------------------------------------------------- CPU and memory bombs
def smooth(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth colour field (compresses like a photo, unlike noise): gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(1, width), y / max(1, height), (x + y) / max(1, width + height)], axis=-1) * 255
    return Image.fromarray(np.clip(base + rng.normal(0, 3, (1, width, 3)), 0, 255).astype(np.uint8), "RGB")


def jpeg_segments(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(everything before the first scan, each scan with its entropy-coded data, EOI) of a JPEG."""
    first = data.index(b"\xff\xda")
    scans, start = [], first
    while True:
        next_sos = data.find(b"\xff\xda", start + 2)
        if next_sos == -1:
            scans.append(data[start:-2])
            return data[:first], scans, data[-2:]
        scans.append(data[start:next_sos])
        start = next_sos


def many_scan_jpeg(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated until it has `scans` scans: libjpeg re-reads
    the whole image for every one, so a small file costs seconds to decode."""
    flat = Image.new("RGB", (width, height), (120, 130, 140))  # near-empty scans: a tiny file
    head, real, eoi = jpeg_segments(encode(flat, "JPEG", progressive=True, quality=90))
    return head + b"".join(real) + real[-1] * max(0, scans - len(real)) + eoi


def gif_with_tiny_sub_blocks(width: int, height: int) -> bytes:
    """A GIF whose LZW data is split into 1-byte sub-blocks (legal; the slowest layout to parse)."""
    data = encode(Image.new("P", (width, height), 0), "GIF")
    image_start = data.index(b"\x2c")  # image descriptor
    lzw_min = image_start + 10
    blocks, position, payload = [], lzw_min + 1, b""
    while data[position] != 0:
        size = data[position]
        payload += data[position + 1 : position + 1 + size]
        position += 1 + size
    blocks = b"".join(b"\x01" + bytes([byte]) for byte in payload)
    return data[: lzw_min + 1] + blocks + b"\x00" + data[position + 1 :]


def sixteen_bit_png(width: int, height: int) -> bytes:
    values = (np.arange(width * height, dtype=np.uint32) % 65536).astype(np.uint16).reshape(height, width)
    return encode(Image.fromarray(values), "PNG")  # uint16 -> mode I;16


def float_tiff(width: int, height: int) -> bytes:
    """A deflate-compressed 32-bit float TIFF (a few steps of grey: small on disk, 4 bytes a pixel decoded)."""
    values = (np.arange(width * height, dtype=np.float32).reshape(height, width) // (width * height // 8)) / 8
    return encode(Image.fromarray(values, "F"), "TIFF", compression="tiff_adobe_deflate")


# ----------------------------------------------------------------------------- out of scope
def out_of_scope() -> dict[str, Image.Image]:
    """Images that show none of the 10 CIFAR-10 classes, drawn here (no download): noise, flat fields,
    gradients, patterns, a chart, text, an icon, a face and a room sketched with shapes."""
    from PIL import ImageDraw

    rng = np.random.default_rng(7)
    images: dict[str, Image.Image] = {}
    for seed in range(3):
        images[f"noise {seed}"] = photo(128, 128, seed=seed)
    images["blank white"] = Image.new("RGB", (128, 128), (255, 255, 255))
    images["blank black"] = Image.new("RGB", (128, 128), (0, 0, 0))
    images["grey page"] = Image.new("RGB", (128, 128), (200, 200, 200))
    images["gradient"] = smooth(128, 128)
    y, x = np.mgrid[0:128, 0:128]
    images["checkerboard"] = Image.fromarray(((((x // 16) + (y // 16)) % 2) * 255).astype(np.uint8)).convert("RGB")
    images["stripes"] = Image.fromarray(np.stack([(x % 20 < 10) * 255, y * 2, 128 + 0 * x], -1).astype(np.uint8))
    rings = (np.hypot(x - 64, y - 64) // 8 % 2 * 255).astype(np.uint8)
    images["rings"] = Image.merge("RGB", [Image.fromarray(rings)] * 3)
    chart = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(chart)
    for i, h in enumerate(rng.integers(20, 100, 6)):
        draw.rectangle([10 + 24 * i, 110 - int(h), 28 + 24 * i, 110], fill=(40, 90, 200))
    draw.line([8, 110, 152, 110], fill="black", width=2)
    images["bar chart"] = chart
    text = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(text).multiline_text((8, 20), "Quarterly report\nRevenue up 4%\nCosts flat", fill="black")
    images["text"] = text
    icon = Image.new("RGB", (128, 128), (230, 240, 255))
    ImageDraw.Draw(icon).regular_polygon((64, 64, 40), 6, fill=(220, 60, 60))
    images["icon"] = icon
    face = Image.new("RGB", (128, 128), (240, 230, 220))
    draw = ImageDraw.Draw(face)
    draw.ellipse([24, 14, 104, 114], fill=(230, 190, 160))
    draw.ellipse([46, 48, 58, 60], fill="black")
    draw.ellipse([70, 48, 82, 60], fill="black")
    draw.arc([48, 70, 80, 96], 20, 160, fill=(150, 40, 40), width=3)
    images["face sketch"] = face
    room = Image.new("RGB", (160, 120), (210, 200, 180))
    draw = ImageDraw.Draw(room)
    draw.polygon([(0, 120), (40, 80), (120, 80), (160, 120)], fill=(150, 110, 80))
    draw.rectangle([60, 20, 100, 60], fill=(170, 210, 240), outline="white", width=3)
    draw.rectangle([20, 70, 55, 100], fill=(90, 60, 40))
    images["room sketch"] = room
    blob = np.clip(255 * np.exp(-((x - 64) ** 2 + (y - 60) ** 2) / 900.0) + rng.normal(0, 12, (128, 128)), 0, 255)
    images["scan-like blob"] = Image.fromarray(blob.astype(np.uint8)).convert("RGB")
    return images


def out_of_scope_photos() -> dict[str, Image.Image]:
    """Real photographs and scans that show none of the 10 classes, from scikit-image's bundled data
    (requirements-dev.txt; no download): people, objects, textures, medical and astronomical images, text, and
    every tenth of the 200 grey face crops of its LFW subset."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    names = ("astronaut.png", "camera.png", "coffee.png", "coins.png", "moon.png", "page.png", "text.png",
             "rocket.jpg", "motorcycle_left.png", "brick.png", "grass.png", "gravel.png", "cell.png", "ihc.png",
             "microaneurysms.png", "retina.jpg", "hubble_deep_field.jpg", "clock_motion.png", "logo.png",
             "color.png", "phantom.png", "chessboard_RGB.png")
    photos = {Path(name).stem: Image.open(folder / name).convert("RGB") for name in names}
    faces = np.load(folder / "lfw_subset.npy")
    for i in range(0, len(faces), 10):
        photos[f"face {i}"] = Image.fromarray((255 * faces[i]).astype(np.uint8)).convert("RGB")
    return photos


def tiff_with_strips(count: int, width: int = 16, height: int = 16) -> bytes:
    """An 8-bit grey TIFF whose first directory lists `count` strips, every one pointing at the same row."""
    row = bytes(width)
    offsets_at = 8 + len(row)
    counts_at = offsets_at + 4 * count
    directory_at = counts_at + 4 * count
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, count, offsets_at), (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, count, counts_at)]
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, n, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, n, value)
        for tag, kind, n, value in entries) + struct.pack("<I", 0)
    return (b"II*\x00" + struct.pack("<I", directory_at) + row + struct.pack(f"<{count}I", *[8] * count)
            + struct.pack(f"<{count}I", *[width] * count) + directory)


def tiff_with_tile(tile: int, width: int = 16, height: int = 16) -> bytes:
    """A deflate-tiled grey TIFF of width x height whose one tile is tile x tile: libtiff allocates the tile."""
    data = zlib.compress(bytes(tile * tile), 9)
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
               (277, 3, 1, 1), (322, 3, 1, tile), (323, 3, 1, tile), (324, 4, 1, 8), (325, 4, 1, len(data))]
    directory_at = 8 + len(data) + (len(data) % 2)
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, n, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, n, value)
        for tag, kind, n, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", directory_at) + data + bytes(len(data) % 2) + directory


def rle8_bmp(width: int, height: int, codes: bytes) -> bytes:
    """A BMP with run-length (RLE8) compression: Pillow decodes it in Python (the fifth independent attack)."""
    palette = b"".join(struct.pack("<BBBB", i, i, i, 0) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(codes), 2835, 2835, 256, 0)
    offset = 14 + 40 + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(codes), 0, 0, offset) + info + palette + codes
