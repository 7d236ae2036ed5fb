"""WSGI entry point: `gunicorn app:app` (Procfile, make run). The factory lives in webapp/."""

import sys

from webapp import create_app

try:
    app = create_app()
except SystemExit as stop:  # a setting of the wrong type: its one line, then gunicorn's "worker failed to boot"
    if not isinstance(stop.code, str):
        raise
    print(stop.code, file=sys.stderr)
    raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the master stops instead of restarting the worker
