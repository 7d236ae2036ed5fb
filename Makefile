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

.PHONY: run test lint train-cnn train-cnn-fast evaluate-cnn bench-cnn train-mobilenetv2 export-mobilenetv2 evaluate-mobilenetv2 bench-mobilenetv2 \
	readme report calibrate clean venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/gunicorn --config gunicorn.conf.py --bind 127.0.0.1:$(PORT) app:app

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

train-cnn: $(VENV)/.installed
	$(PY) -m models.custom_cnn.train

# The best recipe found that trains in under 10 minutes here (run r10); leaves the committed model alone.
train-cnn-fast: $(VENV)/.installed
	$(PY) -m models.custom_cnn.train --epochs 10 --batch-size 1024 --low-res-epochs 7 --set lowest_res_epochs=4 \
		--out models/custom_cnn/runs/fast --checkpoint models/custom_cnn/checkpoints/fast.pt

evaluate-cnn: $(VENV)/.installed
	$(PY) -m models.evaluate custom_cnn

bench-cnn: $(VENV)/.installed
	$(PY) bench/bench_custom_cnn.py --compile

train-mobilenetv2: $(VENV)/.installed
	$(PY) -m models.mobilenetv2.train

export-mobilenetv2: $(VENV)/.installed  # model.keras -> serving/1 (TF Serving) + model.tflite (what the app runs)
	$(PY) -m models.mobilenetv2.export

evaluate-mobilenetv2: $(VENV)/.installed
	$(PY) -m models.evaluate mobilenetv2

bench-mobilenetv2: $(VENV)/.installed
	$(PY) bench/bench_mobilenetv2.py

calibrate: $(VENV)/.installed
	$(PY) -m models.calibrate custom_cnn
	$(PY) -m models.calibrate mobilenetv2

# Scores each model on the test split once (cached in reports/predictions/), then writes
# reports/metrics.json, index.html and report.pdf, and the README's results table.
report: $(VENV)/.installed
	$(PY) -m reports.build
	$(PY) scripts/update_readme.py

readme: $(VENV)/.installed
	$(PY) scripts/update_readme.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache models/custom_cnn/checkpoints models/mobilenetv2/checkpoints
