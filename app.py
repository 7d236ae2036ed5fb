"""Flask application factory for the CIFAR-10 model-comparison app.

    gunicorn "app:create_app()"      # production (Procfile, make run)

This is the foundation: a models page and health checks over the predictor registry. The upload
UI, JSON API and reports are built on top of it.
"""

from __future__ import annotations

import logging
import os
import secrets

from flask import Flask, jsonify, render_template

from models import available_models, load_predictor

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    secret = os.environ.get("SECRET_KEY")
    if not secret:
        log.warning("SECRET_KEY is not set; using a random key (sessions reset on restart)")
        secret = secrets.token_hex(32)
    app.config.update(SECRET_KEY=secret, MAX_CONTENT_LENGTH=50 * 1024 * 1024)
    if config:
        app.config.update(config)

    def model_status() -> list[dict]:
        rows = []
        for name in available_models():
            try:
                rows.append({"name": name, "ready": True, "info": load_predictor(name).info})
            except Exception as exc:
                rows.append({"name": name, "ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return rows

    @app.get("/")
    def index():
        return render_template("index.html", models=model_status())

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        models = model_status()
        ready = all(m["ready"] for m in models)
        body = {"ready": ready, "models": {m["name"]: m.get("error", "ok") for m in models}}
        return jsonify(body), 200 if ready else 503

    return app
