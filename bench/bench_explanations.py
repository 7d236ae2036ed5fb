"""Are the explanation maps faithful, and what do they cost? (models/explanation.py)

    .venv/bin/python bench/bench_explanations.py choose    # the method's variants, on 300 validation images
    .venv/bin/python bench/bench_explanations.py           # the served method on 1,000 test images, the sanity
                                                           # check and the cost -> docs/measurements/explanations.*
    .venv/bin/python bench/bench_explanations.py cost      # only the cost again (an idle machine)

Faithfulness (deletion and insertion, as in RISE, Petsiuk et al. 2018): pixels are replaced by a blurred copy of
the view (the same baseline the occlusion shows), most important first by the map, and the target class's
probability is read at every 10% step; insertion starts from the blurred copy and puts the original pixels back
in the same order. Against each map, RANDOM_MAPS random maps of the same granularity (random values on the 8x8
grid of 4x4-pixel patches). The target: deleting the top 20% of a map drops the target's probability at least
2.5x as much as deleting 20% by a random map, for both models (issue 31).

Sanity check (Adebayo et al. 2018, model randomisation): the maps of a model whose weights are re-drawn at
random must differ from the trained model's: the mean Spearman rank correlation of their cells, per image, for
the same target class. The CNN is re-initialised in PyTorch; MobileNetV2's Keras model (model.keras, which the
served LiteRT file was exported from) has every kernel and bias redrawn with its layer's own spread.

Cost: one image, and a 16-image request, through the seam (`classify(..., explain=True)`), both models.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from devkit.transcript import MEASUREMENTS, Transcript, announce_if_committed
from models import available_models, classify, load_predictor
from models.cifar10 import load_split
from models.explanation import GRID, VIEW, WINDOWS, blurred, explain_views, occlusion_grid
from models.machine import describe_machine

FRACTIONS = np.round(np.arange(0.0, 1.01, 0.1), 2)
RANDOM_MAPS = 2
TARGET_RATIO = 2.5
VARIANTS = {"8x8 windows (served)": ((8, 4),), "4x4 windows": ((4, 4),), "8x8 + 4x4 windows": ((8, 4), (4, 4))}


def pixel_order(grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices (of the 32x32 view) from most to least important; ties inside a cell in random order."""
    cell = VIEW // np.shape(grid)[0]
    values = np.kron(np.asarray(grid, float), np.ones((cell, cell))).reshape(-1)
    return np.lexsort((rng.random(values.size), -values))


def curves(view: np.ndarray, target: int, orders: list[np.ndarray], probabilities) -> tuple[np.ndarray, np.ndarray]:
    """(deletion, insertion) target probabilities, (len(orders), len(FRACTIONS)) each."""
    base, flat_view = blurred(view).reshape(-1, 3), view.reshape(-1, 3)
    batch = []
    for order in orders:
        for start, fill in ((flat_view, base), (base, flat_view)):
            for fraction in FRACTIONS:
                x = start.copy()
                chosen = order[:round(fraction * VIEW * VIEW)]
                x[chosen] = fill[chosen]
                batch.append(x.reshape(VIEW, VIEW, 3))
    probs = np.concatenate([probabilities(np.stack(batch[i:i + 32])) for i in range(0, len(batch), 32)])[:, target]
    probs = probs.reshape(len(orders), 2, len(FRACTIONS))
    return probs[:, 0], probs[:, 1]


def faithfulness(name: str, views: np.ndarray, windows, seed: int = 0) -> dict:
    predictor = load_predictor(name)
    rng = np.random.default_rng(seed)
    targets = predictor.predict_proba(views).argmax(1)
    deletion = {"map": [], "random": []}
    insertion = {"map": [], "random": []}
    grids = []
    for view, target in zip(views, targets, strict=True):
        grid = occlusion_grid(view, int(target), predictor.predict_proba, windows)
        grids.append(grid)
        orders = [pixel_order(grid, rng)] + [pixel_order(rng.random((GRID, GRID)), rng) for _ in range(RANDOM_MAPS)]
        d, i = curves(view, int(target), orders, predictor.predict_proba)
        deletion["map"].append(d[0]), deletion["random"].append(d[1:].mean(0))
        insertion["map"].append(i[0]), insertion["random"].append(i[1:].mean(0))
    d_map, d_rand = np.array(deletion["map"]), np.array(deletion["random"])
    i_map, i_rand = np.array(insertion["map"]), np.array(insertion["random"])
    at = int(np.flatnonzero(FRACTIONS == 0.2)[0])
    drop_map, drop_random = float((d_map[:, 0] - d_map[:, at]).mean()), float((d_rand[:, 0] - d_rand[:, at]).mean())
    area = lambda y: float(np.trapezoid(y.mean(0), FRACTIONS))  # noqa: E731
    return {"images": len(views), "drop_at_20_map": drop_map, "drop_at_20_random": drop_random,
            "ratio_at_20": drop_map / max(drop_random, 1e-9),
            "deletion_auc_map": area(d_map), "deletion_auc_random": area(d_rand),
            "insertion_auc_map": area(i_map), "insertion_auc_random": area(i_rand),
            "deletion_curve_map": d_map.mean(0).tolist(), "deletion_curve_random": d_rand.mean(0).tolist(),
            "insertion_curve_map": i_map.mean(0).tolist(), "insertion_curve_random": i_rand.mean(0).tolist(),
            "grids": grids, "targets": targets}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a.reshape(-1))), np.argsort(np.argsort(b.reshape(-1)))
    return float(np.corrcoef(ra, rb)[0, 1])


