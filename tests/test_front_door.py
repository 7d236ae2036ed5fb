"""serve.py's front door in-process, against a small echo server standing in for gunicorn: what it forwards,
what it refuses before reading, and the deadlines (shortened here)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import serve


class Echo(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        answer = json.dumps({"path": self.path, "headers": dict(self.headers), "body": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST


@pytest.fixture()
def door(monkeypatch):
    """(host, port) of a FrontDoor in a background event loop, in front of the echo server."""
    monkeypatch.setattr(serve, "HEADER_SECONDS", 1.0)
    monkeypatch.setattr(serve, "BODY_IDLE_SECONDS", 1.0)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    loop = asyncio.new_event_loop()
    front = serve.FrontDoor(upstream.server_address[1], max_body=100_000)
    server = loop.run_until_complete(asyncio.start_server(front.handle, "127.0.0.1", 0, limit=serve.MAX_HEADER_BYTES))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[:2]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    upstream.shutdown()


def exchange(address, data: bytes, pause_after: int | None = None, timeout: float = 10) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        if pause_after is None:
            sock.sendall(data)
        else:
            sock.sendall(data[:pause_after])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_a_complete_request_is_forwarded_with_forwarding_headers_and_without_hop_by_hop_ones(door):
    answer = exchange(door, b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nKeep-Alive: 5\r\n"
                            b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\nhello")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    echoed = json.loads(body)
    assert echoed["path"] == "/api/v1/predict" and echoed["body"] == 5
    headers = {k.lower(): v for k, v in echoed["headers"].items()}
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"  # the platform's hop, then the front door's
    assert headers["x-forwarded-proto"] == "https, http"
    assert headers["connection"] == "close" and "keep-alive" not in headers


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /api/v1/predict HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),  # refused before reading
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"411"),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", b"400"),  # smuggling
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
])
def test_bad_requests_are_answered_by_the_front_door(door, request_bytes, status):
    answer = exchange(door, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]


def test_api_errors_keep_the_api_error_shape(door):
    answer = exchange(door, b"POST /api/v1/predict HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["status"] == 413 and "larger than" in error["message"]


def test_silent_and_trickling_clients_get_a_408_at_the_deadline(door):
    start = time.monotonic()
    assert exchange(door, b"G", pause_after=1).startswith(b"HTTP/1.1 408")  # headers: 1 s here
    assert exchange(door, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", pause_after=40).startswith(
        b"HTTP/1.1 408")  # a body that stalls
    assert time.monotonic() - start < 5


def test_expect_100_continue_is_answered_before_the_body(door):
    with socket.create_connection(door, timeout=5) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"abc")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["body"] == 3
