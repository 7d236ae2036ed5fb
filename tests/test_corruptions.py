"""The CIFAR-10-C corruptions: shape, dtype, determinism, and each one's effect growing with severity."""

from __future__ import annotations

import numpy as np
import pytest

from devkit.images import photo, smooth
from models.corruptions import CORRUPTIONS, NOT_COMPARABLE, SEVERITIES, corrupt, frost_textures


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Eight textured and eight smooth 32x32 images (the blurs need detail to remove, the noises flat areas)."""
    textured = [np.asarray(photo(32, 32, seed=i)) for i in range(8)]
    flat = [np.asarray(smooth(32, 32, seed=i)) for i in range(8)]
    return np.stack(textured + flat).astype(np.uint8)


def detail(x: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: what blurring removes."""
    x = x.astype(np.float64)
    return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())


def change(x: np.ndarray, clean: np.ndarray) -> float:
    return float(np.abs(x.astype(np.float64) - clean).mean())


# corruption -> (statistic of the corrupted images, +1 if it should grow from severity 1 to 5, -1 if shrink)
EFFECTS = {
    "gaussian_noise": (change, 1), "shot_noise": (change, 1), "impulse_noise": (change, 1),
    "defocus_blur": (lambda x, c: detail(x), -1), "glass_blur": (lambda x, c: detail(x[:8]), -1),
    "motion_blur": (lambda x, c: detail(x), -1), "zoom_blur": (lambda x, c: detail(x), -1),
    "snow": (change, 1), "frost": (change, 1), "fog": (change, 1),
    "brightness": (lambda x, c: float(x.mean()), 1), "contrast": (lambda x, c: float(x.std(axis=(1, 2)).mean()), -1),
    "elastic_transform": None,  # the published parameters are not monotonic in displacement
    "pixelate": (lambda x, c: detail(x[:8]), -1), "jpeg_compression": (change, 1),
}


def test_the_suite_is_the_fifteen_published_corruptions():
    assert len(CORRUPTIONS) == 15 and set(EFFECTS) == set(CORRUPTIONS) and SEVERITIES == (1, 2, 3, 4, 5)
    assert NOT_COMPARABLE == ("frost",)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_deterministic_and_grows_with_severity(images, name):
    outputs = {s: corrupt(images, name, s, seed=0) for s in (1, 5)}
    for out in outputs.values():
        assert out.shape == images.shape and out.dtype == np.uint8
        assert change(out, images) > 0  # it did something
    assert np.array_equal(corrupt(images, name, 5, seed=0), outputs[5])  # same seed, same images
    if name not in ("pixelate", "jpeg_compression", "contrast", "brightness", "defocus_blur", "zoom_blur"):
        assert not np.array_equal(corrupt(images, name, 5, seed=1), outputs[5])  # random ones depend on the seed
    if EFFECTS[name] is not None:
        statistic, direction = EFFECTS[name]
        low, high = statistic(outputs[1], images), statistic(outputs[5], images)
        assert (high - low) * direction > 0, (name, low, high)


def test_bad_input_is_refused(images):
    with pytest.raises(ValueError, match="uint8"):
        corrupt(images.astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6)


def test_frost_textures_are_drawn_the_same_way_every_time():
    first = frost_textures()
    assert len(first) == 6 and first[0].shape == (160, 160, 3) and 60 < first[0].mean() < 200
    frost_textures.cache_clear()
    assert all(np.array_equal(a, b) for a, b in zip(first, frost_textures(), strict=True))


def test_held_out_corruptions_for_selection_are_deterministic_and_not_in_the_suite(images):
    from models.holdout_corruptions import HOLDOUT, corrupt_holdout

    assert not set(HOLDOUT) & set(CORRUPTIONS)  # selection never sees an evaluation corruption
    for name in HOLDOUT:
        low, high = corrupt_holdout(images, name, 1), corrupt_holdout(images, name, 5)
        assert low.shape == images.shape and low.dtype == np.uint8
        assert np.array_equal(high, corrupt_holdout(images, name, 5))
        assert change(high, images) > change(low, images) > 0 or name == "saturate"


def test_photo_damage_for_training_is_seeded_and_hits_the_asked_shares(images):
    from models.photo_damage import photo_damage

    many = np.repeat(images, 25, axis=0)  # 400 images
    assert np.array_equal(photo_damage(many, np.random.default_rng(0), 0, 0.1, 0, 0.15), many)
    noisy = photo_damage(many, np.random.default_rng(1), 0.5, 0.1, 0, 0.15)
    assert noisy.dtype == np.uint8 and noisy.shape == many.shape
    assert np.array_equal(noisy, photo_damage(many, np.random.default_rng(1), 0.5, 0.1, 0, 0.15))
    touched = np.array([change(a, b) > 0.5 for a, b in zip(noisy, many, strict=True)])
    assert 0.35 < touched.mean() < 0.65  # about half got noise (a sigma near 0 leaves an image almost as it was)
    faded = photo_damage(many, np.random.default_rng(2), 0, 0.1, 1.0, 0.15)
    spread = faded.astype(np.float64).std(axis=(1, 2)) / np.maximum(many.astype(np.float64).std(axis=(1, 2)), 1e-9)
    assert np.all(spread <= 1.01) and spread.mean() < 0.8  # washed out, never sharper
    assert abs(faded.astype(np.float64).mean() - many.mean()) < 1.0  # around each image's own mean


def test_holdout_command_scores_each_folder_and_appends_runs_from_another_day(synthetic_cifar, tmp_path, monkeypatch):
    """`--save` writes the machine line and one line per model folder; `--append` keeps what the file held."""
    import json

    from models import holdout_corruptions

    class AlwaysAirplane:
        def predict_proba(self, images: np.ndarray) -> np.ndarray:
            return np.tile(np.eye(10)[0], (len(images), 1))

    monkeypatch.setattr(holdout_corruptions, "predictor_for", lambda folder: AlwaysAirplane())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"recipe": {"noise_prob": 0.12}, "wall_seconds": 600}))
    saved = tmp_path / "holdout.txt"
    command = [str(folder), "--data-dir", str(synthetic_cifar), "--save", str(saved)]
    holdout_corruptions.main(command)
    holdout_corruptions.main([*command, "--append"])
    lines = saved.read_text().splitlines()
    assert [line.startswith("machine:") for line in lines] == [True, False, True, False]
    assert lines[1] == lines[3] and lines[1].startswith(f"{folder} {{'noise_prob': 0.12}}, trained in 10.0 min:")
    assert "clean 10.00%" in lines[1] and "holdout_mean 10.00%" in lines[1]  # one class of ten, balanced
    holdout_corruptions.main(command)
    assert len(saved.read_text().splitlines()) == 2


def test_holdout_command_rejects_bad_input_with_one_line_errors(synthetic_cifar, tmp_path, capsys):
    from models import holdout_corruptions
    from tests.helpers import REPO

    model = str(REPO / "models" / "custom_cnn")
    with pytest.raises(SystemExit, match=r"^error: .*nowhere.*missing"):
        holdout_corruptions.main([str(tmp_path / "nowhere"), "--data-dir", str(synthetic_cifar)])
    with pytest.raises(SystemExit, match=r"^error: .*contains neither"):
        holdout_corruptions.main([model, "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        holdout_corruptions.main([model, "--append"])
    assert "--append needs --save" in capsys.readouterr().err
