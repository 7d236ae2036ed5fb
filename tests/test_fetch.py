"""Fetching images from user URLs: only public hosts, bounded redirects, time and size."""

from __future__ import annotations

import socket
import time

import pytest

from devkit.url_server import PNG, LocalServer
from webapp.fetch import FetchError, FetchPolicy, fetch_image_bytes

TEST_POLICY = FetchPolicy(allowed_hosts=frozenset({"127.0.0.1"}), connect_timeout=1, read_timeout=1,
                          total_timeout=3, max_bytes=1024 * 1024)


@pytest.fixture(scope="module")
def server():
    with LocalServer() as running:
        yield running


def test_fetches_an_image_and_follows_up_to_three_redirects(server):
    assert fetch_image_bytes(f"{server.base}/image.png", TEST_POLICY) == PNG
    assert fetch_image_bytes(f"{server.base}/image-no-type", TEST_POLICY) == PNG
    assert fetch_image_bytes(f"{server.base}/hops/3", TEST_POLICY) == PNG
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch_image_bytes(f"{server.base}/hops/4", TEST_POLICY)


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/cat.jpg", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("http://127.0.0.1:9/cat.jpg", "non-public address"),
    ("http://[::1]/cat.jpg", "non-public address"),
    ("http://169.254.169.254/latest/meta-data/", "non-public address"),
    ("http://10.1.2.3/x.png", "non-public address"),
    ("http://0.0.0.0/x.png", "non-public address"),
    ("http://user:pw@example.com/x.png", "credentials"),
])
def test_refuses_other_schemes_and_non_public_addresses(url, message):
    with pytest.raises(FetchError, match=message):
        fetch_image_bytes(url, FetchPolicy())


def test_a_public_looking_name_that_resolves_to_a_private_address_is_refused(monkeypatch):
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(FetchError, match="non-public address"):
        fetch_image_bytes("http://images.example.com/cat.jpg", FetchPolicy())


@pytest.mark.parametrize("route, message", [
    ("/to-private", "non-public address"),
    ("/to-metadata", "non-public address"),
    ("/loop", "redirects in a loop"),
    ("/missing", "HTTP 404"),
    ("/html", "not an image"),
    ("/declares-huge", "larger than 1 MB"),
    ("/endless", "larger than 1 MB"),
])
def test_redirects_are_rechecked_and_bad_answers_refused(server, route, message):
    with pytest.raises(FetchError, match=message):
        fetch_image_bytes(server.base + route, TEST_POLICY)


def test_a_server_that_never_answers_times_out(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match="did not answer in time"):
        fetch_image_bytes(f"{server.base}/silent", TEST_POLICY)
    assert time.monotonic() - start < 3
