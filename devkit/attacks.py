"""Loopback attacks on the public start command, shared by tests/test_front_server.py (which asserts the targets)
and bench/bench_attack.py (which measures them longer and writes docs/measurements/attack.txt).

Every attacker here only talks to 127.0.0.1 and stops when its `stop` event is set. Requests carry an
X-Forwarded-For address as the platform's proxy would add it: the server under attack trusts one proxy hop, as
the Docker image does, so each attacker or legitimate user is one client address to nginx's per-client limit.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable

from devkit.server import timed_request

ATTACKER = "203.0.113.66"  # TEST-NET-3: never a real client
USER = "198.51.100.7"  # TEST-NET-2


def p95_ms(seconds: list[float]) -> float:
    if not seconds:
        return float("nan")
    return 1000 * (statistics.quantiles(seconds, n=20)[-1] if len(seconds) >= 2 else seconds[0])


def connect(port: int, timeout: float = 5, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: the window
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


class Repeat:
    """Call `request()` -> (status, seconds) over and over in `threads` threads until stopped; keep the results."""

    def __init__(self, request: Callable[[], tuple[int, float]], threads: int = 1, pause: float = 0.1):
        self.request, self.pause, self.stop = request, pause, threading.Event()
        self.results: list[tuple[int, float]] = []
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]

    def loop(self) -> None:
        while not self.stop.is_set():
            self.results.append(self.request())
            self.stop.wait(self.pause)

    def __enter__(self) -> Repeat:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(150)

    @property
    def ok_share(self) -> float:
        return sum(1 for status, _ in self.results if status == 200) / max(1, len(self.results))

    def p95_ms(self, failed_as: float = 10.0) -> float:
        return p95_ms([seconds if status == 200 else failed_as for status, seconds in self.results])


def healthz(base: str) -> Callable[[], tuple[int, float]]:
    return lambda: timed_request(base, "/healthz", timeout=10)


def slow_declared_bodies(port: int, stop: threading.Event, sizes: list[int], every: float,
                         path: str = "/api/v1/predict", clients: list[str] = (ATTACKER,)) -> dict[str, int]:
    """One connection per size in `sizes`, each declaring a multipart body of that many bytes and sending one byte
    every `every` seconds, from the X-Forwarded-For addresses `clients` in turn; whatever the server closes is
    reopened. Returns counts of what happened."""
    counts = {"opened": 0, "closed_by_server": 0, "bytes_sent": 0}
    held: dict[int, socket.socket] = {}

    def open_one(slot: int, size: int) -> None:
        with contextlib.suppress(OSError):
            sock = connect(port)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {clients[slot % len(clients)]}\r\n"
                         f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n".encode())
            sock.setblocking(False)
            held[slot] = sock
            counts["opened"] += 1

    while not stop.is_set():
        for slot, size in enumerate(sizes):
            if slot not in held:
                open_one(slot, size)
        for slot, sock in list(held.items()):
            try:
                try:
                    sock.recv(4096)
                    raise ConnectionResetError  # an answer or a close: the server is done with this one
                except BlockingIOError:
                    pass  # nothing yet: the server still waits for the body
                sock.send(b"-")
                counts["bytes_sent"] += 1
            except OSError:
                sock.close()
                del held[slot]
                counts["closed_by_server"] += 1
        stop.wait(every)
    for sock in held.values():
        sock.close()
    return counts


def slow_readers(port: int, count: int, path: str, spread: bool = True) -> list[socket.socket]:
    """`count` connections that ask for `path` with a 4 KB receive window and never read. `spread`: each from its
    own client address (a botnet: no per-client limit applies), else all from ATTACKER."""
    sockets = []
    for i in range(count):
        with contextlib.suppress(OSError):
            sock = connect(port, receive_buffer=4096)
            client = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" if spread else ATTACKER
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n".encode())
            sockets.append(sock)
    return sockets


def idle_sockets(port: int, count: int, opening: bytes = b"") -> list[socket.socket]:
    """`count` connections that send `opening` (nothing by default) and then fall silent."""
    sockets = []
    for _ in range(count):
        try:
            sock = connect(port)
            if opening:
                sock.sendall(opening)
            sockets.append(sock)
        except OSError:
            break
    return sockets


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes (or resets) this connection within `within` seconds; whatever it sends first
    (an error answer) is read and ignored."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
