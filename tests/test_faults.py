"""Faults: missing or corrupt model files, and a gunicorn worker killed under load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

import models
from devkit.images import encode, photo
from devkit.server import ProcfileServer, multipart, nginx_installed
from tests.helpers import REPO, require_tool

pytestmark = pytest.mark.slow  # the committed models, real processes

MODEL_FILES = {"custom_cnn": "weights.pt", "mobilenetv2": "model.tflite"}


@pytest.fixture()
def model_root(tmp_path, monkeypatch):
    """A copy of models/<name>/ for each model, served instead of the committed folders."""
    root = tmp_path / "models"
    for name in MODEL_FILES:
        shutil.copytree(REPO / "models" / name, root / name, ignore=shutil.ignore_patterns("checkpoints", "runs"))
    monkeypatch.setenv("CIFAR10_MODELS_DIR", str(root))
    models.forget_loaded_models()
    yield root
    models.forget_loaded_models()


def damage(path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:  # wrong format: a JPEG saved under the weights' name
        path.write_bytes(encode(photo(), "JPEG"))


@pytest.mark.parametrize("broken", ["custom_cnn", "mobilenetv2"])
@pytest.mark.parametrize("how", ["missing", "truncated", "wrong-format"])
def test_a_broken_model_file_leaves_the_app_up_and_the_other_model_serving(model_root, broken, how):
    from webapp import create_app

    weights = model_root / broken / MODEL_FILES[broken]
    damage(weights, how)
    client = create_app({"TESTING": True}).test_client()  # starts despite the broken model
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    reason = ready.get_json()["models"][broken]
    assert str(weights) in reason and ("missing" in reason if how == "missing" else "damaged" in reason)
    other = next(n for n in MODEL_FILES if n != broken)
    assert ready.get_json()["models"][other] == "ok"
    assert f"{broken} is unavailable" in client.get("/").get_data(as_text=True)
    import io

    response = client.post("/api/v1/predict", data={"files": [(io.BytesIO(encode(photo(), "PNG")), "a.png")]},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    result = response.get_json()["results"][0]
    assert list(result["predictions"]) == [other] and result["model_errors"][broken]["code"] == "model_unavailable"


def test_a_killed_worker_is_replaced_and_only_in_flight_requests_fail():
    require_tool("nginx", nginx_installed())
    with ProcfileServer() as server:
        assert server.wait_ready(180)
        (first,) = server.worker_pids()
        body, content_type = multipart([("a.jpg", encode(photo(64, 64), "JPEG"))])
        outcomes: list[int] = []
        refusals: list[dict] = []

        def client() -> None:
            for _ in range(6):
                request = urllib.request.Request(server.base + "/api/v1/predict", data=body,
                                                 headers={"Content-Type": content_type})
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        outcomes.append(response.status)
                except urllib.error.HTTPError as exc:
                    outcomes.append(exc.code)
                    refusals.append(json.loads(exc.read()))
                except OSError:
                    outcomes.append(-1)
                time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        os.kill(first, signal.SIGKILL)
        for t in threads:
            t.join()
        assert server.wait_ready(180), "the master did not bring a worker back"
        (second,) = server.worker_pids()
        assert second != first
        # The requests in flight on the killed worker get nginx's 502 with the API's error body, never a
        # dropped connection; every other request is answered.
        assert set(outcomes) <= {200, 502} and outcomes.count(502) <= 2, outcomes
        assert all(r["error"]["status"] == 502 and "restarting" in r["error"]["message"] for r in refusals)
        assert outcomes.count(200) >= len(outcomes) - 2
