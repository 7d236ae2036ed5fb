"""How well simple scores separate CIFAR-10's validation split from each family of the out-of-scope benchmark.

    .venv/bin/python scripts/build_ood_benchmark.py      # first: build/ood-benchmark/
    .venv/bin/python bench/bench_ood_families.py          # -> docs/measurements/ood-families.txt

Validation split only (the test split is for reporting once a score is chosen). Per family and score: AUROC
(in-distribution = validation, positive = out of scope) and the FPR at 95% TPR, plus the share the current
'uncertain' rule flags. Scores, from the seam's calibrated probabilities: each model's maximum softmax probability
(MSP, negated), the two models' disagreement, and the geometric mean of their MSPs. (Energy needs logits: the seam
returns probabilities.) A baseline for choosing a stronger score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from devkit.transcript import MEASUREMENTS, Transcript
from models import classify
from models.cifar10 import CLASS_NAMES, load_split
from models.machine import describe_machine
from models.scope.benchmark import DEFAULT_DIR, auroc, fpr_at_tpr, load_benchmark

MODELS = ("custom_cnn", "mobilenetv2")


def scores_of(images: list, batch: int = 256) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(score name -> higher-is-more-out-of-scope, the current rule's flags) for a list of images."""
    probs = {name: [] for name in MODELS}
    flags = []
    for start in range(0, len(images), batch):
        answers = classify(list(images[start:start + batch]), list(MODELS), top_k=1).images
        for name in MODELS:
            probs[name] += [[a.predictions[name].probabilities[c] for c in CLASS_NAMES] for a in answers]
        flags += [bool(a.uncertain) for a in answers]
    result = {}
    for name in MODELS:
        p = np.clip(np.array(probs[name]), 1e-12, 1)
        result[f"{name} MSP"] = -p.max(1)
    a, b = (np.array(probs[n]).argmax(1) for n in MODELS)
    result["disagreement"] = (a != b).astype(float)
    both = np.clip(np.array(probs[MODELS[0]]), 1e-12, 1) * np.clip(np.array(probs[MODELS[1]]), 1e-12, 1)
    result["product of MSPs"] = -np.sqrt(both.max(1))
    return result, np.array(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=MEASUREMENTS / "ood-families.txt")
    args = parser.parse_args()
    benchmark = load_benchmark(args.benchmark)
    say = Transcript()
    say(f"machine: {describe_machine()}; validation split (5,000) vs {len(benchmark.names)} out-of-scope images")
    validation = load_split("val")
    inside, inside_flags = scores_of(list(validation.images))
    say(f"validation flagged by the current rule: {inside_flags.mean():.1%}")
    families: dict[str, list] = {}
    for image, family in zip(benchmark.images, benchmark.family, strict=True):
        families.setdefault(str(family), []).append(image)
    names = list(inside)
    say(f"{'family':12s} {'n':>4s} {'rule':>5s}  " + "  ".join(f"{n:>24s}" for n in names))
    for family, images in families.items():
        outside, flags = scores_of(images)
        cells = [f"{auroc(inside[n], outside[n]):.3f} / {fpr_at_tpr(inside[n], outside[n]):5.1%}" for n in names]
        say(f"{family:12s} {len(images):4d} {flags.mean():5.0%}  " + "  ".join(f"{c:>24s}" for c in cells))
    say("cells: AUROC / FPR at 95% TPR (validation images scoring above the threshold that flags 95% of the family)")
    say.save(args.out)


if __name__ == "__main__":
    from models.commands import user_errors
    from models.scope.benchmark import BenchmarkMissing

    with user_errors(BenchmarkMissing):
        main()
