"""Drive the real deployment (the Procfile's gunicorn command on a free loopback port) over HTTP.

    python bench/bench_http.py latency [--repeats 30]          # p50/p95 for 1 and 16 images, req/s at 8 clients
    python bench/bench_http.py soak [--seconds 60 --clients 16]  # mixed load + bad requests, RSS before/after

Prints the numbers; nothing is asserted (targets are discussed in the README).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from devkit.images import encode
from devkit.server import ProcfileServer, multipart, timed_request
from devkit.transcript import MEASUREMENTS, Transcript
from models.machine import describe_machine


def sample_images(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), "JPEG")
            for _ in range(count)]


def files(images: list[bytes], names: list[str] | None = None) -> tuple[bytes, str]:
    """A multipart body uploading these images (named image0.jpg, ... unless `names` are given)."""
    names = names or [f"image{i}.jpg" for i in range(len(images))]
    return multipart(list(zip(names, images, strict=True)))


def post(base: str, body: bytes, content_type: str) -> tuple[int, float]:
    return timed_request(base, "/api/v1/predict", body, content_type)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def drive(clients: int, seconds: float, send) -> tuple[list, float]:
    """Run `clients` threads calling `send(rng)` until `seconds` pass; (every returned record, elapsed s)."""
    records: list = []
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.time() < stop_at:
            record = send(rng)
            with lock:
                records.append(record)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, time.time() - start


def phone_photo() -> bytes:
    """A 4032x3024 (12 MP) photo-like JPEG: smooth gradients, as a phone camera produces."""
    y, x = np.mgrid[0:3024, 0:4032]
    rgb = np.stack([255 * x / 4032, 255 * y / 3024, 128 + 100 * np.sin(x / 97.0)], axis=-1)
    return encode(Image.fromarray(rgb.astype(np.uint8)), "JPEG", quality=92)


def latency(server: ProcfileServer, repeats: int, say: Transcript) -> None:
    images = sample_images(16, seed=0)
    cases = [("1 image(s)", images[:1]), ("16 image(s)", images), ("1 12-MP photo", [phone_photo()])]
    for label, batch in cases:
        body, ctype = files(batch)
        post(server.base, body, ctype)  # warm
        times = [post(server.base, body, ctype)[1] * 1000 for _ in range(repeats)]
        say(f"{label:>13}, both models, sequential: p50 {statistics.median(times):7.1f} ms   "
              f"p95 {percentile(times, 95):7.1f} ms   ({repeats} requests)")
    body, ctype = files(images[:1])
    results, elapsed = drive(8, 20, lambda rng: post(server.base, body, ctype))
    statuses = Counter(s for s, _ in results)
    say(f"8 concurrent clients, 1 image each, 20 s: {len(results) / elapsed:.1f} req/s, p50 "
          f"{percentile([d * 1000 for _, d in results], 50):.0f} ms, p95 "
          f"{percentile([d * 1000 for _, d in results], 95):.0f} ms, statuses {dict(statuses)}")


def soak(server: ProcfileServer, seconds: float, clients: int, say: Transcript) -> None:
    images = sample_images(8, seed=1)
    requests = {
        "1 image": files(images[:1]),
        "8 images": files(images),
        "bad: not an image": files([b"definitely not an image"], ["evil.jpg"]),
        "bad: top_k=abc": (b'--b\r\nContent-Disposition: form-data; name="top_k"\r\n\r\nabc\r\n--b--\r\n',
                           "multipart/form-data; boundary=b"),
    }
    weights = [0.6, 0.25, 0.1, 0.05]
    rss_start = server.rss_mb()

    def send(rng: random.Random) -> tuple[str, int, float]:
        kind = rng.choices(list(requests), weights)[0]
        return (kind, *post(server.base, *requests[kind]))

    records, elapsed = drive(clients, seconds, send)
    rss_end = server.rss_mb()
    say(f"{clients} clients for {elapsed:.0f} s: {len(records)} requests, {len(records) / elapsed:.1f} req/s")
    for kind in requests:
        times = [d * 1000 for k, _, d in records if k == kind]
        say(f"  {kind:18s} n={len(times):5d}  p50 {percentile(times, 50):7.0f} ms  "
              f"p95 {percentile(times, 95):7.0f} ms  p99 {percentile(times, 99):7.0f} ms")
    statuses = Counter(s for _, s, _ in records)
    say(f"  statuses: {dict(sorted(statuses.items()))}  (5xx: {sum(v for s, v in statuses.items() if s >= 500)}, "
          f"connection errors: {statuses.get(-1, 0)})")
    for pid in rss_start:
        before, after = rss_start[pid], rss_end.get(pid, float("nan"))
        say(f"  worker {pid}: RSS {before:.0f} MB -> {after:.0f} MB ({100 * (after - before) / before:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["latency", "soak"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default: docs/measurements/http-<mode>.txt")
    args = parser.parse_args()
    say = Transcript()
    say(f"machine: {describe_machine()}; gunicorn workers: {args.workers}")
    server = ProcfileServer(args.workers)
    try:
        if not server.wait_ready():
            raise SystemExit("server did not become ready")
        say(f"worker RSS after start: {json.dumps({k: round(v) for k, v in server.rss_mb().items()})} MB")
        if args.mode == "latency":
            latency(server, args.repeats, say)
        else:
            soak(server, args.seconds, args.clients, say)
    finally:
        server.stop()
    say.save(args.out or MEASUREMENTS / f"http-{args.mode}.txt")


if __name__ == "__main__":
    main()
