"""The deployment as Railway runs it: the Procfile's command (nginx in front of gunicorn), on a free loopback port.

Used by the deployment and fault tests and by bench/bench_http.py, so both drive the same process.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
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
                  timeout: float = 120, headers: dict[str, str] | None = None) -> tuple[int, float]:
    """(HTTP status, or -1 for a connection error; seconds) of one request, body read to the end."""
    start = time.perf_counter()
    headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
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


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds so far (0 if it is gone), from /proc (clock ticks of 1/100 s)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def nginx_installed() -> bool:
    """The public start command needs nginx and its Lua module (deploy/start.py looks in the same places)."""
    from deploy.start import MODULE_FOLDERS, NGINX_CANDIDATES, NGINX_MODULES

    binary = bool(shutil.which("nginx")) or any(os.access(p, os.X_OK) for p in NGINX_CANDIDATES)
    return binary and any(all(os.path.isfile(os.path.join(folder, name)) for name in NGINX_MODULES)
                          for folder in MODULE_FOLDERS)


class ProcfileServer:
    """`web:` from the Procfile (deploy/start.py: nginx in front of gunicorn) in its own process group, with the
    venv's Python first on PATH."""

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None, capture_output: bool = False,
                 log: Path | None = None, open_files: int | None = None):
        """`capture_output`: stdout and stderr to a pipe (read it after stop()); `log`: to that file instead, for
        output that must not fill a pipe; `open_files`: the open-file limit (soft and hard) of the whole tree."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "PORT": str(self.port), "WEB_CONCURRENCY": str(workers),
                       "SECRET_KEY": "devkit-only", **(env or {})}
        environment["PATH"] = str(REPO / ".venv" / "bin") + os.pathsep + environment.get("PATH", "")
        output = log.open("wb") if log else subprocess.PIPE if capture_output else subprocess.DEVNULL

        def limit_open_files() -> None:
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.proc = subprocess.Popen(procfile_command(), cwd=REPO, env=environment, stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=limit_open_files)
        if log:
            output.close()

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
        """gunicorn's workers: the children of the gunicorn master that deploy/start.py started."""
        masters = [pid for pid in children(self.proc.pid) if "gunicorn" in command_line(pid)]
        return [worker for master in masters for worker in children(master)]

    def nginx_pids(self) -> list[int]:
        masters = [pid for pid in children(self.proc.pid) if "nginx" in command_line(pid)]
        return [pid for master in masters for pid in (master, *children(master))]

    def rss_mb(self) -> dict[int, float]:
        """Per gunicorn worker, with its image-decoding children (models/decoder.py)."""
        return {pid: rss_mb(pid) + sum(rss_mb(child) for child in descendants(pid)) for pid in self.worker_pids()}

    def tree_rss_mb(self) -> float:
        """The whole server: the start script, nginx's master and worker, gunicorn's master and workers."""
        return sum(rss_mb(pid) for pid in (self.proc.pid, *descendants(self.proc.pid)))

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
