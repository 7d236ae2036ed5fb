"""The public start command: nginx on $HOST:$PORT in front of gunicorn (gunicorn.conf.py, app:app) on a private
Unix socket. The Procfile and the Dockerfile's CMD run it; `make run` runs gunicorn alone on loopback instead.

    python deploy/start.py

It renders deploy/nginx.conf (the limits the app enforces, the trusted proxy hops, a private folder for the socket,
temporary files and the error answers), starts gunicorn then nginx, each in its own session so that a signal to
this process group reaches only this script, and watches both: if either exits, the other is stopped and this
script exits non-zero. SIGTERM (or SIGINT) drains: nginx stops accepting and finishes the requests in flight
(SIGQUIT), then gunicorn finishes what it holds (SIGTERM), within railway.json's 30 s of draining.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `models.settings` (nothing heavy), also where the project is not installed

from deploy.answers import html_page, json_body  # noqa: E402
from models import settings  # noqa: E402

TEMPLATE = Path(__file__).with_name("nginx.conf")
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
# The Lua module (OpenResty's lua-nginx-module, Debian's libnginx-mod-http-lua) and the kit it needs: it enforces
# the minimum upload rate (nginx.conf), which stock nginx cannot.
NGINX_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
MODULE_FOLDERS = ("/usr/lib/nginx/modules", "/usr/local/lib/nginx/modules", "/usr/share/nginx/modules")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers on top of the app's MAX_CONTENT_LENGTH
# Per client (an IPv4 address or an IPv6 /64; docs/deploy.md gives the reasons for each number):
PER_CLIENT = 32  # requests in progress at once
UPLOADS_PER_CLIENT = 2  # large uploads (>= 1 MB, or chunked) being received at once; the app's page sends one
# Per network (an IPv4 /24 or an IPv6 /48, what one ISP customer, cloud account or small botnet is usually given),
# whatever the number of addresses in it:
PER_NETWORK = 128  # requests in progress at once (a /48's 1,125 /64s held every nginx connection before)
UPLOADS_PER_NETWORK = 8  # large uploads being received at once
# ... and large uploads begun per minute (beyond a burst): a body below the minimum rate is cut after one window, and
# this bounds how often a network can begin another, so slots cannot be held by reconnecting either. The burst is
# small: with 15, sixteen networks opening at once held all 128 slots for their first window (a third user's photo
# sent then was refused once in a 1-minute check); with 4 they cannot (the 30-minute soak in docs/performance.md).
UPLOAD_STARTS_PER_MINUTE, UPLOAD_START_BURST = 30, 4
REQUESTS_PER_SECOND, REQUEST_BURST = 20, 100  # every request: 20 a second, 100 at once beyond that
COSTLY_PER_MINUTE, COSTLY_BURST = 6, 10  # evaluations, explanation maps, exports: 6 a minute, 10 at once beyond
# In all: large uploads being received at once (128 x 50 MB = 6.4 GB of spooled bodies at most on disk; holding them
# all takes 64 client addresses in at least 16 networks), and the longest silence in a body before the connection
# is cut.
UPLOADS_IN_ALL = 128
# In all: requests with a body in progress (being received, or waiting for the app). Each holds up to
# BODY_BUFFER_KB of memory in nginx and, past that, a temporary file (at most 1 MB under the large-upload size):
# 4,096 x 16 KB = 64 MB of memory and 4 GB of disk at most. 32,000 slow bodies from 1,000 forged addresses took
# nginx from 35 MB to 5.4 GB before; holding all 4,096 now takes 32 networks, and leaves GETs answered.
BODIES_IN_ALL = 4096
BODY_BUFFER_KB = 16
BODY_SECONDS = 5
# A body's minimum rate: at least MIN_BODY_KB_PER_SECOND on average in each successive BODY_RATE_WINDOW seconds
# (128 kbit/s: a poor mobile uplink), or the connection is cut (408). It makes a trickled slot cost bandwidth:
# holding all 128 large-upload slots takes 2 MB/s, all 4,096 body slots 64 MB/s.
MIN_BODY_KB_PER_SECOND = 16
BODY_RATE_WINDOW = 5
RETRY_CONCURRENT, RETRY_RATE, RETRY_COSTLY = 5, 1, 60 // COSTLY_PER_MINUTE  # Retry-After of each kind of 429
RETRY_UPLOADS = 60 // UPLOAD_STARTS_PER_MINUTE

UPSTREAM_SLACK_SECONDS = 30  # nginx waits for the app this much longer than gunicorn's own timeout
DRAIN_SECONDS = 28  # nginx's worker_shutdown_timeout (25 s) plus slack; railway.json drains for 30 s
WORKER_CONNECTIONS = 16384


def upstream_seconds() -> int:
    """How long nginx waits for the app's answer: gunicorn's timeout (GUNICORN_TIMEOUT) plus slack, so that raising
    one setting raises both and nginx never answers 504 while gunicorn would still have waited."""
    return settings.get_int("GUNICORN_TIMEOUT") + UPSTREAM_SLACK_SECONDS


class StartError(Exception):
    """A one-line reason why the server cannot start."""


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)
    if not found:
        raise StartError("nginx is not installed: the public server needs it in front of gunicorn (Debian/Ubuntu: "
                         "apt-get install nginx; macOS: brew install nginx). For development, `make run` serves "
                         "with gunicorn alone on 127.0.0.1.")
    return found


def module_lines() -> str:
    """`load_module` lines for the Lua module and its kit, from the first folder that has both; StartError if none
    does (the minimum upload rate needs them)."""
    for folder in MODULE_FOLDERS:
        if all(os.path.isfile(os.path.join(folder, name)) for name in NGINX_MODULES):
            return "\n".join(f"load_module {os.path.join(folder, name)};" for name in NGINX_MODULES)
    raise StartError("nginx's Lua module is not installed: the public server needs it for its minimum upload rate "
                     "(Debian/Ubuntu: apt-get install libnginx-mod-http-lua). For development, `make run` serves "
                     "with gunicorn alone on 127.0.0.1.")


def max_body_bytes() -> int:
    return int(settings.app_overrides().get("MAX_CONTENT_LENGTH", settings.MAX_CONTENT_LENGTH)) + FORM_OVERHEAD


def max_json_bytes() -> int:
    return int(settings.app_overrides().get("MAX_JSON_BYTES", settings.MAX_JSON_BYTES))


def larger_than(limit: int) -> str:
    """A regex for the decimal numbers greater than `limit` (leading zeros allowed, as nginx reads a Content-Length):
    nginx's `map` compares by regex only. Longer numbers, or as long and larger at the first digit that differs."""
    digits = str(limit)
    alternatives = [rf"[1-9]\d{{{len(digits)},}}"]
    for i, digit in enumerate(digits):
        if digit != "9":
            rest = len(digits) - i - 1
            alternatives.append(digits[:i] + f"[{int(digit) + 1}-9]" + (rf"\d{{{rest}}}" if rest else ""))
    return "0*(?:" + "|".join(alternatives) + ")"


