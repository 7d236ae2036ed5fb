"""The verdicts and both models on real photographs, by source, held-out sources apart.

    .venv/bin/python scripts/build_photo_benchmark.py   # first: build/photo-benchmark/
    .venv/bin/python bench/bench_real_photos.py         # -> docs/measurements/real-photos.{json,txt}

Everything goes through the one seam (`models.classify`) with the committed models and rule, as a request would.
The broad view's lines were fitted on the benchmark's fitting sources (models/uncertainty.json says which); the
held-out sources are the ones reported on. Per source: everyday photos called out of scope and answered with no
flag at all, other mammals out of scope, and of the photos of the 10 classes: out of scope (false alarms), right
for every model among the unflagged, right and unflagged; then each model's accuracy per class with 95% Wilson
intervals, the drop from the test split, McNemar's exact test on the same photos and how often the two agree (the
report's "Real photos" section and the cards read this file), and the seam's cost per photo with and without the
broad view.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from devkit.transcript import MEASUREMENTS, Transcript
from models import available_models, classify, load_predictor
from models.cifar10 import CLASS_NAMES
from models.commands import announce_committed
from models.machine import describe_machine
from models.predictor import REAL_PHOTOS_FILE
from models.scope.benchmark import PHOTOS_DIR, load_photos
from models.uncertainty import PHOTO_TARGETS, load_rule, photo_summary

CHUNK = 64


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return (float(centre - half), float(centre + half))


def through_seam(images: list, names: list[str]) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {"uncertain": [], "out_of_scope": [], "looks_like": [], **{n: [] for n in names}}
    for start in range(0, len(images), CHUNK):
        for answer in classify(images[start:start + CHUNK], names, top_k=1).images:
            rows["uncertain"].append(bool(answer.uncertain))
            rows["out_of_scope"].append(bool(answer.out_of_scope))
            rows["looks_like"].append(answer.looks_like or "")
            for name in names:
                rows[name].append(answer.predictions[name].label)
    return {key: np.array(value) for key, value in rows.items()}


def seam_cost(images: list, names: list[str]) -> dict[str, float]:
    """ms per photo through the seam, with the broad view and without it (its loader answering None), same photos."""
    import models.pipeline as pipeline

    def timed() -> float:
        started = time.perf_counter()
        for start in range(0, len(images), CHUNK):
            classify(images[start:start + CHUNK], names, top_k=1)
        return 1000 * (time.perf_counter() - started) / len(images)

    timed()  # warm: every model and check loaded
    with_broad = timed()
    loader = pipeline.load_broad
    pipeline.load_broad = lambda: None
    try:
        without = timed()
    finally:
        pipeline.load_broad = loader
    return {"with_broad_view_ms": with_broad, "without_broad_view_ms": without, "added_ms": with_broad - without}


def mcnemar_p(a_right: np.ndarray, b_right: np.ndarray) -> float:
    from scipy.stats import binomtest

    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def accuracy_block(truth: np.ndarray, answers: dict[str, np.ndarray], names: list[str]) -> dict:
    """Per model: accuracy with its interval, overall and per class; McNemar and agreement between the models."""
    block: dict = {"images": len(truth), "models": {}}
    for name in names:
        right = answers[name] == truth
        per_class = {}
        for label in CLASS_NAMES:
            mask = truth == label
            if mask.any():
                per_class[label] = {"images": int(mask.sum()), "accuracy": float(right[mask].mean()),
                                    "interval": wilson(int(right[mask].sum()), int(mask.sum()))}
        block["models"][name] = {"accuracy": float(right.mean()), "interval": wilson(int(right.sum()), len(right)),
                                 "per_class": per_class}
    if len(names) == 2:
        a, b = (answers[n] == truth for n in names)
        block["mcnemar_p"] = mcnemar_p(a, b)
        block["agreement"] = float((answers[names[0]] == answers[names[1]]).mean())
    return block


def measure(directory: Path = PHOTOS_DIR) -> dict:
    names = available_models()
    rule = load_rule()
    if rule is None or rule.photo is None:
        raise SystemExit("models/uncertainty.json has no photo lines: run python -m models.uncertainty first")
    photos = load_photos(directory)
    seen = through_seam(photos.images, names)
    truth = photos.label
    right = np.stack([seen[n] == truth for n in names]).all(axis=0)
    group = photos.group
    sources = {}
    for source in dict.fromkeys(photos.source):
        mask = photos.source == source
        row = photo_summary(seen["out_of_scope"][mask], seen["uncertain"][mask], group[mask], right[mask])
        row["role"] = str(photos.role[mask][0])
        sources[source] = row
    held = photos.role == "held-out"
    held_row = photo_summary(seen["out_of_scope"][held], seen["uncertain"][held], group[held], right[held])
    fit_row = photo_summary(seen["out_of_scope"][~held], seen["uncertain"][~held], group[~held], right[~held])
    everyday_out = (group == "everyday") & held & seen["out_of_scope"] & (seen["looks_like"] != "")
    looks, counts = np.unique(seen["looks_like"][everyday_out], return_counts=True)
    classes_held = held & (group == "class")
    accuracy = accuracy_block(truth[classes_held], {n: seen[n][classes_held] for n in names}, names)
    for name in names:
        test = load_predictor(name).test_accuracy()  # the served weights' own (models/<name>/metrics.json)
        accuracy["models"][name]["test_accuracy"] = test
        accuracy["models"][name]["drop_points"] = None if test is None else 100 * (
            test - accuracy["models"][name]["accuracy"])
    checks = []
    for key, sense, target, _ in PHOTO_TARGETS:
        value = held_row[key]
        checks.append({"what": key, "value": value, "op": sense, "target": target,
                       "met": bool(value >= target if sense == ">=" else value <= target)})
    return {"machine": describe_machine(), "photos": len(truth), "weights_sha256": dict(rule.weights_sha256),
            "lines": {"inside_line": rule.photo.inside_line, "keep_line": rule.photo.keep_line,
                      "match_line": rule.photo.match_line,
                      "other_line": None if math.isinf(rule.photo.other_line) else rule.photo.other_line},
            "sources": sources, "held_out": held_row, "fitting": fit_row,
            "everyday_looks_like": dict(sorted(zip(looks.tolist(), counts.tolist(), strict=True),
                                               key=lambda item: -item[1])[:15]),
            "real_photo_accuracy": accuracy, "cost": seam_cost(photos.subset(held).images[:200], names),
            "checks": checks}


def summary_for_cards(result: dict) -> dict:
    """models/real_photos.json: what the cards and /models show beside the test split's accuracy."""
    acc = result["real_photo_accuracy"]
    held = sorted(s for s, r in result["sources"].items() if r["role"] == "held-out")
    return {"generated_by": "bench/bench_real_photos.py", "held_out_sources": held,
            "models": {name: {"weights_sha256": result["weights_sha256"][name], "accuracy": m["accuracy"],
                              "interval": m["interval"], "images": acc["images"]}
                       for name, m in acc["models"].items()}}


