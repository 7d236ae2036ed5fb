"""Security headers on every response (the CSP allows no inline script and no third-party origin), and the one
signer of what a page carries back to the site (a comparison to export, an evaluation's report)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app
from itsdangerous import URLSafeTimedSerializer

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def register(app: Flask) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


def sign(value: Any, purpose: str) -> str:
    """`value` signed with the app's SECRET_KEY for one `purpose` (a signature for one purpose is refused for
    another), compressed: the page carries it and posts it back, so any replica sharing the key can read it."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=purpose).dumps(value)


def unsign(text: str, purpose: str) -> Any:
    """What `sign` signed for `purpose`, if it is at most a form's lifetime (WTF_CSRF_TIME_LIMIT) old; else
    itsdangerous's SignatureExpired or BadSignature (its parent), for the caller to word."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=purpose).loads(
        text, max_age=current_app.config["WTF_CSRF_TIME_LIMIT"])
