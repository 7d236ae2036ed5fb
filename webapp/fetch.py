"""Fetch an image from a user-supplied URL without becoming a proxy into the server's network.

Rules: http/https only; the host is resolved here and every address it resolves to must be public
(no loopback, private, link-local, multicast, reserved or unspecified addresses), and the connection
goes to the address that was checked (no second DNS lookup to rebind); at most `max_redirects`
redirects, each target checked the same way; connect and read timeouts plus an overall deadline;
the body is streamed and cut off at `max_bytes`; a non-image content type is refused.

`allowed_hosts` exists for tests only: addresses listed there skip the public-address rule, so a
test can serve images from a loopback server.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

USER_AGENT = "cifar10-compare/1.0 (+image fetch)"


class FetchError(ValueError):
    """The URL cannot be fetched as an image; the message is safe to show to the user."""


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 5.0  # the longest silence between two reads
    total_timeout: float = 10.0  # one URL, everything included: connect, status line, headers, body, redirects
    request_timeout: float = 15.0  # all the URLs of one request together
    concurrency: int = 4  # URLs of one request fetched at the same time
    max_requests: int = 4  # requests fetching URLs at the same time, per process (the rest: "busy")
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)  # tests only


# IPv6 ranges that reach IPv4 hosts through a translator or tunnel we cannot see into: never contacted.
TRANSLATED_IPV6 = tuple(ipaddress.ip_network(n) for n in (
    "64:ff9b::/96", "64:ff9b:1::/48",  # NAT64 (RFC 6052, RFC 8215)
    "2001::/32",  # Teredo
    "::/96",  # IPv4-compatible (deprecated; ::7f00:1 is 127.0.0.1)
))


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the address is a public unicast one. An IPv6 address that embeds an IPv4 one is judged by it
    (IPv4-mapped ::ffff:a.b.c.d, 6to4 2002:aabb:ccdd::); NAT64, Teredo and IPv4-compatible ones are refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return is_public(address.ipv4_mapped)
        if address.sixtofour:
            return is_public(address.sixtofour)
        if any(address in network for network in TRANSLATED_IPV6):
            return False
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


def resolve_checked(host: str, port: int, policy: FetchPolicy) -> str:
    """The first address of `host`, after checking that every address it resolves to may be contacted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"the host {host!r} could not be resolved") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise FetchError(f"the host {host!r} has no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if text not in policy.allowed_hosts and host not in policy.allowed_hosts and not is_public(address):
            raise FetchError(f"the URL points to a non-public address ({address}); only public hosts are fetched")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pre-checked IP address, with SNI and certificate checks for the original host name."""

    def __init__(self, address: str, port: int, server_hostname: str, timeout: float):
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._server_hostname = server_hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_hostname)


def _cut(sock: socket.socket) -> None:
    """Unblock whatever is reading from `sock` (the fetch's deadline has passed)."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def _deadline(sock: socket.socket, deadline: float) -> Iterator[None]:
    """Shut the socket down when the deadline passes, whatever the server trickles: a per-read timeout alone
    lets a server that sends one byte every few seconds hold a request thread for minutes."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, [sock])
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _target(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, Host header, request path) of a URL, or FetchError for anything malformed."""
    try:
        parts = urlsplit(url)
        scheme, hostname, port = parts.scheme, parts.hostname, parts.port
    except ValueError:
        raise FetchError("the URL is malformed") from None
    if scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {scheme or 'a relative URL'!r}")
    if not hostname:
        raise FetchError("the URL has no host")
    if parts.username or parts.password:
        raise FetchError("URLs with credentials are not fetched")
    try:
        ascii_host = hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
    except UnicodeError:
        raise FetchError("the URL's host name is not valid") from None
    # Paths copied from a browser may hold non-ASCII characters or spaces: percent-encode them (not twice).
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    port = port or (443 if scheme == "https" else 80)
    host_header = ascii_host if parts.port is None else f"{ascii_host}:{parts.port}"
    return scheme, ascii_host, port, host_header, path


def _open(url: str, policy: FetchPolicy, deadline: float
          ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    scheme, host, port, host_header, path = _target(url)
    address = resolve_checked(host, port, policy)
    connect_timeout = max(0.05, min(policy.connect_timeout, deadline - time.monotonic()))
    if scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(address, port, host, connect_timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=connect_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(policy.read_timeout)
        with _deadline(conn.sock, deadline):
            conn.request("GET", path, headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*"})
            return conn, conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        if time.monotonic() >= deadline:
            raise FetchError(_too_slow(policy)) from None
        if isinstance(exc, TimeoutError):
            raise FetchError("the server did not answer in time") from None
        raise FetchError(f"could not connect to {host} ({type(exc).__name__})") from None


def _too_slow(policy: FetchPolicy) -> str:
    return f"the server took longer than {policy.total_timeout:g} s to send the image"


def fetch_image_bytes(url: str, policy: FetchPolicy | None = None, deadline: float | None = None) -> bytes:
    """The body of `url` (an image), following at most `policy.max_redirects` redirects, all within
    `policy.total_timeout` seconds (and before `deadline`, a time.monotonic() value, when given)."""
    policy = policy or FetchPolicy()
    if len(url) > 2048:
        raise FetchError("the URL is longer than 2048 characters")
    deadline = min(time.monotonic() + policy.total_timeout, deadline or float("inf"))
    seen = set()
    for _ in range(policy.max_redirects + 1):
        if url in seen:
            raise FetchError("the URL redirects in a loop")
        seen.add(url)
        conn, response = _open(url, policy, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"the server answered {response.status} without a Location")
                try:
                    url = urljoin(url, location)
                except ValueError:
                    raise FetchError("the server redirected to a malformed URL") from None
                continue
            if response.status != 200:
                raise FetchError(f"the server answered HTTP {response.status}")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
                raise FetchError(f"the URL is not an image (content type {content_type})")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchError(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
            with _deadline(conn.sock, deadline):
                return _read_capped(response, policy, deadline)
        finally:
            conn.close()
    raise FetchError(f"more than {policy.max_redirects} redirects")


_fetching_requests = 0
_fetching_lock = threading.Lock()


@contextmanager
def _fetch_slot(limit: int) -> Iterator[bool]:
    """Whether this request may fetch now: at most `limit` requests fetch URLs at once in a process, so slow
    image hosts can hold a few request threads for their deadline, never all of them."""
    global _fetching_requests
    with _fetching_lock:
        granted = _fetching_requests < limit
        _fetching_requests += granted
    try:
        yield granted
    finally:
        if granted:
            with _fetching_lock:
                _fetching_requests -= 1


def fetch_all(urls: list[str], policy: FetchPolicy) -> list[bytes | FetchError]:
    """Every URL's bytes or its FetchError, in order: fetched `policy.concurrency` at a time, all within
    `policy.request_timeout` seconds, so one request's URLs hold a request thread for a bounded time."""
    if not urls:
        return []
    with _fetch_slot(policy.max_requests) as granted:
        if not granted:
            busy = FetchError("the server is busy fetching other requests' URLs; try again in a few seconds")
            return [busy for _ in urls]
        return _fetch_all(urls, policy)


def _fetch_all(urls: list[str], policy: FetchPolicy) -> list[bytes | FetchError]:
    deadline = time.monotonic() + policy.request_timeout

    def one(url: str) -> bytes | FetchError:
        if time.monotonic() >= deadline:
            return FetchError(f"not fetched: the request's {policy.request_timeout:g} s for all its URLs ran out")
        try:
            return fetch_image_bytes(url, policy, deadline)
        except FetchError as exc:
            return exc

    if len(urls) <= 1:
        return [one(url) for url in urls]
    with ThreadPoolExecutor(max_workers=min(policy.concurrency, len(urls)), thread_name_prefix="fetch") as pool:
        return list(pool.map(one, urls))


def _read_capped(response: http.client.HTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    chunks, total = [], 0
    try:
        while chunk := response.read1(64 * 1024):
            total += len(chunk)
            if total > policy.max_bytes:
                raise FetchError(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
            if time.monotonic() > deadline:
                raise FetchError(_too_slow(policy))
            chunks.append(chunk)
    except TimeoutError:
        raise FetchError("the server stopped sending data") from None
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:
            raise FetchError(_too_slow(policy)) from None
        raise FetchError(f"the download failed ({type(exc).__name__})") from None
    return b"".join(chunks)
