"""The HTML side: upload + results, the models page, and the evaluation report with its PDF."""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from models.explanation import PASSES_PER_MAP
from models.images import CROPS
from webapp import schema
from webapp.admission import costly, current_client, deadline, predict_kind
from webapp.examples import example_files, example_labels, gallery
from webapp.exports import api_shape, checked, read_comparison, read_signed, sign_comparison
from webapp.health import model_status
from webapp.inference import ImageInput, RequestError, chosen, classify, explain_results, gather_inputs
from webapp.options import fetch_policy, parse_true_labels, read_options

bp = Blueprint("pages", __name__)


def upload_limits() -> dict[str, float]:
    """What the home page tells people they may send (its template shows them)."""
    config = current_app.config
    return {"max_images": config["MAX_IMAGES"], "max_file_mb": config["MAX_FILE_BYTES"] / 1024 / 1024,
            "max_request_mb": config["MAX_CONTENT_LENGTH"] / 1024 / 1024}


def load_report() -> dict | None:
    path = Path(current_app.config["REPORTS_DIR"]) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def page(**context: Any) -> str:
    return render_template("index.html", limits=upload_limits(), models=model_status(), examples=gallery(),
                           explain_limit=current_app.config["EXPLAIN_MAX_IMAGES"],
                           explain_seconds=current_app.config["EXPLAIN_SECONDS"], **context)


def served_models() -> dict[str, dict[str, Any]]:
    """name -> the labels the results and exports show for each ready model."""
    return {m["name"]: {"short_name": m["info"]["short_name"], "display_name": m["info"]["display_name"],
                        "test_accuracy": m["info"]["test_accuracy"],
                        "photo_accuracy": (m["info"].get("photo_accuracy") or {}).get("accuracy")}
            for m in model_status() if m["ready"]}


@bp.get("/")
def index():
    return page()


@bp.post("/")
def predict():
    """Classify the submitted examples, files and URLs; bad items get an inline error, the rest still succeed.
    More than the limit (a browser without JavaScript): the first ones are classified, with a notice."""
    started = time.perf_counter()
    try:
        options = read_options(schema.PredictRequest, request.form, current_app.config)
    except RequestError as exc:
        return page(form_error=str(exc)), exc.status
    urls = options.urls
    files = chosen(request.files.getlist("files"))
    examples = example_files(request.form.getlist("examples"))
    limit = current_app.config["MAX_IMAGES"]
    sent = len(examples) + len(files) + len(urls)
    notice = None
    try:
        # The true class a person may give each file (and the examples' own labels), in the order of the inputs.
        example_truths = example_labels(request.form.getlist("examples"))
        file_truths = parse_true_labels(request.form.getlist("true_labels"), len(files))
        if sent > limit:
            notice = (f"{sent} images were sent; the limit is {limit} per comparison, so the first {limit} were "
                      "compared.")
            examples = examples[:limit]
            files = files[:limit - len(examples)]
            urls = urls[:limit - len(examples) - len(files)]
        truths = example_truths[:len(examples)] + file_truths[:len(files)]
        top_k, explain, crop = options.top_k, options.explain, options.crop
    except RequestError as exc:
        return page(form_error=str(exc), urls="\n".join(urls)), exc.status
    # Maps for at most EXPLAIN_MAX_IMAGES images, and only while an explanation slot is free: otherwise the
    # results come without (or with fewer) maps and a notice, never an error that loses the visitor's files.
    count = len(examples) + len(files) + len(urls)
    cap = current_app.config["EXPLAIN_MAX_IMAGES"]
    explain_count = min(count, cap) if explain else 0
    notes = [notice] if notice else []
    if explain and count > cap:
        notes.append(f"Maps were made for the first {cap} of the {count} images (each image costs {PASSES_PER_MAP} "
                     "passes of each model); compare the rest in another batch to see theirs.")
    models = served_models()
    try:
        with ExitStack() as admitted:
            explain_count = take_slot(admitted, count, explain_count, notes)  # a 429 before any work
            inputs = gather_inputs(files, urls, limit, current_app.config["MAX_FILE_BYTES"],
                                   fetch_policy(current_app.config), examples)
            results, timing = classify_for_page(inputs, list(models), top_k, explain_count, crop)
    except RequestError as exc:
        return page(form_error=str(exc), urls="\n".join(urls)), exc.status
    notice = " ".join(notes) or None
    for result, truth in zip(results, truths, strict=False):  # examples, then files; URLs have none
        if truth is not None:
            result["true_label"] = truth
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return results_page(results, timing, started, notice, created, top_k, models, crop=crop)


def take_slot(stack: ExitStack, count: int, explain_count: int, notes: list[str]) -> int:
    """Admit the comparison (webapp/admission.py): with maps if an explanation slot is free, else without them and
    a note; the images to explain."""
    if explain_count:
        try:
            stack.enter_context(costly("explain"))
            return explain_count
        except RequestError as exc:
            if exc.status != 429:
                raise
            notes.append("The server is busy making other visitors' maps: here are the results without them; "
                         "\"Why? Explain these results\" makes them in a moment.")
    stack.enter_context(costly(predict_kind(count, False)))
    return 0


