"""The out-of-scope verdict measured where it was not designed: held-out benchmark families and the test split.

    .venv/bin/python scripts/build_ood_benchmark.py   # first: build/ood-benchmark/
    .venv/bin/python bench/bench_out_of_scope.py      # -> docs/measurements/out-of-scope.{json,txt}

Everything goes through the one seam (`models.classify`) with the committed models, gate and rule, as a request
would. In-distribution: CIFAR-10's test split (10,000; the validation split fitted the thresholds). Out of scope:
the benchmark's HELD_OUT_FAMILIES (the gate was fitted and chosen on the FITTING_FAMILIES, shown separately as
such). Per family: AUROC of the out-of-scope score (test vs family), the FPR at 95% TPR, and the shares called out
of scope and uncertain at the served operating point; then the targets of issue 29. `make readme` copies the
transcript into docs/how-it-works.md; `make report` puts the JSON into the report (it keeps the machine it
was measured on).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from devkit.transcript import MEASUREMENTS, Transcript
from models import available_models, classify
from models.cifar10 import load_split
from models.machine import describe_machine
from models.scope.benchmark import DEFAULT_DIR, FITTING_FAMILIES, HELD_OUT_FAMILIES, auroc, fpr_at_tpr, load_benchmark

TARGETS = {"flagged_held_out": 0.95, "flagged_test": 0.10, "auroc": 0.97, "persons_out_of_scope": 0.95,
           "accuracy_unflagged": 0.985}
CHUNK = 256


def verdicts(images: list, names: list[str]) -> dict[str, np.ndarray]:
    """Through the seam: each model's top-1 label, the verdicts and the score, per image."""
    rows: dict[str, list] = {"uncertain": [], "out_of_scope": [], "score": [], **{n: [] for n in names}}
    for start in range(0, len(images), CHUNK):
        for answer in classify(list(images[start:start + CHUNK]), names, top_k=1).images:
            rows["uncertain"].append(bool(answer.uncertain))
            rows["out_of_scope"].append(bool(answer.out_of_scope))
            rows["score"].append(answer.out_of_scope_score)
            for name in names:
                rows[name].append(answer.predictions[name].label)
    return {key: np.array(value) for key, value in rows.items()}