def trusted_hops() -> int:
    return settings.trusted_proxy_hops()


IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
IPV6 = r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,38}(?:" + IPV4 + ")?"  # with an IPv4 tail: ::ffff:192.0.2.1
HEX = "[0-9a-f]{1,4}"


def client_pattern(hops: int) -> str:
    """The regex that picks the client out of `$proxy_add_x_forwarded_for` (the peer last): the address `hops`
    entries left of the peer, as gunicorn's ProxyFix reads X-Forwarded-For with one more trusted hop. Only an entry
    shaped like an address matches (brackets and a port, as some proxies write them, are left out): nginx skips a
    limit whose key is over 255 bytes, and a forged 300-byte entry would otherwise escape every per-client limit."""
    entry = r"(?:^|,)\s*\[?(" + IPV4 + "|" + IPV6 + r")\]?(?::\d{1,5})?\s*"
    return entry + r"(?:,\s*[^,\s]+\s*)" * hops + "$"


# (regex, value) of nginx's `map $client $client_key`, the first match wins: the key each per-client limit counts.
CLIENT_KEYS = (
    (r"^127\.0\.0\.1$", ""),  # this machine: not limited per client
    (r"^::1$", ""),
    (r"(?i)^::ffff:(" + IPV4 + ")$", "$1"),  # an IPv4 client written as IPv6
    ("^" + IPV4 + "$", "$client"),
    # IPv6: the /64, whichever way the address is written. The first four groups in full ...
    (rf"(?i)^({HEX}(?::{HEX}){{3}}):", "$1::/64"),
    # ... or a "::" among them, with at most four groups after it (all in the lower 64 bits) ...
    (rf"(?i)^((?:{HEX}(?::{HEX}){{0,2}})?)::(?:{HEX}(?::{HEX}){{0,3}})?$", "$1::/64"),
    # ... or with five or more after it: those before the last four are in the /64.
    (rf"(?i)^((?:{HEX}(?::{HEX})?)?::(?:{HEX}:){{1,3}}){HEX}(?::{HEX}){{3}}$", "$1/64"),
)


