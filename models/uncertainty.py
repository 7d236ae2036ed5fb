"""When to say "uncertain — maybe not one of the 10 classes": a rule fitted on the validation split.

    python -m models.uncertainty [--data-dir DIR]    # -> models/uncertainty.json (rewrites the committed file)

Both networks answer with one of the 10 CIFAR-10 classes whatever they are shown: a portrait comes back
"dog", noise "cat". An image is flagged when the models disagree, or when the least confident model's
calibrated top-1 probability is below a threshold, or when it has no colour: the networks learnt from colour
photos (under 2% of CIFAR-10 is black and white) and are measurably less reliable on grey images, yet still
confident, so their confidence cannot say so. The threshold is the largest one that keeps all three at most
MAX_FLAGGED of the validation images (never the test split), so as much as possible of what is not a
CIFAR-10 photo is flagged while ordinary images mostly are not. The file also records, on validation, the
share flagged, the accuracy on the images left unflagged and each model's accuracy on the validation images
turned grey; `make report` measures the same on the test split, and docs/how-it-works.md shows the trade-off.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
RULE_FILE = PACKAGE_DIR / "uncertainty.json"
MAX_FLAGGED = 0.10  # of the validation images
# An image "has no colour" when its 32x32 view's channels differ by less than this on average (0-255 scale):
# grey photos, scans and drawings, also after JPEG's small colour errors. 1.5% of CIFAR-10's images are.
COLOURLESS_CHROMA = 2.0


def colourless(views: np.ndarray) -> np.ndarray:
    """Per uint8 (N, H, W, 3) view: True where the image has no colour."""
    views = np.asarray(views, dtype=np.int16)
    return (views.max(axis=-1) - views.min(axis=-1)).mean(axis=(1, 2)) < COLOURLESS_CHROMA


def to_grey(images: np.ndarray) -> np.ndarray:
    """The same uint8 images in black and white (ITU-R 601 luma in all three channels)."""
    luma = np.rint(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@dataclass(frozen=True)
class Rule:
    threshold: float
    weights_sha256: Mapping[str, str]  # the models it was fitted for
    # model name -> its accuracy on the validation images turned grey; empty: colour is not checked
    grey_accuracy: Mapping[str, float] = field(default_factory=dict)

    def flags(self, probs: Mapping[str, np.ndarray], views: np.ndarray | None = None) -> np.ndarray:
        """Per row of each model's (N, 10) probabilities (and the N images the models saw): flagged or not."""
        top = np.stack([p.max(axis=1) for p in probs.values()])
        labels = np.stack([p.argmax(axis=1) for p in probs.values()])
        disagree = (labels != labels[0]).any(axis=0)
        flagged = disagree | (top.min(axis=0) < self.threshold)
        if self.grey_accuracy and views is not None:
            flagged |= colourless(views)
        return flagged

    def reason(self, answers: Mapping[str, tuple[str, float, str]], view: np.ndarray | None = None) -> str | None:
        """Why one image is flagged, in words, or None. answers: model name -> (label, probability, short name);
        view: the image the models saw."""
        labels = {label for label, _, _ in answers.values()}
        if len(labels) > 1:
            return "the models disagree (" + " vs ".join(f"{label}" for label, _, _ in answers.values()) + ")"
        label, probability, model = min(answers.values(), key=lambda answer: answer[1])
        if probability < self.threshold:
            return (f"low confidence: {model} gives {label} only {100 * probability:.0f}% "
                    f"(below {100 * self.threshold:.0f}%); it may not be one of the 10 classes")
        if self.grey_accuracy and view is not None and colourless(np.asarray(view)[None])[0]:
            measured = [f"{answers[name][2]} {100 * accuracy:.0f}%" for name, accuracy in self.grey_accuracy.items()
                        if name in answers]
            return ("a black-and-white image: the models learnt from colour photos and are less reliable on grey "
                    "ones (" + ", ".join(measured) + " right on validation photos turned grey)")
        return None


def fit_threshold(probs: Mapping[str, np.ndarray], max_flagged: float = MAX_FLAGGED,
                  views: np.ndarray | None = None) -> float:
    """The largest threshold (to 0.005) that flags at most `max_flagged` of these images (colourless ones
    included when `views` is given)."""
    best = 0.0
    check = {"colour": 1.0} if views is not None else {}
    for threshold in np.arange(0.0, 1.0, 0.005):
        if Rule(float(threshold), {}, check).flags(probs, views).mean() <= max_flagged:
            best = float(threshold)
    return round(best, 3)


def summary(rule: Rule, probs: Mapping[str, np.ndarray], labels: np.ndarray,
            views: np.ndarray | None = None) -> dict[str, float]:
    """Share flagged, and each model's accuracy on all images and on the unflagged ones."""
    flagged = rule.flags(probs, views)
    result = {"images": len(labels), "flagged": float(flagged.mean())}
    if views is not None:
        result["colourless"] = float(colourless(views).mean())
    for name, p in probs.items():
        correct = p.argmax(axis=1) == labels
        result[f"{name}_accuracy"] = float(correct.mean())
        result[f"{name}_accuracy_unflagged"] = float(correct[~flagged].mean()) if (~flagged).any() else 0.0
    return result


@cache
def load_rule(path: Path = RULE_FILE) -> Rule | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Rule(float(data["threshold"]), dict(data["weights_sha256"]), dict(data.get("grey_accuracy", {})))


def rule_for(models: Mapping[str, str]) -> Rule | None:
    """The committed rule if it was fitted for these exact weights (model name -> weights sha256), else None."""
    rule = load_rule()
    if rule is None or any(rule.weights_sha256.get(name) != sha for name, sha in models.items()):
        return None
    return rule


def main(argv: Sequence[str] | None = None) -> None:
    from models import cifar10
    from models.commands import announce_committed
    from models.registry import available_models, load_predictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    val = cifar10.load_split("val", args.data_dir)
    predictors = {name: load_predictor(name) for name in available_models()}
    probs = {name: p.predict_proba(val.images) for name, p in predictors.items()}
    grey = to_grey(val.images)
    grey_accuracy = {name: float((p.predict_proba(grey).argmax(axis=1) == val.labels).mean())
                     for name, p in predictors.items()}
    threshold = fit_threshold(probs, views=val.images)
    rule = Rule(threshold, {name: p.weights_sha256 for name, p in predictors.items()}, grey_accuracy)
    record = {"threshold": threshold, "max_flagged": MAX_FLAGGED, "split": "validation",
              "weights_sha256": dict(rule.weights_sha256), "grey_accuracy": grey_accuracy,
              "colourless_chroma": COLOURLESS_CHROMA, "validation": summary(rule, probs, val.labels, val.images)}
    announce_committed(str(RULE_FILE.relative_to(PACKAGE_DIR.parent)))
    RULE_FILE.write_text(json.dumps(record, indent=2) + "\n")
    v = record["validation"]
    print(f"threshold {threshold:.3f}: flags {100 * v['flagged']:.1f}% of {v['images']:,} validation images "
          f"({100 * v['colourless']:.1f}% have no colour); accuracy on them turned grey: "
          + ", ".join(f"{n} {100 * a:.2f}% (colour {100 * v[f'{n}_accuracy']:.2f}%)" for n, a in grey_accuracy.items())
          + f" -> {RULE_FILE}")


if __name__ == "__main__":
    main()
