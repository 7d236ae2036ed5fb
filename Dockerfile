# The serving image: what Railway builds (railway.json) and what runs on Fly, Render, Cloud Run or Kubernetes.
# Serving dependencies and model files only (no TensorFlow, no training data); the same start command as the
# Procfile (deploy/start.py: nginx in front of gunicorn). scripts/simulate_docker_build.py replays this file
# without Docker and measures the result.

# ---- build: a virtual environment with the serving requirements (PyTorch's CPU wheel, LiteRT, Flask, gunicorn)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-compile -r /tmp/requirements.txt
# What a server never runs leaves: PyTorch's C++ tests, headers and protoc (about 190 MB; torch_shm_manager stays).
# Then the bytecode of the libraries every worker imports is written once, here: the runtime sets
# PYTHONDONTWRITEBYTECODE, and without it each worker compiled PyTorch's sources at every start (about 3 s more to
# /readyz on a 2-core machine, scripts/simulate_docker_build.py). Only what is imported is compiled (+24 MB).
RUN cd /opt/venv/lib/python3.11/site-packages/torch \
    && rm -rf test include bin/protoc* bin/*Test bin/test_* bin/*.pt bin/*.ptl bin/upgrader_models \
    && cd / && /opt/venv/bin/python -c "import torch, numpy, PIL.Image, ai_edge_litert.interpreter, flask, flask_wtf, \
flask_bootstrap, pydantic, pebble, gunicorn.app.wsgiapp, weasyprint"

# ---- runtime: the venv, the code and the served model files, run as an unprivileged user
FROM python:3.11-slim
# nginx, the front server (deploy/nginx.conf): Debian's package, security updates with the base image; its Lua module
# (OpenResty's lua-nginx-module, packaged by Debian) enforces the minimum upload rate. Pango and DejaVu: WeasyPrint
# prints the PDFs (reports/pdf.py).
RUN apt-get update && apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua \
    libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core && rm -rf /var/lib/apt/lists/*
# X-Forwarded-For is trusted only where a proxy appends the client to it: on Railway (RAILWAY_ENVIRONMENT) one hop by
# default, elsewhere none unless APP_TRUSTED_PROXY_HOPS says so (models/settings.py, docs/deploy.md): run without a
# proxy, the image must not let a client choose its own address.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=8000
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY app.py gunicorn.conf.py ./
COPY deploy/ deploy/
COPY models/ models/
COPY reports/ reports/
COPY webapp/ webapp/
COPY templates/ templates/
COPY static/ static/
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4).status != 200)"
CMD ["python", "deploy/start.py"]
