"""Every environment variable the product reads, in one table, and the only code that reads them.

`docs/settings.md` is generated from `SETTINGS` (and the web app's `APP_*` defaults) by
`make readme`; a test fails if any other module reads `os.environ`. This module imports nothing
heavy, so `gunicorn.conf.py` can use it before the workers load PyTorch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as a person would write it; "" means "not set"
    meaning: str
    role: str  # "serving", "deployment" or "training"


SETTINGS: tuple[Setting, ...] = (
    Setting("PORT", "8000", "port the public server (nginx, deploy/start.py) listens on (Railway sets it)",
            "deployment"),
    Setting("HOST", "0.0.0.0", "address nginx listens on (deploy/start.py)", "deployment"),
    Setting("GUNICORN_BIND", "", "where gunicorn listens; deploy/start.py sets a private Unix socket, `make run` "
            "127.0.0.1:$PORT (unset: 0.0.0.0:$PORT, gunicorn alone)", "deployment"),
    Setting("FRONT_DOOR", "", "set by deploy/start.py for gunicorn: the app trusts one more proxy hop (nginx)",
            "deployment"),
    Setting("WEB_CONCURRENCY", "1", "gunicorn worker processes; each loads both models and the gate (0.4–0.6 GB)",
            "deployment"),
    Setting("GUNICORN_THREADS", "16", "request threads per worker", "deployment"),
    Setting("GUNICORN_TIMEOUT", "120", "seconds before gunicorn restarts a silent worker", "deployment"),
    Setting("GUNICORN_MAX_REQUESTS", "0", "recycle a worker after this many requests (0: never)", "deployment"),
    Setting("SECRET_KEY", "", "signs sessions and CSRF tokens; one shared value for every worker and replica. "
            "Required with more than one worker or on Railway (the server refuses to start without it); a local "
            "one-worker `make run` uses a random key, with a warning", "serving"),
    Setting("RAILWAY_ENVIRONMENT", "", "set by Railway: marks a public deployment (SECRET_KEY becomes required) "
            "behind Railway's proxy, which appends the client's address to X-Forwarded-For (APP_TRUSTED_PROXY_HOPS "
            "defaults to 1)", "deployment"),
    Setting("CIFAR10_MODELS_DIR", "", "serve `<dir>/<model name>/` instead of the committed `models/<name>/`",
            "serving"),
    Setting("LITERT_NUM_THREADS", "", "LiteRT threads for MobileNetV2 (default: OMP_NUM_THREADS, else the cores)",
            "serving"),
    Setting("OMP_NUM_THREADS", "", "math-library threads per process (gunicorn.conf.py sets cores / workers)",
            "serving"),
    Setting("CIFAR10_DIR", "~/.cache/cifar10", "where the CIFAR-10 files are (downloaded there when missing)",
            "training"),
    Setting("KERAS_HOME", "~/.keras", "Keras cache holding the MobileNetV2 ImageNet weights (`models/` inside)",
            "training"),
    Setting("XDG_CACHE_HOME", "~/.cache", "MobileNetV2's cached frozen-block features go to "
            "`$XDG_CACHE_HOME/cifar10-compare/`", "training"),
)
_BY_NAME = {s.name: s for s in SETTINGS}
APP_PREFIX = "APP_"  # APP_<KEY> overrides the web app's config key <KEY> (webapp.DEFAULTS)
# The largest request the app accepts (APP_MAX_CONTENT_LENGTH): here because both the web app and the front
# server's configuration (deploy/start.py renders nginx's client_max_body_size; it does not import Flask) use it.
MAX_CONTENT_LENGTH = 50 * 1024 * 1024
# The largest JSON body (APP_MAX_JSON_BYTES): it carries URLs and options, not images. The app reads at most this
# much; the front server refuses a longer declared JSON body before receiving it.
MAX_JSON_BYTES = 64 * 1024


def get(name: str) -> str | None:
    """The value of a registered setting: the environment if set and non-empty, else None."""
    if name not in _BY_NAME:
        raise KeyError(f"{name} is not a registered setting (add it to models/settings.py)")
    return os.environ.get(name) or None


def get_int(name: str) -> int:
    value = get(name) or _BY_NAME[name].default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def get_path(name: str) -> Path:
    """A directory setting, `~` expanded; the default when unset."""
    return Path(get(name) or _BY_NAME[name].default).expanduser()


def app_overrides() -> dict[str, Any]:
    """`APP_<KEY>=value` variables as web-app config keys; values are parsed as JSON where they can be."""
    overrides: dict[str, Any] = {}
    for key, text in sorted(os.environ.items()):
        if key.startswith(APP_PREFIX) and len(key) > len(APP_PREFIX):
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
    if explicit not in (None, ""):
        return int(explicit)
    return next((hops for name, hops in PROXY_PLATFORMS.items() if get(name)), 0)


def set_default(name: str, value: str) -> None:
    """Give a setting a value for this process and its children unless the environment already has one."""
    if name not in _BY_NAME and not name.endswith("_NUM_THREADS") and not name.startswith("TF_"):
        raise KeyError(f"{name} is not a registered setting")
    os.environ.setdefault(name, value)
