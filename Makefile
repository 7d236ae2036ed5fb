# Quick start: `make run` serves the app, `make test` runs the tests. Both (re)create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Use the read-only shared CIFAR-10 copy when it sits next to the repository (dev machines, CI);
# otherwise the data module downloads the official tarball. Override with CIFAR10_DIR=... .
SHARED_CIFAR := $(abspath ../shared/cifar10)
ifeq ($(origin CIFAR10_DIR), undefined)
  ifneq ($(wildcard $(SHARED_CIFAR)/cifar-10-batches-py/batches.meta),)
    export CIFAR10_DIR := $(SHARED_CIFAR)
  endif
endif

# Same for the MobileNetV2 ImageNet weights (Keras's cache layout); otherwise Keras downloads them.
SHARED_KERAS := $(abspath ../shared/keras)
ifeq ($(origin KERAS_HOME), undefined)
  ifneq ($(wildcard $(SHARED_KERAS)/models/*.h5),)
    export KERAS_HOME := $(SHARED_KERAS)
  endif
endif

# Keep TensorFlow's C++ start-up banner off the console for every command below.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: vendor run test test-fast lint train-cnn train-cnn-fast evaluate-cnn bench-cnn train-mobilenetv2 export-mobilenetv2 \
	evaluate-mobilenetv2 bench-mobilenetv2 bench-http simulate-image readme docs report calibrate clean venv

# One retry per failed download instead of pip's five: requirements.txt names PyTorch's CPU wheel page, and on a
# machine that cannot reach it (offline CI with a local wheel) five retries per package cost minutes.
export PIP_RETRIES ?= 1

# Two environments in one venv: `make run` needs only the serving set (requirements.txt); `make test`, training
# and the report add requirements-train.txt and requirements-dev.txt. The project is installed in the venv
# (editable), so `from models import classify` works from any folder.
$(VENV)/.serving: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools  # Python 3.12+ venvs have no setuptools (the -e below)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed: $(VENV)/.serving requirements-train.txt requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Development: gunicorn alone on loopback. The public command (Procfile, Dockerfile) is `python deploy/start.py`:
# nginx in front of gunicorn, which holds slow clients and large uploads (docs/deploy.md).
run: $(VENV)/.serving
	GUNICORN_BIND=127.0.0.1:$(PORT) $(PY) -m gunicorn --config gunicorn.conf.py app:app

# axe-core (accessibility checks in the browser tests), pinned by package-lock.json.
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Swagger UI for the API page (/api): the pinned npm package's bundle, stylesheet and licence, committed.
SWAGGER_FILES := swagger-ui-bundle.js swagger-ui.css LICENSE
vendor: $(AXE)
	mkdir -p static/vendor/swagger-ui
	cd node_modules/swagger-ui-dist && cp $(SWAGGER_FILES) ../../static/vendor/swagger-ui/

test: $(VENV)/.installed $(AXE)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The inner loop: everything but the tests that load the real models, start servers or browsers, or train.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Training writes to build/<model>/ (git-ignored); pass --out models/<model> to replace the committed model.
train-cnn: $(VENV)/.installed
	$(PY) -m models.custom_cnn.train

# The best recipe measured at about 10 minutes (run r10; docs/custom-cnn.md).
train-cnn-fast: $(VENV)/.installed
	$(PY) -m models.custom_cnn.train --preset fast --out build/custom_cnn-fast --work-dir build/custom_cnn-fast/checkpoints

evaluate-cnn: $(VENV)/.installed
	$(PY) -m models.evaluate custom_cnn

bench-cnn: $(VENV)/.installed
	$(PY) bench/bench_custom_cnn.py --compile

train-mobilenetv2: $(VENV)/.installed
	$(PY) -m models.mobilenetv2.train

export-mobilenetv2: $(VENV)/.installed  # model.keras -> serving/1 (TF Serving) + model.tflite, in build/
	$(PY) -m models.mobilenetv2.export

evaluate-mobilenetv2: $(VENV)/.installed
	$(PY) -m models.evaluate mobilenetv2

bench-mobilenetv2: $(VENV)/.installed
	$(PY) bench/bench_mobilenetv2.py

calibrate: $(VENV)/.installed
	$(PY) -m models.calibrate custom_cnn
	$(PY) -m models.calibrate mobilenetv2

# Replays the Dockerfile without Docker (fresh venv, same pip line, same COPY/ENV/CMD) and measures the image.
simulate-image: $(VENV)/.installed
	$(PY) scripts/simulate_docker_build.py

bench-http: $(VENV)/.installed
	$(PY) bench/bench_http.py latency

# Scores each model on the test split once (cached in models/<name>/test_probabilities.npz), then rewrites the
# committed reports/metrics.json, index.html and report.pdf, and the generated tables in README.md and docs/.
report: $(VENV)/.installed
	$(PY) -m reports.build
	$(PY) scripts/update_docs.py

# The generated blocks of README.md and docs/*.md, from the committed metrics, configs and settings.
readme docs: $(VENV)/.installed
	$(PY) scripts/update_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache models/custom_cnn/checkpoints models/mobilenetv2/checkpoints
