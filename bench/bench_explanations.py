"""Are the explanation maps faithful under removals they were not built on, and better than "the middle of the
image"? What do they cost? (models/explanation.py, models/removals.py)

    .venv/bin/python bench/bench_explanations.py choose    # the candidate methods on validation images
    .venv/bin/python bench/bench_explanations.py           # the served method on test images and held-out real
                                                           # photos, sanity and mirror checks, the cost
                                                           # -> docs/measurements/explanations.*
    .venv/bin/python bench/bench_explanations.py cost      # only the cost again (an idle machine)

The protocol (the same for every method, so it favours none): for the explained class (each model's own top-1),
the map's cells are hidden most important first, and the class's probability is read at every 10% of the 64 cells
(deletion); insertion starts with every cell hidden and shows them back in the same order. Hiding is done by each
of the three removals of models/removals.py: a blurred copy, CIFAR-10's mean colour, and ROAD's noisy linear
imputation. Against each map, two baselines that know nothing of the model: RANDOM_ORDERS random orders of the
cells, and the centre prior (cells by distance to the centre, ties at random), which is what "the object is in the
middle" alone would say. The figure of merit is the probability drop when the top 20% is hidden, as a ratio to
each baseline's 20%, with a bootstrap interval over images (BOOTSTRAP resamples).

Targets (issue 42): for both models and under each removal, >= 2.0x random and >= 1.3x the centre prior, on test
images and on real photos from the photo benchmark's held-out sources (never the fitting ones, never validation).

`choose` scores CANDIDATES on validation images only, at 20% deletion, and names the winner by a rule fixed before
it ran (`chosen`). Sanity checks: the maps of a network whose weights are redrawn at random (Adebayo et al. 2018)
must not resemble the trained network's; the map of a mirrored view, mirrored back, should match the map of the
view (Spearman rank correlation, target >= 0.8). Cost: one image and 16 through the seam, both models.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from devkit.transcript import MEASUREMENTS, Transcript, announce_if_committed
from models import available_models, classify, load_predictor
from models.cifar10 import load_split
from models.explanation import GRID, SERVED, VIEW, Method, occlusion_grid
from models.images import to_model_input
from models.machine import describe_machine
from models.removals import REMOVALS, remove
from models.scope.benchmark import PHOTOS_DIR, load_photos

FRACTIONS = np.round(np.arange(0.0, 1.01, 0.1), 2)
AT = 0.2  # the share of cells whose deletion the targets are about
RANDOM_ORDERS = 2
BOOTSTRAP = 1000
TARGET_RANDOM, TARGET_CENTRE, TARGET_MIRROR = 2.0, 1.3, 0.8
BASELINES = ("random", "centre")
MAX_PASSES = 200  # a candidate may cost at most this many passes per map and model (the 1.5 s budget, issue 42)
MIRROR_IMAGES_IN_CHOICE = 50
CANDIDATES = {
    "8x8, blur (the method before)": Method(windows=((8, 4),), removals=("blur",)),
    "8x8, blur + mean colour": Method(windows=((8, 4),), removals=("blur", "mean colour")),
    "12x12, blur + mean colour": Method(windows=((12, 4),), removals=("blur", "mean colour")),
    "8x8 + 12x12, blur + mean colour": Method(windows=((8, 4), (12, 4)), removals=("blur", "mean colour")),
    "12x12, blur + mean colour, mirrored": Method(windows=((12, 4),), removals=("blur", "mean colour"),
                                                  mirrored=True),
}
Probabilities = Callable[[np.ndarray], np.ndarray]


def cell_pixels(cells: np.ndarray) -> np.ndarray:
    """(32, 32) bool: the pixels of the given cell indices (row-major on the 8x8 grid)."""
    grid = np.zeros(GRID * GRID, bool)
    grid[cells] = True
    cell = VIEW // GRID
    return np.kron(grid.reshape(GRID, GRID), np.ones((cell, cell), bool)).astype(bool)


CENTRE_DISTANCE = np.hypot(*np.meshgrid(np.arange(GRID) - 3.5, np.arange(GRID) - 3.5, indexing="ij")).reshape(-1)


def cell_orders(grid: np.ndarray, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Cell indices, most important first: the map's, RANDOM_ORDERS random ones, and the centre prior's (ties at
    random in every one)."""
    ties = lambda: rng.random(GRID * GRID)  # noqa: E731
    return {"map": [np.lexsort((ties(), -np.asarray(grid, float).reshape(-1)))],
            "random": [rng.permutation(GRID * GRID) for _ in range(RANDOM_ORDERS)],
            "centre": [np.lexsort((ties(), CENTRE_DISTANCE))]}


