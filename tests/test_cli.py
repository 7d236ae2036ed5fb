"""`python -m models predict/list`: the command line a user runs on their own image files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from devkit.images import encode, photo
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # the committed models, real processes


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    (folder / "photo.jpg").write_bytes(encode(photo(200, 150), "JPEG"))
    (folder / "alpha.png").write_bytes(encode(Image.new("RGBA", (40, 40), (255, 0, 0, 128)), "PNG"))
    (folder / "notes.jpg").write_bytes(b"this is not an image")
    return folder


def test_predict_prints_a_table_for_every_model_and_flags_bad_files(image_files):
    result = run_cli("predict", str(image_files / "photo.jpg"), str(image_files / "notes.jpg"),
                     str(image_files / "alpha.png"))
    assert result.returncode == 1  # one file failed; the others were still classified
    lines = result.stdout.splitlines()
    assert lines[0].endswith("photo.jpg") and lines[1].lstrip().startswith("custom_cnn")
    assert lines[2].lstrip().startswith("mobilenetv2") and lines[2].count("%") == 3
    verdict = lines[3].lstrip()
    assert verdict.startswith("verdict") and any(word in verdict for word in (
        "models agree", "models disagree", "uncertain:", "out of scope (score"))
    assert "error: the file is not an image" in result.stdout
    assert "Traceback" not in result.stderr


def test_predict_json_for_one_model(image_files):
    result = run_cli("predict", str(image_files / "alpha.png"), "--model", "custom_cnn", "--top-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert list(row["predictions"]) == ["custom_cnn"] and len(row["predictions"]["custom_cnn"]) == 5
    probabilities = [p["probability"] for p in row["predictions"]["custom_cnn"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-9
    assert (row["width"], row["height"]) == (40, 40)
    assert isinstance(row["uncertain"], bool) and isinstance(row["out_of_scope"], bool)
    assert 0 < row["out_of_scope_score"] < 1 and row["out_of_scope"] == (row["out_of_scope_score"] >= 0.5)


def test_a_page_of_text_is_called_out_of_scope_in_text_and_json(tmp_path):
    from PIL import ImageDraw

    page = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(page)
    for line in range(14):
        draw.text((12, 12 + 20 * line), "The quick brown fox jumps over the lazy dog " * 2, fill="black")
    (tmp_path / "page.png").write_bytes(encode(page, "PNG"))
    text = run_cli("predict", str(tmp_path / "page.png"))
    assert "verdict" in text.stdout and "out of scope (score" in text.stdout, text.stdout
    (row,) = json.loads(run_cli("predict", str(tmp_path / "page.png"), "--json").stdout)
    assert row["out_of_scope"] is True and row["uncertain"] is True and row["out_of_scope_score"] >= 0.5
    assert row["uncertain_reason"].startswith("probably not one of the 10 classes")


@pytest.mark.parametrize("args, message", [
    (["predict", "x.png", "--top-k", "0"], "--top-k must be between 1 and 10"),
    (["predict", "x.png", "--model", "resnet"], "invalid choice"),
])
def test_bad_arguments_get_a_usage_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr


def test_missing_file_is_reported_not_raised(tmp_path):
    result = run_cli("predict", str(tmp_path / "missing.png"), "--model", "custom_cnn")
    assert result.returncode == 1 and "No such file" in result.stdout
