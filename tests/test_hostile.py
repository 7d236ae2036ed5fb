"""Hostile and odd inputs, each through the JSON API and the HTML form, in a batch with a good image.

Every case ends in a clear per-item error or request-level 4xx (never a 5xx), the good image in
the same batch still gets its predictions, the service stays ready, and nothing is written to disk.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devkit.images import (
    HTML,
    PDF,
    SVG,
    animated_gif,
    encode,
    exif_rotated_jpeg,
    float_tiff,
    gif_with_tiny_sub_blocks,
    many_scan_jpeg,
    photo,
    png_declaring,
    sixteen_bit_png,
)
from devkit.url_server import LocalServer
from tests.helpers import REPO, fake_predictors

GOOD = encode(photo(64, 64, seed=9), "JPEG")
LIMIT = 300_000  # per-file limit used by this module

OK = "ok"
FILE_CASES = {
    "zero-byte": (b"", "invalid_image"),
    "random bytes as .jpg": (np.random.default_rng(1).bytes(4000), "invalid_image"),
    "truncated JPEG": (encode(photo(200, 200), "JPEG")[:500], "invalid_image"),
    "truncated PNG": (encode(photo(200, 200), "PNG")[:500], "invalid_image"),
    "12 MP float TIFF (deflate): TIFF is not accepted": (float_tiff(4000, 3000), "invalid_image"),
    "16-bit PNG over 12 MP": (sixteen_bit_png(4000, 3100), "invalid_image"),
    "JPEG with 4,000 progressive scans": (many_scan_jpeg(1000, 750, 4000), "invalid_image"),
    "GIF with 1-byte sub-blocks": (gif_with_tiny_sub_blocks(2000, 2000), OK),
    "PNG named .jpg": (encode(photo(40, 30), "PNG"), OK),
    "SVG": (SVG, "invalid_image"),
    "HTML": (HTML, "invalid_image"),
    "PDF": (PDF, "invalid_image"),
    "decompression bomb 30000x30000": (png_declaring(30_000, 30_000), "invalid_image"),
    "over the per-file limit": (encode(photo(400, 400), "PNG"), "file_too_large"),
    "animated GIF": (animated_gif(), OK),
    "CMYK JPEG": (encode(Image.new("CMYK", (50, 50), (0, 200, 200, 0)), "JPEG"), OK),
    "16-bit PNG": (encode(Image.fromarray(np.full((30, 30), 40000, dtype=np.uint16)), "PNG"), OK),
    "grayscale": (encode(Image.new("L", (30, 30), 90), "PNG"), OK),
    "palette PNG with transparency": (encode(Image.new("P", (30, 30), 0), "PNG", transparency=0), OK),
    "RGBA PNG": (encode(Image.new("RGBA", (30, 30), (255, 0, 0, 60)), "PNG"), OK),
    "EXIF-rotated JPEG": (exif_rotated_jpeg(), OK),
    "1x1": (encode(Image.new("RGB", (1, 1), (5, 5, 5)), "PNG"), OK),
    "10000x20": (encode(Image.new("RGB", (10_000, 20), (0, 99, 0)), "PNG"), OK),
}
NAMES = {"path traversal": "../../../etc/passwd", "NUL byte": "evil\x00.png", "300 characters": "a" * 296 + ".png",
         "non-ASCII": "猫の写真 – été.png"}


def disk_snapshot(private_tmp: Path) -> set[str]:
    """Files under the repository (outside caches) and this module's own temporary folder (the app's spooled
    uploads go there): uploads must leave no trace. The system's temporary folder is not watched: other
    processes write there."""
    skip = (".venv", ".git", ".pytest_cache", ".ruff_cache", "__pycache__", "build", ".hypothesis", "node_modules")
    found = set()
    for root in (REPO, private_tmp):
        for path in root.rglob("*"):
            if not any(part in skip for part in path.relative_to(root).parts):
                found.add(str(path))
    return found


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """The app over fake models: what is under test here is the intake and the web layer, not the networks."""
    from webapp import create_app

    with fake_predictors(tmp_path_factory.mktemp("fake-models")):
        yield create_app({"TESTING": True, "MAX_FILE_BYTES": LIMIT, "SECRET_KEY": "hostile",
                          "FETCH_ALLOWED_TEST_HOSTS": ["127.0.0.1"], "FETCH_CONNECT_TIMEOUT": 1.0,
                          "FETCH_READ_TIMEOUT": 1.0, "FETCH_TOTAL_TIMEOUT": 3.0})


@pytest.fixture()
def client(hostile_app):
    return hostile_app.test_client()


@pytest.fixture(scope="module", autouse=True)
def nothing_written_to_disk(tmp_path_factory):
    private_tmp = tmp_path_factory.mktemp("hostile-tmp")
    saved, tempfile.tempdir = tempfile.tempdir, str(private_tmp)  # where werkzeug spools large form parts
    try:
        before = disk_snapshot(private_tmp)
        yield
        assert disk_snapshot(private_tmp) - before == set()
    finally:
        tempfile.tempdir = saved


def token(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


def assert_healthy(client) -> None:
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_case_through_the_api(client, case):
    data, expected = FILE_CASES[case]
    response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(GOOD), "good.jpg"),
                                                              (io.BytesIO(data), "case.jpg")]},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    good, result = response.get_json()["results"]
    assert set(good["predictions"]) == {"custom_cnn", "mobilenetv2"}
    if expected == OK:
        assert set(result["predictions"]) == {"custom_cnn", "mobilenetv2"}, result.get("error")
    else:
        assert result["error"]["code"] == expected and result["error"]["message"]
    assert_healthy(client)


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_case_through_the_form(client, case):
    data, expected = FILE_CASES[case]
    response = client.post("/", data={"csrf_token": token(client), "files": [(io.BytesIO(GOOD), "good.jpg"),
                                                                              (io.BytesIO(data), "case.jpg")]},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    cards = response.get_data(as_text=True).split('class="card result"')[1:]
    assert len(cards) == 2 and 'data-model="mobilenetv2"' in cards[0]
    if expected == OK:
        assert "item-error" not in cards[1] and cards[1].count('class="col-6 col-md prediction"') == 2
    else:
        assert "Could not classify this file" in cards[1]
    assert_healthy(client)


@pytest.mark.parametrize("label", list(NAMES))
def test_odd_file_names_are_only_displayed(client, label):
    response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(GOOD), NAMES[label])]},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    result = response.get_json()["results"][0]
    shown = result["source"]["name"]
    assert "/" not in shown and "\\x00" not in shown and "\x00" not in shown and len(shown) <= 81
    assert set(result["predictions"]) == {"custom_cnn", "mobilenetv2"}
    page = client.post("/", data={"csrf_token": token(client), "files": [(io.BytesIO(GOOD), NAMES[label])]},
                       content_type="multipart/form-data")
    assert page.status_code == 200 and "../" not in page.get_data(as_text=True).split('id="results"')[1]


@pytest.mark.parametrize("data, status, code", [
    ({"image": [(io.BytesIO(GOOD), "a.jpg")]}, 400, "wrong_field_name"),
    ({"top_k": "0"}, 400, "invalid_top_k"), ({"top_k": "-1"}, 400, "invalid_top_k"),
    ({"top_k": "11"}, 400, "invalid_top_k"), ({"top_k": "abc"}, 400, "invalid_top_k"),
    ({"models": "vgg16"}, 400, "unknown_model"),
])
def test_bad_request_options(client, data, status, code):
    if "image" not in data:
        data = {**data, "files": [(io.BytesIO(GOOD), "a.jpg")]}
    response = client.post("/api/v1/predict", data=data, content_type="multipart/form-data")
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert_healthy(client)


def test_more_files_than_allowed_and_a_request_over_max_content_length(hostile_app, client):
    files = [(io.BytesIO(GOOD), f"{i}.jpg") for i in range(hostile_app.config["MAX_IMAGES"] + 1)]
    response = client.post("/api/v1/predict", data={"files": files}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "too_many_images"
    huge = b"\0" * (hostile_app.config["MAX_CONTENT_LENGTH"] + 1024)
    response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(huge), "huge.png")]},
                           content_type="multipart/form-data")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "request_too_large"
    page = client.post("/", data={"csrf_token": token(client), "files": [(io.BytesIO(huge), "huge.png")]},
                       content_type="multipart/form-data")
    assert page.status_code == 413 and "larger than" in page.get_data(as_text=True)
    assert_healthy(client)


URL_CASES = {
    "file://": ("file:///etc/passwd", "only http and https"),
    "ftp://": ("ftp://ftp.example.com/cat.jpg", "only http and https"),
    "loopback (not allowed)": ("http://127.0.0.2:9/cat.jpg", "non-public address"),
    "IPv6 loopback": ("http://[::1]/cat.jpg", "non-public address"),
    "cloud metadata": ("http://169.254.169.254/latest/meta-data/", "non-public address"),
    "redirect to private": ("{base}/to-private", "non-public address"),
    "redirect loop": ("{base}/loop", "redirects in a loop"),
    "never answers": ("{base}/silent", "did not answer in time"),
    "endless body": ("{base}/endless", "larger than"),
    "404": ("{base}/missing", "HTTP 404"),
    "non-image content type": ("{base}/html", "not an image"),
    "image type, not an image": ("{base}/not-an-image", "not an image"),
    "malformed IPv6 host": ("http://[::1/", "malformed"),
    "empty IPv6 host": ("http://[/", "malformed"),
    "IPv6 host that is a name": ("http://[foo]/", "malformed"),
    "redirect to a malformed URL": ("{base}/to-broken-ipv6", "malformed"),
    "6to4 around loopback": ("http://[2002:7f00:1::]/cat.jpg", "non-public address"),
    "6to4 around cloud metadata": ("http://[2002:a9fe:a9fe::]/cat.jpg", "non-public address"),
    "headers trickled a byte at a time": ("{base}/trickle-headers", "took longer than 3 s"),
}


@pytest.fixture(scope="module")
def server():
    with LocalServer() as running:
        yield running


@pytest.mark.parametrize("case", list(URL_CASES))
def test_url_case_through_the_api_and_the_form(client, server, case):
    url, message = URL_CASES[case]
    url = url.format(base=server.base)
    response = client.post("/api/v1/predict", json={"urls": [f"{server.base}/image.png", url]})
    assert response.status_code == 200
    good, bad = response.get_json()["results"]
    assert set(good["predictions"]) == {"custom_cnn", "mobilenetv2"}
    assert message in bad["error"]["message"]
    page = client.post("/", data={"csrf_token": token(client), "urls": f"{server.base}/image.png\n{url}"},
                       content_type="multipart/form-data")
    assert page.status_code == 200 and "Could not classify this URL" in page.get_data(as_text=True)
    assert_healthy(client)


def test_a_non_ascii_url_as_copied_from_a_browser_is_fetched(client, server):
    response = client.post("/api/v1/predict", json={"urls": [f"{server.base}/café.jpg", f"{server.base}/to-cafe"]})
    assert response.status_code == 200
    assert all(set(r["predictions"]) == {"custom_cnn", "mobilenetv2"} for r in response.get_json()["results"])


@pytest.mark.parametrize("body", ["[" * 60_000, '{"urls": ' + "[" * 5_000 + "]" * 5_000 + "}"])
def test_deeply_nested_json_is_a_400_not_a_500(client, body):
    response = client.post("/api/v1/predict", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] in ("invalid_json", "invalid_urls")
    assert_healthy(client)


def test_ten_thousand_form_fields_get_a_413_that_says_so(client):
    fields = {f"f{i}": "x" for i in range(10_000)}
    for path in ("/api/v1/predict", "/"):
        response = client.post(path, data=fields, content_type="multipart/form-data")
        assert response.status_code == 413
        text = response.get_data(as_text=True)
        assert "too many fields" in text and "larger than" not in text


def test_a_public_looking_host_resolving_to_a_private_address(client, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))])
    response = client.post("/api/v1/predict", json={"urls": ["http://cdn.images-example.com/cat.jpg"]})
    assert "non-public address" in response.get_json()["results"][0]["error"]["message"]


def test_a_json_body_is_read_only_up_to_its_bound_and_never_parsed_whole(client):
    """A 45 MB body of empty objects was parsed whole (the worker grew by a gigabyte) before anything checked it."""
    import tracemalloc

    huge = b'{"urls": [], "pad": [' + b"{}," * 400_000 + b"{}]}"
    tracemalloc.start()
    response = client.post("/api/v1/predict", data=huge, content_type="application/json")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "json_too_large"
    assert peak < 20 * len(huge)  # never a parsed copy (hundreds of bytes per empty object)
    # No Content-Length (chunked, as gunicorn passes it on: the server marks the input terminated): still bounded.
    chunked = client.post("/api/v1/predict", input_stream=io.BytesIO(huge),
                          environ_base={"wsgi.input_terminated": True},
                          headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert chunked.status_code == 413


@pytest.mark.parametrize("body", ['{"urls": ["\\ud800"]}', '{"\\udfff": 1}', '{"urls": [], "models": ["\\ud83d"]}'])
def test_a_lone_surrogate_in_json_is_a_clear_400_not_a_500(client, body):
    response = client.post("/api/v1/predict", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"
    assert "surrogate" in response.get_json()["error"]["message"]
