"""Read away the part of a request body the app answered without reading.

nginx hands gunicorn each request whole and keeps the connection for the next one; when the app refuses a
request before reading its body (a wrong content type, a bad parameter, a form with too many fields), gunicorn
reads away at most 64 KB of what is left and then closes the connection, and nginx, still writing the body,
answers 502 instead of the app's error. Reading the rest here (at most the 50 MB nginx let through, over a local
socket) keeps the connection whole, so every early answer reaches the client as the app wrote it.
"""

from __future__ import annotations

import contextlib

from flask import Flask, Response, request

CHUNK = 1 << 16


def register(app: Flask) -> None:
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
