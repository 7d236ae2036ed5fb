"""Errors in the app's shape from gunicorn alone (`make run`), and a multipart file name that is not UTF-8.

The same behaviour behind nginx is tested through the public start command in tests/test_front_server.py.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from devkit.images import encode, photo
from devkit.server import free_port
from tests.helpers import REPO


def read_answer(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


@pytest.fixture(scope="module")
def gunicorn_alone(tmp_path_factory):
    """`make run`: gunicorn with gunicorn.conf.py on loopback, no nginx (no models loaded: only its errors matter)."""
    port = free_port()
    log = (tmp_path_factory.mktemp("gunicorn") / "server.log").open("wb")
    env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "SECRET_KEY": "tests", "APP_PRELOAD_MODELS": "false"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"], cwd=REPO,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(30)
        log.close()


REFUSED_BY_GUNICORN = {
    "a control character in a header": (b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "a raw non-UTF-8 byte in the path": (b"GET {path}\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "a raw byte in the query": (b"GET {path}?x=\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "HTTP/2.0 in a plain request line": (b"GET {path} HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    "a request line over gunicorn's limit": (b"GET {path}?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED_BY_GUNICORN))
def test_gunicorn_alone_refuses_in_the_app_shape(gunicorn_alone, case):
    """gunicorn answered these with its own HTML page, under /api/ too: now the API's JSON there (the status is still
    gunicorn's), and a page elsewhere."""
    template, expected = REFUSED_BY_GUNICORN[case]
    status, headers, body = read_answer(gunicorn_alone, template.replace(b"{path}", b"/api/v1/models"))
    assert status == expected and headers["content-type"] == "application/json", body[:300]
    error = json.loads(body)["error"]
    assert error["status"] == expected and error["code"] and error["message"]
    status, headers, body = read_answer(gunicorn_alone, template.replace(b"{path}", b"/models"))
    assert status == expected and headers["content-type"].startswith("text/html") and b"<!doctype html>" in body


def test_a_file_named_in_latin_1_is_classified_like_the_others(client):
    """werkzeug decoded each part's headers as UTF-8: a Latin-1 file name (raw byte \\xe9) made every file of the form
    vanish, and the API answered 400 no_images. Now that file is one more result, named as Latin-1 reads it."""
    image = encode(photo(64, 64), "JPEG")
    body = b"".join(b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="' + name +
                    b'"\r\nContent-Type: image/jpeg\r\n\r\n' + image + b"\r\n"
                    for name in (b"good.jpg", b"caf\xe9.jpg", "猫.jpg".encode()))
    response = client.post("/api/v1/predict", input_stream=io.BytesIO(body + b"--b0undary--\r\n"),
                           content_type="multipart/form-data; boundary=b0undary")
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["source"]["name"] for r in results] == ["good.jpg", "café.jpg", "猫.jpg"]
    assert all(set(r["predictions"]) == {"custom_cnn", "mobilenetv2"} for r in results)
