"""WSGI entry point: `gunicorn app:app` (Procfile, make run). The factory lives in webapp/."""

from webapp import create_app

app = create_app()
