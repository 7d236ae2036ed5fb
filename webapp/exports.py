"""Take a comparison away (CSV, JSON, PDF) without the server keeping anything: the results page carries
its own results (the API's shape plus thumbnails), signed with the app's secret key, in a hidden field, and
posting them back renders the file.

The server renders only what it produced: a comparison whose signature does not match (changed, or made
elsewhere) or that is older than a form's lifetime is refused with a clear 400. What passes is still checked
against the one schema (webapp/schema.py: `Comparison`), and its two small images per item are decoded through
Pillow with tight size limits, so even a leaked key cannot reach a 500.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired
from PIL import Image
from pydantic import ValidationError

from models.images import CROPS
from webapp.inference import THUMBNAIL_SIZE, RequestError
from webapp.schema import Comparison, JsonExport, dump, first_problem
from webapp.security import sign, unsign

SIGNING_SALT = "comparison-export"


def _fail(message: str) -> RequestError:
    return RequestError(f"the comparison to export is malformed: {message}", "invalid_comparison")


def sign_comparison(comparison: dict[str, Any]) -> str:
    """The results page's hidden field: the comparison, checked against the schema, signed and compressed."""
    return sign(dump(Comparison.model_validate(comparison)), SIGNING_SALT)


def _image(text: str, max_side: int, exact: int | None = None) -> Image.Image:
    """A data: URI (PNG or JPEG) the page made, decoded; anything bigger or different is refused (the schema
    already bounds its length)."""
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
    """The posted comparison, if this site signed it within a form's lifetime; then `checked`."""
    return checked(read_signed(field), known_models, max_images)


def read_signed(field: str | None, purpose: str = "export them") -> Any:
    """The comparison as signed (data URIs and all), if this site signed it within a form's lifetime."""
    if not field:
        raise RequestError(f"nothing to {purpose.split()[0]}: classify some images first", "no_comparison")
    if len(field) > current_app.config["MAX_FORM_MEMORY_SIZE"]:  # a field the form parser took: still checked here
        raise _fail("it is larger than any results page")
    try:
        body = unsign(field, SIGNING_SALT)
    except SignatureExpired:
        raise RequestError(f"this comparison is more than an hour old: classify the images again to {purpose}",
                           "expired_comparison") from None
    except BadSignature:
        raise RequestError("this comparison was not made by this site, or was changed: classify the images again "
                           f"to {purpose}", "invalid_comparison") from None
    return body


def checked(body: Any, known_models: dict[str, dict[str, Any]], max_images: int) -> dict[str, Any]:
    """A comparison as the exporters take it, from any JSON value, or RequestError (HTTP 400): checked against
    `Comparison`; model names and their labels come from the server (`known_models`: name -> {"short_name",
    "test_accuracy"}), never from the client; the images decoded."""
    try:
        comparison = Comparison.model_validate(body)
    except ValidationError as exc:
        raise _fail(first_problem(exc)) from None
    if len(comparison.results) > max_images:
        raise _fail(f"between 1 and {max_images} results expected, got {len(comparison.results)}")
    results, used = [], set()
    for index, item in enumerate(comparison.results):
        if not set(item.predictions or {}) | set(item.model_errors or {}) <= set(known_models):
            raise _fail("predictions must be keyed by the served models")
        used |= set(item.predictions or {})
        result = dump(item)
        result["index"] = index
        result.pop("thumbnail", None)
        result.pop("model_view", None)
        if item.thumbnail:
            result["thumbnail"] = _image(item.thumbnail, THUMBNAIL_SIZE)
        if item.model_view:
            result["model_view"] = _image(item.model_view, 32, exact=32)
        results.append(result)
    models = {name: known_models[name] for name in known_models if name in used} or dict(known_models)
    try:
        created = dt.datetime.fromisoformat(comparison.created).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        created = "date unknown"
    return {"models": models, "results": results, "created": created, "crop": comparison.crop}


def api_shape(comparison: dict[str, Any]) -> dict[str, Any]:
    """The JSON export (`JsonExport`): what /api/v1/predict answers for these images (no thumbnails)."""
    results = [{key: value for key, value in r.items() if key not in ("thumbnail", "model_view")}
               for r in comparison["results"]]
    return dump(JsonExport.model_validate({"models": list(comparison["models"]), "results": results,
                                           "created": comparison["created"],
                                           "crop": comparison.get("crop", CROPS[0])}))