def curves(view: np.ndarray, target: int, orders: dict[str, list[np.ndarray]], removal: str,
           probabilities: Probabilities, rng: np.random.Generator, fractions: np.ndarray = FRACTIONS,
           insertion: bool = True) -> dict[str, np.ndarray]:
    """Per ordering kind, its mean curve of the target's probability: deletion[kind] (len(fractions),) and, with
    `insertion`, insertion[kind]; keys "deletion/map", "insertion/random", ..."""
    masks, keys = [], []
    for kind, instances in orders.items():
        for order in instances:
            for fraction in fractions:
                shown = order[:round(fraction * GRID * GRID)]
                masks.append(cell_pixels(shown)), keys.append(f"deletion/{kind}")
                if insertion:
                    masks.append(~cell_pixels(shown)), keys.append(f"insertion/{kind}")
    views = remove(view, np.stack(masks), removal, rng)
    p = np.concatenate([probabilities(views[i:i + 256]) for i in range(0, len(views), 256)])[:, target]
    out: dict[str, list[np.ndarray]] = {}
    keys_array = np.array(keys)
    for key in dict.fromkeys(keys):
        out[key] = p[keys_array == key].reshape(-1, len(fractions)).mean(0)
    return out


def ratio_interval(drops: np.ndarray, baseline: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(drops) / mean(baseline) over images, and its 95% bootstrap interval."""
    ratio = float(drops.mean() / max(baseline.mean(), 1e-9))
    picks = rng.integers(0, len(drops), (BOOTSTRAP, len(drops)))
    boot = drops[picks].mean(1) / np.maximum(baseline[picks].mean(1), 1e-9)
    low, high = np.percentile(boot, [2.5, 97.5])
    return ratio, float(low), float(high)


def faithfulness(probabilities: Probabilities, views: np.ndarray, method: Method, full: bool, seed: int = 0) -> dict:
    """Deletion (and, when `full`, insertion curves) of `method`'s maps against both baselines under every
    removal: per removal, the drop at AT for map and baselines, their ratios with intervals, and the curves."""
    rng = np.random.default_rng(seed)
    fractions = FRACTIONS if full else np.array([0.0, AT])
    p0 = probabilities(views)
    targets = p0.argmax(1)
    per_removal: dict[str, dict[str, list]] = {r: {} for r in REMOVALS}
    grids = []
    for view, target in zip(views, targets, strict=True):
        grid = occlusion_grid(view, int(target), probabilities, method)
        grids.append(grid)
        orders = cell_orders(grid, rng)
        for removal in REMOVALS:
            for key, curve in curves(view, int(target), orders, removal, probabilities, rng, fractions, full).items():
                per_removal[removal].setdefault(key, []).append(curve)
    at = int(np.flatnonzero(np.isclose(fractions, AT))[0])
    result: dict = {"images": len(views), "removals": {}}
    for removal, found in per_removal.items():
        curves_by_key = {key: np.array(value) for key, value in found.items()}
        drops = {kind: curves_by_key[f"deletion/{kind}"][:, 0] - curves_by_key[f"deletion/{kind}"][:, at]
                 for kind in ("map", *BASELINES)}
        row = {f"drop_{kind}": float(drops[kind].mean()) for kind in drops}
        for kind in BASELINES:
            ratio, low, high = ratio_interval(drops["map"], drops[kind], rng)
            row[f"ratio_{kind}"], row[f"ratio_{kind}_interval"] = ratio, [low, high]
            # No order can drop more than the whole probability: the ratio any map could reach at most.
            row[f"ceiling_{kind}"] = float(p0[np.arange(len(views)), targets].mean() / max(drops[kind].mean(), 1e-9))
        if full:
            for key, values in curves_by_key.items():
                row[f"curve/{key}"] = values.mean(0).tolist()
                row[f"auc/{key}"] = float(np.trapezoid(values.mean(0), fractions))
        result["removals"][removal] = row
    result["grids"], result["targets"] = grids, targets
    return result


def worst_margin(results: dict[str, dict]) -> float:
    """How far the worst (model, removal) is from its targets, as the smaller of ratio / target over both
    baselines: >= 1 means every target is met."""
    return min(min(row["ratio_random"] / TARGET_RANDOM, row["ratio_centre"] / TARGET_CENTRE)
               for result in results.values() for row in result["removals"].values())


def chosen(scores: dict[str, tuple[float, int]]) -> str:
    """The rule, fixed before `choose` ran: among the candidates within MAX_PASSES, the best worst margin; within
    0.02 of it, the cheapest."""
    affordable = {name: score for name, score in scores.items() if score[1] <= MAX_PASSES}
    best = max(margin for margin, _ in affordable.values())
    return min((name for name, (margin, _) in affordable.items() if margin >= best - 0.02),
               key=lambda name: affordable[name][1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with tied cells sharing their mean rank; 0 when either map is flat (it ranks
    nothing, so it cannot agree: position-broken ties would make two flat maps agree perfectly)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def mirror_consistency(probabilities: Probabilities, views: np.ndarray, grids: list[np.ndarray],
                       targets: np.ndarray, method: Method) -> float:
    """Mean Spearman correlation of each map with the map of the mirrored view (same class), mirrored back."""
    return float(np.mean([spearman(grid, occlusion_grid(view[:, ::-1], int(target), probabilities, method)[:, ::-1])
                          for view, grid, target in zip(views, grids, targets, strict=True)]))


def mirrored_answers(probabilities: Probabilities, views: np.ndarray) -> dict:
    """How far the model itself tells a view from its mirror image: the share of views whose top-1 changes, and the
    mean change of the top-1 class's probability. A model that answers the two alike should get mirrored maps; one
    that does not may rightly get maps that do not mirror."""
    p, q = probabilities(views), probabilities(np.ascontiguousarray(views[:, :, ::-1]))
    top = p.argmax(1)
    return {"top1_changes": float((q.argmax(1) != top).mean()),
            "mean_probability_change": float(np.abs(p[np.arange(len(top)), top] - q[np.arange(len(top)), top]).mean())}


def randomised_cnn() -> Probabilities:
    import torch

    from models.custom_cnn.predictor import CustomCnnPredictor

    predictor = CustomCnnPredictor()
    probe = np.random.default_rng(0).integers(0, 256, (4, VIEW, VIEW, 3), dtype=np.uint8)
    trained = predictor.predict_proba(probe)
    torch.manual_seed(0)
    for module in predictor.model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    predictor.network = predictor.model  # the traced graph (machines without bf16) holds the trained weights
    if np.allclose(predictor.predict_proba(probe), trained):
        raise RuntimeError("redrawing the CNN's weights did not change its answers: the check would be void")
    return predictor.predict_proba


def randomised_mobilenet() -> Probabilities:
    import keras

    from models.mobilenetv2.predictor import PACKAGE_DIR

    model = keras.models.load_model(PACKAGE_DIR / "model.keras", compile=False)
    rng = np.random.default_rng(0)
    for layer in model.layers if not hasattr(model, "_flatten_layers") else model._flatten_layers():
        if not getattr(layer, "kernel", None) is not None and not hasattr(layer, "depthwise_kernel"):
            continue
        for weight in layer.weights:
            if any(part in weight.path for part in ("kernel", "bias")):
                value = weight.numpy()
                weight.assign(rng.normal(0.0, float(value.std()) or 0.05, value.shape).astype(value.dtype))
    return lambda views: np.asarray(model(views, training=False), dtype=np.float64)


def sanity(name: str, views: np.ndarray, grids: list[np.ndarray], targets: np.ndarray) -> dict:
    probabilities = randomised_cnn() if name == "custom_cnn" else randomised_mobilenet()
    correlations = [spearman(grid, occlusion_grid(view, int(target), probabilities))
                    for view, grid, target in zip(views, grids, targets, strict=True)]
    return {"images": len(views), "mean_spearman_trained_vs_randomised": float(np.mean(correlations)),
            "share_above_0_5": float((np.array(correlations) > 0.5).mean())}


def cost(names: list[str], views: np.ndarray) -> dict:
    timings = {"machine": describe_machine()}
    for count in (1, 16):
        classify(list(views[:count]), names, top_k=3, explain=True)  # warm
        started = time.perf_counter()
        classify(list(views[:count]), names, top_k=3, explain=True)
        timings[f"{count}_images_seconds"] = time.perf_counter() - started
    return timings


def ratio_text(row: dict, kind: str) -> str:
    low, high = row[f"ratio_{kind}_interval"]
    return f"{row[f'ratio_{kind}']:.2f}x ({low:.2f}-{high:.2f}; at most {row[f'ceiling_{kind}']:.2f}x)"


def choose(args: argparse.Namespace) -> None:
    """The candidates on validation images; the transcript goes to docs/measurements/explanations-choice.txt."""
    say = Transcript()
    validation = load_split("val", args.data_dir)
    views = validation.images[np.random.default_rng(1).permutation(len(validation.images))[:args.images]]
    say(f"machine: {describe_machine()}; {len(views)} validation images; the top 20% of the cells deleted, under "
        f"each removal, against {RANDOM_ORDERS} random orders and the centre prior; worst margin = the smallest "
        f"ratio / target over models, removals and both baselines (targets {TARGET_RANDOM}x random, "
        f"{TARGET_CENTRE}x centre)")
    scores = {}
    for label, method in CANDIDATES.items():
        results = {}
        for name in available_models():
            started = time.perf_counter()
            probabilities = load_predictor(name).predict_proba
            results[name] = faithfulness(probabilities, views, method, full=False)
            for removal, row in results[name]["removals"].items():
                say(f"{label:36s} {name:12s} {removal:24s} vs random {ratio_text(row, 'random')}, vs centre "
                    f"{ratio_text(row, 'centre')}")
            seconds = (time.perf_counter() - started) / len(views)
            some = slice(0, MIRROR_IMAGES_IN_CHOICE)
            mirror = mirror_consistency(probabilities, views[some], results[name]["grids"][some],
                                        results[name]["targets"][some], method)
            say(f"{label:36s} {name:12s} {seconds:.2f} s/image with the checks; mirror consistency rho {mirror:.2f} "
                f"({MIRROR_IMAGES_IN_CHOICE} images)")
        scores[label] = (worst_margin(results), method.passes)
        say(f"{label:36s} worst margin {scores[label][0]:.3f}; {method.passes} passes per map and model")
    say(f"chosen by the rule (best worst margin within {MAX_PASSES} passes, the cheapest within 0.02): "
        f"{chosen(scores)}")
    say.save(MEASUREMENTS / "explanations-choice.txt")


def measured_sets(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The two sets the method is reported on: the first test images, and every class photo of the photo
    benchmark's held-out sources as the models see it (the centre square at 32 px)."""
    sets = {"test": load_split("test", args.data_dir).images[:args.images]}
    photos = load_photos(args.photos)
    held = photos.subset((photos.role == "held-out") & (photos.group == "class"))
    sets["real photos"] = to_model_input(held.images[:args.photo_images], VIEW)
    return sets


def measure(args: argparse.Namespace) -> None:
    say = Transcript()
    names = available_models()
    sets = measured_sets(args)
    report: dict = {"machine": describe_machine(), "method": SERVED.name, "passes_per_map": SERVED.passes,
                    "sets": {label: len(views) for label, views in sets.items()},
                    "weights_sha256": {name: load_predictor(name).weights_sha256 for name in names},
                    "removals": list(REMOVALS), "baselines": list(BASELINES), "random_orders": RANDOM_ORDERS,
                    "fractions": FRACTIONS.tolist(), "at": AT, "bootstrap": BOOTSTRAP,
                    "targets": {"random": TARGET_RANDOM, "centre": TARGET_CENTRE, "mirror": TARGET_MIRROR},
                    "results": {}, "sanity": {}, "mirror": {}}
    say(f"machine: {report['machine']}; method: {SERVED.name}; " + ", ".join(
        f"{count:,} {label}" for label, count in report["sets"].items()))
    for label, views in sets.items():
        report["results"][label], report["mirror"][label] = {}, {}
        for name in names:
            predictor = load_predictor(name)
            result = faithfulness(predictor.predict_proba, views, SERVED, full=True)
            grids, targets = result.pop("grids"), result.pop("targets")
            report["results"][label][name] = result
            mirror = mirror_consistency(predictor.predict_proba, views[:args.mirror_images],
                                        grids[:args.mirror_images], targets[:args.mirror_images], SERVED)
            report["mirror"][label][name] = {"images": min(len(views), args.mirror_images), "spearman": mirror,
                                             "model": mirrored_answers(predictor.predict_proba, views)}
            for removal, row in result["removals"].items():
                met = row["ratio_random"] >= TARGET_RANDOM and row["ratio_centre"] >= TARGET_CENTRE
                say(f"{label:12s} {name:12s} {removal:24s} top 20% drop {row['drop_map']:.3f}; vs random "
                    f"{ratio_text(row, 'random')}, vs centre {ratio_text(row, 'centre')}: "
                    f"{'met' if met else 'MISSED'}")
            model = report["mirror"][label][name]["model"]
            say(f"{label:12s} {name:12s} mirror consistency rho {mirror:.2f} over "
                f"{report['mirror'][label][name]['images']} images ({'met' if mirror >= TARGET_MIRROR else 'MISSED'}); "
                f"the model itself, view against its mirror image: top-1 changes on "
                f"{100 * model['top1_changes']:.1f}%, its probability moves {model['mean_probability_change']:.3f}")
            if label == "test":
                check = sanity(name, views[:args.sanity_images], grids[:args.sanity_images],
                               targets[:args.sanity_images])
                report["sanity"][name] = check
                say(f"{label:12s} {name:12s} weights randomised: mean Spearman correlation with the trained "
                    f"model's maps {check['mean_spearman_trained_vs_randomised']:+.2f} over {check['images']} images")
    report["cost"] = cost(names, sets["test"])
    say(cost_line(report))
    out = MEASUREMENTS / "explanations.json"
    announce_if_committed(out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say.save(MEASUREMENTS / "explanations.txt")


def cost_line(report: dict) -> str:
    return (f"cost through the seam, both models, on {report['cost']['machine']}: one image "
            f"{report['cost']['1_images_seconds']:.2f} s, a 16-image request "
            f"{report['cost']['16_images_seconds']:.1f} s (targets 1.5 s and 20 s)")


def remeasure_cost(args: argparse.Namespace) -> None:
    """Only the cost, on an otherwise idle machine: the faithfulness run is long and may share it."""
    path = MEASUREMENTS / "explanations.json"
    report = json.loads(path.read_text())
    report["cost"] = cost(available_models(), load_split("test", args.data_dir).images[:16])
    announce_if_committed(path)
    path.write_text(json.dumps(report, indent=2) + "\n")
    transcript = MEASUREMENTS / "explanations.txt"
    lines = [line for line in transcript.read_text().splitlines() if not line.startswith("cost through the seam")]
    announce_if_committed(transcript)
    transcript.write_text("\n".join([*lines, cost_line(report)]) + "\n")
    print(cost_line(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["measure", "choose", "cost"], default="measure")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--photos", type=Path, default=PHOTOS_DIR)
    parser.add_argument("--images", type=int, default=None,
                        help="test or validation images; default: 300 (measure), 200 (choose)")
    parser.add_argument("--photo-images", type=int, default=None, help="default: every held-out class photo")
    parser.add_argument("--sanity-images", type=int, default=100)
    parser.add_argument("--mirror-images", type=int, default=100)
    args = parser.parse_args()
    from models.commands import user_errors

    with user_errors():
        if args.mode == "choose":
            args.images = args.images or 200
            choose(args)
        elif args.mode == "cost":
            remeasure_cost(args)
        else:
            args.images = args.images or 300
            measure(args)


if __name__ == "__main__":
    main()