def share(value: float) -> str:
    return "   -  " if value != value else f"{100 * value:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS_DIR)
    parser.add_argument("--out", type=Path, default=MEASUREMENTS / "real-photos.json")
    args = parser.parse_args()
    say = Transcript()
    result = measure(args.photos)
    say(f"machine: {result['machine']}")
    say(f"{'source':18s} {'role':8s} {'everyday':>8s} {'out':>6s} {'no flag':>7s}  {'mammals':>7s} {'out':>6s}  "
        f"{'class':>5s} {'out':>6s} {'right|unflagged':>15s} {'right+unflagged':>15s}")
    rows = [*result["sources"].items(), ("held-out together", {**result["held_out"], "role": ""}),
            ("fitting together", {**result["fitting"], "role": ""})]
    for source, r in rows:
        say(f"{source:18s} {r['role']:8s} {r['everyday_images']:8d} {share(r['everyday_out_of_scope'])} "
            f"{share(r['everyday_unflagged'])}  {r['mammal_images']:7d} {share(r['mammal_out_of_scope'])}  "
            f"{r['class_images']:5d} {share(r['class_out_of_scope'])} {share(r['class_unflagged_right']):>15s} "
            f"{share(r['class_right_and_unflagged']):>15s}")
    say("held-out everyday photos called out of scope look like: "
        + ", ".join(f"{label} {n}" for label, n in result["everyday_looks_like"].items()))
    acc = result["real_photo_accuracy"]
    for name, m in acc["models"].items():
        low, high = m["interval"]
        say(f"{name}: {100 * m['accuracy']:.1f}% ({100 * low:.1f}-{100 * high:.1f}) of {acc['images']} held-out class "
            f"photos; test split {100 * m['test_accuracy']:.1f}% (drop {m['drop_points']:.1f} points); per class: "
            + ", ".join(f"{c} {100 * v['accuracy']:.0f}% ({v['images']})" for c, v in m["per_class"].items()))
    say(f"McNemar's exact test on the same photos: p = {acc['mcnemar_p']:.3g}; the models agree on "
        f"{100 * acc['agreement']:.1f}%")
    cost = result["cost"]
    say(f"seam cost per photo: {cost['with_broad_view_ms']:.1f} ms with the broad view, "
        f"{cost['without_broad_view_ms']:.1f} ms without: {cost['added_ms']:.1f} ms added")
    for c in result["checks"]:
        say(f"target {'met' if c['met'] else 'MISSED'} on held-out sources: {c['what']} {c['value']:.3f} "
            f"(target {c['op']} {c['target']})")
    announce_committed(str(REAL_PHOTOS_FILE.relative_to(REAL_PHOTOS_FILE.parent.parent)))
    REAL_PHOTOS_FILE.write_text(json.dumps(summary_for_cards(result), indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    say.save(args.out.with_suffix(".txt"))


if __name__ == "__main__":
    from models.commands import user_errors
    from models.scope.benchmark import BenchmarkMissing

    with user_errors(BenchmarkMissing):
        main()