# (regex, value) of nginx's `map $client $client_network`: the network a client's large uploads are also counted in,
# an IPv4 /24 or an IPv6 /48. One host is given a /64 and a customer of many ISPs and clouds a /56 or a /48, so an
# attacker's 64 addresses (or /64s) usually sit in a few such networks. An address written so that its /48 is not
# plain text (a "::" among its first three groups with five or more groups after it, none of them routable on the
# internet) falls back to its own client key.
NETWORK_KEYS = (
    (r"^127\.0\.0\.1$", ""),  # this machine: not limited
    (r"^::1$", ""),
    (r"(?i)^(?:::ffff:)?(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", "$1.0/24"),
    (rf"(?i)^({HEX}(?::{HEX}){{2}}):", "$1::/48"),  # the first three groups in full
    # a "::" among the first three groups, with at most five groups after it (so the third group is a zero of it)
    (rf"(?i)^((?:{HEX}(?::{HEX})?)?)::(?:{HEX}(?::{HEX}){{0,4}})?$", "$1::/48"),
)


def map_lines(keys: tuple[tuple[str, str], ...], default: str) -> str:
    """The body of an nginx `map`: one regex line per (pattern, value), an empty value written "", then the default."""
    return "\n".join(f'        "~{pattern}" {value or chr(34) * 2};' for pattern, value in keys) + \
        f"\n        default {default};"


def client_key_lines() -> str:
    return map_lines(CLIENT_KEYS, "$client")


def network_key_lines() -> str:
    return map_lines(NETWORK_KEYS, "$client_key")


def listen_lines() -> str:
    """nginx's listen directives: HOST if set, else every IPv4 and IPv6 address (Railway's private network is
    IPv6)."""
    port = settings.get_int("PORT")
    if not 0 < port < 65536:
        raise StartError(f"PORT must be between 1 and 65535, got {port}")
    host = settings.get("HOST")
    if host:
        return f"listen {f'[{host}]' if ':' in host else host}:{port} backlog=4096 default_server;"
    lines = f"listen 0.0.0.0:{port} backlog=4096 default_server;"
    if socket.has_ipv6 and Path("/proc/net/if_inet6").exists():
        lines += f"\n        listen [::]:{port} ipv6only=on backlog=4096 default_server;"
    return lines


def listen_address() -> str:
    host = settings.get("HOST")
    return f"{host or '0.0.0.0 and [::]'}:{settings.get_int('PORT')}"


