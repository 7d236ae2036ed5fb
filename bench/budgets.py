"""Every endpoint's worst case within its limits: wall time, the worker's CPU seconds and peak RSS, alone and four
at once. Part of bench/bench_attack.py (`--only budgets` runs just this); writes docs/measurements/budgets.md,
the table docs/performance.md shows."""

from __future__ import annotations

import http.cookiejar
import io
import re
import struct
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from devkit.archives import stored_zip
from devkit.images import encode, gif_with_tiny_sub_blocks, photo, png_with_chunks
from devkit.server import ProcfileServer, cpu_seconds, descendants
from devkit.transcript import announce_if_committed

TARGET_SECONDS, TARGET_MB, TARGET_BOMB_MB = 15.0, 300.0, 400.0


@dataclass
class Request:
    """One request as a function of a fresh session: (path, body, headers)."""

    name: str
    limits: str
    build: Callable[[Session], tuple[str, bytes | None, dict[str, str]]]
    memory_target: float = TARGET_MB


class Session:
    """A browser-like client: a cookie jar and the form's CSRF token (for the HTML endpoints)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            page = self.opener.open(self.base + "/", timeout=30).read().decode()
            self._token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return self._token

    def send(self, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with self.opener.open(request, timeout=180) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return -1, b""


def form(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, dict[str, str]]:
    boundary = "----budgetboundary9d2c"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
              for field, name, data in files]
    kind = f"multipart/form-data; boundary={boundary}"
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": kind}


def worker_cpu_seconds(server: ProcfileServer) -> float:
    """The workers' CPU seconds and their living decoding children's (a child stopped for overrunning takes its
    seconds with it)."""
    return sum(cpu_seconds(pid) for worker in server.worker_pids() for pid in (worker, *descendants(worker)))


def measure(server: ProcfileServer, request: Request, copies: int) -> dict[str, float]:
    """After one unmeasured run of the same request (first-use allocations are not what we look for)."""
    warm = Session(server.base)
    warm.send(*request.build(warm))
    sessions = [Session(server.base) for _ in range(copies)]
    built = [request.build(s) for s in sessions]
    start_rss = sum(server.rss_mb().values())
    cpu_before = worker_cpu_seconds(server)
    peak, stop = [start_rss], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(sum(server.rss_mb().values()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    statuses: list[int] = []
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda s=s, b=b: statuses.append(s.send(*b)[0]))
               for s, b in zip(sessions, built, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    time.sleep(1.0)
    return {"wall": wall, "cpu": worker_cpu_seconds(server) - cpu_before, "peak": max(peak) - start_rss,
            "after": sum(server.rss_mb().values()) - start_rss, "start": start_rss,
            "statuses": ",".join(str(s) for s in sorted(set(statuses)))}


def requests() -> list[Request]:
    flat40 = encode(Image.new("RGB", (7300, 5400), (90, 120, 150)), "PNG", compress_level=9)
    webp16 = encode(Image.new("RGB", (4096, 4096), (90, 120, 150)), "WEBP", lossless=True)  # the WebP limit
    gif36 = gif_with_tiny_sub_blocks(6000, 6000)
    small = [encode(photo(128, 128, seed=i), "JPEG", quality=90) for i in range(500)]
    classes = ["cat", "dog", "ship", "truck"]
    small_png = stored_zip({f"{classes[i % 4]}/{i:03d}.png": encode(photo(128, 128, seed=i), "PNG")
                           for i in range(500)})
    # 1900 x 1000 photos as PNG (the independent attack's F5), enlarged without smoothing so that 32 fit in 50 MB
    wide = [encode(photo(380, 200, seed=i).resize((1900, 1000), Image.Resampling.NEAREST), "PNG") for i in range(32)]
    photos16 = [("files", f"photo{i}.jpg", encode(photo(800, 600, seed=i), "JPEG")) for i in range(16)]
    labelled = stored_zip({f"{['cat', 'dog', 'ship', 'truck'][i % 4]}/{i:03d}.jpg": d for i, d in enumerate(small)})
    png_bomb = stored_zip({f"cat/{i:03d}.png": flat40 for i in range(min(500, 49_000_000 // len(flat40)))})
    webp_bomb = stored_zip({f"cat/{i:03d}.webp": webp16 for i in range(100)})
    long_names = stored_zip({"cat/good.jpg": small[0], **{f"cat/{i:03d}." + "A" * 180: b"x" for i in range(499)}})
    photos32 = [("files", f"photo{i}.jpg", encode(photo(800, 600, seed=i), "JPEG")) for i in range(32)]
    webp8 = encode(Image.new("RGB", (3230, 2420), (90, 120, 150)), "WEBP", lossless=True)  # 7.8 MP
    bz2 = io.BytesIO()
    with zipfile.ZipFile(bz2, "w") as zf:
        zf.writestr("cat/good.jpg", small[0])
        zf.writestr("cat/zeros.png", bytes(200_000_000), compress_type=zipfile.ZIP_BZIP2)
    one = stored_zip({"cat/a.jpg": small[0]})
    central, end = one.index(b"PK\x01\x02"), one.index(b"PK\x05\x06")
    directory = one[central:end] * (45_000_000 // (end - central))
    eocd = bytearray(one[end:])
    struct.pack_into("<HHII", eocd, 8, 1, 1, len(directory), central)
    lying_directory = one[:central] + directory + bytes(eocd)

    def api(path: str, files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None):
        return lambda s: (path, *form(fields or {}, files))

    def signed_report(s: Session):
        body, headers = form({"csrf_token": s.token}, [("archive", "names.zip", long_names)])
        page = s.send("/evaluate", body, headers)[1].decode()
        report = re.search(r'name="report" value="([^"]+)"', page).group(1)
        return ("/evaluate/report.pdf", *form({"csrf_token": s.token, "report": report}, []))

    def export_pdf(s: Session):
        body, headers = form({"csrf_token": s.token}, photos32)
        page = s.send("/", body, headers)[1].decode()
        import html

        comparison = html.unescape(re.search(r'name="comparison" value="([^"]*)"', page).group(1))
        return ("/export/pdf", *form({"csrf_token": s.token, "comparison": comparison}, []))

    private = png_with_chunks(b"prVt", b"", 40_000)  # 0.5 MB: Pillow keeps a list entry per chunk
    profiles = png_with_chunks(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 1_000_000, 9), 9_000)  # 10 MB
    empty_objects = b"[" + b"{}," * 15_000_000 + b"{}]"  # 45 MB of JSON
    pngs = min(500, 49_000_000 // len(flat40))  # as many as a 50 MB ZIP holds
    return [
        Request("POST /api/v1/predict: 32 x 40 MP PNG", "32 images, 10 MB each, 50 MB, 64 decoded MP",
                api("/api/v1/predict", [("files", f"{i}.png", flat40) for i in range(32)])),
        Request("POST /api/v1/predict: 32 x 36 MP GIF", "same",
                api("/api/v1/predict", [("files", f"{i}.gif", gif36) for i in range(32)])),
        Request("POST / (form): 32 photos of 800x600", "same, and thumbnails",
                lambda s: ("/", *form({"csrf_token": s.token}, photos32))),
        Request(f"POST /api/v1/evaluate: {pngs} x 40 MP PNG (ZIP)", "500 images, 50 MB ZIP, 1,100 entries, 256 decoded "
                "MP, 12 s per evaluation", api("/api/v1/evaluate", [("archive", "bomb.zip", png_bomb)]),
                TARGET_BOMB_MB),
        Request("POST /api/v1/evaluate: 100 x 16.8 MP lossless WebP", "same; WebP at most 16.8 MP (4096²)",
                api("/api/v1/evaluate", [("archive", "webp.zip", webp_bomb)]), TARGET_BOMB_MB),
        Request("POST /api/v1/evaluate: 500 labelled 128 px JPEGs", "same",
                api("/api/v1/evaluate", [("archive", "set.zip", labelled)])),
        Request("POST /api/v1/evaluate: 500 labelled 128 px PNGs", "same",
                api("/api/v1/evaluate", [("archive", "png.zip", small_png)])),
        Request("POST /api/v1/predict: 32 x 1900x1000 PNG photos", "32 images, 50 MB, 64 decoded MP, 8 s of decoding",
                api("/api/v1/predict", [("files", f"{i}.png", data) for i, data in enumerate(wide)])),
        Request("POST /api/v1/predict, explain=true: 16 photos", "16 images to explain, 6 s of explanation maps",
                api("/api/v1/predict", photos16, {"explain": "true"})),
        Request("POST /api/v1/evaluate, explain=true: the same 500", "same; 16 maps, 6 s of maps",
                api("/api/v1/evaluate", [("archive", "set.zip", labelled)], {"explain": "true"})),
        Request("POST /api/v1/evaluate?format=pdf: the same 500", "same",
                api("/api/v1/evaluate?format=pdf", [("archive", "set.zip", labelled)])),
        Request("POST /evaluate/report.pdf: 499 problems, 200-char names", "names and problems <= 200 characters",
                signed_report),
        Request("POST /export/pdf: 32 results with thumbnails", "32 results, 4 MB field, signed", export_pdf),
        Request("POST /api/v1/predict: 32 x 7.8 MP lossless WebP", "WebP at most 16.8 MP (4096²)",
                api("/api/v1/predict", [("files", f"{i}.webp", webp8) for i in range(32)])),
        Request("POST /api/v1/evaluate: a bzip2 member of 200 MB", "stored and deflated members only",
                api("/api/v1/evaluate", [("archive", "bz2.zip", bz2.getvalue())])),
        Request("POST /api/v1/evaluate: a 45 MB directory that says 1 entry", "directory <= 1 kB per entry",
                api("/api/v1/evaluate", [("archive", "directory.zip", lying_directory)])),
        Request("POST /api/v1/predict: 32 PNGs of 40,000 private chunks", "every decode in a child: memory and "
                "seconds", api("/api/v1/predict", [("files", f"{i}.png", private) for i in range(32)])),
        Request("POST /api/v1/predict: a 10 MB PNG of 9,000 colour profiles", "same",
                api("/api/v1/predict", [("files", "profiles.png", profiles)])),
        Request("POST /api/v1/predict: 45 MB of JSON (empty objects)", "JSON bodies <= 64 KiB, read no further",
                lambda s: ("/api/v1/predict", empty_objects, {"Content-Type": "application/json"})),
        Request("GET /reports/report.pdf", "a static file", lambda s: ("/reports/report.pdf", None, {})),
    ]


def run(server: ProcfileServer, out: Path, say: Callable[[str], None]) -> None:
    rows = ["| request (worst case within the limits) | limits | alone: wall s / worker CPU s / peak RSS +MB "
            "(after) | 4 at once: wall s / peak +MB | status | within target |", "|---|---|---|---|---|---|"]
    for request in requests():
        alone = measure(server, request, 1)
        four = measure(server, request, 4)
        ok = (alone["wall"] <= TARGET_SECONDS and alone["peak"] <= request.memory_target
              and alone["after"] <= 0.1 * alone["start"] and four["wall"] <= 2 * TARGET_SECONDS
              and four["peak"] <= 2 * request.memory_target)
        say(f"{request.name:55s} alone {alone['wall']:6.2f} s wall, {alone['cpu']:6.2f} s CPU, peak "
            f"+{alone['peak']:4.0f} MB, after +{alone['after']:4.0f} MB | x4 {four['wall']:6.2f} s, peak "
            f"+{four['peak']:4.0f} MB | {alone['statuses']} | {'met' if ok else 'NOT met'}")
        rows.append(f"| {request.name} | {request.limits} | {alone['wall']:.1f} / {alone['cpu']:.1f} / "
                    f"+{alone['peak']:.0f} (+{alone['after']:.0f}) | {four['wall']:.1f} / +{four['peak']:.0f} | "
                    f"{alone['statuses']} | {'yes' if ok else 'NO'} |")
    from models.machine import describe_machine

    announce_if_committed(out)
    out.write_text(f"Measured on {describe_machine()}, 1 gunicorn worker behind nginx:\n\n" + "\n".join(rows) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover - bench_attack.py runs it
    raise SystemExit("run bench/bench_attack.py --only budgets")
