"""gunicorn's threaded worker (gthread), whose own error answers take the app's shape (gunicorn.conf.py selects it).

gunicorn refuses some requests before the app sees them, with an HTML page of its own: a header value with a control
character (`X-A: a\\x01b`), a raw byte outside printable ASCII in the path or query, a method it does not take, a
line over its limits. nginx passes such requests on, so these pages reached clients, under /api/ too, where every
error must be the API's JSON. gunicorn still decides whether and with which status to refuse (its
`handle_error(req, client, addr, exc)`); only what it writes is replaced: the API's JSON under /api/, a short page
elsewhere (deploy/answers.py), the same with or without nginx in front (`make run`).
"""

from __future__ import annotations

from gunicorn import util
from gunicorn.http.message import Message
from gunicorn.workers.gthread import ThreadWorker

from deploy.answers import html_page, is_api, json_body

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
         431: "request_header_too_large", 500: "internal_error", 501: "not_implemented"}
MESSAGES = {400: "The request is malformed", 414: "The address is too long", 431: "The request's headers are too large",
            500: "The server failed; try again", 501: "This transfer encoding is not supported"}


class _Captured:
    """The client's socket, except that what is sent is kept: gunicorn's own error answer, to read its status from."""

    def __init__(self, sock):
        self._sock, self.sent = sock, bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def request_path(req, exc: BaseException) -> str:
    """The path of the refused request, as far as gunicorn had read it ("" if it had not reached the path): the
    request it parsed, the request or request line the exception carries, the request being parsed when it was
    raised (gunicorn raises InvalidHeader(name) from inside the request it is parsing, without naming it), or the
    start of a request line too long to parse (the bytes its parser had read)."""
    traceback, parsing = exc.__traceback__, []
    while traceback is not None:
        scope = traceback.tb_frame.f_locals
        if isinstance(scope.get("self"), Message):
            parsing.append(scope["self"])
            if isinstance(scope.get("buf"), bytes | bytearray):
                parsing.append(bytes(scope["buf"]).split(b"\r\n", 1)[0].decode("latin-1"))
        traceback = traceback.tb_next
    for candidate in (req, getattr(exc, "req", None), *parsing):
        if isinstance(candidate, str):  # a request line ("GET /path HTTP/1.1") or a request target
            words = candidate.split(" ")
            return words[1] if len(words) > 1 else words[0]
        path = getattr(candidate, "path", None) or getattr(candidate, "uri", None)
        if isinstance(path, str) and path:
            return path
    return ""


def answer(status: int, reason: str, detail: str, path: str) -> bytes:
    message = f"{MESSAGES.get(status, reason)}: {detail}" if detail else f"{MESSAGES.get(status, reason)}."
    if is_api(path):
        body, kind = json_body(status, CODES.get(status, "error"), message), "application/json"
    else:
        body, kind = html_page(status, message), "text/html; charset=utf-8"
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


class JsonErrorThreadWorker(ThreadWorker):
    def handle_error(self, req, client, addr, exc):
        captured = _Captured(client)
        super().handle_error(req, captured, addr, exc)
        status_line = bytes(captured.sent).split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if len(status_line) < 3 or not status_line[1].isdigit():
            return  # gunicorn wrote nothing (the client had gone)
        status = int(status_line[1])
        detail = str(exc) if status < 500 else ""  # a client error names what was wrong; a server error nothing
        try:
            util.write_nonblock(client, answer(status, status_line[2], detail, request_path(req, exc)))
        except Exception:
            self.log.debug("Failed to send error message.")
