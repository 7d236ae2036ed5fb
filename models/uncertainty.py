"""When to say "uncertain — maybe not one of the 10 classes": a rule fitted on the validation split.

    python -m models.uncertainty [--data-dir DIR]    # -> models/uncertainty.json (rewrites the committed file)

Both networks answer with one of the 10 CIFAR-10 classes whatever they are shown: a portrait comes back
"dog", noise "cat". An image is flagged when the models disagree, or when the least confident model's
calibrated top-1 probability is below a threshold. The threshold is the largest one that flags at most
MAX_FLAGGED of the validation images (never the test split), so as much as possible of what is not a
CIFAR-10 photo is flagged while ordinary images mostly are not. The file also records, on validation, the
share flagged and the accuracy on the images left unflagged; `make report` measures the same on the test
split, and docs/how-it-works.md shows the trade-off.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
RULE_FILE = PACKAGE_DIR / "uncertainty.json"
MAX_FLAGGED = 0.10  # of the validation images


@dataclass(frozen=True)
class Rule:
    threshold: float
    weights_sha256: Mapping[str, str]  # the models it was fitted for

    def flags(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per row of each model's (N, 10) probabilities: flagged or not."""
        top = np.stack([p.max(axis=1) for p in probs.values()])
        labels = np.stack([p.argmax(axis=1) for p in probs.values()])
        disagree = (labels != labels[0]).any(axis=0)
        return disagree | (top.min(axis=0) < self.threshold)

    def reason(self, answers: Mapping[str, tuple[str, float, str]]) -> str | None:
        """Why one image is flagged, in words, or None. answers: model name -> (label, probability, short name)."""
        labels = {label for label, _, _ in answers.values()}
        if len(labels) > 1:
            return "the models disagree (" + " vs ".join(f"{label}" for label, _, _ in answers.values()) + ")"
        label, probability, model = min(answers.values(), key=lambda answer: answer[1])
        if probability < self.threshold:
            return (f"low confidence: {model} gives {label} only {100 * probability:.0f}% "
                    f"(below {100 * self.threshold:.0f}%); it may not be one of the 10 classes")
        return None


def fit_threshold(probs: Mapping[str, np.ndarray], max_flagged: float = MAX_FLAGGED) -> float:
    """The largest threshold (to 0.005) that flags at most `max_flagged` of these images."""
    best = 0.0
    for threshold in np.arange(0.0, 1.0, 0.005):
        if Rule(float(threshold), {}).flags(probs).mean() <= max_flagged:
            best = float(threshold)
    return round(best, 3)


def summary(rule: Rule, probs: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Share flagged, and each model's accuracy on all images and on the unflagged ones."""
    flagged = rule.flags(probs)
    result = {"images": len(labels), "flagged": float(flagged.mean())}
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
    return Rule(float(data["threshold"]), dict(data["weights_sha256"]))


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
    threshold = fit_threshold(probs)
    rule = Rule(threshold, {name: p.weights_sha256 for name, p in predictors.items()})
    record = {"threshold": threshold, "max_flagged": MAX_FLAGGED, "split": "validation",
              "weights_sha256": dict(rule.weights_sha256), "validation": summary(rule, probs, val.labels)}
    announce_committed(str(RULE_FILE.relative_to(PACKAGE_DIR.parent)))
    RULE_FILE.write_text(json.dumps(record, indent=2) + "\n")
    v = record["validation"]
    print(f"threshold {threshold:.3f}: flags {100 * v['flagged']:.1f}% of {v['images']:,} validation images -> "
          f"{RULE_FILE}")


if __name__ == "__main__":
    main()
