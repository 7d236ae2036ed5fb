"""The deployment as Railway runs it: the Procfile's gunicorn command, started on a free loopback port.

Used by the deployment and fault tests and by bench/bench_http.py, so both drive the same process.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command() -> list[str]:
    line = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:"))
    return shlex.split(line.removeprefix("web:").strip())


def multipart(files: list[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    """A multipart/form-data body with one part per (file name, bytes); (body, Content-Type header)."""
    boundary = "----cifar10devkitboundary7f3a"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def timed_request(base: str, path: str, data: bytes | None = None, content_type: str | None = None,
                  timeout: float = 120) -> tuple[int, float]:
    """(HTTP status, or -1 for a connection error; seconds) of one request, body read to the end."""
    start = time.perf_counter()
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers),
                                    timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    except OSError:
        status = -1
    return status, time.perf_counter() - start


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class ProcfileServer:
    """`web:` from the Procfile (serve.py: the front door, gunicorn behind it) in its own process group, with the
    venv's Python first on PATH."""

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None, capture_output: bool = False):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "PORT": str(self.port), "WEB_CONCURRENCY": str(workers),
                       "SECRET_KEY": "devkit-only", **(env or {})}
        environment["PATH"] = str(REPO / ".venv" / "bin") + os.pathsep + environment.get("PATH", "")
        output = subprocess.PIPE if capture_output else subprocess.DEVNULL
        self.proc = subprocess.Popen(procfile_command(), cwd=REPO, env=environment, stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 240) -> bool:
        """True once /readyz answers 200 (models loaded and warmed up), False after `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=5) as response:
                    if response.status == 200:
                        return True
            except OSError:
                time.sleep(0.5)
        return False

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the children of the gunicorn master that the front door (serve.py) started."""
        return [worker for master in children(self.proc.pid) for worker in children(master)]

    def rss_mb(self) -> dict[int, float]:
        sizes = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[pid] = int(line.split()[1]) / 1024
        return sizes

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ProcfileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
