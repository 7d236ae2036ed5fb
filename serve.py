"""The production entry point: a buffering front door on $PORT, gunicorn (gunicorn.conf.py, app:app) behind it.

    python serve.py        # Procfile, Dockerfile, make run

gunicorn's threads wait for a complete request with no deadline, so 16 sockets that send one byte and fall
silent took the whole service down. Here an asyncio loop owns every client connection until its request is
complete — request line and headers within HEADER_SECONDS, the body with no silence longer than
BODY_IDLE_SECONDS and at least BODY_MIN_RATE bytes/s once it has taken longer than that — and only then
hands it, whole, to gunicorn on a private Unix socket; the answer is buffered back the same way. A slow
client costs a coroutine and its bytes, never a request thread. Bodies larger than the app accepts are
refused before they are read, and all the bodies held at once are capped (BUFFER_BYTES: beyond it, 503).

The front door appends its peer to X-Forwarded-For and "http" to X-Forwarded-Proto, and tells the app it is
there (FRONT_DOOR=1), so the app trusts one more proxy hop than TRUSTED_PROXY_HOPS. It relays SIGTERM: it
stops accepting, lets requests in flight finish (up to gunicorn's graceful timeout), then stops gunicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models import settings

ROOT = Path(__file__).resolve().parent
HEADER_SECONDS = 10.0  # request line + headers, in total
BODY_IDLE_SECONDS = 10.0  # the longest silence while a body arrives
BODY_MIN_RATE = 16 * 1024  # bytes/s on average, once a body has taken longer than BODY_IDLE_SECONDS
MAX_HEADER_BYTES = 64 * 1024
BUFFER_BYTES = 256 * 1024 * 1024  # request bodies held at once, all connections together
UPSTREAM_SECONDS = 150.0  # gunicorn's own timeout (120 s) plus slack
SEND_SECONDS = 60.0  # to hand a whole answer to a client that reads slowly
GRACEFUL_SECONDS = 30.0  # = gunicorn.conf.py's graceful_timeout and railway.json's drainingSeconds
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}


class Rejected(Exception):
    """Answer the client with this status and message, then close."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason = status, reason


def max_body_bytes() -> int:
    """What the app accepts per request (APP_MAX_CONTENT_LENGTH, else its 50 MB default), plus form overhead."""
    return int(settings.app_overrides().get("MAX_CONTENT_LENGTH", settings.MAX_CONTENT_LENGTH)) + 64 * 1024


