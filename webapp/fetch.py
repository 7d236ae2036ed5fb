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
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

USER_AGENT = "cifar10-compare/1.0 (+image fetch)"


class FetchError(ValueError):
    """The URL cannot be fetched as an image; the message is safe to show to the user."""


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    total_timeout: float = 10.0
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)  # tests only


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
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


def _open(url: str, policy: FetchPolicy) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {parts.scheme or 'a relative URL'!r}")
    if not parts.hostname:
        raise FetchError("the URL has no host")
    if parts.username or parts.password:
        raise FetchError("URLs with credentials are not fetched")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("the URL has an invalid port") from None
    address = resolve_checked(parts.hostname, port, policy)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(address, port, parts.hostname,
                                                                  policy.connect_timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=policy.connect_timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    try:
        conn.request("GET", path, headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*"})
        if conn.sock is not None:
            conn.sock.settimeout(policy.read_timeout)
        return conn, conn.getresponse()
    except TimeoutError:
        conn.close()
        raise FetchError("the server did not answer in time") from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise FetchError(f"could not connect to {parts.hostname} ({type(exc).__name__})") from None


def fetch_image_bytes(url: str, policy: FetchPolicy | None = None) -> bytes:
    """The body of `url` (an image), following at most `policy.max_redirects` redirects."""
    policy = policy or FetchPolicy()
    if len(url) > 2048:
        raise FetchError("the URL is longer than 2048 characters")
    deadline = time.monotonic() + policy.total_timeout
    seen = set()
    for _ in range(policy.max_redirects + 1):
        if url in seen:
            raise FetchError("the URL redirects in a loop")
        seen.add(url)
        conn, response = _open(url, policy)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"the server answered {response.status} without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"the server answered HTTP {response.status}")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
                raise FetchError(f"the URL is not an image (content type {content_type})")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchError(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
            return _read_capped(response, policy, deadline)
        finally:
            conn.close()
    raise FetchError(f"more than {policy.max_redirects} redirects")


def _read_capped(response: http.client.HTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    chunks, total = [], 0
    try:
        while chunk := response.read1(64 * 1024):
            total += len(chunk)
            if total > policy.max_bytes:
                raise FetchError(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
            if time.monotonic() > deadline:
                raise FetchError("the download took too long")
            chunks.append(chunk)
    except TimeoutError:
        raise FetchError("the server stopped sending data") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"the download failed ({type(exc).__name__})") from None
    return b"".join(chunks)
