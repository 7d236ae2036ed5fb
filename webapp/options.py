"""Request options shared by the form and the API, validated once: top_k, models, URL-fetch policy."""

from __future__ import annotations

import json
from typing import Any

from models.cifar10 import CLASS_NAMES
from models.explanation import PASSES_PER_MAP
from models.images import CROPS
from webapp.fetch import FetchPolicy
from webapp.inference import RequestError, clip

NUM_CLASSES = 10


def parse_true_labels(values: list[str], files: int) -> list[str | None]:
    """The optional true class of each uploaded file (the page's per-file picker), in file order: blank is
    "not given"; anything else must be one of the 10 class names."""
    if len(values) > files:
        sent = "1 true class was" if len(values) == 1 else f"{len(values)} true classes were"
        raise RequestError(f"{sent} sent for {files} file{'s' if files != 1 else ''}", "invalid_true_label")
    labels = []
    for value in values:
        value = value.strip().lower()
        if value and value not in CLASS_NAMES:
            raise RequestError(f"the true class must be one of the 10 classes ({', '.join(CLASS_NAMES)}), "
                               f"got {clip(repr(value), 40)}", "invalid_true_label")
        labels.append(value or None)
    return labels + [None] * (files - len(values))


def parse_explain(value: Any) -> bool:
    """`explain`: a JSON boolean, or a form's true/false (1/0, on/off, yes/no); absent: false."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "on", "yes", "false", "0", "off", "no"):
        return value.strip().lower() in ("true", "1", "on", "yes")
    raise RequestError(f"explain must be true or false, got {clip(json.dumps(value), 40)}", "invalid_explain")


def check_explain_count(config: dict[str, Any], images: int, wanted: bool) -> None:
    limit = config["EXPLAIN_MAX_IMAGES"]
    if wanted and images > limit:
        raise RequestError(f"explain=true takes at most {limit} image{'s' if limit != 1 else ''} per request "
                           f"({images} were sent): each costs {PASSES_PER_MAP} passes of every model; send the rest in "
                           "another "
                           "request", "too_many_to_explain")


def parse_crop(value: Any) -> str:
    """`crop`: how each photo becomes the square the models see, "centre" (its centre square; absent: this) or
    "whole" (the whole photo, padded to a square)."""
    if value is None or value == "":
        return CROPS[0]
    if isinstance(value, str) and value.strip().lower() in CROPS:
        return value.strip().lower()
    raise RequestError(f"crop must be one of {', '.join(CROPS)}, got {clip(json.dumps(value), 40)}", "invalid_crop")


def parse_top_k(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RequestError(f"top_k must be an integer from 1 to {NUM_CLASSES}", "invalid_top_k")
    try:
        top_k = int(value)
    except ValueError:
        raise RequestError(f"top_k must be an integer from 1 to {NUM_CLASSES}, got {clip(repr(value), 40)}",
                           "invalid_top_k") from None
    if not 1 <= top_k <= NUM_CLASSES:
        raise RequestError(f"top_k must be an integer from 1 to {NUM_CLASSES}, got {top_k}", "invalid_top_k")
    return top_k


def parse_models(value: Any, available: list[str]) -> list[str]:
    """A list (or comma-separated string) of model names, each one served here; default: all of them."""
    if value is None or value == "" or value == []:
        return list(available)
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError("models must be a list of model names", "invalid_models")
    names = [n.strip() for name in names for n in name.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise RequestError(f"unknown model {clip(repr(unknown[0]), 60)}; available: {', '.join(available)}",
                           "unknown_model")
    return list(dict.fromkeys(names)) or list(available)


def fetch_policy(config: dict[str, Any]) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=config["MAX_FILE_BYTES"],
        max_redirects=config["FETCH_MAX_REDIRECTS"],
        connect_timeout=config["FETCH_CONNECT_TIMEOUT"],
        read_timeout=config["FETCH_READ_TIMEOUT"],
        total_timeout=config["FETCH_TOTAL_TIMEOUT"],
        request_timeout=config["FETCH_REQUEST_TIMEOUT"],
        concurrency=config["FETCH_CONCURRENCY"],
        max_requests=config["FETCH_MAX_REQUESTS"],
        # Tests serve images from loopback; this exemption exists only in an app created with TESTING=True.
        allowed_hosts=frozenset(config.get("FETCH_ALLOWED_TEST_HOSTS", ()) if config.get("TESTING") else ()),
    )
