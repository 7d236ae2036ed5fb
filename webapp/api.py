"""Versioned JSON API: /api/v1/predict, /api/v1/models, /api/v1/metrics, /api/v1/openapi.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from webapp import schema
from webapp.admission import costly, current_client, deadline, predict_kind, refuse_before_parsing
from webapp.health import model_status
from webapp.inference import RequestError, chosen, classify, clip, gather_inputs
from webapp.openapi import openapi_document
from webapp.options import check_explain_count, fetch_policy, read_options
from webapp.schema import ModelsResponse, PredictResponse, dump

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def json_body() -> Any:
    """The request's JSON, read only up to MAX_JSON_BYTES (a 45 MB body of empty objects parsed whole cost the
    worker a gigabyte), or RequestError: too large (413), not JSON, or holding a lone UTF-16 surrogate ("\\ud800"
    is valid JSON but no valid text: it would fail later, as a 500, wherever the string is encoded)."""
    limit = current_app.config["MAX_JSON_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(f"a JSON body carries URLs and options: at most {limit:,} bytes, got "
                           f"{request.content_length:,}", "json_too_large", 413)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise RequestError(f"a JSON body carries URLs and options: at most {limit:,} bytes", "json_too_large", 413)
    try:
        body = json.loads(data)
    except RecursionError:  # thousands of nested brackets: the parser's recursion limit, not a server fault
        raise RequestError("the JSON body is nested too deeply", "invalid_json") from None
    except ValueError:
        raise RequestError("the body is not valid JSON (UTF-8)", "invalid_json") from None
    if not valid_text(body):
        raise RequestError("the JSON body holds a lone UTF-16 surrogate (e.g. \\ud800), which is not text",
                           "invalid_json")
    return body


def valid_text(value: Any) -> bool:
    """Every string in a parsed JSON value (keys included) encodes as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def request_options() -> schema.PredictRequest:
    """The comparison's options from its JSON body or its form (and query), as webapp/schema.py describes them.
    `schema.PredictRequest` is looked up on each request: the one description the OpenAPI document reads too."""
    source = json_body() if request.is_json else request.values
    return read_options(schema.PredictRequest, source, current_app.config)


@bp.post("/predict")
def predict():
    query = read_options(schema.PredictRequest, request.args, current_app.config)  # before the body is parsed
    refuse_before_parsing(query.explain)
    unexpected = [key for key in request.files if key != "files"]
    if unexpected:
        got = clip(", ".join(sorted(unexpected)), 100)
        raise RequestError(f"upload images in the multipart field 'files' (got {got})", "wrong_field_name")
    options = request_options()
    files = chosen(request.files.getlist("files"))
    sent = len(files) + len(options.urls)
    check_explain_count(current_app.config, sent, options.explain)  # before any URL is fetched
    with costly(predict_kind(sent, options.explain)):  # a 429 before any URL is fetched or any image decoded
        inputs = gather_inputs(request.files.getlist("files"), options.urls, current_app.config["MAX_IMAGES"],
                               current_app.config["MAX_FILE_BYTES"], fetch_policy(current_app.config))
        results, timing = classify(inputs, options.models, options.top_k,
                                   max_request_pixels=current_app.config["MAX_REQUEST_PIXELS"],
                                   max_decode_seconds=current_app.config["MAX_DECODE_SECONDS"],
                                   explain=options.explain, explain_seconds=current_app.config["EXPLAIN_SECONDS"],
                                   crop=options.crop, owner=current_client(),
                                   deadline=deadline("COMPARE_MAX_SECONDS"))
    return jsonify(dump(PredictResponse.model_validate(
        {"models": options.models, "top_k": options.top_k, "crop": options.crop, "results": results,
         "timing": timing})))


@bp.post("/evaluate")
def evaluate():
    from webapp.evaluation import api_evaluate

    return api_evaluate()


@bp.get("/models")
def models():
    return jsonify(dump(ModelsResponse.model_validate({"models": [
        {"name": m["name"], "ready": m["ready"], **({"info": m["info"]} if m["ready"] else {"error": m["error"]})}
        for m in model_status()]})))


@bp.get("/metrics")
def metrics():
    path = Path(current_app.config["REPORTS_DIR"]) / "metrics.json"
    if not path.is_file():
        raise RequestError("no report has been built yet (run `make report`)", "not_found", 404)
    return current_app.response_class(path.read_text(), mimetype="application/json")


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app.config))
