"""Fixtures: a synthetic CIFAR-10 on disk, no implicit dataset, and the app with fake or real models."""

from __future__ import annotations

import pytest

from models import cifar10
from tests.helpers import fake_predictors, write_official_layout


@pytest.fixture(scope="session")
def synthetic_cifar(tmp_path_factory):
    """A folder holding cifar-10-batches-py/ with 5,500 training and 200 test images."""
    return write_official_layout(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(autouse=True)
def _no_implicit_dataset(monkeypatch, tmp_path):
    """Tests name their data explicitly: no env var, and the default cache points at an empty folder."""
    monkeypatch.delenv(cifar10.ENV_VAR, raising=False)
    monkeypatch.setattr(cifar10, "DEFAULT_CACHE", tmp_path / "empty-cache")


@pytest.fixture()
def fake_models(tmp_path):
    """Every registered model name served by a fast deterministic FakePredictor for this test."""
    with fake_predictors(tmp_path / "fake-models") as fakes:
        yield fakes


@pytest.fixture()
def app(fake_models):
    """The web app over the fake models: for routes, forms, validation and error shapes."""
    from webapp import create_app

    return create_app({"TESTING": True, "SECRET_KEY": "tests"})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def real_app():
    """The web app with the committed models (tests of what the models answer end to end)."""
    from webapp import create_app

    return create_app({"TESTING": True, "SECRET_KEY": "tests"})
