"""Reading a request's options (described in webapp/schema.py) from a form or a JSON body, the true classes a
person gives each file on the page, and the URL-fetch policy."""

from __future__ import annotations

from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core.core_schema import ErrorType
from werkzeug.datastructures import MultiDict

from models.cifar10 import CLASS_NAMES
from models.explanation import PASSES_PER_MAP
from webapp.fetch import FetchPolicy
from webapp.inference import RequestError, clip

Options = TypeVar("Options", bound=BaseModel)
PYDANTIC_ERRORS = frozenset(get_args(ErrorType))  # pydantic's own error types; the schema's own are its codes


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


def read_options(schema: type[Options], source: Any, config: dict[str, Any]) -> Options:
    """A request's options as `schema` describes them (webapp/schema.py), from a JSON object (a dict) or a form
    (a MultiDict: a list field takes every value sent under its name, any other field the first): validated once,
    there. The first problem is the request's error, with the code the schema gives it (`invalid_<field>` where it
    gives none)."""
    if isinstance(source, MultiDict):
        source = {name: source.getlist(name) if get_origin(field.annotation) is list else source.get(name)
                  for name, field in schema.model_fields.items() if name in source}
    elif not isinstance(source, dict):
        raise RequestError("the JSON body must be an object like {\"urls\": [...]}", "invalid_json")
    try:
        return schema.model_validate(source, context={"config": config})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "request"
        code = f"invalid_{field}" if error["type"] in PYDANTIC_ERRORS else error["type"]
        message = error["msg"] if code == error["type"] else f"{field}: {error['msg']}"
        raise RequestError(clip(message, 300), code) from None


def check_explain_count(config: dict[str, Any], images: int, wanted: bool) -> None:
    limit = config["EXPLAIN_MAX_IMAGES"]
    if wanted and images > limit:
        raise RequestError(f"explain=true takes at most {limit} image{'s' if limit != 1 else ''} per request "
                           f"({images} were sent): each costs {PASSES_PER_MAP} passes of every model; send the rest in "
                           "another request", "too_many_to_explain")


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
