"""The app's error shape for the answers that the servers in front of it give themselves.

nginx (deploy/start.py writes its error files) and gunicorn (deploy/worker.py) each refuse some requests before the
app sees them; a client must not be able to tell which layer answered: under /api/ every error is the API's JSON
`{"error": {"status", "code", "message"}}` (webapp/errors.py), elsewhere a short page. Nothing here imports Flask or
gunicorn, so both can use it.
"""

from __future__ import annotations

import html
import json

MAX_MESSAGE_CHARS = 300  # a message may quote what the client sent (a header name, a request line)


def is_api(path: str) -> bool:
    """Whether a request for `path` (a path, or an absolute URI as a proxy may send) gets the API's JSON."""
    if not path.startswith("/") and "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path.startswith("/api/")


def json_body(status: int, code: str, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "code": code, "message": message[:MAX_MESSAGE_CHARS]}}).encode()


def html_page(status: int, message: str) -> bytes:
    return (f'<!doctype html><html lang="en"><meta charset="utf-8"><title>Error {status}</title>'
            f'<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem">'
            f"<h1>{status}: something went wrong</h1><p>{html.escape(message[:MAX_MESSAGE_CHARS])}</p>"
            f'<p><a href="/">Back to the comparison page</a></p></body></html>\n').encode()
