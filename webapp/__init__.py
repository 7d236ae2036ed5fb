"""Flask application factory: the comparison UI, the /api/v1 JSON API, reports and health checks.

    gunicorn app:app                 # production (Procfile, make run); app.py calls create_app()

Configuration comes from `DEFAULTS`, then the environment (`SECRET_KEY`, and `APP_<KEY>` for any key
below, e.g. APP_MAX_IMAGES=16, parsed as JSON where possible; read by `models.settings`, typed by `AppConfig`),
then the `config` argument (tests), which wins. docs/settings.md lists every setting.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFProtect
from jinja2 import ChoiceLoader, FileSystemLoader
from pydantic import ConfigDict, Field, ValidationError, create_model
from werkzeug.middleware.proxy_fix import ProxyFix

from models import available_models, decoder, load_predictor, settings
from models.explanation import PASSES_PER_MAP
from reports import pdf
from reports.html import TEMPLATES as REPORT_TEMPLATES
from reports.html import register as register_report_filters
from reports.pdf import PrintLimits
from webapp.fetch import FetchPolicy

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent

# key -> (default, meaning); every key can be set as APP_<KEY> in the environment (docs/settings.md).
CONFIG: dict[str, tuple[Any, str]] = {
    "MAX_IMAGES": (32, "files + URLs per request"),
    "MAX_FILE_BYTES": (10 * 1024 * 1024, "bytes per uploaded file or fetched URL"),
    "MAX_CONTENT_LENGTH": (settings.MAX_CONTENT_LENGTH, "bytes per request; beyond it the answer is 413"),
    "MAX_REQUEST_PIXELS": (64_000_000, "decoded pixels per request, all images together (a big JPEG is decoded "
                                       "at reduced scale and costs little; a 40 MP PNG costs 40 MP)"),
    "MAX_DECODE_SECONDS": (8, "seconds of decoding per comparison, all images together; images left when it runs out "
                              "get their own error"),
    "MAX_JSON_BYTES": (settings.MAX_JSON_BYTES, "bytes of a JSON body (it carries URLs and options, not images): "
                                                "read at most this much, then 413, before anything is parsed"),
    "MAX_FORM_MEMORY_SIZE": (4 * 1024 * 1024, "bytes per text field (the results page posts its comparison back "
                                               "to export it: up to 32 thumbnails)"),
    "EVALUATE_MAX_IMAGES": (500, "labelled images per evaluation (the Evaluate page and /api/v1/evaluate)"),
    "EVALUATE_MAX_ARCHIVE_BYTES": (50_000_000, "bytes per ZIP of labelled images"),
    "EVALUATE_MAX_UNPACKED_BYTES": (1_000_000_000, "bytes a ZIP may unpack to, all members together (as declared)"),
    "EVALUATE_MAX_RATIO": (100, "uncompressed : compressed size above which a ZIP member is refused (zip bombs)"),
    "EVALUATE_MAX_MEMBERS": (1_100, "entries a ZIP's central directory may list (files, folders, __MACOSX copies), "
                                    "checked before any is read"),
    "EVALUATE_MAX_PIXELS": (256_000_000, "decoded pixels per evaluation, all images together (photos are decoded at "
                                         "reduced scale: a 12 MP JPEG costs 0.2 MP; a 40 MP PNG costs 40 MP)"),
    "EVALUATE_MAX_SECONDS": (12, "seconds per evaluation: decoding may use two thirds, the models and the "
                                 "explanation maps the rest; images not reached are listed as problems"),
    "DEFAULT_TOP_K": (3, "classes listed per model when a request does not say"),
    "EXPLAIN_MAX_IMAGES": (16, f"images per request that may ask for explanation maps (each costs {PASSES_PER_MAP} "
                               "passes of "
                               "every model)"),
    "COMPARE_MAX_SECONDS": (10, "seconds per comparison of several images, from the request's start: decoding may use "
                                "two thirds, the models and the explanation maps the rest; images not reached are "
                                "answered with an error"),
    "EXPLAIN_SECONDS": (6, "seconds of explanation maps per request; the images not reached by then are answered "
                           "without a map and say why"),
    "COSTLY_SLOTS": ({"evaluate": 1, "explain": 1, "export": 2, "batch": 1},
                     "requests of each expensive kind in progress at once per worker (evaluations, explanation maps, "
                     "PDF exports, comparisons of several images); more get 429 with Retry-After at once. Together "
                     "well below GUNICORN_THREADS, so one-image comparisons and health checks always find a thread"),
    "COSTLY_PER_CLIENT": (1, "expensive requests (any of the kinds above) one client address (an IPv6 /64) may have "
                             "in progress at once per worker"),
    "IN_FLIGHT_PER_CLIENT": (2, "requests for the models (comparisons of any size, evaluations) one client may have in "
                                "progress at once per worker; more get 429"),
    "DECODE_PROCESSES": (3, "child processes per worker that decode one-image requests' uploads, one at a time per "
                            "client (one more decodes bulk work, at a lower CPU priority), each within "
                            "DECODE_MEMORY_BYTES and the request's decoding seconds (a child past them is stopped); 0: "
                            "decode in the worker itself"),
    "DECODE_MEMORY_BYTES": (280 * 1024 * 1024, "memory (address space) a decoding child may add for one image: the "
                                                "largest image the intake accepts needs 240-280 MiB (a 40 MP PNG)"),
    "PDF_SECONDS": (PrintLimits.seconds, "seconds one PDF (an Evaluate report, a comparison's export) may take, its "
                                         "wait for the printing child included; past them 422 (429 if it never "
                                         "started)"),
    "PDF_MEMORY_BYTES": (PrintLimits.memory_bytes, "memory (address space) the printing child may add for one PDF "
                                                   "(a 500-image Evaluate report needs about 150 MB)"),
    "MODELS": (None, "the models to serve (a JSON list); null: every registered model"),
    "PRELOAD_MODELS": (True, "load and warm up every model when a worker starts"),
    # URL fetching: the FetchPolicy defaults (webapp/fetch.py), one source for both.
    "FETCH_MAX_REDIRECTS": (FetchPolicy.max_redirects, "redirects followed per image URL"),
    "FETCH_CONNECT_TIMEOUT": (FetchPolicy.connect_timeout, "seconds to connect to an image host"),
    "FETCH_READ_TIMEOUT": (FetchPolicy.read_timeout, "seconds a host may stay silent"),
    "FETCH_TOTAL_TIMEOUT": (FetchPolicy.total_timeout, "seconds for one URL, all included (connect, headers, "
                                                        "body, redirects)"),
    "FETCH_REQUEST_TIMEOUT": (FetchPolicy.request_timeout, "seconds for all the URLs of one request"),
    "FETCH_CONCURRENCY": (FetchPolicy.concurrency, "URLs of one request fetched at the same time"),
    "FETCH_MAX_REQUESTS": (FetchPolicy.max_requests, "requests fetching URLs at the same time per worker; more "
                                                     "get a 'busy, try again' per URL (threads stay free)"),
    "REPORTS_DIR": (str(ROOT / "reports"), "where the evaluation report (metrics.json, PDF, figures) is"),
    "BOOTSTRAP_SERVE_LOCAL": (True, "serve Bootstrap from the app, never a CDN"),
    "WTF_CSRF_TIME_LIMIT": (3600, "seconds a form's CSRF token stays valid (then: 'the page expired, reload it')"),
    "SESSION_COOKIE_SAMESITE": ("Lax", "the session cookie (it carries the CSRF token) is not sent on cross-site "
                                       "posts; it is marked Secure whenever the request came over HTTPS"),
    "TRUSTED_PROXY_HOPS": (settings.trusted_proxy_hops(), "proxies in front of the app that append the client to "
                           "X-Forwarded-For, whose X-Forwarded-For/-Proto/-Host to trust (default: 1 on Railway, "
                           "else 0)"),
}
DEFAULTS: dict[str, Any] = {key: default for key, (default, _) in CONFIG.items()}
# The same table as a typed object: an APP_<KEY> of the wrong type or out of range stops the start with one line
# naming it. Whole numbers are at least 1 (0 would refuse every request) except where 0 means something; Flask's own
# keys (and TESTING for the benches) pass through as they are.
ZERO_MEANS_SOMETHING = {"DECODE_PROCESSES": "decode in the worker", "TRUSTED_PROXY_HOPS": "no proxy",
                        "FETCH_MAX_REDIRECTS": "follow none"}


def _typed(key: str, default: Any) -> Any:
    if default is None:
        return list[str] | None
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return Annotated[int, Field(ge=0 if key in ZERO_MEANS_SOMETHING else 1)]
    if isinstance(default, float):
        return Annotated[float, Field(gt=0)]
    if isinstance(default, dict):
        return dict[Literal[tuple(default)], Annotated[int, Field(ge=0)]]
    return type(default)


AppConfig = create_model("AppConfig", __config__=ConfigDict(extra="allow"), **{
    key: (_typed(key, default), Field(default, description=meaning)) for key, (default, meaning) in CONFIG.items()})
PASSED_TO_FLASK = ("FETCH_ALLOWED_TEST_HOSTS", "WTF_", "BOOTSTRAP_", "SESSION_")


def environment_overrides() -> dict[str, Any]:
    """The APP_<KEY> variables, validated against AppConfig; a key that is no setting here nor Flask's is named in
    the log (a misspelt APP_MAX_IMAGS would otherwise change nothing, silently)."""
    overrides = settings.app_overrides()
    try:
        validated = AppConfig.model_validate(overrides)
    except ValidationError as error:
        raise SystemExit(settings.invalid(error, settings.APP_PREFIX)) from None
    for key in sorted(set(overrides) - set(CONFIG) - set(Flask.default_config)):
        if not key.startswith(PASSED_TO_FLASK):
            log.warning("%s%s is not a setting of this app (docs/settings.md) nor of Flask; it changes nothing",
                        settings.APP_PREFIX, key)
    return validated.model_dump(include=set(overrides))


csrf = CSRFProtect()


class HttpsAwareSessionInterface(SecureCookieSessionInterface):
    """The session cookie gets the Secure flag exactly when the request came over HTTPS (behind a trusted proxy:
    X-Forwarded-Proto), so one configuration serves both `make run` on http://127.0.0.1 and a public HTTPS URL."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config.get("SESSION_COOKIE_SECURE"))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, root_path=str(ROOT), template_folder="templates", static_folder="static")
    # Flask escapes only .html/.htm/.xml/.xhtml/.svg templates; the report templates it shares end in .j2, and
    # file names users send reach them: every template escapes, whatever its name.
    app.jinja_options = {**app.jinja_options, "autoescape": True}
    app.config.update(DEFAULTS)
    app.config.update(environment_overrides())
    if settings.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = settings.get("SECRET_KEY")
    if config:
        app.config.update(config)
    secret = app.config.get("SECRET_KEY")
    if not secret:
        log.warning("SECRET_KEY is not set; using a random key (CSRF tokens reset when the process restarts)")
        secret = secrets.token_hex(32)
    app.config["SECRET_KEY"] = secret
    app.config["MODELS"] = list(app.config["MODELS"] or available_models())
    unknown = [name for name in app.config["MODELS"] if name not in available_models()]
    if unknown:
        raise SystemExit(f"invalid setting: {settings.APP_PREFIX}MODELS names {', '.join(map(repr, unknown))}: not a "
                         f"model here (one of {', '.join(available_models())}; docs/settings.md)")

    # Report templates (shared with the static report) are found after the app's own.
    app.jinja_loader = ChoiceLoader([FileSystemLoader(str(ROOT / "templates")),
                                     FileSystemLoader(str(REPORT_TEMPLATES))])
    register_report_filters(app.jinja_env)

    Bootstrap5(app)
    csrf.init_app(app)
    app.session_interface = HttpsAwareSessionInterface()
    # nginx in front (deploy/start.py) is one more proxy, which appends its own hop to X-Forwarded-For/-Proto.
    hops = int(app.config["TRUSTED_PROXY_HOPS"]) + (1 if settings.get("FRONT_DOOR") else 0)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=int(app.config["TRUSTED_PROXY_HOPS"]))

    from webapp import admission, api, errors, evaluation, health, pages, security, transport

    admission.register(app)
    processes = int(app.config["DECODE_PROCESSES"])
    decoder.configure(decoder.DecoderLimits(processes=processes, memory_bytes=int(app.config["DECODE_MEMORY_BYTES"]))
                      if processes > 0 else None)
    # PDFs are printed in a child of their own whenever decoding is (reports/pdf.py says why).
    pdf.configure(PrintLimits(seconds=float(app.config["PDF_SECONDS"]),
                              memory_bytes=int(app.config["PDF_MEMORY_BYTES"])) if processes > 0 else None)

    # "//" in a path is a 404 like any unknown path, not a redirect (werkzeug's 308 has an HTML body, under /api/ too).
    app.url_map.merge_slashes = False
    app.register_blueprint(pages.bp)
    app.register_blueprint(evaluation.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    csrf.exempt(api.bp)  # token-less JSON clients; the API uses no cookies or sessions
    errors.register(app)
    security.register(app)
    transport.register(app)

    if app.config["PRELOAD_MODELS"]:
        if decoder.isolated() is not None:
            decoder.isolated().start()  # the decoding children import while the models load (2 cores, not 1)
        for name in app.config["MODELS"]:
            try:
                load_predictor(name)
            except Exception as exc:  # reported by /readyz and the UI; the app still starts
                log.error("model %s failed to load: %s", name, exc)
        if decoder.isolated() is not None:
            decoder.isolated().warm_up()  # the decoding children start now, not on the first upload
        if not app.config["TESTING"]:
            pdf.warm_up()  # the printing child too, in the background (not for each test's app)
    return app
