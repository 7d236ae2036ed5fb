"""Attack the production command (the Procfile: serve.py's front door, gunicorn behind it) on loopback, and measure.

    .venv/bin/python bench/bench_attack.py [--quick]

Each attack runs for a bounded time (about 3 minutes in all; --quick: about 1) while two probes keep asking
/healthz and classifying one small image. Per attack it prints: /healthz p95, the good request's p95 and
count, 5xx answers, and the worker's peak and final RSS. Nothing leaves 127.0.0.1. The server runs with
APP_TESTING=true and APP_FETCH_ALLOWED_TEST_HOSTS=["127.0.0.1"] so that the URL attack can aim at a loopback
server (in production loopback URLs are refused outright, which is faster still); nothing else changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from devkit.images import encode, float_tiff, gif_with_tiny_sub_blocks, many_scan_jpeg, photo, sixteen_bit_png
from devkit.server import ProcfileServer, multipart, timed_request
from devkit.transcript import MEASUREMENTS, Transcript
from devkit.url_server import LocalServer
from models.machine import describe_machine

GOOD = multipart([("good.jpg", encode(photo(64, 64), "JPEG"))])
say = Transcript()  # the result lines, saved to docs/measurements/attack.txt (docs/performance.md shows them)


def p95(values: list[float]) -> float:
    return 1000 * (statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values or [float("nan")])[0])


class Probes:
    """/healthz every 0.2 s and one good 1-image request after another, plus the worker's RSS every 0.1 s."""

    def __init__(self, server: ProcfileServer):
        self.server, self.stop = server, threading.Event()
        self.health: list[float] = []
        self.good: list[tuple[int, float]] = []
        self.rss: list[float] = []

    def run(self) -> None:
        def health() -> None:
            while not self.stop.is_set():
                status, seconds = timed_request(self.server.base, "/healthz", timeout=10)
                self.health.append(seconds if status == 200 else 10.0)
                time.sleep(0.2)

        def good() -> None:
            while not self.stop.is_set():
                self.good.append(timed_request(self.server.base, "/api/v1/predict", *GOOD))
                time.sleep(0.2)

        def rss() -> None:
            while not self.stop.is_set():
                self.rss.append(sum(self.server.rss_mb().values()))
                time.sleep(0.1)

        self.threads = [threading.Thread(target=f, daemon=True) for f in (health, good, rss)]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def attack(server: ProcfileServer, name: str, action: Callable[[threading.Event], list[int]], seconds: float,
           settle: float = 2.0) -> None:
    probes = Probes(server)
    probes.run()
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    statuses = action(stop)
    stop.set()
    time.sleep(settle)
    probes.finish()
    final = sum(server.rss_mb().values())
    good_times = [s for status, s in probes.good if status == 200]
    errors = sum(1 for status in statuses + [st for st, _ in probes.good] if status >= 500)
    say(f"{name:34s} healthz p95 {p95(probes.health):7.0f} ms | good p95 {p95(good_times):7.0f} ms "
          f"(n={len(good_times):3d}, failed {len(probes.good) - len(good_times)}) | 5xx {errors:3d} | "
          f"worker RSS peak {max(probes.rss or [final]):5.0f} MB, final {final:5.0f} MB")


def hold_sockets(server: ProcfileServer, count: int, opening: bytes, trickle: bytes | None = None):
    port = int(server.base.rsplit(":", 1)[1])

    def action(stop: threading.Event) -> list[int]:
        sockets: list[socket.socket] = []
        closed = 0
        while not stop.is_set():
            while len(sockets) < count:  # the attacker reopens whatever the server closed
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(opening)
                    sock.setblocking(False)
                    sockets.append(sock)
                except OSError:
                    break
            for sock in list(sockets):
                try:
                    if sock.recv(1024) == b"":
                        raise ConnectionResetError
                    sock.close()  # the server answered (408): it is done with this one
                    sockets.remove(sock)
                    closed += 1
                except BlockingIOError:
                    if trickle:
                        with contextlib.suppress(OSError):
                            sock.send(trickle)
                except OSError:
                    sock.close()
                    sockets.remove(sock)
                    closed += 1
            time.sleep(0.5)
        for sock in sockets:
            sock.close()
        say(f"  ({count} held at a time; the server answered 408 and closed {closed} of them)")
        return []

    return action