def error_answer(status: int, reason: str, message: str, path: bytes) -> bytes:
    """The app's error shape: JSON under /api/, a short page elsewhere."""
    if path.startswith(b"/api/"):
        body = json.dumps({"error": {"status": status, "code": reason.lower().replace(" ", "_"),
                                     "message": message}}).encode()
        kind = b"application/json"
    else:
        body = f"<!doctype html><title>{status} {reason}</title><h1>{reason}</h1><p>{message}</p>".encode()
        kind = b"text/html; charset=utf-8"
    return (f"HTTP/1.1 {status} {reason}\r\n".encode() + b"Content-Type: " + kind +
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


class FrontDoor:
    def __init__(self, upstream: str | int, max_body: int):
        self.upstream, self.max_body = upstream, max_body  # a Unix socket path (serve) or a loopback port (tests)
        self.buffered = 0  # body bytes held right now
        self.in_flight: set[asyncio.Task] = set()

    async def read_head(self, reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_SECONDS)
        except TimeoutError:
            raise Rejected(408, "Request Timeout", f"the request headers took longer than {HEADER_SECONDS:g} s") \
                from None
        except asyncio.LimitOverrunError:
            raise Rejected(431, "Request Header Fields Too Large", "the request headers are too large") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError from None
        lines = head[:-4].split(b"\r\n")
        request_line, headers = lines[0], []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise Rejected(400, "Bad Request", "a request header is malformed")
            headers.append((name, value.strip()))
        return request_line, headers, head

    async def read_body(self, reader: asyncio.StreamReader, length: int) -> bytes:
        chunks, received, start = [], 0, time.monotonic()
        while received < length:
            try:
                chunk = await asyncio.wait_for(reader.read(min(1 << 16, length - received)), BODY_IDLE_SECONDS)
            except TimeoutError:
                raise Rejected(408, "Request Timeout", f"the upload stalled for {BODY_IDLE_SECONDS:g} s") from None
            if not chunk:
                raise ConnectionResetError
            chunks.append(chunk)
            received += len(chunk)
            elapsed = time.monotonic() - start
            if elapsed > BODY_IDLE_SECONDS and received / elapsed < BODY_MIN_RATE:
                raise Rejected(408, "Request Timeout", "the upload is too slow")
        return b"".join(chunks)

    def upstream_request(self, request_line: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                         peer: str) -> bytes:
        kept = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP]
        forwarded_for = [v for n, v in kept if n.lower() == b"x-forwarded-for"]
        forwarded_proto = [v for n, v in kept if n.lower() == b"x-forwarded-proto"]
        kept = [(n, v) for n, v in kept if n.lower() not in (b"x-forwarded-for", b"x-forwarded-proto")]
        kept.append((b"X-Forwarded-For", b", ".join([*forwarded_for, peer.encode()])))
        kept.append((b"X-Forwarded-Proto", b", ".join([*forwarded_proto, b"http"])))
        kept.append((b"Connection", b"close"))
        return request_line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in kept) + b"\r\n" + body

    async def relay(self, data: bytes) -> bytes:
        try:
            connect = asyncio.open_connection("127.0.0.1", self.upstream) if isinstance(self.upstream, int) \
                else asyncio.open_unix_connection(self.upstream)
            reader, writer = await asyncio.wait_for(connect, 5)
        except (OSError, TimeoutError):
            raise Rejected(503, "Service Unavailable", "the server is starting or restarting; try again in a "
                                                       "few seconds") from None
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), UPSTREAM_SECONDS)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.in_flight.add(task)
        peer = (writer.get_extra_info("peername") or ("unknown",))[0]
        path, held = b"/", 0
        try:
            request_line, headers, _ = await self.read_head(reader)
            parts = request_line.split(b" ")
            path = parts[1] if len(parts) == 3 else b"/"
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                raise Rejected(400, "Bad Request", "the request line is malformed")
            names = {n.lower(): v for n, v in headers}
            if b"transfer-encoding" in names:
                raise Rejected(411, "Length Required", "send the body with a Content-Length")
            if len({v for n, v in headers if n.lower() == b"content-length"}) > 1:  # request smuggling
                raise Rejected(400, "Bad Request", "the request has conflicting Content-Length headers")
            try:
                length = int(names.get(b"content-length", b"0"))
            except ValueError:
                raise Rejected(400, "Bad Request", "the Content-Length is not a number") from None
            if length < 0:
                raise Rejected(400, "Bad Request", "the Content-Length is negative")
            if length > self.max_body:
                raise Rejected(413, "Request Entity Too Large", f"the request is larger than "
                                                                f"{(self.max_body - 65536) / 1048576:.0f} MB")
            if self.buffered + length > BUFFER_BYTES:
                raise Rejected(503, "Service Unavailable", "the server is busy receiving other uploads; try again")
            self.buffered += length
            held = length
            if names.get(b"expect", b"").lower() == b"100-continue" and length:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits a second for this before a big upload
            body = await self.read_body(reader, length)
            answer = await self.relay(self.upstream_request(request_line, headers, body, peer))
            del body
            writer.write(answer)
            await asyncio.wait_for(writer.drain(), SEND_SECONDS)
        except Rejected as rejected:
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(error_answer(rejected.status, rejected.reason, str(rejected), path))
                await asyncio.wait_for(writer.drain(), 5)
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            self.buffered -= held
            self.in_flight.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def start_gunicorn(socket_path: str) -> subprocess.Popen:
    """gunicorn on a Unix socket in a private folder (no port to collide with, nothing reachable from outside),
    in its own session (a signal to this process group is for the front door,
    which relays it), and told to exit if this process dies."""

    def die_with_parent() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    env = {**os.environ, "GUNICORN_BIND": f"unix:{socket_path}", "FRONT_DOOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
                            cwd=ROOT, env=env, start_new_session=True, preexec_fn=die_with_parent)


async def serve() -> int:
    private = tempfile.mkdtemp(prefix="cifar10-compare-")
    os.chmod(private, 0o700)
    upstream = os.path.join(private, "gunicorn.sock")
    gunicorn = start_gunicorn(upstream)
    door = FrontDoor(upstream, max_body_bytes())
    host = settings.get("HOST") or "0.0.0.0"
    server = await asyncio.start_server(door.handle, host=host, port=settings.get_int("PORT"),
                                        limit=MAX_HEADER_BYTES, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"[front door] listening on {host}:{settings.get_int('PORT')}, gunicorn on {upstream}",
          flush=True)
    while not stop.is_set() and gunicorn.poll() is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    server.close()  # no new connections; the ones in flight finish
    if door.in_flight:
        await asyncio.wait(set(door.in_flight), timeout=GRACEFUL_SECONDS)
    if gunicorn.poll() is None:
        gunicorn.terminate()
    try:
        code = await asyncio.to_thread(gunicorn.wait, GRACEFUL_SECONDS + 5)
    except subprocess.TimeoutExpired:
        gunicorn.kill()
        code = gunicorn.wait()
    shutil.rmtree(private, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
