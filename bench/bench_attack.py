"""Attack the production command (the Procfile: deploy/start.py, nginx in front of gunicorn) on loopback, and
measure.

    .venv/bin/python bench/bench_attack.py [--quick]

First the front server's targets (docs/performance.md): (a) slow uploads that declare large bodies, (b) slow
readers of the report PDF, (c) 2,000 idle sockets, and at a 1,024 open-file limit 3,000, (d) early rejections,
(e) chunked, keep-alive and pipelined requests; each line ends with "met" or "NOT met". Then the app-level
attacks, each for a bounded time while two probes keep asking /healthz and classifying one small image: /healthz
p95, the good request's p95 and count, 5xx answers, and the worker's peak and final RSS. About 5 minutes in all
(--quick: about 2). Nothing leaves 127.0.0.1.

The server runs as the Docker image runs it on Railway (APP_TRUSTED_PROXY_HOPS=1: one proxy in front), and every request
carries the X-Forwarded-For address that proxy would add: attackers one address (or, where that would only test
the per-client limit, one address per connection), the probes another. It also runs with APP_TESTING=true and
APP_FETCH_ALLOWED_TEST_HOSTS=["127.0.0.1"] so that the URL attack can aim at a loopback server (in production
loopback URLs are refused outright, which is faster still); nothing else changes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from budgets import run as run_budgets  # bench/budgets.py, next to this file
from PIL import Image

from devkit import attacks
from devkit.attacks import ATTACKER, USER, Repeat, p95_ms
from devkit.images import encode, gif_with_tiny_sub_blocks, many_scan_jpeg, photo, sixteen_bit_png
from devkit.server import ProcfileServer, multipart, timed_request
from devkit.transcript import MEASUREMENTS, Transcript
from devkit.url_server import LocalServer
from models.machine import describe_machine

GOOD = multipart([("good.jpg", encode(photo(64, 64), "JPEG"))])
say = Transcript()  # the result lines, saved to docs/measurements/attack.txt (docs/performance.md shows them)


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
                self.good.append(timed_request(self.server.base, "/api/v1/predict", *GOOD,
                                               headers={"X-Forwarded-For": USER}))
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
    say(f"{name:34s} healthz p95 {p95_ms(probes.health):7.0f} ms | good p95 {p95_ms(good_times):7.0f} ms "
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
        say(f"  ({count} held at a time; the server answered or closed {closed} of them)")
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


# ----------------------------------------------------------------------------- the front server's targets
def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def target_slow_uploads(server: ProcfileServer, seconds: float) -> None:
    """(a) Connections declaring 50 MB down to 2 KB, a byte every 9 s, reopened when closed; a user's 1-image
    predictions during that time: >= 95% answered 200."""
    sizes = [50 * 2**20] * 6 + [20 * 2**20, 5 * 2**20, 2**20, 2**18, 2**16, 2**14, 2**12, 2048] + [2048] * 4
    stop, counts = threading.Event(), {}
    attacker = threading.Thread(target=lambda: counts.update(attacks.slow_declared_bodies(server.port, stop, sizes,
                                                                                         every=9.0)))
    attacker.start()
    time.sleep(1)
    with Repeat(lambda: timed_request(server.base, "/api/v1/predict", *GOOD, timeout=30,
                                      headers={"X-Forwarded-For": USER}), pause=0.2) as user:
        time.sleep(seconds)
    stop.set()
    attacker.join(30)
    say(f"(a) {len(sizes)} slow uploads declaring {sum(sizes) / 2**20:.0f} MB ({counts['bytes_sent']} bytes sent, "
        f"{counts['opened']} connections) for {seconds:.0f} s: {user.ok_share:.1%} of {len(user.results)} 1-image "
        f"predictions answered 200, p95 {user.p95_ms():.0f} ms (target >= 95%: {verdict(user.ok_share >= 0.95)})")


def target_slow_readers(server: ProcfileServer, count: int = 300) -> None:
    """(b) `count` readers of report.pdf that never read: the whole server tree's RSS <= +300 MB, back within
    +150 MB after they close; /healthz p95 <= 1 s meanwhile."""
    baseline = server.tree_rss_mb()
    peak = baseline
    with Repeat(attacks.healthz(server.base), pause=0.2) as health:
        readers = attacks.slow_readers(server.port, count, "/reports/report.pdf")
        for _ in range(40):
            time.sleep(0.25)
            peak = max(peak, server.tree_rss_mb())
        attacks.close_all(readers)
        time.sleep(3)
    after = server.tree_rss_mb()
    ok = peak - baseline <= 300 and after - baseline <= 150 and health.p95_ms() <= 1000
    say(f"(b) {len(readers)} slow readers of report.pdf (one client address each): server tree RSS {baseline:.0f} "
        f"-> peak {peak:.0f} (+{peak - baseline:.0f}) -> {after:.0f} MB after they closed (+{after - baseline:.0f}); "
        f"/healthz p95 {health.p95_ms():.0f} ms (targets +300 / +150 MB, 1 s: {verdict(ok)})")


def target_idle_sockets(server: ProcfileServer, count: int = 2000, seconds: float = 12) -> None:
    """(c) `count` idle connections for `seconds`: /healthz p95 <= 1 s."""
    with Repeat(attacks.healthz(server.base), pause=0.2) as health:
        idle = attacks.idle_sockets(server.port, count)
        time.sleep(seconds)
        attacks.close_all(idle)
    say(f"(c) {len(idle)} idle sockets for {seconds:.0f} s: /healthz p95 {health.p95_ms():.0f} ms, "
        f"{health.ok_share:.0%} answered (target 1 s: {verdict(health.p95_ms() <= 1000)})")


def target_open_file_limit(env: dict[str, str], log: Path, count: int = 3000, seconds: float = 30) -> None:
    """(c) At a 1,024 open-file limit, `count` idle sockets for `seconds`: <= 1 MB of log per minute, and the
    service answers again once they close."""
    with ProcfileServer(env=env, log=log, open_files=1024) as server:
        if not server.wait_ready():
            raise SystemExit("server did not become ready")
        before, started = log.stat().st_size, time.monotonic()
        idle = attacks.idle_sockets(server.port, count)
        during, _ = timed_request(server.base, "/healthz", timeout=3)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        per_minute = (log.stat().st_size - before) / (time.monotonic() - started) * 60
        attacks.close_all(idle)
        closed, status = time.monotonic(), -1
        while status != 200 and time.monotonic() - closed < 30:
            status, _ = timed_request(server.base, "/healthz", timeout=3)
        back = time.monotonic() - closed
        limit_reached = "Too many open files" in log.read_text(errors="replace")
    ok = per_minute <= 1e6 and status == 200 and limit_reached
    say(f"(c) at a 1,024 open-file limit, {len(idle)} idle sockets for {seconds:.0f} s: limit reached "
        f"{'yes' if limit_reached else 'no'}, /healthz during {during}, log {per_minute / 1e3:.1f} kB/min; "
        f"/healthz {status} {back:.1f} s after they closed (targets <= 1 MB/min, service resumes: {verdict(ok)})")


def early_rejection(server: ProcfileServer, size: int, expect: bool) -> tuple[int, str, bool]:
    """A raw image/jpeg body of `size` bytes that the app (400) or nginx (413) refuses: (status, type, JSON?)."""
    with attacks.connect(server.port, timeout=60) as sock:
        expectation = b"Expect: 100-continue\r\n" if expect else b""
        sock.sendall(f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {size}\r\n".encode() + expectation + b"\r\n")
        body = bytes(size)
        if expect:
            sock.settimeout(10)
            if sock.recv(25, socket.MSG_PEEK).startswith(b"HTTP/1.1 100"):
                sock.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
                sock.sendall(body)
        else:
            sock.sendall(body)
        sock.settimeout(60)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            payload = response.read()
        except (http.client.HTTPException, OSError):
            return -1, "", False
        try:
            shaped = json.loads(payload)["error"]["status"] == response.status
        except (ValueError, KeyError, TypeError):
            shaped = False
        return response.status, response.getheader("Content-Type", ""), shaped


def target_early_rejections(server: ProcfileServer) -> None:
    """(d) Every early rejection reaches the client with the JSON error body."""
    results = []
    for size in (400 * 1024, 60 * 2**20):
        for expect in (False, True):
            for _ in range(3):
                results.append((size, expect, *early_rejection(server, size, expect)))
    ok = all(status in (400, 413) and shaped for _, _, status, _, shaped in results)
    summary = ", ".join(sorted({f"{size // 1024} KB{' + Expect' if expect else ''}: {status}"
                                f"{' JSON' if shaped else ' NOT JSON'}"
                                for size, expect, status, _, shaped in results}))
    say(f"(d) early rejections, 3 of each: {summary} (target every one with its JSON body: {verdict(ok)})")


def target_ordinary_http(server: ProcfileServer) -> None:
    """(e) A chunked upload, then keep-alive and three pipelined requests on the same connection."""
    body, content_type = GOOD
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]) for i in range(0, len(body), 1000))
    statuses = []
    with attacks.connect(server.port, timeout=30) as sock:
        sock.sendall(f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n".encode() + chunked + b"0\r\n\r\n")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2 +
                     b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for _ in range(4):
            response = http.client.HTTPResponse(sock)
            try:
                response.begin()
                response.read()
                statuses.append(response.status)
            except (http.client.HTTPException, OSError):
                statuses.append(-1)
    say(f"(e) chunked upload, then 3 pipelined requests on the same connection: {statuses} "
        f"(target all 200: {verdict(statuses == [200] * 4)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter attacks (about two minutes in all)")
    parser.add_argument("--only", choices=("front", "app", "budgets"), help="one part: the front server's targets, "
                        "the app-level attacks, or every endpoint's worst case (docs/measurements/budgets.md)")
    parser.add_argument("--out", type=Path, default=MEASUREMENTS / "attack.txt")
    args = parser.parse_args()
    scale = 0.33 if args.quick else 1.0
    parts = {args.only} if args.only else {"front", "app", "budgets"}
    say(f"machine: {describe_machine()}" + ("; --quick" if args.quick else ""))
    flat40 = encode(Image.new("RGB", (7300, 5400), (90, 120, 150)), "PNG", compress_level=9)
    bombs = {
        "32 x 40 MP PNG": [(f"{i}.png", flat40) for i in range(32)],
        "32 x 12 MP 16-bit PNG": [(f"{i}.png", sixteen_bit_png(4000, 3000)) for i in range(32)],
        "32 x 36 MP GIF, 1-byte sub-blocks": [(f"{i}.gif", gif_with_tiny_sub_blocks(6000, 6000)) for i in range(32)],
        "JPEG, 4,000 progressive scans": [("scans.jpg", many_scan_jpeg(4000, 3000, 4000))],
        "JPEG, 64 scans at 15 MP (allowed)": [("scans.jpg", many_scan_jpeg(4500, 3300, 64))],
    }
    env = {"APP_TESTING": "true", "APP_FETCH_ALLOWED_TEST_HOSTS": '["127.0.0.1"]', "APP_TRUSTED_PROXY_HOPS": "1"}
    scratch = Path(tempfile.mkdtemp(prefix="bench-attack-"))
    with ProcfileServer(env=env, log=scratch / "server.log") as server, LocalServer() as urls:
        if not server.wait_ready():
            raise SystemExit("server did not become ready")
        say(f"worker RSS after start: {round(sum(server.rss_mb().values()))} MB; whole server tree (start script, "
            f"nginx, gunicorn): {server.tree_rss_mb():.0f} MB")
        if "front" in parts:
            target_slow_uploads(server, 20 * max(scale, 0.5))
            target_slow_readers(server)
            target_idle_sockets(server)
            target_early_rejections(server)
            target_ordinary_http(server)
        if "app" in parts:
            app_level_attacks(server, urls, bombs, scale)
        if "budgets" in parts:
            say("every endpoint's worst case (docs/measurements/budgets.md):")
            run_budgets(server, MEASUREMENTS / "budgets.md", say)
    if "front" in parts:
        target_open_file_limit(env, scratch / "limited.log", seconds=30 * max(scale, 0.5))
    shutil.rmtree(scratch, ignore_errors=True)
    if not args.only:
        say.save(args.out)


def app_level_attacks(server: ProcfileServer, urls: LocalServer, bombs: dict, scale: float) -> None:
    attack(server, "none (baseline)", idle, 10 * scale)
    attack(server, "256 sockets: 'G', then silence", hold_sockets(server, 256, b"G"), 60 * scale)
    attack(server, "128 trickling bodies (1 B / 0.5 s)", hold_sockets(
        server, 128, b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                     b"X-Forwarded-For: " + ATTACKER.encode() + b"\r\n\r\n", b"x"), 30 * scale)
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


if __name__ == "__main__":
    main()

