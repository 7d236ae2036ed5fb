"""Admission by cost: the expensive kinds of request get a few slots each, so cheap ones always find a thread.

A worker has GUNICORN_THREADS request threads (16) and two cores. Sixteen evaluations of 500 images from one
client once held every thread: another user's one-image comparison waited 36 s (p95) and /healthz timed out.
Here each expensive kind has its own small number of slots per worker (COSTLY_SLOTS), together well below the
thread count, and each client may hold at most COSTLY_PER_CLIENT of them at once, whatever the kind; a request
that finds no slot is answered 429 at once with Retry-After (it never waits holding a thread). One-image
comparisons take no slot, but a client may have at most IN_FLIGHT_PER_CLIENT requests for the models in
progress, one-image ones included: 32 concurrent one-image requests of slow-to-decode PNGs from one address
kept another user's photo waiting 23 s. Pages and health checks take nothing: nginx's per-client rate limit
bounds them (docs/deploy.md).

A client is its address as the trusted proxies saw it (ProxyFix; X-Forwarded-For is believed only where a proxy
is configured to append to it), an IPv6 address counted by its /64: one host is usually given a whole /64.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g, request

from webapp.inference import RequestError

# What each kind costs and what its 429 says; the slots per kind are the COSTLY_SLOTS setting.
KINDS = {
    "evaluate": ("evaluating other people's images", 15),
    "explain": ("making other requests' explanation maps", 5),
    "export": ("writing other people's PDFs", 5),
    "batch": ("comparing other people's batches of images", 5),
}


def client_key(address: str | None) -> str:
    """The client an address belongs to: IPv4 as is, IPv6 by its /64 prefix, as nginx counts them (a port or
    brackets dropped: "10.5.5.6:1" and "10.5.5.6:2" are one client). Anything else is one shared "unknown"
    client: a value that is no address must not give its sender a fresh share each time it changes."""
    text = (address or "").strip()
    if text.startswith("["):  # [2001:db8::1]:8080
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # 192.0.2.1:8080
        text = text.split(":", 1)[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Admission:
    """The costly slots of one worker: per kind, and per client across kinds."""

    def __init__(self, slots: dict[str, int], per_client: int, in_flight_per_client: int = 2):
        unknown = set(slots) - set(KINDS)
        if unknown:
            raise ValueError(f"COSTLY_SLOTS names unknown kinds: {', '.join(sorted(unknown))} (known: "
                             f"{', '.join(KINDS)})")
        self.slots = {kind: int(slots.get(kind, 1)) for kind in KINDS}
        self.per_client = per_client
        self.in_flight_per_client = in_flight_per_client
        self._lock = threading.Lock()
        self._in_use: Counter[str] = Counter()
        self._by_client: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()

    def in_use(self) -> dict[str, int]:
        with self._lock:
            return {kind: self._in_use[kind] for kind in KINDS}

    @contextmanager
    def slot(self, kind: str | None, client: str) -> Iterator[None]:
        """A place for one request of `kind` (None: a one-image comparison, which takes no costly slot but still
        counts against its client's requests in progress), or RequestError 429."""
        with self._lock:
            self._check(kind, client)
            self._in_flight[client] += 1
            if kind is not None:
                self._in_use[kind] += 1
                self._by_client[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._release(self._in_flight, client)
                if kind is not None:
                    self._in_use[kind] -= 1
                    self._release(self._by_client, client)

    def check_any(self, kinds: list[str], client: str) -> None:
        """RequestError 429 if a request of any of `kinds` from `client` would be refused now: its client's limits
        are reached, or every one of the kinds is busy. Nothing is taken."""
        with self._lock:
            busy = []
            for kind in kinds:
                try:
                    self._check(kind, client)
                    return
                except RequestError as exc:
                    if exc.code != "busy":
                        raise
                    busy.append(exc)
            if busy:
                raise busy[0]

    def _check(self, kind: str | None, client: str) -> None:
        if self._in_flight[client] >= self.in_flight_per_client:
            raise RequestError(f"you already have {self.in_flight_per_client} requests for the models in progress; "
                               "wait for them (several images go in one request)", "too_many_requests", 429,
                               retry_after=2)
        if kind is None:
            return
        what, retry = KINDS[kind]
        if self._by_client[client] >= self.per_client:
            raise RequestError(f"you already have {self.per_client} costly request{'s' if self.per_client != 1 else ''}"
                               " (evaluations, explanation maps, PDFs, batches of images) in progress; wait for it to "
                               "finish", "too_many_requests", 429, retry_after=retry)
        if self._in_use[kind] >= self.slots[kind]:
            raise RequestError(f"the server is busy {what}; try again in {retry} seconds", "busy", 429,
                               retry_after=retry)

    @staticmethod
    def _release(counts: Counter[str], client: str) -> None:
        counts[client] -= 1
        if not counts[client]:
            del counts[client]


def register(app: Flask) -> None:
    """One Admission per app (per worker process; tests create several apps in one process)."""
    app.extensions["admission"] = Admission(app.config["COSTLY_SLOTS"], app.config["COSTLY_PER_CLIENT"],
                                            app.config["IN_FLIGHT_PER_CLIENT"])
    app.before_request(_note_start)


def _note_start() -> None:
    """The request's start: now, or when nginx in front handed it over (X-Request-Start, set by deploy/nginx.conf
    over any client's value), if earlier: a request that waited for a thread has that much less time left. A
    forged value can only shorten the sender's own request."""
    now = time.monotonic()
    g.started = now
    header = request.headers.get("X-Request-Start", "")
    if header.startswith("t="):
        try:
            waited = time.time() - float(header[2:])
        except ValueError:
            return
        if 0 < waited < 600:
            g.started = now - waited


def request_started() -> float:
    """When this request reached the app (time.monotonic()): the time limits of costly requests count from here, so
    that reading an upload and waiting for a slot count too."""
    return g.get("started") or time.monotonic()


def deadline(seconds_setting: str) -> float:
    """This request's start plus the setting's seconds (COMPARE_MAX_SECONDS, EVALUATE_MAX_SECONDS)."""
    return request_started() + float(current_app.config[seconds_setting])


@contextmanager
def costly(kind: str | None) -> Iterator[None]:
    """A place for this request of `kind` (None: a one-image comparison) for this request's client, or 429."""
    with current_app.extensions["admission"].slot(kind, current_client()):
        yield


def refuse_before_parsing(explain: bool) -> None:
    """For a body that can only hold several images (over one file's limit): 429 now if such a request would be
    refused anyway, before its multipart body is parsed. Parsing an 11 MB body of 32 images costs 30 ms of
    Python holding the lock that the model passes need, and a flood of comparisons that were then refused did that
    a dozen times a second. `explain`: the request says so in its query (a form field would need the parse)."""
    if (request.content_length or 0) <= int(current_app.config["MAX_FILE_BYTES"]) + 65_536:
        return
    current_app.extensions["admission"].check_any(["explain"] if explain else ["batch", "explain"], current_client())


def current_client() -> str:
    """This request's client, as every per-client limit counts it."""
    return client_key(request.remote_addr)


def predict_kind(images: int, explain: bool) -> str | None:
    """A comparison's kind: explanation maps cost PASSES_PER_MAP passes an image; several images are a batch; one is
    cheap."""
    if explain:
        return "explain"
    return "batch" if images > 1 else None