def open_file_limit() -> int:
    """As many open files as the hard limit allows (nginx raises its own soft limit to this)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(2 * WORKER_CONNECTIONS, hard if hard != resource.RLIM_INFINITY else 2 * WORKER_CONNECTIONS)


def error_answers(max_body: int) -> dict[str, tuple[int, str, str]]:
    """name -> (status, code, message) of each error nginx answers itself, in the app's error shape: a status, or a
    status and why (the 429s: too many at once, too many a second, too many costly requests a minute)."""
    mb = (max_body - FORM_OVERHEAD) / 1024 / 1024
    answers = {
        400: ("bad_request", "The request is malformed."),
        404: ("not_found", "There is nothing at this address."),
        405: ("method_not_allowed", "This method is not allowed here."),
        408: ("request_timeout", "The request took too long to arrive."),
        413: ("request_too_large", f"The request is larger than {mb:.0f} MB. Send fewer or smaller images."),
        "413-json": ("json_too_large", f"A JSON body carries URLs and options: at most {max_json_bytes():,} bytes. "
                                       f"Send images as a multipart form."),
        414: ("uri_too_long", "The address is too long."),
        429: ("too_many_requests", f"Too many of your requests are in progress at once (at most {PER_CLIENT}, "
                                   f"{PER_NETWORK} from your network, and {UPLOADS_PER_CLIENT} uploads of 1 MB or "
                                   f"more, {UPLOADS_PER_NETWORK} from your network), or the server is receiving as "
                                   f"many uploads as it takes; wait for some to finish."),
        "429-rate": ("too_many_requests", f"Too many requests from your address: at most {REQUESTS_PER_SECOND} a "
                                          f"second ({REQUEST_BURST} at once). Try again in {RETRY_RATE} s."),
        "429-uploads": ("too_many_requests", f"Too many large uploads (1 MB or more) begun from your network: at "
                                             f"most {UPLOAD_STARTS_PER_MINUTE} a minute ({UPLOAD_START_BURST} at "
                                             f"once). Try again in {RETRY_UPLOADS} s."),
        "429-costly": ("too_many_requests", f"Too many evaluations, explanations and exports from your address: at "
                                            f"most {COSTLY_PER_MINUTE} a minute ({COSTLY_BURST} at once). Try again in "
                                            f"{RETRY_COSTLY} s."),
        494: ("request_header_too_large", "The request's headers are too large."),
        500: ("internal_error", "The front server failed; try again."),
        502: ("unavailable", "The server is starting or restarting; try again in a few seconds."),
        503: ("unavailable", "The server is busy; try again in a few seconds."),
        504: ("timeout", f"The server did not answer within {upstream_seconds()} s."),
        501: ("not_implemented", "This transfer encoding is not supported; send the body with a Content-Length "
                                 "or chunked."),
        505: ("http_version_not_supported", "Use HTTP/1.1."),
    }
    # nginx answers 494 as 400, and nginx.conf turns 501 and 505 (the client's transfer coding or HTTP version) into 400
    return {str(name): (400 if name in (494, 501, 505) else int(str(name)[:3]), code, message)
            for name, (code, message) in answers.items()}


def write_error_files(folder: Path, max_body: int) -> None:
    folder.mkdir()
    for name, (status, code, message) in error_answers(max_body).items():
        (folder / f"{name}.json").write_bytes(json_body(status, code, message))
        (folder / f"{name}.html").write_bytes(html_page(status, message))
        os.chmod(folder / f"{name}.json", 0o644)
        os.chmod(folder / f"{name}.html", 0o644)
    os.chmod(folder, 0o755)


def nginx_workers() -> int:
    """One nginx worker per core this process may use, at most two. With one, that worker (reading, refusing and
    draining every attacker's body) was busy 65% of each minute of the soak, and another user's request waited for
    its event loop; more than two would only add memory on the 2-core machines this runs on. A container sees the
    host's cores in os.cpu_count(); the affinity mask is what it may use."""
    return max(1, min(2, len(os.sched_getaffinity(0))))


def user_line() -> str:
    """As root (a development machine, CI), nginx's workers would run as `nobody`; the image runs as `app`."""
    if os.geteuid() != 0:
        return ""
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


def render(run_dir: Path, socket_path: Path) -> str:
    """deploy/nginx.conf rendered by Jinja from this module's numbers (its upper-case constants) and what is
    computed at start; a placeholder nothing fills is an error (StrictUndefined)."""
    from jinja2 import Environment, StrictUndefined, UndefinedError

    constants = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, int)}
    values = {**constants, "USER": user_line(), "MODULES": module_lines(), "NOFILE": open_file_limit(),
              "NGINX_WORKERS": nginx_workers(), "RUN_DIR": run_dir, "SOCKET": socket_path, "LISTEN": listen_lines(),
              "MAX_BODY_BYTES": max_body_bytes(), "MAX_JSON_BYTES": max_json_bytes(),
              "JSON_TOO_LARGE": larger_than(max_json_bytes()), "TRUSTED_HOPS": trusted_hops(),
              "CLIENT_PATTERN": client_pattern(trusted_hops()), "CLIENT_KEYS": client_key_lines(),
              "NETWORK_KEYS": network_key_lines(), "UPSTREAM_SECONDS": upstream_seconds()}
    template = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(TEMPLATE.read_text())
    try:
        return template.render(values)
    except UndefinedError as exc:
        raise StartError(f"deploy/nginx.conf has a placeholder that start.py does not fill: {exc}") from None


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """In its own session (a signal to our process group is for this script, which relays it), stopped if we die."""
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, preexec_fn=die_with_parent)


