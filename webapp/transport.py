"""Read away the part of a request body the app answered without reading.

nginx hands gunicorn each request whole and keeps the connection for the next one; when the app refuses a
request before reading its body (a wrong content type, a bad parameter, a form with too many fields), gunicorn
reads away at most 64 KB of what is left and then closes the connection, and nginx, still writing the body,
answers 502 instead of the app's error. Reading the rest here (at most the 50 MB nginx let through, over a local
socket) keeps the connection whole, so every early answer reaches the client as the app wrote it.

And read a multipart form whose part headers are not UTF-8 (a file name in Latin-1, as some clients still send it).
"""

from __future__ import annotations

import contextlib

from flask import Flask, Response, request
from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder

CHUNK = 1 << 16


class LenientMultipartDecoder(MultipartDecoder):
    """Werkzeug's multipart decoder, except that a part's headers that are not UTF-8 are read as Latin-1.

    Werkzeug decodes each part's headers with `bytes.decode()`; a file name sent as raw Latin-1 bytes
    (`filename="caf\xe9.jpg"`) raises UnicodeDecodeError, a ValueError, which the form parser silently takes for
    a broken body: every file of the form vanished and the API answered 400 no_images. Read as Latin-1 (every
    byte is a character there), such a part is a file like the others, shown as "café.jpg". Werkzeug's
    MultiPartParser names its decoder class in its module rather than taking it as a parameter, so the class is
    replaced there (register below): every byte sequence the stock decoder accepts is decoded as before.
    """

    def _parse_headers(self, data: bytes | bytearray):
        try:
            bytes(data).decode()
        except UnicodeDecodeError:
            data = bytes(data).decode("latin-1").encode()
        return super()._parse_headers(data)


def register(app: Flask) -> None:
    formparser.MultipartDecoder = LenientMultipartDecoder

    @app.after_request
    def read_away_the_body(response: Response) -> Response:
        if request.content_length:
            # request.stream stops at the declared length (the server's own input may be the open socket, which
            # would wait for the next request); over the app's limit it raises, and gunicorn's 64 KB covers the
            # 64 KB nginx allows beyond that limit.
            with contextlib.suppress(Exception):
                stream = request.stream
                while stream.read(CHUNK):
                    pass
        return response
