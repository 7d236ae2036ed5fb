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
    ("http://[::1/", "malformed"),
    ("http://[/", "malformed"),
    ("http://[foo]/", "malformed"),
    ("http://[2002:7f00:1::]/x.png", "non-public address"),  # 6to4 around 127.0.0.1
    ("http://[2002:a9fe:a9fe::]/x.png", "non-public address"),  # 6to4 around 169.254.169.254
    ("http://[64:ff9b::a00:1]/x.png", "non-public address"),  # NAT64
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x.png", "non-public address"),  # Teredo
    ("http://[::7f00:1]/x.png", "non-public address"),  # IPv4-compatible 127.0.0.1
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


def test_embedded_ipv4_addresses_are_judged_by_the_address_they_embed():
    from ipaddress import ip_address

    from webapp.fetch import is_public

    assert is_public(ip_address("2002:808:808::1"))  # 6to4 around 8.8.8.8: public
    assert not is_public(ip_address("2002:c0a8:101::1"))  # 6to4 around 192.168.1.1
    assert not is_public(ip_address("::ffff:10.0.0.1")) and is_public(ip_address("::ffff:8.8.8.8"))


def test_non_ascii_paths_and_odd_redirects(server):
    assert fetch_image_bytes(f"{server.base}/café.jpg", TEST_POLICY) == PNG  # as copied from a browser
    assert fetch_image_bytes(f"{server.base}/caf%C3%A9.jpg", TEST_POLICY) == PNG  # already encoded: not twice
    assert fetch_image_bytes(f"{server.base}/to-cafe", TEST_POLICY) == PNG
    with pytest.raises(FetchError, match="malformed"):
        fetch_image_bytes(f"{server.base}/to-broken-ipv6", TEST_POLICY)


def test_a_server_trickling_its_headers_is_cut_off_at_the_total_deadline(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match="longer than 3 s"):
        fetch_image_bytes(f"{server.base}/trickle-headers", TEST_POLICY)  # total_timeout 3 s, read_timeout 1 s
    assert time.monotonic() - start < 3.5


def test_a_request_with_many_silent_urls_is_bounded_by_its_budget(server):
    from dataclasses import replace

    from webapp.fetch import fetch_all

    policy = replace(TEST_POLICY, read_timeout=5, total_timeout=5, request_timeout=2, concurrency=4)
    start = time.monotonic()
    results = fetch_all([f"{server.base}/silent"] * 12 + [f"{server.base}/image.png"], policy)
    assert time.monotonic() - start < 3  # not 12 x 5 s one after another
    assert all(isinstance(r, FetchError) for r in results[:12])
    assert any("ran out" in str(r) for r in results[:12])  # the later ones are not even started


def test_a_server_that_never_answers_times_out(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match="did not answer in time"):
        fetch_image_bytes(f"{server.base}/silent", TEST_POLICY)
    assert time.monotonic() - start < 3


def test_only_a_few_requests_fetch_at_once_the_others_are_told_the_server_is_busy(server):
    import threading
    from dataclasses import replace

    from webapp.fetch import fetch_all

    policy = replace(TEST_POLICY, request_timeout=1.5, max_requests=1)
    holder = threading.Thread(target=fetch_all, args=([f"{server.base}/silent"], policy))
    holder.start()
    time.sleep(0.2)
    start = time.monotonic()
    (busy,) = fetch_all([f"{server.base}/image.png"], policy)
    assert isinstance(busy, FetchError) and "busy" in str(busy) and time.monotonic() - start < 0.1
    holder.join()
    assert fetch_all([f"{server.base}/image.png"], policy) == [PNG]  # the slot is free again
