"""The size an image file declares, read from its first bytes without a decoder: how heavy its decode will be.

Why not Pillow: `Image.open` parses every chunk before a PNG's pixel data, and that parsing is itself an attack
surface (125,000 private chunks, 9,485 colour profiles); it runs only in the decoding children
(models/decoder.py). This reader runs in the web worker, before a decode is scheduled, to route it: it looks at
fixed offsets (PNG, GIF, BMP, WebP) or walks a JPEG's segment headers, reads at most the first
`MAX_HEADER_BYTES`, and answers None for anything it does not recognise. None means "unknown", which callers
treat as heavy, so a file crafted to fool this reader gains nothing: the decoder's own limits still hold.
tests/test_image_header.py fuzzes it (any bytes: a size or None, never an exception) and checks it against
Pillow on real encodings.
"""

from __future__ import annotations

import struct

MAX_HEADER_BYTES = 256 * 1024  # a JPEG's frame header follows its EXIF and profiles; past this: unknown
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-15, not DHT, JPG, DAC


def declared_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) as the file's header declares them, or None when it cannot tell."""
    head = bytes(data[:MAX_HEADER_BYTES])
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return _sized("PNG", width, height)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return _sized("GIF", width, height)
        if head.startswith(b"BM"):
            (header_size,) = struct.unpack("<I", head[14:18])
            if header_size == 12:
                width, height = struct.unpack("<HH", head[18:22])
            else:
                width, height = struct.unpack("<ii", head[18:26])
            return _sized("BMP", abs(width), abs(height))
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(head)
    except struct.error:  # cut short
        return None
    return None


def _sized(kind: str, width: int, height: int) -> tuple[str, int, int] | None:
    return (kind, width, height) if width > 0 and height > 0 else None


def _webp(head: bytes) -> tuple[str, int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return _sized("WEBP", width, height) if len(head) >= 30 else None
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return _sized("WEBP", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return _sized("WEBP", width & 0x3FFF, height & 0x3FFF)
    return None


_PROGRESSIVE_FRAME_MARKERS = frozenset({0xC2, 0xC6, 0xCA, 0xCE})  # SOF2, 6, 10, 14


def progressive_jpeg(data: bytes) -> bool:
    """Whether `data` is a JPEG whose frame header says progressive. Such a file costs its full size to decode
    whatever scale it is decoded at: libjpeg keeps every coefficient of the whole image across its scans."""
    if data[:2] != b"\xff\xd8":
        return False
    frame = _jpeg_frame(data[:MAX_HEADER_BYTES])
    return frame is not None and frame[0] in _PROGRESSIVE_FRAME_MARKERS


def _jpeg(head: bytes) -> tuple[str, int, int] | None:
    frame = _jpeg_frame(head)
    return None if frame is None else _sized("JPEG", frame[1], frame[2])


def _jpeg_frame(head: bytes) -> tuple[int, int, int] | None:
    """(frame marker, width, height). Walk the segments after SOI: each is 0xFF, a marker, and (but for RSTn, SOI,
    EOI, TEM) a 2-byte length that counts itself. The first frame header (SOFn) holds the size; a scan (SOS)
    before it: unknown."""
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # TEM, SOI, RSTn: no length
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or a scan before any frame header
            return None
        (length,) = struct.unpack(">H", head[at + 2:at + 4])
        if length < 2:
            return None
        if marker in _JPEG_FRAME_MARKERS:
            if at + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return marker, width, height
        at += 2 + length
    return None
