"""The person check beside the out-of-scope gate: is there a human face in the upload?

The gate (models/scope/gate.py) learnt "unlike CIFAR-10" from drawn and synthetic outliers and, measured by an
independent check, misses real photographs of people (0 of 8). People are what a public visitor uploads first,
and a face is something a maintained detector finds reliably: MediaPipe's BlazeFace short-range model
(Apache-2.0; `scripts/fetch_face_detector.py` takes it out of the mediapipe 0.10.14 wheel on PyPI and checks its
digest), served through LiteRT like the gate, on the centre square of the image as uploaded (the part the models
see, at 128x128), not on the 32x32 view: at 32 px a face is a few blurred pixels and the detector finds nothing.
(The first version letterboxed the whole image: a second independent check found group and wide photos missed,
their faces shrunk below what the detector finds, while their centre squares were found.)

Its score is the detector's best face confidence (a sigmoid over its 896 anchors). The line is chosen on the
validation split alone, enlarged 4x (bicubic) the way an uploaded photo is larger than CIFAR's 32 px: the lowest
confidence (to 0.01) that at most MAX_VALIDATION_SHARE of those images reach (`python -m models.scope.faces`).
Images under MIN_SIDE pixels are not checked: there the detector cannot find a face (the committed CIFAR-10
images, 32 px, never reach the line), and the check costs nothing for them.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

from models.predictor import ModelLoadError, loading, sha256_of
from models.scope import load_once

PACKAGE_DIR = Path(__file__).resolve().parent
DETECTOR_FILE = "face_detection_short_range.tflite"
DETECTOR_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
CONFIG_FILE = "config.json"  # shared with the gate: the "faces" entry is this check's
INPUT_SIDE = 128
MIN_SIDE = 64
MAX_VALIDATION_SHARE = 0.001  # of the enlarged validation images: 5 of 5,000
UPSCALE = 4


def face_confidence(logits: np.ndarray) -> float:
    """The best anchor's confidence, clipped as MediaPipe clips the raw scores (±100) before its sigmoid."""
    return float((1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))).max())


class FaceCheck:
    """Scores uploads; one interpreter, used by one thread at a time (LiteRT is not thread-safe)."""

    def __init__(self, directory: Path = PACKAGE_DIR) -> None:
        self.directory = Path(directory)
        path = self.directory / DETECTOR_FILE
        with loading(path):
            if sha256_of(path) != DETECTOR_SHA256:
                raise ModelLoadError(f"{DETECTOR_FILE} is not the detector the line was chosen for (sha256)")
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
            self._interpreter.allocate_tensors()
            (source,) = self._interpreter.get_input_details()
            if list(source["shape"]) != [1, INPUT_SIDE, INPUT_SIDE, 3]:
                raise ModelLoadError(f"{DETECTOR_FILE}: expected a (1, 128, 128, 3) input, found {source['shape']}")
            self._input = source["index"]
            self._output = next(d["index"] for d in self._interpreter.get_output_details()
                                if d["name"] == "classificators")
        with loading(self.directory / CONFIG_FILE):
            entry = json.loads((self.directory / CONFIG_FILE).read_text()).get("faces") or {}
        self.threshold: float | None = entry.get("threshold")
        self._lock = threading.Lock()

    def score(self, image: Image.Image) -> float | None:
        """The best face confidence in (0, 1), or None for an image too small to hold a findable face."""
        if min(image.size) < MIN_SIDE:
            return None
        square = ImageOps.fit(image.convert("RGB"), (INPUT_SIDE, INPUT_SIDE), method=Image.Resampling.BILINEAR)
        pixels = np.asarray(square, np.float32)[None] / 127.5 - 1.0  # the model's [-1, 1] input
        with self._lock:
            self._interpreter.set_tensor(self._input, pixels)
            self._interpreter.invoke()
            return face_confidence(self._interpreter.get_tensor(self._output))

    def scores(self, images: Sequence[Image.Image | np.ndarray]) -> list[float | None]:
        """One score per image; arrays (already the models' views, or a dataset's images) count by their size."""
        return [self.score(image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)))
                for image in images]

    def found(self, score: float | None) -> bool:
        return score is not None and self.threshold is not None and score >= self.threshold


def face_score(confidence: float, threshold: float) -> float:
    """The confidence on the verdict's scale, where 0.5 is the line (as the gate's out_of_scope_score)."""
    if confidence >= threshold:
        return 0.5 + 0.5 * (confidence - threshold) / max(1.0 - threshold, 1e-9)
    return 0.5 * confidence / threshold


# The process's face check, loaded once; None when its files are missing, changed or broken (verdicts then rest on
# the gate and the classifiers alone).
load_faces = load_once(FaceCheck)


def choose_threshold(scores: np.ndarray, max_share: float = MAX_VALIDATION_SHARE) -> float:
    """The lowest line (to 0.01, at least 0.5, MediaPipe's own default) that at most max_share of these
    in-scope images reach."""
    for threshold in np.round(np.arange(0.5, 1.0, 0.01), 2):
        if (scores >= threshold).mean() <= max_share:
            return float(threshold)
    return 1.0


def fit(data_dir: str | None, directory: Path = PACKAGE_DIR) -> dict[str, Any]:
    """Score the validation split enlarged 4x, choose the line, time the check; the config's "faces" entry."""
    from models import cifar10
    from models.machine import describe_machine

    validation = cifar10.load_split("val", data_dir)
    check = FaceCheck(directory)
    enlarged = [Image.fromarray(view).resize((32 * UPSCALE, 32 * UPSCALE), Image.Resampling.BICUBIC)
                for view in validation.images]
    started = time.perf_counter()
    scores = np.array(check.scores(enlarged), dtype=np.float64)
    ms = 1000 * (time.perf_counter() - started) / len(enlarged)
    threshold = choose_threshold(scores)
    return {
        "detector": f"MediaPipe BlazeFace short-range ({DETECTOR_FILE}, mediapipe 0.10.14 wheel, Apache-2.0)",
        "sha256": DETECTOR_SHA256, "input": "the upload's centre square (what the models see), at 128x128",
        "min_side": MIN_SIDE,
        "chosen_on": f"the validation split ({len(scores):,} images) enlarged {UPSCALE}x (bicubic)",
        "max_validation_share": MAX_VALIDATION_SHARE, "threshold": threshold,
        "validation_share": float((scores >= threshold).mean()),
        "validation_quantiles": {q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.99", "0.999")},
        "ms_per_image": round(ms, 3), "machine": describe_machine(),
    }


def main(argv: list[str] | None = None) -> None:
    from models.commands import announce_committed, user_errors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 folder (default: $CIFAR10_DIR, else download)")
    args = parser.parse_args(argv)
    with user_errors():
        entry = fit(args.data_dir)
    path = PACKAGE_DIR / CONFIG_FILE
    config = json.loads(path.read_text())
    config["faces"] = entry
    announce_committed("models/scope/config.json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"face line {entry['threshold']:.2f}: {100 * entry['validation_share']:.2f}% of the enlarged validation "
          f"images reach it; {entry['ms_per_image']:.2f} ms per image ({entry['machine']})")


if __name__ == "__main__":
    main()
