"""The from-scratch CNN: network, preprocessing, training, exact resume, and the committed weights."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.custom_cnn.net import CifarNet, preprocess, tta_logits
from models.custom_cnn.train import PRESETS, AugmentedLoader, Recipe, parse_args, recipe_from_args, train
from tests.helpers import REPO

TINY = dict(widths=(8, 16, 16), batch_size=50, low_res_epochs=1, lowest_res_epochs=0, whiten_init_images=200,
            val_batch_size=1000, threads=1)


def test_forward_shapes_and_tta_views():
    model = CifarNet().eval()
    x = preprocess(np.zeros((3, 32, 32, 3), dtype=np.uint8))
    assert x.shape == (3, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for level in (0, 1, 2):
            assert tta_logits(model, x, level).shape == (3, 10)


def test_tta_is_the_weighted_mean_of_the_views_run_one_by_one():
    """All views go through the network in one batch; the result must equal running each view separately."""
    torch.manual_seed(0)
    model = CifarNet(widths=(8, 16, 16), activation="silu").eval()
    x = preprocess(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[:, :, :32, :32], padded[:, :, 2:, 2:]
    with torch.no_grad():
        run = lambda v: model(v.contiguous(memory_format=torch.channels_last))  # noqa: E731
        mirrored = 0.5 * (run(x) + run(x.flip(-1)))
        shifted = 0.25 * sum(run(v) + run(v.flip(-1)) for v in (up_left, down_right))
        torch.testing.assert_close(tta_logits(model, x, 0), run(x))
        torch.testing.assert_close(tta_logits(model, x, 1), mirrored)
        torch.testing.assert_close(tta_logits(model, x, 2), 0.5 * mirrored + 0.5 * shifted)


def test_the_served_network_is_one_graph_with_the_eager_networks_numbers():
    """Served as one traced, frozen TorchScript graph (models/custom_cnn/predictor.py graph_of): one call that takes
    Python's lock once instead of once per layer, which is what kept a person's photo waiting under a flood. The
    answers must be the eager network's, at any batch size."""
    from models.custom_cnn.predictor import CustomCnnPredictor, graph_of

    predictor = CustomCnnPredictor()
    graph = graph_of(predictor.model)
    assert isinstance(graph, torch.jit.ScriptModule)
    if not predictor.bf16:
        assert predictor.network is not predictor.model and isinstance(predictor.network, torch.jit.ScriptModule)
    images = (np.random.default_rng(1).random((13, 32, 32, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        eager = tta_logits(predictor.model, preprocess(images), 2)
        traced = tta_logits(graph, preprocess(images), 2)
    torch.testing.assert_close(traced, eager, atol=1e-4, rtol=1e-4)


def test_preprocess_rejects_wrong_input():
    with pytest.raises(ValueError):
        preprocess(np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        preprocess(np.zeros((32, 32, 3), dtype=np.uint8))


def test_whitening_init_decorrelates_patches():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    smooth = ((base.astype(np.uint16) + np.roll(base, 1, axis=1) + np.roll(base, 1, axis=2)) // 3).astype(np.uint8)
    x = preprocess(smooth)
    model = CifarNet()
    model.init_whitening(x)
    with torch.no_grad():
        features = torch.nn.functional.conv2d(x, model.whiten.weight[:12])
    flat = features.permute(1, 0, 2, 3).reshape(12, -1)
    covariance = flat @ flat.T / flat.shape[1]
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)


def conv_macs(size: int, widths=(64, 256, 256)) -> int:
    """Multiply-adds of the 3x3 convs, by hand: each group convolves at its input size, then pools by 2."""
    side, channels, total = size - 1, 24, 0  # the 2x2 whitening conv (12 filters and their negatives) trims a pixel
    for width in widths:
        total += width * side * side * 9 * channels
        side //= 2
        total += width * side * side * 9 * width
        channels = width
    return total


@pytest.mark.parametrize("size", [32, 24, 16])
def test_bench_counts_the_convolution_work_of_a_training_step(size):
    """bench-cnn sets its GFLOP/s against the machine's matrix-product peak: the count it uses must be right."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_custom_cnn", REPO / "bench" / "bench_custom_cnn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert conv_macs(32) == 117_868_032  # 13.3M + 8.3M + 33.2M + 28.9M + 28.9M + 5.3M
    assert bench.conv_gflop_per_training_image(size) == pytest.approx(3 * 2 * conv_macs(size) / 1e9)


def test_augmentation_is_reproducible_per_epoch():
    images = preprocess(np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8))
    labels = torch.arange(20) % 10
    loader = AugmentedLoader(images, labels, batch_size=10, translate=2, seed=3, brightness=0.1, contrast=0.1)
    first = [b for b, *_ in loader.epoch(1)]
    again = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, brightness=0.1, contrast=0.1).epoch(1)]
    other = [b for b, *_ in loader.epoch(2)]
    plain = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3).epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # Colour jitter changes pixel values but not the geometry: same shuffle, crops and flips as without it.
    for jittered, geometric in zip(first, plain, strict=True):
        assert not torch.equal(jittered, geometric)
        assert torch.allclose(jittered, geometric, atol=(geometric.abs().max() + 0.1) * 0.1 + 0.1 + 1e-5)


def test_photo_damage_is_reproducible_and_leaves_other_recipes_alone():
    """Noise and fading (issue 20's study) are drawn from the epoch's generator: the same run repeats exactly,
    a recipe without them sees exactly the batches it saw before, and the damage really lowers contrast."""
    images = preprocess(np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8))
    labels = torch.arange(20) % 10
    damaged = dict(noise_prob=1.0, noise_max=0.1, fade_prob=1.0, fade_min=0.15)
    first = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, **damaged).epoch(1)]
    again = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, **damaged).epoch(1)]
    plain = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3).epoch(1)]
    off = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, noise_prob=0.0, fade_prob=0.0).epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))
    faded = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, fade_prob=1.0, fade_min=0.15).epoch(1)]
    assert all(f.std(dim=(2, 3)).mean() < p.std(dim=(2, 3)).mean() for f, p in zip(faded, plain, strict=True))
    assert all(not torch.equal(d, f) for d, f in zip(first, faded, strict=True))  # the noise on top


def test_photo_framing_shrinks_and_moves_a_share_of_the_images_and_leaves_other_recipes_alone():
    """Framing (issue 39) is drawn from the epoch's generator: the run repeats exactly, a recipe without it sees
    the batches it saw before, and a framed image is the plain one shrunk, somewhere inside a reflected margin."""
    images = preprocess(np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8))
    labels = torch.arange(20) % 10
    framed = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, zoom_prob=1.0, zoom_min=0.6).epoch(1)]
    again = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3, zoom_prob=1.0, zoom_min=0.6).epoch(1)]
    plain = [b for b, *_ in AugmentedLoader(images, labels, 10, 2, seed=3).epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(framed, again, strict=True))
    assert all(f.shape == p.shape for f, p in zip(framed, plain, strict=True))
    found = 0
    for frames, originals in zip(framed, plain, strict=True):
        for frame, original in zip(frames, originals, strict=True):
            if torch.equal(frame, original):
                continue  # drawn at the full size
            for side in range(19, 32):
                small = F.interpolate(original[None], size=side, mode="bilinear", antialias=True)[0]
                windows = frame.unfold(1, side, 1).unfold(2, side, 1)  # (C, y, x, side, side)
                if ((windows - small[:, None, None]).abs().amax(dim=(0, 3, 4)) < 1e-5).any():
                    found += 1
                    break
    assert found >= 18  # of 20: at most a couple drawn at the full size
    with pytest.raises(SystemExit, match="zoom_min"):
        recipe_from_args(parse_args(["--set", "zoom_min=0.4"]))


def test_progressive_resizing_follows_the_schedule():
    images = preprocess(np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8))
    labels = torch.arange(20) % 10
    loader = AugmentedLoader(images, labels, batch_size=10, translate=2, seed=3, low_res_epochs=3, low_res_size=24,
                             lowest_res_epochs=1, lowest_res_size=16)
    sizes = [{tuple(batch.shape[-2:]) for batch, *_ in loader.epoch(e)} for e in range(5)]
    assert sizes == [{(16, 16)}, {(24, 24)}, {(24, 24)}, {(32, 32)}, {(32, 32)}]
    # A downscaled epoch is the full-size epoch (same shuffle, crops, flips) resized, not other images.
    full = AugmentedLoader(images, labels, 10, 2, seed=3)
    for (small, small_labels), (big, big_labels) in zip(loader.epoch(0), full.epoch(0), strict=True):
        assert torch.equal(small_labels, big_labels)
        assert torch.allclose(small, F.interpolate(big, size=16, mode="bilinear", antialias=True), atol=1e-5)


def test_set_overrides_are_typed_and_checked():
    args = parse_args(["--set", "label_smoothing=0.1", "--set", "activation=gelu", "--set", "low_res_size=20",
                       "--set", "widths=8,16,16", "--set", "max_train_images=500"])
    recipe = recipe_from_args(args)
    assert (recipe.label_smoothing, recipe.activation, recipe.low_res_size) == (0.1, "gelu", 20)
    assert recipe.widths == (8, 16, 16) and recipe.max_train_images == 500
    for bad in ("nonsense=1", "label_smoothing", "low_res_size=big", "prune_ratio=0.5"):
        with pytest.raises(SystemExit, match="--set"):
            recipe_from_args(parse_args(["--set", bad]))


def test_epochs_alone_scales_the_preset_schedule():
    """`--epochs N` with nothing else is a valid run: the 24-px and 16-px stages keep their share of it."""
    one = recipe_from_args(parse_args(["--epochs", "1"]))
    assert (one.epochs, one.low_res_epochs, one.lowest_res_epochs) == (1, 0, 0)
    ten = recipe_from_args(parse_args(["--epochs", "10"]))
    assert (ten.low_res_epochs, ten.lowest_res_epochs) == (5, 2)  # the default: 10/20 below 32 px, 4/20 at 16 px
    eight = recipe_from_args(parse_args(["--preset", "s16", "--epochs", "8"]))
    assert (eight.low_res_epochs, eight.lowest_res_epochs) == (4, 0)  # s16: half the epochs at 24 px, none at 16
    fast = recipe_from_args(parse_args(["--preset", "fast", "--epochs", "20"]))
    assert (fast.low_res_epochs, fast.lowest_res_epochs) == (14, 8)  # 7/10 and 4/10 of the epochs
    pinned = recipe_from_args(parse_args(["--epochs", "4", "--set", "low_res_epochs=3"]))
    assert pinned.low_res_epochs == 3


@pytest.mark.slow
def test_a_few_training_steps_learn(synthetic_cifar, tmp_path):
    recipe = Recipe(epochs=3, **TINY)
    config = train(recipe, str(synthetic_cifar), tmp_path / "out", tmp_path / "ck", resume=False, progress=False)
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert config["final_val_acc_tta"] > 0.5  # 10 classes: chance is 0.1
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(history[0])
    assert [h["image_size"] for h in history] == [24, 32, 32]  # validated at the size each epoch trained on
    assert (tmp_path / "out" / "weights.pt").is_file()


def run_training(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "models.custom_cnn.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(synthetic_cifar, tmp_path):
    common = ["--epochs", "4", "--set", "low_res_epochs=2", "--batch-size", "50", "--set", "widths=8,16,16",
              "--threads", "1", "--no-progress", "--data-dir", str(synthetic_cifar)]
    straight = run_training([*common, "--out", str(tmp_path / "a"), "--work-dir", str(tmp_path / "a-ck")], tmp_path)
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    checkpoint = tmp_path / "b-ck" / "last.pt"
    interrupted = run_training([*common, "--out", str(tmp_path / "b"), "--work-dir", str(checkpoint.parent)],
                               tmp_path)
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:  # first epoch done: kill it in the next one
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (tmp_path / "b" / "weights.pt").exists()

    resumed = run_training([*common, "--out", str(tmp_path / "b"), "--work-dir", str(checkpoint.parent), "--resume"],
                           tmp_path)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "Resumed from" in output
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history_a = json.loads((tmp_path / "a" / "history.json").read_text())
    history_b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["val_acc"] for h in history_a] == [h["val_acc"] for h in history_b]
    assert [h["image_size"] for h in history_a] == [24, 24, 32, 32]


@pytest.mark.slow
def test_resume_refuses_a_different_recipe(synthetic_cifar, tmp_path):
    train(Recipe(epochs=1, **TINY), str(synthetic_cifar), tmp_path / "o", tmp_path / "ck", False, progress=False)
    with pytest.raises(SystemExit, match="different recipe"):
        train(Recipe(epochs=2, **TINY), str(synthetic_cifar), tmp_path / "o", tmp_path / "ck", True,
              progress=False)


# Options measured and removed (runs q10/q13, z10, c10/c10b/k10 in runs/, the clean-final-epochs rows of the
# recipe search): the value each had when off.
REMOVED_OPTIONS = {"prune_ratio": 0.0, "unpruned_final_epochs": 1, "frozen_first_group_epochs": 0,
                   "low_res_mode": "downscale", "clean_last_epochs": 0}
# Fields newer than a run did not exist then: photo damage and the 16-px stage were off.
NEWER_FIELDS_OFF = {"noise_prob": 0.0, "fade_prob": 0.0, "lowest_res_epochs": 0}


# The committed weights are seed 2 of the five seeds the recipe search ran (the best on validation).
@pytest.mark.parametrize(("preset", "config", "seed"), [("default", "models/custom_cnn/config.json", 2),
                                                        ("default", "models/custom_cnn/runs/h20/config.json", 2),
                                                        ("default", "models/custom_cnn/runs/h20-xeon/config.json", 0),
                                                        ("s16", "models/custom_cnn/runs/s16/config.json", 0),
                                                        ("fast", "models/custom_cnn/runs/r10/config.json", 0),
                                                        ("damage", "models/custom_cnn/runs/d16/config.json", 0),
                                                        ("damage-light", "models/custom_cnn/runs/l20/config.json", 0),
                                                        ("robust", "models/custom_cnn/runs/m20/config.json", 0),
                                                        ("robust", "models/custom_cnn/runs/m20-xeon/config.json", 0)])
def test_presets_train_the_recorded_recipes(preset, config, seed):
    """The numbers docs/custom-cnn.md gives for each preset come from these recorded runs."""
    recorded = NEWER_FIELDS_OFF | json.loads((REPO / config).read_text())["recipe"]
    for name, off in REMOVED_OPTIONS.items():  # the run did not use an option that no longer exists
        assert recorded.pop(name, off) == off, name
    recorded["widths"] = tuple(recorded["widths"])
    wanted = dataclasses.asdict(recipe_from_args(parse_args(["--preset", preset, "--seed", str(seed)])))
    ignored = {"threads", "max_train_images"}  # machine-dependent / newer than the runs (None = all images)
    assert wanted["max_train_images"] is None
    assert {k: v for k, v in wanted.items() if k not in ignored} == \
           {k: v for k, v in (dataclasses.asdict(Recipe()) | recorded).items() if k not in ignored}
    assert set(recorded) <= set(wanted)


def test_training_writes_to_build_by_default_never_over_the_committed_model():
    args = parse_args([])
    assert args.out == REPO / "build" / "custom_cnn" and args.work_dir.is_relative_to(REPO / "build")
    assert set(PRESETS) == {"default", "s16", "fast", "damage", "damage-light", "robust", "framing"}


@pytest.mark.slow
def test_cli_reports_missing_data_cleanly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "models.custom_cnn.train", "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "error:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--batch-size", "-5"], ["--set", "low_res_epochs=99"],
                                  ["--batch-size", "100000"], ["--preset", "slow"],
                                  ["--set", "low_res_epochs=2", "--set", "lowest_res_epochs=3"],
                                  ["--set", "lowest_res_size=0"], ["--set", "low_res_size=64"],
                                  ["--set", "low_res_mode=crop"], ["--device", "tpu"]])
@pytest.mark.slow
def test_cli_rejects_bad_settings_cleanly(synthetic_cifar, args):
    result = subprocess.run([sys.executable, "-m", "models.custom_cnn.train", "--data-dir", str(synthetic_cifar),
                             "--out", "/nonexistent-never-written", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_device_choice_falls_back_or_fails_clearly(monkeypatch):
    from models.custom_cnn.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(SystemExit, match="cpu, cuda or auto"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.slow
def test_recipe_search_records_every_run_with_its_held_out_scores(synthetic_cifar, tmp_path):
    tiny = "--set widths=8,16,16 --batch-size 50 --set whiten_init_images=200 --max-train-images 200 --epochs 1"
    result = subprocess.run(
        [sys.executable, "scripts/cnn_recipe_search.py", "--data-dir", str(synthetic_cifar), "--seeds", "0", "1",
         "--parallel", "2", "--threads", "1", "--per-class", "10", "--out", str(tmp_path / "runs"),
         "--record", str(tmp_path / "record"),
         "--variant", f"clean={tiny} --preset s16", "--variant", f"noisy={tiny} --set noise_prob=0.5"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    record = tmp_path / "record"
    assert sorted(p.name for p in record.iterdir()) == ["clean-s0", "clean-s1", "noisy-s0", "noisy-s1", "search.json"]
    assert json.loads((record / "search.json").read_text())["variants"]["noisy"].endswith("--set noise_prob=0.5")
    for run in ("clean-s0", "noisy-s1"):
        config = json.loads((record / run / "config.json").read_text())
        scores = json.loads((record / run / "holdout.json").read_text())
        assert config["recipe"]["seed"] == int(run[-1])
        assert config["recipe"]["noise_prob"] == (0.5 if run.startswith("noisy") else 0.0)
        assert set(scores) == {"clean", "speckle_noise", "gaussian_blur", "saturate", "holdout_mean"}
        assert all(0 <= v <= 1 for v in scores.values())
        assert not (record / run / "weights.pt").exists() and (tmp_path / "runs" / run / "weights.pt").is_file()
