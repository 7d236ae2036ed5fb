"""A loopback HTTP server with misbehaving routes (slow, huge, redirecting, not images) for the URL-fetching
tests and benchmarks; no network needed."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devkit.images import encode, photo

PNG = encode(photo(48, 48, seed=3), "PNG")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def send(self, status: int, body: bytes = b"", content_type: str = "image/png", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/image.png":
            self.send(200, PNG)
        elif path == "/image-no-type":
            self.send(200, PNG, content_type="application/octet-stream")
        elif path.startswith("/hops/"):  # /hops/N redirects N times, then serves the image
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self.send(200, PNG)
            else:
                self.send(302, headers={"Location": f"/hops/{left - 1}"})
        elif path == "/to-private":
            self.send(302, headers={"Location": "http://10.255.255.1/image.png"})
        elif path == "/to-metadata":
            self.send(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/loop":
            self.send(302, headers={"Location": "/loop"})
        elif path == "/html":
            self.send(200, b"<html><body>hello</body></html>", content_type="text/html; charset=utf-8")
        elif path == "/not-an-image":
            self.send(200, b"GIF89a but not really", content_type="image/gif")
        elif path == "/missing":
            self.send(404, b"not found", content_type="text/plain")
        elif path == "/declares-huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/silent":  # accepts the request, never answers
            time.sleep(30)
        elif path == "/trickle-headers":  # a valid answer, one byte of the status line and headers every 0.5 s
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
            try:
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/caf%C3%A9.jpg":  # a non-ASCII path, as the client must percent-encode it
            self.send(200, PNG)
        elif path == "/to-cafe":
            self.send(302, headers={"Location": "/café.jpg"})
        elif path == "/to-broken-ipv6":
            self.send(302, headers={"Location": "http://[::1/x"})
        else:
            self.send(404, b"no such route", content_type="text/plain")


class LocalServer:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
