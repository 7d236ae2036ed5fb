"""MobileNetV2 (TensorFlow/Keras): smoke training, checkpoint/resume, SavedModel + LiteRT export, weight errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.mobilenetv2 import net
from models.mobilenetv2.export import export_saved_model
from models.mobilenetv2.predictor import MobileNetV2Predictor
from models.mobilenetv2.train import main as train_main
from models.predictor import ModelLoadError
from tests.helpers import REAL_CIFAR, REPO, needs_real_cifar

pytestmark = pytest.mark.slow  # TensorFlow: training, export, the committed model

TINY = ["--set", "image_size=32", "--max-train-images", "250", "--batch-size", "50", "--set", "head_epochs=1",
        "--no-progress", "--threads", "2"]


@pytest.fixture(scope="session")
def random_backbone_weights(tmp_path_factory) -> Path:
    """A MobileNetV2 weights file in the ImageNet file's format (random values): tests never need the download."""
    path = tmp_path_factory.mktemp("keras") / "random_no_top.weights.h5"
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None).save_weights(path)
    return path


def run_tiny(tmp_path: Path, cifar: Path, weights: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    train_main([*TINY, "--data-dir", str(cifar), "--imagenet-weights", str(weights), "--out", str(out),
                "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"), *extra])
    return json.loads((out / "config.json").read_text())


def test_smoke_training_writes_a_servable_model(tmp_path, synthetic_cifar, random_backbone_weights):
    config = run_tiny(tmp_path, synthetic_cifar, random_backbone_weights, "--epochs", "2")
    out = tmp_path / "out"
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(history[0])
    assert config["best_epoch"] in (1, 2) and config["train_images"] == 250
    assert (tmp_path / "work" / "last.keras").is_file()  # the per-epoch checkpoint
    model = keras.models.load_model(out / "model.keras")
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    probs = model.predict(images, verbose=0)
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # What the app serves is the LiteRT export written next to it, through the common Predictor.
    served = MobileNetV2Predictor(out).predict_proba(images, calibrated=False)
    assert np.abs(served - probs).max() <= 1e-4
    assert config["architecture"]["parameters"] == model.count_params()
    # The cached features are reused by a second run (no recomputation needed): same files, same bytes.
    cache_files = sorted(p.name for p in (tmp_path / "cache").rglob("*.npy"))
    assert {"train.npy", "train_mirror.npy", "val.npy"} <= set(cache_files)


def test_damaged_views_are_cached_and_trained_on(tmp_path, synthetic_cifar, random_backbone_weights):
    """--preset damage's extra views: computed once into the cache (keyed by the damage), then drawn from."""
    damage = ["--set", "damaged_views=2", "--set", "noise_prob=1.0", "--set", "fade_prob=0.5", "--epochs", "1"]
    config = run_tiny(tmp_path, synthetic_cifar, random_backbone_weights, *damage)
    assert config["recipe"]["damaged_views"] == 2
    damaged = sorted((tmp_path / "cache").rglob("train_damaged*.npy"))
    assert [p.name.split("_")[1] for p in damaged] == ["damaged0", "damaged1"]
    clean = np.load(next((tmp_path / "cache").rglob("train.npy")))
    first = np.load(damaged[0])
    assert first.shape == clean.shape and not np.array_equal(first, clean)
    stamps = [p.stat().st_mtime_ns for p in damaged]
    run_tiny(tmp_path, synthetic_cifar, random_backbone_weights, *damage)  # a second run reuses them
    assert [p.stat().st_mtime_ns for p in damaged] == stamps


def test_batchnorm_stays_in_inference_mode_while_training():
    _, upper = net.backbone_halves(32, None)
    model = net.trainable_model(upper, net.classifier_head(dropout=0.0))
    features = np.random.default_rng(0).normal(size=(4, *upper.input.shape[1:])).astype(np.float32)
    assert np.allclose(model(features, training=True), model(features, training=False))


