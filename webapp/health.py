"""Liveness and readiness: /healthz says the process answers, /readyz that every model serves."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from models import load_predictor

bp = Blueprint("health", __name__)


def model_status() -> list[dict[str, Any]]:
    """Per configured model: loaded and warmed up (`info`), or why not (`error`)."""
    rows = []
    for name in current_app.config["MODELS"]:
        try:
            rows.append({"name": name, "ready": True, "info": load_predictor(name).info})
        except Exception as exc:  # a missing or corrupt weights file, a broken install, ...
            rows.append({"name": name, "ready": False, "error": f"{type(exc).__name__}: {exc}"})
    return rows


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    models = model_status()
    ready = all(m["ready"] for m in models)
    body = {"ready": ready, "models": {m["name"]: "ok" if m["ready"] else m["error"] for m in models}}
    return jsonify(body), 200 if ready else 503