def stop(process: subprocess.Popen, signum: int, seconds: float) -> int:
    """Signal the process's whole group (nginx's workers outlive a killed master otherwise), wait, then kill it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def wait_for_socket(path: Path, app: subprocess.Popen, stopping: list[int], seconds: float = 120) -> None:
    """nginx starts once gunicorn's master has bound its socket: started together, nginx answered the first
    requests of a fresh server with 502. From then on a request waits in the socket's backlog until the worker
    has loaded the models, and is answered."""
    deadline = time.monotonic() + seconds
    while not path.exists() and app.poll() is None and not stopping and time.monotonic() < deadline:
        time.sleep(0.05)


def serve() -> int:
    nginx = find_nginx()
    run_dir = Path(tempfile.mkdtemp(prefix="cifar10-front-"))
    os.chmod(run_dir, 0o711)  # nginx's workers (as root: nobody) reach the socket and the error files
    socket_path = run_dir / "gunicorn.sock"
    try:
        write_error_files(run_dir / "errors", max_body_bytes())
        config = run_dir / "nginx.conf"
        config.write_text(render(run_dir, socket_path))
        checked = subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-p", str(run_dir), "-c", str(config)],
                                 capture_output=True, text=True)
        if checked.returncode != 0:
            raise StartError(f"nginx refused the configuration: {checked.stderr.strip()}")

        stopping: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda received, _frame: stopping.append(received))
        environment = {**os.environ, "GUNICORN_BIND": f"unix:{socket_path}", "FRONT_DOOR": "1"}
        app = start([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"], environment)
        wait_for_socket(socket_path, app, stopping)
        front = start([nginx, "-e", "stderr", "-p", str(run_dir), "-c", str(config)], dict(os.environ))
        print(f"[start] nginx on {listen_address()} (pid {front.pid}), gunicorn on {socket_path} (pid {app.pid})",
              flush=True)
        while not stopping and app.poll() is None and front.poll() is None:
            time.sleep(0.2)
        if stopping:
            front_code = stop(front, signal.SIGQUIT, DRAIN_SECONDS)  # graceful: finishes the requests in flight
            app_code = stop(app, signal.SIGTERM, 35)  # gunicorn.conf.py: graceful_timeout = 30
            return front_code or app_code
        dead, survivor = (app, front) if app.poll() is not None else (front, app)
        name = "gunicorn" if dead is app else "nginx"
        print(f"[start] {name} exited with status {dead.returncode}; stopping the other", file=sys.stderr,
              flush=True)
        stop(dead, signal.SIGTERM, 5)  # what is left of its group (nginx's workers)
        stop(survivor, signal.SIGTERM, 35)
        return dead.returncode or 1
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    try:
        return serve()
    except (StartError, ValueError) as exc:  # ValueError: a setting that is not a number (PORT=abc)
        print(f"[start] cannot start: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
