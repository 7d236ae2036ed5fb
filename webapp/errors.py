"""One error shape: JSON `{"error": {"status", "code", "message"}}` under /api/, a friendly page elsewhere."""

from __future__ import annotations

import logging
import posixpath

from flask import Flask, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from models.images import DecoderBusy
from reports.pdf import PrintRefused
from webapp.inference import MAX_MESSAGE_CHARS, RequestError, clip

log = logging.getLogger(__name__)


def wants_json() -> bool:
    """Under /api/ (and /api itself: its page is HTML, its errors are not), also when the path reaches it through
    dot segments (/x/../api/v1/...), as nginx reads it."""
    path = posixpath.normpath(request.path)
    return path == "/api" or path.startswith("/api/")


RETRY_AFTER_SECONDS = 5  # a 429 says when to try again, as its message does ("in a few seconds")


def error_response(status: int, code: str, message: str, retry_after: int | None = None):
    response, status = _error_body(status, code, message)
    if status == 429:
        response = make_response(response, status)
        response.headers["Retry-After"] = str(retry_after or RETRY_AFTER_SECONDS)
        return response
    return response, status


def _error_body(status: int, code: str, message: str):
    message = clip(message, MAX_MESSAGE_CHARS)
    if wants_json():
        return jsonify(error={"status": status, "code": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(RequestError)
    def request_error(exc: RequestError):
        return error_response(exc.status, exc.code, str(exc), exc.retry_after)

    @app.errorhandler(DecoderBusy)
    def decoder_busy(exc: DecoderBusy):
        """The server's state, not the image's fault (an evaluation's decode that waited its seconds for the bulk
        child: a 500 in the 30-minute soak before this): try again shortly."""
        return error_response(429, "busy", str(exc), exc.retry_after)

    @app.errorhandler(PrintRefused)
    def print_refused(exc: PrintRefused):
        return error_response(exc.status, exc.code, str(exc), exc.retry_after)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_response(400, "csrf_failed", "The page expired (a form is valid for an hour) or was not sent "
                                                  "by this site: reload the page and send the images again.")

    @app.errorhandler(413)
    def too_large(exc: HTTPException):
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length <= limit:
            # Werkzeug's other form limits: too many parts (MAX_FORM_PARTS), or a text field over MAX_FORM_MEMORY_SIZE.
            return error_response(413, "form_too_large", f"The form has too many fields (the limit is "
                                  f"{request.max_form_parts}) or a text field that is too long. Send the images as "
                                  f"files, at most {app.config['MAX_IMAGES']} per request.")
        return error_response(413, "request_too_large", f"The request is larger than {limit / 1024 / 1024:.0f} MB. "
                                                        f"Send fewer or smaller images.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.after_request
    def options_without_a_page(response):
        """Flask answers OPTIONS itself with 200, an Allow header and an empty text/html body: under /api/ that
        read as an HTML answer. 204 and no body type say the same."""
        if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data() and wants_json():
            response.status_code = 204
            del response.headers["Content-Type"]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", InternalServerError.description)