def repeat_requests(server: ProcfileServer, make: Callable[[], tuple[str, bytes, str]], clients: int):
    def action(stop: threading.Event) -> list[int]:
        statuses: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            while not stop.is_set():
                path, body, kind = make()
                status, _ = timed_request(server.base, path, body, kind, timeout=120)
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses

    return action


def idle(stop: threading.Event) -> list[int]:
    stop.wait()
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter attacks (about a minute in all)")
    parser.add_argument("--out", type=Path, default=MEASUREMENTS / "attack.txt")
    args = parser.parse_args()
    scale = 0.33 if args.quick else 1.0
    say(f"machine: {describe_machine()}" + ("; --quick" if args.quick else ""))
    flat40 = encode(Image.new("RGB", (7300, 5400), (90, 120, 150)), "PNG", compress_level=9)
    bombs = {
        "32 x 40 MP PNG": [(f"{i}.png", flat40) for i in range(32)],
        "32 x 12 MP 16-bit PNG": [(f"{i}.png", sixteen_bit_png(4000, 3000)) for i in range(32)],
        "32 x 12 MP float TIFF": [(f"{i}.tif", float_tiff(4000, 3000)) for i in range(32)],
        "32 x 36 MP GIF, 1-byte sub-blocks": [(f"{i}.gif", gif_with_tiny_sub_blocks(6000, 6000)) for i in range(32)],
        "JPEG, 4,000 progressive scans": [("scans.jpg", many_scan_jpeg(4000, 3000, 4000))],
        "JPEG, 64 scans at 15 MP (allowed)": [("scans.jpg", many_scan_jpeg(4500, 3300, 64))],
    }
    env = {"APP_TESTING": "true", "APP_FETCH_ALLOWED_TEST_HOSTS": '["127.0.0.1"]'}
    with ProcfileServer(env=env) as server, LocalServer() as urls:
        if not server.wait_ready():
            raise SystemExit("server did not become ready")
        say(f"worker RSS after start: {round(sum(server.rss_mb().values()))} MB")
        attack(server, "none (baseline)", idle, 10 * scale)
        attack(server, "256 sockets: 'G', then silence", hold_sockets(server, 256, b"G"), 60 * scale)
        attack(server, "128 trickling bodies (1 B / 0.5 s)", hold_sockets(
            server, 128, b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", b"x"),
            30 * scale)
        silent = json.dumps({"urls": [f"{urls.base}/silent"] * 32}).encode()
        attack(server, "16 clients x 32 silent URLs", repeat_requests(
            server, lambda: ("/api/v1/predict", silent, "application/json"), 16), 20 * scale)
        trickled = json.dumps({"urls": [f"{urls.base}/trickle-headers"] * 8}).encode()
        attack(server, "8 clients x 8 header-trickling URLs", repeat_requests(
            server, lambda: ("/api/v1/predict", trickled, "application/json"), 8), 20 * scale)
        for name, files in bombs.items():
            body = multipart(files)
            attack(server, name, repeat_requests(server, lambda b=body: ("/api/v1/predict", *b), 2), 8 * scale)
        deep = ("[" * 100_000).encode()
        odd = json.dumps({"urls": ["http://[::1/", "http://[/", "http://[foo]/", f"{urls.base}/café.jpg",
                                   f"{urls.base}/to-broken-ipv6", "http://[2002:7f00:1::]/x.png"]}).encode()
        attack(server, "malformed URLs and deep JSON", repeat_requests(server, lambda: (
            "/api/v1/predict", deep if time.monotonic() % 2 < 1 else odd, "application/json"), 4), 8 * scale)
    say.save(args.out)


if __name__ == "__main__":
    main()