def measure(benchmark_dir: Path = DEFAULT_DIR, data_dir: str | None = None) -> dict:
    """Every figure this command prints, as JSON-ready data (tests/test_scope.py checks the targets with it)."""
    names = available_models()
    machine = describe_machine()
    benchmark = load_benchmark(benchmark_dir)
    test = load_split("test", data_dir)
    started = time.perf_counter()
    inside = verdicts(list(test.images), names)
    seconds = time.perf_counter() - started
    if any(s is None for s in inside["score"]):
        raise SystemExit("the out-of-scope gate is not in use for these models (models/uncertainty.json)")
    outside = verdicts(benchmark.images, names)
    classes = np.array(test.class_names)
    correct = {n: inside[n] == classes[test.labels] for n in names}
    unflagged = ~inside["uncertain"]
    test_row = {"images": len(test.labels), "out_of_scope": float(inside["out_of_scope"].mean()),
                "uncertain": float(inside["uncertain"].mean()),
                "accuracy_unflagged": {n: float(correct[n][unflagged].mean()) for n in names},
                "accuracy": {n: float(correct[n].mean()) for n in names}}
    families = {}
    for family in (*HELD_OUT_FAMILIES, *FITTING_FAMILIES):
        mask = benchmark.family == family
        scores = outside["score"][mask].astype(float)
        families[family] = {"images": int(mask.sum()), "held_out": family in HELD_OUT_FAMILIES,
                            "auroc": auroc(inside["score"].astype(float), scores),
                            "fpr_at_95_tpr": fpr_at_tpr(inside["score"].astype(float), scores),
                            "out_of_scope": float(outside["out_of_scope"][mask].mean()),
                            "uncertain": float(outside["uncertain"][mask].mean())}
    held = np.isin(benchmark.family, HELD_OUT_FAMILIES)
    persons = benchmark.person & held
    from models.uncertainty import load_rule

    rule = load_rule()
    result = {
        "machine": machine, "benchmark_images": len(benchmark.family),
        "gate_sha256": rule.gate_sha256, "weights_sha256": dict(rule.weights_sha256),
        "held_out_families": list(HELD_OUT_FAMILIES), "fitting_families": list(FITTING_FAMILIES),
        "test": test_row, "families": families,
        "held_out": {"images": int(held.sum()),
                     "auroc": auroc(inside["score"].astype(float), outside["score"][held].astype(float)),
                     "fpr_at_95_tpr": fpr_at_tpr(inside["score"].astype(float), outside["score"][held].astype(float)),
                     "out_of_scope": float(outside["out_of_scope"][held].mean()),
                     "uncertain": float(outside["uncertain"][held].mean())},
        "persons": {"images": int(persons.sum()), "out_of_scope": float(outside["out_of_scope"][persons].mean()),
                    "uncertain": float(outside["uncertain"][persons].mean())},
        "ms_per_test_image": 1000 * seconds / len(test.labels), "targets": TARGETS,
    }
    h, p = result["held_out"], result["persons"]
    checks = [("held-out images flagged uncertain", h["uncertain"], ">=", TARGETS["flagged_held_out"]),
              ("test images flagged uncertain", test_row["uncertain"], "<=", TARGETS["flagged_test"]),
              ("AUROC, test vs held-out", h["auroc"], ">=", TARGETS["auroc"]),
              ("persons called out of scope", p["out_of_scope"], ">=", TARGETS["persons_out_of_scope"]),
              *[(f"{n} accuracy on unflagged test images", a, ">=", TARGETS["accuracy_unflagged"])
                for n, a in test_row["accuracy_unflagged"].items()]]
    result["checks"] = [{"what": what, "value": value, "target": target, "op": op,
                         "met": bool(value >= target if op == ">=" else value <= target)}
                        for what, value, op, target in checks]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=MEASUREMENTS / "out-of-scope.json")
    args = parser.parse_args()
    say = Transcript()
    result = measure(args.benchmark)
    test_row, families, h, p = result["test"], result["families"], result["held_out"], result["persons"]
    say(f"machine: {result['machine']}")
    say(f"test split: {test_row['images']:,} images, {100 * test_row['out_of_scope']:.1f}% out of scope, "
        f"{100 * test_row['uncertain']:.1f}% uncertain (all reasons); accuracy on the unflagged: "
        + ", ".join(f"{n} {100 * a:.2f}%" for n, a in test_row["accuracy_unflagged"].items()))
    say(f"{'family':14s} {'images':>6s}  {'AUROC':>6s}  {'FPR@95':>6s}  {'out of scope':>12s}  {'uncertain':>9s}")
    for family, row in families.items():
        tag = "" if row["held_out"] else "  (fitting family: the gate learnt from it)"
        say(f"{family:14s} {row['images']:6d}  {row['auroc']:6.3f}  {100 * row['fpr_at_95_tpr']:5.1f}%  "
            f"{100 * row['out_of_scope']:11.1f}%  {100 * row['uncertain']:8.1f}%{tag}")
    say(f"held-out families together: {h['images']} images, AUROC {h['auroc']:.3f}, FPR at 95% TPR "
        f"{100 * h['fpr_at_95_tpr']:.1f}%, {100 * h['out_of_scope']:.1f}% out of scope, {100 * h['uncertain']:.1f}% "
        f"uncertain; persons: {p['images']} images, {100 * p['out_of_scope']:.1f}% out of scope, "
        f"{100 * p['uncertain']:.1f}% uncertain")
    for c in result["checks"]:
        say(f"target {'met' if c['met'] else 'MISSED'}: {c['what']} {c['value']:.3f} (target {c['op']} {c['target']})")
    say(f"the seam took {result['ms_per_test_image']:.2f} ms per test image (both models and the gate)")
    say.save_with(result, args.out)


if __name__ == "__main__":
    from models.commands import user_errors
    from models.scope.benchmark import BenchmarkMissing

    with user_errors(BenchmarkMissing):
        main()
