"""The app foundation over real HTTP requests: pages and health checks against the committed models."""

from __future__ import annotations


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_reports_every_model_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["models"]["custom_cnn"] == "ok"


def test_index_lists_the_models(client):
    page = client.get("/").get_data(as_text=True)
    assert "Custom CNN (PyTorch, from scratch)" in page and "Parameters" in page


def test_readyz_is_503_when_a_model_cannot_load(client, monkeypatch):
    import app as app_module

    def broken(name):
        raise FileNotFoundError(f"models/{name}/weights.pt")

    monkeypatch.setattr(app_module, "load_predictor", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "weights.pt" in response.get_json()["models"]["custom_cnn"]
    assert "unavailable" in client.get("/").get_data(as_text=True)
