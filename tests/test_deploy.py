"""The deployment as Railway runs it: the Procfile's gunicorn command on a free port, really serving."""

from __future__ import annotations

import json
import urllib.request

import pytest

from devkit.images import encode, photo
from devkit.server import ProcfileServer, multipart, procfile_command

pytestmark = pytest.mark.slow


def test_procfile_gunicorn_serves_readyz_and_predict():
    command = procfile_command()
    assert command[0] == "gunicorn" and "app:app" in command
    server = ProcfileServer(capture_output=True)
    try:
        assert server.wait_ready(180), "gunicorn did not become ready"
        body, content_type = multipart([("cat.jpg", encode(photo(64, 64), "JPEG"))])
        request = urllib.request.Request(server.base + "/api/v1/predict", data=body,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())
        assert set(result["results"][0]["predictions"]) == {"custom_cnn", "mobilenetv2"}
    finally:
        server.stop()
        output = server.proc.stdout.read().decode(errors="replace")
    assert "Booting worker" in output and "Traceback" not in output
