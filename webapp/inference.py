"""The one place requests turn into predictions, shared by the HTML pages and the JSON API.

gather_inputs: uploaded files and URLs -> `ImageInput`s (bytes, or a per-item error); nothing is
written to disk and the client's file name is only ever displayed, never used as a path.
classify: decode every input through the image intake, hand the good images to the one seam
(`models.classify`) and shape its answers as JSON-ready dicts, one per input in order, errors in place.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from werkzeug.datastructures import FileStorage

import models
from models import decoder
from models.images import DecoderBusy
from webapp.fetch import FetchError, FetchPolicy, fetch_all

THUMBNAIL_SIZE = 160


MAX_MESSAGE_CHARS = 500  # an error message, whatever of the request it quotes


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class RequestError(ValueError):
    """The request as a whole is unacceptable (too many images, nothing sent, bad parameter): HTTP 400. The
    message is cut to MAX_MESSAGE_CHARS: it may quote what the client sent."""

    def __init__(self, message: str, code: str = "bad_request", status: int = 400, retry_after: int | None = None):
        super().__init__(clip(message, MAX_MESSAGE_CHARS))
        self.code, self.status, self.retry_after = code, status, retry_after


@dataclass
class ImageInput:
    source: dict[str, str]
    data: bytes | None = None
    error: dict[str, str] | None = None
    image: Image.Image | None = field(default=None, repr=False)


def display_name(filename: str | None) -> str:
    """A client file name made safe to show: last path component, no control characters, bounded length."""
    name = (filename or "").split("/")[-1]  # a path from a crafted request; "\\" is a legal character on Linux
    name = "".join(ch for ch in name if ch.isprintable())
    return (name[:80] + "…" if len(name) > 80 else name) or "unnamed file"


def chosen(uploads: list[FileStorage]) -> list[FileStorage]:
    """The files a person chose: browsers send an empty, unnamed part for a file field left empty."""
    return [upload for upload in uploads if upload.filename or upload.content_length]


def gather_inputs(files: list[FileStorage], urls: list[str], max_images: int, max_file_bytes: int,
                  policy: FetchPolicy, examples: list[tuple[str, bytes]] = ()) -> list[ImageInput]:
    """Examples (the app's own gallery: title, bytes) come first, then files, then URLs."""
    files = chosen(files)
    urls = [u.strip() for u in urls if u and u.strip()]
    count = len(examples) + len(files) + len(urls)
    if not count:
        raise RequestError("send at least one image file or image URL", "no_images")
    if count > max_images:
        raise RequestError(f"{count} images sent; the limit is {max_images} per request", "too_many_images")
    inputs = [ImageInput(source={"type": "example", "name": title}, data=data) for title, data in examples]
    for upload in files:
        item = ImageInput(source={"type": "file", "name": display_name(upload.filename)})
        data = upload.stream.read(max_file_bytes + 1)
        if len(data) > max_file_bytes:
            item.error = {"code": "file_too_large",
                          "message": f"the file is larger than {max_file_bytes / 1024 / 1024:.0f} MB"}
        else:
            item.data = data
        inputs.append(item)
    for url, fetched in zip(urls, fetch_all(urls, policy), strict=True):
        item = ImageInput(source={"type": "url", "url": url[:2048]})
        if isinstance(fetched, FetchError):
            item.error = {"code": "url_fetch_failed", "message": clip(str(fetched), 300)}
        else:
            item.data = fetched
        inputs.append(item)
    return inputs


def data_uri(image: Image.Image, fmt: str, **params) -> str:
    """The image encoded as a data: URI (served from memory, never stored)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_data_uri(image: Image.Image) -> str:
    """A small JPEG of the whole image, for display; a tiny image (a 32x32 CIFAR picture) is enlarged by a whole
    factor without smoothing, so it shows as pixels rather than a speck."""
    thumb = image.copy()
    factor = THUMBNAIL_SIZE // max(thumb.size)
    if factor > 1:
        thumb = thumb.resize((thumb.width * factor, thumb.height * factor), Image.Resampling.NEAREST)
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    return data_uri(thumb, "JPEG", quality=85)


def explain_results(results: list[dict[str, Any]], views: dict[int, np.ndarray], model_names: list[str],
                    top_k: int, explain_seconds: float | None = None, deadline: float | None = None
                    ) -> dict[str, dict[str, float]]:
    """Add each model's explanation map to results already made, from the 32x32 views they carry (the results
    page's "Explain these results": the images themselves were never kept); the per-model timing."""
    order = sorted(views)
    answers = models.classify([views[i] for i in order], model_names, top_k, explain=True,
                              explain_seconds=explain_seconds, deadline=deadline)
    for index, answer in zip(order, answers.images, strict=True):
        result = results[index]
        result.pop("explanation_skipped", None)  # explained now, or skipped again for the reason below
        if answer.not_reached:
            result["explanation_skipped"] = ("not explained: the request's time ran out first; ask for this image's "
                                             "map in a request of its own")
        for name, a in answer.predictions.items():
            if name in (result.get("predictions") or {}) and a.explanation is not None:
                result["predictions"][name]["explanation"] = a.explanation.to_dict()
        if answer.looks:
            result["looks"] = answer.looks
        if answer.explanation_skipped:
            result["explanation_skipped"] = answer.explanation_skipped
    return {name: t.to_dict() for name, t in answers.timing.items()}


def classify(inputs: list[ImageInput], model_names: list[str], top_k: int, thumbnails: bool = False,
             max_request_pixels: int | None = None, max_decode_seconds: float | None = None,
             explain: bool | int = False, explain_seconds: float | None = None, owner: str | None = None,
             crop: str = "centre", deadline: float | None = None
             ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """(one JSON-ready result per input, in order, errors in place; per-model timing). Images are decoded one
    at a time and shrunk at once, drawing on one decoded-pixel budget and one decoding-time budget for the whole
    request: what is left when either runs out gets its own error. With the web app's decoding children
    (models/decoder.py) the time budget also stops an image in the middle of its decode; `owner` (the client)
    has one one-image decode at a time. `deadline` (time.monotonic(), from the request's start) bounds the whole
    of a comparison of several images: decoding gets at most decoder.DECODING_SHARE of what is left of it, the
    models and the maps the rest (models.classify), and the images not reached are answered with an error."""
    decode_deadline = time.monotonic() + max_decode_seconds if max_decode_seconds else None
    if deadline is not None and len(inputs) > 1:
        share = time.monotonic() + decoder.DECODING_SHARE * max(0.0, deadline - time.monotonic())
        decode_deadline = share if decode_deadline is None else min(decode_deadline, share)
    else:
        deadline = None  # one image: its decode and one pass, each within its own budget
    readers = [(lambda item=item: item.data or b"" if item.error is None else None) for item in inputs]
    outcomes = decoder.decode_each(readers, max_request_pixels, decode_deadline, out_of_time="not decoded: the "
                                   "request's decoding time ran out; send large images in separate requests",
                                   bulk=len(inputs) > 1, owner=owner)
    try:
        for item, outcome in zip(inputs, outcomes, strict=True):
            item.data = None  # the bytes are no longer needed
            if isinstance(outcome, Image.Image):
                item.image = outcome
            elif outcome is not None:
                code = "decoding_budget" if isinstance(outcome, decoder.OutOfTime) else "invalid_image"
                item.error = {"code": code, "message": clip(str(outcome), 300)}
    except DecoderBusy as exc:  # the server's state, not the image's fault: try again shortly
        raise RequestError(str(exc), "busy", 429, retry_after=exc.retry_after) from None
    good = [item for item in inputs if item.image is not None]
    answers = models.classify([item.image for item in good], model_names, top_k, explain=explain,
                              explain_seconds=explain_seconds, crop=crop, deadline=deadline)
    answer_of = {id(item): answer for item, answer in zip(good, answers.images, strict=True)}
    results = []
    for index, item in enumerate(inputs):
        result: dict[str, Any] = {"index": index, "source": item.source}
        answer = answer_of.get(id(item))
        if answer is not None and answer.not_reached:
            item.error = {"code": "time_budget", "message": "not classified: the request's time ran out before the "
                          "models reached this image; send fewer images per request"}
        if item.error is not None or answer is None:
            result["error"] = item.error
            results.append(result)
            continue
        width, height = item.image.info.get("original_size", item.image.size)
        result.update(width=width, height=height,
                      predictions={name: a.to_dict() for name, a in answer.predictions.items()},
                      model_errors={name: {"code": "model_unavailable", "message": message}
                                    for name, message in answer.model_errors.items()},
                      agree=answer.agree, uncertain=answer.uncertain, uncertain_reason=answer.uncertain_reason,
                      out_of_scope=answer.out_of_scope, out_of_scope_score=answer.out_of_scope_score)
        if answer.looks_like:
            result["looks_like"] = answer.looks_like
        if answer.looks:
            result["looks"] = answer.looks
        if answer.explanation_skipped:
            result["explanation_skipped"] = answer.explanation_skipped
        if thumbnails:
            result["thumbnail"] = thumbnail_data_uri(item.image)
            if answer.model_view is not None:
                # The exact pixels the models saw (32x32), lossless; the page enlarges them without smoothing.
                result["model_view"] = data_uri(Image.fromarray(answer.model_view, "RGB"), "PNG")
        results.append(result)
    return results, {name: t.to_dict() for name, t in answers.timing.items()}