def randomised_cnn():
    import torch

    from models.custom_cnn.predictor import CustomCnnPredictor

    predictor = CustomCnnPredictor()
    torch.manual_seed(0)
    for module in predictor.model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return predictor.predict_proba


def randomised_mobilenet():
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


def choose(args: argparse.Namespace) -> None:
    """The variants on validation images; the transcript goes to docs/measurements/explanations-choice.txt."""
    say = Transcript()
    validation = load_split("val", args.data_dir)
    views = validation.images[np.random.default_rng(1).permutation(len(validation.images))[:args.images]]
    say(f"machine: {describe_machine()}; {len(views)} validation images; deletion by blurred copy")
    for variant, windows in VARIANTS.items():
        for name in available_models():
            started = time.perf_counter()
            result = faithfulness(name, views, windows)
            say(f"{variant:28s} {name:12s} top-20% drop {result['drop_at_20_map']:.3f} vs random "
                f"{result['drop_at_20_random']:.3f}: {result['ratio_at_20']:.2f}x; deletion AUC "
                f"{result['deletion_auc_map']:.3f} (random {result['deletion_auc_random']:.3f}); "
                f"{(time.perf_counter() - started) / len(views):.2f} s/image with the curves")
    say.save(MEASUREMENTS / "explanations-choice.txt")


def measure(args: argparse.Namespace) -> None:
    say = Transcript()
    names = available_models()
    test = load_split("test", args.data_dir)
    views = test.images[:args.images]
    report: dict = {"machine": describe_machine(), "images": len(views), "split": "test (the first images)",
                    "weights_sha256": {name: load_predictor(name).weights_sha256 for name in names},
                    "method": explain_views.__module__, "windows": [list(w) for w in WINDOWS], "models": {},
                    "target_ratio": TARGET_RATIO, "fractions": FRACTIONS.tolist(), "random_maps": RANDOM_MAPS}
    say(f"machine: {report['machine']}; the first {len(views):,} test images; pixels replaced by a blurred copy, "
        f"most important first; against {RANDOM_MAPS} random maps of 4x4-pixel patches per image")
    for name in names:
        started = time.perf_counter()
        result = faithfulness(name, views, WINDOWS)
        check = sanity(name, views[:args.sanity_images], result["grids"][:args.sanity_images],
                       result["targets"][:args.sanity_images])
        result.pop("grids"), result.pop("targets")
        report["models"][name] = {**result, "sanity": check, "seconds": time.perf_counter() - started}
        met = result["ratio_at_20"] >= TARGET_RATIO
        say(f"{name}: deleting the top 20% drops the target by {result['drop_at_20_map']:.3f}, a random map's 20% "
            f"by {result['drop_at_20_random']:.3f}: {result['ratio_at_20']:.2f}x (target >= {TARGET_RATIO}x: "
            f"{'met' if met else 'MISSED'})")
        say(f"  deletion AUC {result['deletion_auc_map']:.3f} (random {result['deletion_auc_random']:.3f}, lower is "
            f"better); insertion AUC {result['insertion_auc_map']:.3f} (random {result['insertion_auc_random']:.3f}, "
            f"higher is better)")
        say(f"  sanity check, weights randomised: mean Spearman correlation with the trained model's maps "
            f"{check['mean_spearman_trained_vs_randomised']:+.2f} over {check['images']} images "
            f"({100 * check['share_above_0_5']:.0f}% above 0.5)")
    report["cost"] = cost(names, views)
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
    """Only the cost, on an otherwise idle machine: the faithfulness run takes half an hour and may share it."""
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
    parser.add_argument("--images", type=int, default=None, help="default: 1,000 (measure), 300 (choose)")
    parser.add_argument("--sanity-images", type=int, default=200)
    args = parser.parse_args()
    from models.commands import user_errors

    with user_errors():
        if args.mode == "choose":
            args.images = args.images or 300
            choose(args)
        elif args.mode == "cost":
            remeasure_cost(args)
        else:
            args.images = args.images or 1000
            measure(args)


if __name__ == "__main__":
    main()