def classify_for_page(inputs: list[ImageInput], model_names: list[str], top_k: int, explain: int,
                      crop: str = "centre") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return classify(inputs, model_names, top_k, thumbnails=True,
                    max_request_pixels=current_app.config["MAX_REQUEST_PIXELS"],
                    max_decode_seconds=current_app.config["MAX_DECODE_SECONDS"], explain=explain,
                    explain_seconds=current_app.config["EXPLAIN_SECONDS"], owner=current_client(), crop=crop,
                    deadline=deadline("COMPARE_MAX_SECONDS"))


def results_page(results: list[dict[str, Any]], timing: dict[str, Any], started: float, notice: str | None,
                 created: str, top_k: int, models: dict[str, dict[str, Any]], explaining: bool = False,
                 crop: str | None = None) -> str:
    from reports.comparison import explanation_uri, summary_sentence

    waited_ms = 1000 * (time.perf_counter() - started)  # receiving aside: decoding, fetching, the models
    comparison = sign_comparison({"created": created, "models": list(models), "top_k": top_k,
                                  "crop": crop or CROPS[0], "results": results})
    maps = {f"{r['index']}:{name}": explanation_uri(r["model_view"], p["explanation"]["grid"])
            for r in results if r.get("model_view") for name, p in (r.get("predictions") or {}).items()
            if p.get("explanation")}
    return page(results=results, timing=timing, waited_ms=waited_ms, notice=notice, comparison=comparison,
                served=models, summary=summary_sentence({"results": results, "models": models}),
                explained=bool(maps), maps=maps, explaining=explaining, crop=crop)


@bp.get("/explain")
def explain_reloaded():
    """A reload or a bookmark of the explained results page: nothing is kept, so back to a new comparison."""
    return redirect(url_for("pages.index"))


@bp.post("/explain")
def explain():
    """The same results with each model's explanation map, computed from the 32x32 views the signed comparison
    carries: the images themselves were never kept, and the views are exactly what the models saw."""
    started = time.perf_counter()
    models = served_models()
    body = read_signed(request.form.get("comparison"), "explain them")
    decoded = checked(body, models, current_app.config["MAX_IMAGES"])  # the schema, the served models, the images
    # The page it returns is signed afresh: its age counts from the first classification, not from this request,
    # so explaining again and again cannot keep a comparison alive past the hour.
    try:
        age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(body["created"])).total_seconds()
    except (TypeError, ValueError):
        age = float("inf")
    if age > current_app.config["WTF_CSRF_TIME_LIMIT"]:
        raise RequestError("this comparison is more than an hour old: classify the images again to explain them",
                           "expired_comparison")
    # Only the images without maps yet: after a first "Why?" ran out of time, the button explains the rest.
    done = {r["index"] for r in decoded["results"]
            if any("explanation" in p for p in (r.get("predictions") or {}).values())}
    views = {r["index"]: np.asarray(r["model_view"].convert("RGB")) for r in decoded["results"]
             if r.get("model_view") is not None and r.get("predictions") and r["index"] not in done}
    results = body["results"]
    with costly("explain"):
        timing = explain_results(results, views, [m for m in body["models"] if m in models], body["top_k"],
                                 current_app.config["EXPLAIN_SECONDS"], deadline("COMPARE_MAX_SECONDS"))
    return results_page(results, timing, started, None, body["created"], body["top_k"], models, explaining=True,
                        crop=body.get("crop"))


EXPORTS = {"csv": ("text/csv", "csv"), "json": ("application/json", "json"),
           "pdf": ("application/pdf", "pdf")}


@bp.post("/export/<fmt>")
def export(fmt: str):
    """The comparison the page posts back, as a download; nothing is kept on the server."""
    if fmt not in EXPORTS:
        abort(404)
    comparison = read_comparison(request.form.get("comparison"), served_models(), current_app.config["MAX_IMAGES"])
    if fmt == "json":
        body = json.dumps(api_shape(comparison), indent=2).encode()
    else:
        from reports import comparison as render  # WeasyPrint is imported only when someone exports

        with costly("export" if fmt == "pdf" else None):
            body = render.to_csv(comparison) if fmt == "csv" else render.to_pdf(comparison)
    mimetype, extension = EXPORTS[fmt]
    stamp = comparison["created"].replace(" UTC", "").replace(" ", "-").replace(":", "")
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="cifar10-comparison-{stamp}.{extension}"',
        "Cache-Control": "no-store"})


@bp.get("/api")
def api_page():
    """The API for people: the OpenAPI document rendered by Swagger UI, and examples that run as written."""
    return render_template("api.html", base_url=request.host_url.rstrip("/"))


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
