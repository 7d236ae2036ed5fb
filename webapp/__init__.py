"""Flask application factory: the comparison UI, the /api/v1 JSON API, reports and health checks.

    gunicorn app:app                 # production (Procfile, make run); app.py calls create_app()

Configuration comes from `DEFAULTS`, then `APP_*` environment variables (e.g. APP_MAX_IMAGES=16;
values are parsed as JSON where possible), then the `config` argument (tests).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFProtect
from jinja2 import ChoiceLoader, FileSystemLoader

from models import available_models, load_predictor
from reports.html import TEMPLATES as REPORT_TEMPLATES
from reports.html import duration, megabytes, percent

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "MAX_IMAGES": 32,  # files + URLs per request
    "MAX_FILE_BYTES": 10 * 1024 * 1024,
    "MAX_CONTENT_LENGTH": 50 * 1024 * 1024,  # whole request; Werkzeug answers 413 beyond it
    "DEFAULT_TOP_K": 3,
    "MODELS": None,  # None = every registered model
    "PRELOAD_MODELS": True,  # load + warm up every model when the app is created (once per worker)
    "FETCH_MAX_REDIRECTS": 3,
    "FETCH_CONNECT_TIMEOUT": 3.0,
    "FETCH_READ_TIMEOUT": 5.0,
    "FETCH_TOTAL_TIMEOUT": 10.0,
    "FETCH_ALLOWED_TEST_HOSTS": [],  # tests only: addresses exempt from the public-address rule
    "REPORTS_DIR": str(ROOT / "reports"),
    "BOOTSTRAP_SERVE_LOCAL": True,  # no CDN: the app works offline
    "WTF_CSRF_TIME_LIMIT": None,
}

csrf = CSRFProtect()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, root_path=str(ROOT), template_folder="templates", static_folder="static")
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("APP")
    if config:
        app.config.update(config)
    secret = os.environ.get("SECRET_KEY") or app.config.get("SECRET_KEY")
    if not secret:
        log.warning("SECRET_KEY is not set; using a random key (CSRF tokens reset when the process restarts)")
        secret = secrets.token_hex(32)
    app.config["SECRET_KEY"] = secret
    app.config["MODELS"] = list(app.config["MODELS"] or available_models())

    # Report templates (shared with the static report) are found after the app's own.
    app.jinja_loader = ChoiceLoader([FileSystemLoader(str(ROOT / "templates")),
                                     FileSystemLoader(str(REPORT_TEMPLATES))])
    app.jinja_env.filters.update(percent=percent, duration=duration, megabytes=megabytes)

    Bootstrap5(app)
    csrf.init_app(app)

    from webapp import api, errors, health, pages, security

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    csrf.exempt(api.bp)  # token-less JSON clients; the API uses no cookies or sessions
    errors.register(app)
    security.register(app)

    if app.config["PRELOAD_MODELS"]:
        for name in app.config["MODELS"]:
            try:
                load_predictor(name)
            except Exception as exc:  # reported by /readyz and the UI; the app still starts
                log.error("model %s failed to load: %s", name, exc)
    return app
