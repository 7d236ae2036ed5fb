"""Take a comparison away (CSV, JSON, PDF) without the server keeping anything: the results page carries
its own results (the API's shape plus thumbnails) in a hidden field, and posting them back renders the file.

Whatever comes back is untrusted: `read_comparison` checks every field against the shape the app writes,
decodes the two small images per item through Pillow with tight size limits, and raises RequestError
(HTTP 400, a clear message) for anything else.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import math
from typing import Any

from PIL import Image

from models.cifar10 import CLASS_NAMES
from webapp.inference import THUMBNAIL_SIZE, RequestError

MAX_FIELD_CHARS = 4 * 1024 * 1024  # 32 thumbnails of ~10 kB base64 each fit many times over
SOURCE_TYPES = ("file", "url", "example")


def _fail(message: str) -> RequestError:
    return RequestError(f"the comparison to export is malformed: {message}", "invalid_comparison")


def _text(value: Any, what: str, limit: int = 2048) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(f"{what} must be a string of at most {limit} characters")
    return value


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0 or math.isnan(value):
        raise _fail("probabilities must be numbers between 0 and 1")
    return float(value)


def _image(uri: Any, max_side: int, exact: int | None = None) -> Image.Image:
    """A data: URI (PNG or JPEG) the page made, decoded; anything bigger or different is refused."""
    text = _text(uri, "an image", 200_000)
    for prefix in ("data:image/png;base64,", "data:image/jpeg;base64,"):
        if text.startswith(prefix):
            break
    else:
        raise _fail("images must be PNG or JPEG data: URIs")
    try:
        data = base64.b64decode(text[len(prefix):], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image_format, size = image.format, image.size
            fits = max(size) <= max_side and (not exact or size == (exact, exact))
            if image_format in ("PNG", "JPEG") and fits:
                return image.convert("RGB")
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError):
        raise _fail("an image could not be decoded") from None
    if image_format not in ("PNG", "JPEG"):
        raise _fail("images must be PNG or JPEG data: URIs")
    raise _fail(f"an image is {size[0]}×{size[1]} px, more than this page makes")


def read_comparison(field: str | None, known_models: dict[str, dict[str, Any]], max_images: int) -> dict[str, Any]:
    """The posted comparison, checked; model names and their labels come from the server (`known_models`:
    name -> {"short_name", "test_accuracy"}), never from the client."""
    if not field:
        raise RequestError("nothing to export: classify some images first", "no_comparison")
    if len(field) > MAX_FIELD_CHARS:
        raise _fail("it is larger than any results page")
    try:
        body = json.loads(field)
    except (ValueError, RecursionError):
        raise _fail("it is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise _fail("expected an object with a list of results")
    raw = body["results"]
    if not 1 <= len(raw) <= max_images:
        raise _fail(f"between 1 and {max_images} results expected, got {len(raw)}")
    results = []
    used: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("source"), dict):
            raise _fail("each result needs a source")
        source = item["source"]
        if source.get("type") not in SOURCE_TYPES:
            raise _fail("unknown source type")
        result: dict[str, Any] = {"index": index, "source": {"type": source["type"]}}
        for key in ("name", "url"):
            if key in source:
                result["source"][key] = _text(source[key], f"source {key}")
        if item.get("error") is not None:
            error = item["error"] if isinstance(item["error"], dict) else {}
            result["error"] = {"code": _text(error.get("code", "error"), "error code", 64),
                               "message": _text(error.get("message", ""), "error message", 500)}
            results.append(result)
            continue
        for key in ("width", "height"):
            value = item.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1_000_000:
                raise _fail(f"{key} must be a positive integer")
            result[key] = value
        predictions = item.get("predictions")
        if not isinstance(predictions, dict) or not set(predictions) <= set(known_models):
            raise _fail("predictions must be keyed by the served models")
        result["predictions"] = {}
        for name, answer in predictions.items():
            top_k = answer.get("top_k") if isinstance(answer, dict) else None
            if not isinstance(top_k, list) or not 1 <= len(top_k) <= len(CLASS_NAMES):
                raise _fail("each prediction needs a top_k list")
            ranked = []
            for t in top_k:
                if not isinstance(t, dict) or t.get("label") not in CLASS_NAMES:
                    raise _fail("labels must be CIFAR-10 class names")
                ranked.append({"label": t["label"], "probability": _probability(t.get("probability"))})
            probabilities = answer.get("probabilities", {})
            if not isinstance(probabilities, dict) or not set(probabilities) <= set(CLASS_NAMES):
                raise _fail("probabilities must be keyed by CIFAR-10 class names")
            result["predictions"][name] = {"top_k": ranked, "probabilities": {
                label: _probability(p) for label, p in probabilities.items()}}
            used.add(name)
        errors = item.get("model_errors") or {}
        if not isinstance(errors, dict) or not set(errors) <= set(known_models):
            raise _fail("model errors must be keyed by the served models")
        result["model_errors"] = {name: {"message": _text((e or {}).get("message", ""), "model error", 500)}
                                  for name, e in errors.items()}
        agree, uncertain = item.get("agree"), item.get("uncertain")
        if agree not in (True, False, None) or uncertain not in (True, False, None):
            raise _fail("agree and uncertain must be true, false or null")
        result.update(agree=agree, uncertain=uncertain,
                      uncertain_reason=_text(item.get("uncertain_reason") or "", "uncertain_reason", 500) or None)
        if item.get("thumbnail"):
            result["thumbnail"] = _image(item["thumbnail"], THUMBNAIL_SIZE)
        if item.get("model_view"):
            result["model_view"] = _image(item["model_view"], 32, exact=32)
        results.append(result)
    models = {name: known_models[name] for name in known_models if name in used} or dict(known_models)
    created = body.get("created")
    try:
        created = dt.datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M UTC") if created else None
    except (TypeError, ValueError):
        created = None
    return {"models": models, "results": results, "created": created or "date unknown"}


def api_shape(comparison: dict[str, Any]) -> dict[str, Any]:
    """The JSON export: what /api/v1/predict answers for these images (no thumbnails)."""
    results = []
    for r in comparison["results"]:
        results.append({key: value for key, value in r.items() if key not in ("thumbnail", "model_view")})
    return {"models": list(comparison["models"]), "results": results, "created": comparison["created"]}