def test_killed_training_resumes_to_the_same_weights(tmp_path, synthetic_cifar, random_backbone_weights):
    """SIGKILL after the first epoch's checkpoint, then --resume: same final weights as an uninterrupted run
    (with a photo-damaged view among those drawn from)."""
    common = [*TINY, "--epochs", "2", "--data-dir", str(synthetic_cifar), "--imagenet-weights",
              str(random_backbone_weights), "--cache-dir", str(tmp_path / "cache"),
              "--set", "damaged_views=1", "--set", "noise_prob=1.0"]
    train_main([*common, "--out", str(tmp_path / "straight"), "--work-dir", str(tmp_path / "w1")])

    work, out = tmp_path / "w2", tmp_path / "resumed"
    args = [*common, "--out", str(out), "--work-dir", str(work)]
    proc = subprocess.Popen([sys.executable, "-m", "models.mobilenetv2.train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "state.json").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (work / "state.json").is_file() and not (out / "model.keras").exists()
    assert len(json.loads((work / "state.json").read_text())["history"]) == 1
    train_main([*args, "--resume"])

    straight = keras.models.load_model(tmp_path / "straight" / "model.keras").get_weights()
    resumed = keras.models.load_model(out / "model.keras").get_weights()
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(straight, resumed, strict=True))


def test_missing_imagenet_weights_name_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(net.ImagenetWeightsError) as excinfo:
        net.find_imagenet_weights(None, allow_download=False)
    message = str(excinfo.value)
    assert "--imagenet-weights" in message and "KERAS_HOME" in message and net.WEIGHTS_FILE in message

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(net.ImagenetWeightsError, match=r"download .* failed"):
        net.find_imagenet_weights(None)


def test_training_cli_reports_missing_weights_without_traceback(tmp_path, synthetic_cifar, capsys):
    with pytest.raises(SystemExit) as excinfo:
        train_main([*TINY, "--data-dir", str(synthetic_cifar), "--imagenet-weights", str(tmp_path / "nope.h5"),
                    "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "o")])
    assert "nope.h5" in str(excinfo.value) and str(excinfo.value).startswith("error:")


def test_exported_savedmodel_matches_keras(tmp_path):
    lower, upper = net.backbone_halves(32, None)
    model = net.full_model(32, lower, upper, net.classifier_head(0.2))
    export_saved_model(model, tmp_path / "serving" / "1")
    serve = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    got = serve(images=tf.constant(images))["probabilities"].numpy()
    assert np.abs(got - model.predict(images, verbose=0)).max() <= 1e-4


COMMITTED = REPO / "models" / "mobilenetv2"


def test_committed_litert_file_matches_the_committed_keras_model():
    """model.tflite (what the app runs) is an export of model.keras: same probabilities, any batch size."""
    model = keras.models.load_model(COMMITTED / "model.keras")
    images = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    served = MobileNetV2Predictor(COMMITTED).predict_proba(images, calibrated=False)
    assert np.abs(served - model.predict(images, verbose=0)).max() <= 1e-4


def test_damaged_litert_file_is_a_clear_load_error(tmp_path):
    shutil.copytree(COMMITTED, tmp_path / "m", ignore=shutil.ignore_patterns("checkpoints", "runs", "serving"))
    (tmp_path / "m" / "model.tflite").write_bytes(b"TFL3" + bytes(1000))
    with pytest.raises(ModelLoadError, match=r"model\.tflite could not be loaded"):
        MobileNetV2Predictor(tmp_path / "m")


def test_committed_savedmodel_matches_the_committed_keras_model():
    model = keras.models.load_model(COMMITTED / "model.keras")
    serve = tf.saved_model.load(str(COMMITTED / "serving" / "1")).signatures["serving_default"]
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    got = serve(images=tf.constant(images))["probabilities"].numpy()
    assert got.shape == (8, 10)
    assert np.abs(got - model.predict(images, verbose=0)).max() <= 1e-4
    # Any image size is accepted: a 4x nearest-neighbour upscale is area-resized back to the same pixels.
    big = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)
    assert np.abs(serve(images=tf.constant(big))["probabilities"].numpy() - got).max() <= 1e-4


@needs_real_cifar
def test_committed_model_matches_its_metrics_on_a_test_slice():
    """The first 2,000 test images score what metrics.json recorded for them (per-image predictions)."""
    from models import cifar10, load_predictor

    metrics = json.loads((COMMITTED / "metrics.json").read_text())
    test = cifar10.load_split("test", REAL_CIFAR)
    predicted = load_predictor("mobilenetv2").predict_proba(test.images[:2000]).argmax(axis=1)
    recorded, labels = np.array(metrics["predictions"][:2000]), test.labels[:2000]
    assert np.mean(predicted != recorded) <= 0.001
    assert abs((predicted == labels).mean() - (recorded == labels).mean()) <= 0.001


def test_both_trainers_share_one_command_line():
    """The same flags, presets mechanism and defaults (build/<model>/), plus MobileNetV2's two input paths and the
    CNN's --device (PyTorch training on a GPU)."""
    from models.custom_cnn import train as cnn_train
    from models.mobilenetv2 import train as mobilenet_train

    cnn, mobilenet = vars(cnn_train.parse_args([])), vars(mobilenet_train.parse_args([]))
    assert set(mobilenet) - set(cnn) == {"imagenet_weights", "cache_dir"} and set(cnn) - set(mobilenet) == {"device"}
    assert cnn["device"] == "cpu"
    assert cnn["out"] == REPO / "build" / "custom_cnn" and mobilenet["out"] == REPO / "build" / "mobilenetv2"
    assert set(mobilenet_train.PRESETS) == {"default", "clean", "explore"}
    explore = mobilenet_train.recipe_from_args(mobilenet_train.parse_args(["--preset", "explore", "--set",
                                                                          "image_size=128"]))
    assert (explore.epochs, explore.max_train_images, explore.image_size) == (4, 10_000, 128)


@pytest.mark.parametrize(("preset", "recorded"), [("default", "config.json"), ("clean", "runs/clean-10ep/config.json"),
                                                  ("explore", "runs/160px-cut-block5-10k/state.json")])
def test_presets_train_the_recorded_recipes(preset, recorded):
    from models.mobilenetv2 import train as mobilenet_train

    wanted = dataclasses.asdict(mobilenet_train.recipe_from_args(mobilenet_train.parse_args(["--preset", preset])))
    record = json.loads((REPO / "models" / "mobilenetv2" / recorded).read_text())["recipe"]
    assert set(record) <= set(wanted)
    # Fields newer than a run did not exist then: photo damage was off.
    record = dataclasses.asdict(mobilenet_train.Recipe()) | mobilenet_train.NO_DAMAGE | record
    assert {k: v for k, v in wanted.items() if k != "threads"} == {k: v for k, v in record.items() if k != "threads"}


def test_averaging_interpolates_every_weight_and_writes_a_servable_model(tmp_path, synthetic_cifar,
                                                                         random_backbone_weights):
    """models/mobilenetv2/average.py (issue 39): alpha 1 is the tuned model, alpha 0 the pretrained network with
    its linear probe, alpha 0.5 each weight's mean; what it writes is served like a trained model, and says how it
    was made. Photos are scored from the benchmark's fitting sources only."""
    from PIL import Image

    from models.cifar10 import CLASS_NAMES
    from models.mobilenetv2.average import Endpoints, interpolate, write

    run_tiny(tmp_path, synthetic_cifar, random_backbone_weights, "--epochs", "1")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    manifest = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photos / f"{i}.png")
        manifest.append({"file": f"{i}.png", "label": CLASS_NAMES[i % 10] if i < 10 else "everyday:food",
                         "source": "a" if i % 2 else "b", "role": "fitting" if i < 8 or i >= 10 else "held-out"})
    (photos / "manifest.json").write_text(json.dumps(manifest))
    ends = Endpoints(tmp_path / "out", str(synthetic_cifar), str(random_backbone_weights), tmp_path / "cache", photos,
                     progress=False)
    assert len(ends.photo_labels) == 8  # class photos of fitting sources: not the held-out ones, not everyday
    tuned = net.trainable_model(ends.tuned_upper, ends.tuned_head)
    features = ends.val_features[:20].astype(np.float32)
    for alpha, expected in ((1.0, tuned), (0.0, net.trainable_model(ends.probe_upper, ends.probe_head))):
        at = net.trainable_model(*ends.point(alpha))
        assert np.allclose(at.predict(features, verbose=0), expected.predict(features, verbose=0), atol=1e-5)
    upper, head = ends.point(0.5)
    for mine, start, end in zip(upper.get_weights() + head.get_weights(),
                                ends.probe_upper.get_weights() + ends.probe_head.get_weights(),
                                ends.tuned_upper.get_weights() + ends.tuned_head.get_weights(), strict=True):
        assert np.allclose(mine, (start + end) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        interpolate(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), 0.5)
    config = write(ends, 0.5, tmp_path / "averaged")
    assert config["averaging"]["alpha"] == 0.5 and config["final_val_acc"] == config["averaging"]["val_acc"]
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    keras_probs = keras.models.load_model(tmp_path / "averaged" / "model.keras").predict(images, verbose=0)
    served = MobileNetV2Predictor(tmp_path / "averaged").predict_proba(images, calibrated=False)
    assert np.abs(served - keras_probs).max() <= 1e-4
