"""Every environment variable the product reads, described once (`Environment`), and the only code that reads them.

`Environment` is a pydantic-settings model: each field is a variable, with its type, its default, its meaning and
who reads it ("serving", "deployment" or "training"), so a value of the wrong type (PORT=eighty) stops the start
with a message naming the variable instead of failing later. `docs/settings.md` is generated from it (and the web
app's `APP_*` defaults) by `make readme`; a test fails if any other module reads `os.environ`. This module imports
nothing heavy, so `gunicorn.conf.py` can use it before the workers load PyTorch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


def _setting(default: Any, meaning: str, role: str, written: str = "", **constraints: Any) -> Any:
    """A field: `written` is the default as a person would write it ("" = not set)."""
    return Field(default, description=meaning, json_schema_extra={"role": role, "written": written}, **constraints)


class Environment(BaseSettings):
    """Every environment variable the product reads. Unset and empty variables take the default; None = not set."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True)

    PORT: int = _setting(8000, "port the public server (nginx, deploy/start.py) listens on (Railway sets it)",
                         "deployment", "8000", ge=1, le=65535)
    HOST: str | None = _setting(None, "address nginx listens on (deploy/start.py; unset: 0.0.0.0 and [::])",
                                "deployment")
    GUNICORN_BIND: str | None = _setting(
        None, "where gunicorn listens; deploy/start.py sets a private Unix socket, `make run` 127.0.0.1:$PORT "
        "(unset: 0.0.0.0:$PORT, gunicorn alone)", "deployment")
    FRONT_DOOR: str | None = _setting(
        None, "set by deploy/start.py for gunicorn: the app trusts one more proxy hop (nginx)", "deployment")
    WEB_CONCURRENCY: int = _setting(
        1, "gunicorn worker processes; each loads both models and the gate (0.4–0.6 GB)", "deployment", "1", ge=1)
    GUNICORN_THREADS: int = _setting(16, "request threads per worker", "deployment", "16", ge=1)
    GUNICORN_TIMEOUT: int = _setting(120, "seconds before gunicorn restarts a silent worker", "deployment", "120",
                                     ge=1)
    GUNICORN_MAX_REQUESTS: int = _setting(0, "recycle a worker after this many requests (0: never)", "deployment",
                                          "0", ge=0)
    SECRET_KEY: str | None = _setting(
        None, "signs sessions and CSRF tokens; one shared value for every worker and replica. Required with more "
        "than one worker or on Railway (the server refuses to start without it); a local one-worker `make run` uses "
        "a random key, with a warning", "serving")
    RAILWAY_ENVIRONMENT: str | None = _setting(
        None, "set by Railway: marks a public deployment (SECRET_KEY becomes required) behind Railway's proxy, which "
        "appends the client's address to X-Forwarded-For (APP_TRUSTED_PROXY_HOPS defaults to 1)", "deployment")
    CIFAR10_MODELS_DIR: str | None = _setting(
        None, "serve `<dir>/<model name>/` instead of the committed `models/<name>/`", "serving")
    LITERT_NUM_THREADS: int | None = _setting(
        None, "LiteRT threads for MobileNetV2 (default: OMP_NUM_THREADS, else the cores)", "serving", ge=1)
    OMP_NUM_THREADS: int | None = _setting(
        None, "math-library threads per process (gunicorn.conf.py sets cores / workers)", "serving", ge=1)
    CIFAR10_DIR: Path | None = _setting(
        None, "where the CIFAR-10 files are (downloaded there when missing)", "training", "~/.cache/cifar10")
    KERAS_HOME: Path = _setting(Path("~/.keras"), "Keras cache holding the MobileNetV2 ImageNet weights (`models/` "
                                "inside)", "training", "~/.keras")
    XDG_CACHE_HOME: Path = _setting(Path("~/.cache"), "MobileNetV2's cached frozen-block features go to "
                                    "`$XDG_CACHE_HOME/cifar10-compare/`", "training", "~/.cache")


def environment() -> Environment:
    """The variables as they are now (read afresh: tests and deploy/start.py set some for their children); a value
    of the wrong type stops with one line naming the variable."""
    try:
        return Environment()
    except ValidationError as error:
        raise SystemExit(invalid(error)) from None


