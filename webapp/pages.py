"""The HTML side: upload + results, the models page, and the evaluation report with its PDF."""

from __future__ import annotations

import json
import time
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

from webapp.health import model_status
from webapp.inference import RequestError, classify, gather_inputs
from webapp.options import fetch_policy, parse_top_k

bp = Blueprint("pages", __name__)


def limits() -> dict[str, float]:
    config = current_app.config
    return {"max_images": config["MAX_IMAGES"], "max_file_mb": config["MAX_FILE_BYTES"] / 1024 / 1024,
            "max_request_mb": config["MAX_CONTENT_LENGTH"] / 1024 / 1024}


def load_report() -> dict | None:
    path = Path(current_app.config["REPORTS_DIR"]) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


@bp.get("/")
def index():
    return render_template("index.html", limits=limits(), models=model_status())


@bp.post("/")
def predict():
    """Classify the submitted files and URLs; bad items get an inline error, the rest still succeed."""
    started = time.perf_counter()
    urls = [line for field in request.form.getlist("urls") for line in field.splitlines()]
    models = model_status()
    try:
        top_k = parse_top_k(request.form.get("top_k"), current_app.config["DEFAULT_TOP_K"])
        inputs = gather_inputs(request.files.getlist("files"), urls, current_app.config["MAX_IMAGES"],
                               current_app.config["MAX_FILE_BYTES"], fetch_policy(current_app.config))
    except RequestError as exc:
        return render_template("index.html", limits=limits(), models=models, form_error=str(exc),
                               urls="\n".join(urls)), exc.status
    ready = [m["name"] for m in models if m["ready"]]
    results, timing = classify(inputs, ready, top_k, thumbnails=True,
                               max_request_pixels=current_app.config["MAX_REQUEST_PIXELS"])
    waited_ms = 1000 * (time.perf_counter() - started)  # receiving aside: decoding, fetching, both models
    return render_template("index.html", limits=limits(), models=models, results=results, timing=timing,
                           waited_ms=waited_ms, urls="\n".join(urls))


@bp.get("/models")
def models_page():
    return render_template("models.html", models=model_status(), report=load_report())


@bp.get("/reports")
def report():
    data = load_report()
    if data is None:
        abort(404, "No report has been built yet: run `make report`.")
    return render_template("report.html", report=data)


@bp.get("/reports/report.pdf")
def report_pdf():
    return send_from_directory(current_app.config["REPORTS_DIR"], "report.pdf", as_attachment=True,
                               download_name="cifar10-model-comparison.pdf")


@bp.get("/reports/figures/<path:name>")
def report_figure(name: str):
    if not name.endswith(".png"):
        abort(404)
    return send_from_directory(Path(current_app.config["REPORTS_DIR"]) / "figures", name)


@bp.get("/reports/report.css")
def report_css():
    return send_from_directory(Path(__file__).resolve().parent.parent / "reports" / "templates", "report.css")