def invalid(error: ValidationError, prefix: str = "") -> str:
    """One line naming each variable whose value was refused, and why."""
    problems = "; ".join(f"{prefix}{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                         for e in error.errors())
    return f"invalid setting: {problems} (docs/settings.md)"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as a person would write it; "" means "not set"
    meaning: str
    role: str  # "serving", "deployment" or "training"


# The table docs/settings.md shows, read off Environment's fields (not a second description).
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name, field.json_schema_extra["written"], field.description, field.json_schema_extra["role"])
    for name, field in Environment.model_fields.items())
_BY_NAME = {s.name: s for s in SETTINGS}
APP_PREFIX = "APP_"  # APP_<KEY> overrides the web app's config key <KEY> (webapp.DEFAULTS)
# The largest request the app accepts (APP_MAX_CONTENT_LENGTH): here because both the web app and the front
# server's configuration (deploy/start.py renders nginx's client_max_body_size; it does not import Flask) use it.
MAX_CONTENT_LENGTH = 50 * 1024 * 1024
# The largest JSON body (APP_MAX_JSON_BYTES): it carries URLs and options, not images. The app reads at most this
# much; the front server refuses a longer declared JSON body before receiving it.
MAX_JSON_BYTES = 64 * 1024


def get(name: str) -> str | None:
    """A registered variable as text when it is set (and valid), else None."""
    if name not in _BY_NAME:
        raise KeyError(f"{name} is not a registered setting (add it to models/settings.py)")
    value = getattr(environment(), name)
    return None if value is None or name not in os.environ or not os.environ[name] else str(value)


def get_int(name: str) -> int:
    """A registered integer variable, its default when unset."""
    if name not in _BY_NAME:
        raise KeyError(f"{name} is not a registered setting (add it to models/settings.py)")
    value = getattr(environment(), name)
    if not isinstance(value, int):
        raise KeyError(f"{name} is not an integer setting with a default")
    return value


def get_path(name: str) -> Path:
    """A directory setting, `~` expanded; the default when unset."""
    if name not in _BY_NAME:
        raise KeyError(f"{name} is not a registered setting (add it to models/settings.py)")
    return Path(getattr(environment(), name) or _BY_NAME[name].default).expanduser()


def app_overrides() -> dict[str, Any]:
    """`APP_<KEY>=value` variables as web-app config keys; values are parsed as JSON where they can be. An empty
    value is unset, as for every other variable."""
    overrides: dict[str, Any] = {}
    for key, text in sorted(os.environ.items()):
        if key.startswith(APP_PREFIX) and len(key) > len(APP_PREFIX) and text.strip():
            try:
                overrides[key[len(APP_PREFIX):]] = json.loads(text)
            except ValueError:
                overrides[key[len(APP_PREFIX):]] = text
    return overrides


# The platforms whose edge proxy is documented to append the client's address to X-Forwarded-For, by the variable
# that the platform sets in every deployment: there, and only there, the proxy hop is trusted without being told
# (docs/deploy.md says how each was checked, and why Fly, Render and Cloud Run are not here).
PROXY_PLATFORMS = {"RAILWAY_ENVIRONMENT": 1}


def trusted_proxy_hops() -> int:
    """How many proxies in front of the server append to X-Forwarded-For: APP_TRUSTED_PROXY_HOPS when set, else 1 on
    a platform in PROXY_PLATFORMS, else 0. Trusting a hop that no proxy appended would let every client write its own
    address (and so escape every per-client limit) by sending X-Forwarded-For: the image runs anywhere, so the
    default follows where it runs. The web app (ProxyFix) and the front server (deploy/start.py) both read this."""
    explicit = app_overrides().get("TRUSTED_PROXY_HOPS")
    if explicit is not None:
        if type(explicit) is not int or explicit < 0:
            raise SystemExit(f"invalid setting: {APP_PREFIX}TRUSTED_PROXY_HOPS={explicit!r}: a whole number of "
                             "proxies, 0 or more (docs/settings.md)")
        return explicit
    return next((hops for name, hops in PROXY_PLATFORMS.items() if get(name)), 0)


def set_default(name: str, value: str) -> None:
    """Give a setting a value for this process and its children unless the environment already has one."""
    if name not in _BY_NAME and not name.endswith("_NUM_THREADS") and not name.startswith("TF_"):
        raise KeyError(f"{name} is not a registered setting")
    os.environ.setdefault(name, value)
