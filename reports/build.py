"""Build the evaluation report for every registered model: metrics.json, index.html, report.pdf.

    python -m reports.build [--data-dir DIR] [--models custom_cnn mobilenetv2] [--latency measure|reuse|skip]

Each model scores the official test split once; its probabilities are cached in
models/<name>/test_probabilities.npz (keyed by the weights' sha256), so rebuilding the report only recomputes the
statistics, figures and documents. Latency is measured on this machine at build time (`--latency reuse`
keeps the figures of the previous report for unchanged weights, with the machine they were measured on).
The robustness section comes from `reports.robustness` (cached; computed the first time).

    python -m reports.build --images DIR_OR_ZIP --out OUTDIR

compares the models on your own labelled images instead (reports/user_data.py reads them; same statistics
where they apply) and writes OUTDIR/metrics.json, index.html and report.pdf.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import available_models, cifar10, load_predictor
from models.commands import announce_committed
from models.evaluate import test_probabilities
from models.explanation import PASSES_PER_MAP, SERVED
from models.machine import describe_machine, trained_on
from models.scoring import CALIBRATION_BINS, calibration, classification_metrics
from reports import figures, stats, wording

REPORTS_DIR = Path(__file__).resolve().parent
GALLERY_SIZE = 24


def measure_latency(name: str, images: np.ndarray, single_calls: int = 30, batch_calls: int = 5) -> dict[str, float]:
    """Median ms per image: one image per call (a user uploading a photo), and batches of 64."""
    predictor = load_predictor(name)
    predictor.predict_proba(images[:64])  # warm
    singles = []
    for i in range(single_calls):
        start = time.perf_counter()
        predictor.predict_proba(images[i : i + 1])
        singles.append(time.perf_counter() - start)
    batches = []
    for i in range(batch_calls):
        start = time.perf_counter()
        predictor.predict_proba(images[64 * i : 64 * (i + 1)])
        batches.append((time.perf_counter() - start) / 64)
    ms1, ms64 = 1000 * float(np.median(singles)), 1000 * float(np.median(batches))
    return {"batch_1_ms_per_image": ms1, "batch_64_ms_per_image": ms64,
            "batch_1_images_per_second": 1000 / ms1, "batch_64_images_per_second": 1000 / ms64}


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, count: int) -> list[int]:
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:count].tolist()


@dataclass
class ModelRun:
    """Everything the report needs about one model: what it is, and what it predicted on the test split."""

    name: str
    info: dict[str, Any]
    recipe: dict[str, Any]
    history: list[dict]
    probs: np.ndarray
    latency: dict[str, Any] | None = None
    training_machine: str | None = None
    trained_on: str | None = None  # where it trained, in a few words ("NVIDIA H200"), for the summary table


def previous_latency(name: str, weights_sha256: str, out: Path) -> dict[str, Any] | None:
    """The latency an earlier build of this report measured for these exact weights, if any."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    section = json.loads(path.read_text()).get("models", {}).get(name, {})
    if section.get("info", {}).get("weights_sha256") != weights_sha256 or not section.get("latency"):
        return None
    return {"machine": json.loads(path.read_text())["machine"], **section["latency"]}


def collect(name: str, test: cifar10.Split, latency: str, out: Path) -> ModelRun:
    """A registered model's run: cached test probabilities, its history.json, and latency (measured, reused
    from the previous report for the same weights, or left out)."""
    predictor = load_predictor(name)
    probs, _ = test_probabilities(name, test)
    history_path = predictor.model_dir / "history.json"
    timing = None
    if latency == "reuse":
        timing = previous_latency(name, predictor.weights_sha256, out)
    if latency == "measure" or (latency == "reuse" and timing is None):
        timing = {"machine": describe_machine(), **measure_latency(name, test.images)}
    return ModelRun(name=name, info=predictor.info, recipe=predictor.config.get("recipe", {}),
                    history=json.loads(history_path.read_text()) if history_path.is_file() else [], probs=probs,
                    latency=timing, training_machine=predictor.config.get("machine"),
                    trained_on=trained_on(predictor.config))


def model_section(run: ModelRun, test: cifar10.Split, out: Path) -> dict[str, Any]:
    name, info, probs, history = run.name, run.info, run.probs, run.history
    names = list(test.class_names)
    correct = probs.argmax(axis=1) == test.labels
    low, high = stats.bootstrap_ci(correct)
    calibrated = calibration(probs, test.labels)
    metrics = classification_metrics(test.labels, probs, test.class_names)
    fig = out / "figures"
    files = {
        "confusion": figures.confusion_matrices(metrics["confusion_matrix"], names, info["display_name"],
                                                fig / f"{name}_confusion.png"),
        "reliability": figures.reliability_diagram(calibrated["bins"], calibrated["ece"], info["display_name"],
                                                   fig / f"{name}_reliability.png"),
    }
    if history:
        files["curves"] = figures.training_curves(history, f"{info['display_name']}: training (validation split)",
                                                  fig / f"{name}_curves.png")
    mistakes = confident_mistakes(probs, test.labels, GALLERY_SIZE)
    files["mistakes"] = figures.gallery(
        test.images[mistakes],
        [f"#{i} true {names[test.labels[i]]}\npred {names[probs[i].argmax()]} {100 * probs[i].max():.0f}%"
         for i in mistakes],
        f"{info['display_name']}: most confident mistakes", fig / f"{name}_mistakes.png")
    return {
        "name": name,
        "info": {k: v for k, v in info.items() if k != "class_names"},
        "config": run.recipe,
        **metrics,
        "accuracy_ci95": [low, high],
        "calibration": calibrated,
        "ece": calibrated["ece"],
        "latency": run.latency,
        "training_seconds": info["training"]["seconds"],
        "training_machine": run.training_machine,
        "trained_on": run.trained_on,
        "history": history,
        "confident_mistakes": mistakes,
        "figures": {k: str(v.relative_to(out)) for k, v in files.items()},
    }


def comparison_section(a: dict, b: dict, probs_a: np.ndarray, probs_b: np.ndarray, test: cifar10.Split,
                       out: Path) -> dict[str, Any]:
    names = list(test.class_names)
    pred_a, pred_b = probs_a.argmax(axis=1), probs_b.argmax(axis=1)
    correct_a, correct_b = pred_a == test.labels, pred_b == test.labels
    acc_a = stats.per_class_accuracy(pred_a, test.labels, len(names))
    acc_b = stats.per_class_accuracy(pred_b, test.labels, len(names))
    low, high = stats.paired_difference_ci(correct_a, correct_b)
    disagree = np.flatnonzero(pred_a != pred_b)
    # Most telling disagreements first: both models confident, different answers.
    order = disagree[np.argsort(-(probs_a[disagree].max(axis=1) * probs_b[disagree].max(axis=1)), kind="stable")]
    shown = order[:GALLERY_SIZE].tolist()
    tag = f"{a['name']}_vs_{b['name']}"
    short_a, short_b = wording.short_name(a), wording.short_name(b)
    files = {
        "per_class_difference": figures.per_class_difference(names, acc_a, acc_b, short_a, short_b,
                                                             out / "figures" / f"{tag}_per_class.png"),
        "disagreements": figures.gallery(
            test.images[shown],
            [f"#{i} true {names[test.labels[i]]}\n{short_a}: {names[pred_a[i]]}\n{short_b}: {names[pred_b[i]]}"
             for i in shown],
            f"where {short_a} and {short_b} disagree (most confident first)",
            out / "figures" / f"{tag}_disagreements.png", columns=5),  # three caption lines: five fit the width
    }
    return {
        "a": a["name"], "b": b["name"],
        "accuracy_a": a["accuracy"], "accuracy_b": b["accuracy"],
        "accuracy_difference": a["accuracy"] - b["accuracy"],
        "accuracy_difference_ci95": [low, high],
        "mcnemar": stats.mcnemar_exact(correct_a, correct_b),
        "agreement": float((pred_a == pred_b).mean()),
        "both_correct": int((correct_a & correct_b).sum()),
        "both_wrong": int((~correct_a & ~correct_b).sum()),
        "disagreements": len(disagree),
        "per_class_accuracy": {n: {"a": float(x), "b": float(y), "difference": float(x - y)}
                               for n, x, y in zip(names, acc_a, acc_b, strict=True)},
        "disagreement_gallery": shown,
        "figures": {k: str(v.relative_to(out)) for k, v in files.items()},
    }


def build(names: list[str], data_dir: str | None = None, latency: str = "measure", out: Path = REPORTS_DIR,
          pdf: bool = True, robustness: bool = True) -> dict[str, Any]:
    test = cifar10.load_split("test", data_dir)
    section = None
    if robustness:
        from reports.robustness import robustness_section

        section = robustness_section(names, test)  # from the caches once computed
    runs = [collect(name, test, latency, out) for name in names]
    return write_report(runs, test, out, pdf, section, uncertain_verdict(runs, test), out_of_scope_section(runs),
                        explanations_section(runs))


OUT_OF_SCOPE_MEASUREMENT = Path(__file__).resolve().parent.parent / "docs" / "measurements" / "out-of-scope.json"
EXPLANATIONS_MEASUREMENT = OUT_OF_SCOPE_MEASUREMENT.with_name("explanations.json")


REAL_PHOTOS_MEASUREMENT = OUT_OF_SCOPE_MEASUREMENT.with_name("real-photos.json")


def measured_with(path: Path, runs: list[ModelRun], command: str) -> dict[str, Any] | None:
    """A bench's committed measurement when it was made with these weights (it keeps the machine it was measured
    on), else None and a note saying which command to rerun."""
    if not path.is_file():
        return None
    measured = json.loads(path.read_text())
    if measured.get("weights_sha256") != {run.name: load_predictor(run.name).weights_sha256 for run in runs}:
        print(f"note: {path.name} was measured with other models; rerun {command} to put it in the report")
        return None
    return measured


def explanations_section(runs: list[ModelRun]) -> dict[str, Any] | None:
    """bench/bench_explanations.py's faithfulness, sanity and mirror checks and cost, when it measured the method
    the app serves."""
    measured = measured_with(EXPLANATIONS_MEASUREMENT, runs, "bench/bench_explanations.py")
    if measured is not None and measured.get("method") != SERVED.name:
        print(f"note: {EXPLANATIONS_MEASUREMENT.name} measured another explanation method; rerun "
              "bench/bench_explanations.py to put it in the report")
        return None
    return measured


def real_photos_section(runs: list[ModelRun]) -> dict[str, Any] | None:
    """bench/bench_real_photos.py's verdicts and accuracy on the real-photo benchmark."""
    return measured_with(REAL_PHOTOS_MEASUREMENT, runs, "bench/bench_real_photos.py")


def out_of_scope_section(runs: list[ModelRun]) -> dict[str, Any] | None:
    """The held-out-families measurement (bench/bench_out_of_scope.py) when it was made with these models and this
    gate; it keeps the machine it was measured on."""
    from models.uncertainty import rule_for

    rule = rule_for({run.name: load_predictor(run.name).weights_sha256 for run in runs})
    if rule is None or not OUT_OF_SCOPE_MEASUREMENT.is_file():
        return None
    measured = json.loads(OUT_OF_SCOPE_MEASUREMENT.read_text())
    if measured.get("gate_sha256") != rule.gate_sha256 or measured.get("weights_sha256") != dict(
            rule.weights_sha256):
        print(f"note: {OUT_OF_SCOPE_MEASUREMENT.name} was measured with other models or another gate; rerun "
              "bench/bench_out_of_scope.py to put it in the report")
        return None
    real_photos = real_photos_section(runs)
    if real_photos is not None:  # shown beside the families: the verdicts on what people upload
        measured["real_photos"] = real_photos
    return measured


def uncertain_verdict(runs: list[ModelRun], test: cifar10.Split) -> dict[str, Any] | None:
    """The 'uncertain' rule (fitted on validation) on the test split: share flagged, share without colour, and
    each model's accuracy on all and on the unflagged images; None if the rule was fitted for other weights."""
    from models.uncertainty import rule_for, summary

    rule = rule_for({run.name: load_predictor(run.name).weights_sha256 for run in runs})
    if rule is None:
        return None
    probs = {run.name: run.probs for run in runs}  # calibrated, as served
    scope_logits = None
    if rule.gate_sha256:
        from models.scope.gate import load_gate

        gate = load_gate()
        if gate is not None and gate.sha256 == rule.gate_sha256:
            scope_logits = gate.scores(test.images)
    return {"threshold": rule.threshold, "scope_threshold": rule.scope_threshold,
            **summary(rule, probs, test.labels, test.images, scope_logits)}


def robustness_figures(section: dict[str, Any], sections: dict[str, Any], out: Path) -> dict[str, str]:
    titles = {name: wording.short_name(sections[name]) for name in section["models"]}
    files = {"heatmaps": figures.robustness_heatmaps(section, titles, out / "figures" / "robustness_heatmaps.png"),
             "severity": figures.severity_curves(section, titles, out / "figures" / "robustness_severity.png")}
    return {k: str(v.relative_to(out)) for k, v in files.items()}


def write_report(runs: list[ModelRun], test: cifar10.Split, out: Path, pdf: bool = True,
                 robustness: dict[str, Any] | None = None,
                 uncertain: dict[str, Any] | None = None,
                 out_of_scope: dict[str, Any] | None = None,
                 explanations: dict[str, Any] | None = None) -> dict[str, Any]:
    """Statistics, figures, metrics.json, index.html and report.pdf for these runs on this test split."""
    sections = {run.name: model_section(run, test, out) for run in runs}
    probs = {run.name: run.probs for run in runs}
    comparisons = [comparison_section(sections[x.name], sections[y.name], probs[x.name], probs[y.name], test, out)
                   for x, y in itertools.combinations(runs, 2)]
    report = {
        "title": "CIFAR-10 model comparison",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "generated_by": "python -m reports.build",
        "dataset": {"name": "CIFAR-10", "split": "official test batch", "images": len(test.labels),
                    "class_names": list(test.class_names),
                    "note": "models were selected on a 5,000-image validation split held out of the training "
                            "batches; the test split is scored once per set of weights"},
        "machine": describe_machine(),
        "bootstrap_resamples": stats.BOOTSTRAP_RESAMPLES,
        "calibration_bins": CALIBRATION_BINS,
        "models": sections,
        "comparisons": comparisons,
    }
    if robustness is not None:
        report["robustness"] = {**robustness, "figures": robustness_figures(robustness, sections, out)}
    if uncertain is not None:
        report["uncertain_verdict"] = uncertain
    if out_of_scope is not None:
        report["out_of_scope"] = out_of_scope
    if explanations is not None:
        titles = {name: wording.short_name(sections[name]) for name in explanations["results"]["test"]}
        curves = figures.explanation_curves(explanations, titles, out / "figures" / "explanation_curves.png")
        report["explanations"] = {**explanations, "figure": str(curves.relative_to(out))}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    from reports.html import write_html

    write_html(report, out / "index.html")
    if pdf:
        from reports.pdf import write_pdf

        write_pdf(report, out, out / "report.pdf")
    return report


def build_on_images(path: Path, out: Path, names: list[str], explain: int = 0) -> dict[str, Any]:
    """The report on a person's labelled images (a folder or a ZIP): OUT/metrics.json, index.html, report.pdf."""
    from tqdm import tqdm

    from reports.html import render_user_html
    from reports.pdf import user_pdf
    from reports.user_data import read_path
    from reports.user_eval import evaluate, without_views

    dataset = read_path(path)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.setdefault(stage, tqdm(total=total, desc=stage, unit="img"))
        bar.update(done - bar.n)

    report = evaluate(dataset, names, source=path.name, progress=progress, explain=explain)
    for bar in bars.values():
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(without_views(report), indent=1) + "\n")
    (out / "index.html").write_text(render_user_html(report))
    (out / "report.pdf").write_bytes(user_pdf(report))
    return report


def main(argv: list[str] | None = None) -> None:
    from reports.pdf import PrintRefused

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=None,
                        help="evaluate on your own labelled images instead: a folder or ZIP with one subfolder per "
                             "class (cat/001.jpg) or a labels CSV (filename,label); needs --out")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", nargs="+", choices=available_models(), default=available_models())
    parser.add_argument("--latency", choices=["measure", "reuse", "skip"], default="measure",
                        help="measure on this machine (default), reuse the previous report's figures for unchanged "
                             "weights, or leave latency out (faster, for tests)")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help="default: reports/ (the committed report)")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="with --images: both models' explanation maps for up to N of the disagreements and "
                             f"mistakes shown (each costs every model {PASSES_PER_MAP} passes)")
    parser.add_argument("--no-robustness", action="store_true",
                        help="leave out the corruption suite (it takes ~17 min the first time; then it is cached)")
    args = parser.parse_args(argv)
    if args.images is not None:
        from reports.user_data import DatasetError

        if args.out.resolve() == REPORTS_DIR.resolve():
            parser.error("--images needs --out OUTDIR (reports/ holds the test-split report)")
        try:
            report = build_on_images(args.images, args.out, args.models, args.explain)
        except (DatasetError, PrintRefused) as exc:
            raise SystemExit(f"error: {exc}") from None
        if report.get("verdict"):
            print(report["verdict"])
        for name, m in report["models"].items():
            print(f"{name}: {100 * m['accuracy']:.1f}% of {report['images']} images")
        if report["problems"]:
            print(f"{len(report['problems'])} files could not be used (listed in the report)")
        print(f"wrote {args.out / 'metrics.json'}, {args.out / 'index.html'}, {args.out / 'report.pdf'}")
        return
    if args.out.resolve() == REPORTS_DIR.resolve():
        announce_committed("reports/metrics.json, index.html, report.pdf and figures/")
    try:
        report = build(args.models, args.data_dir, latency=args.latency, out=args.out,
                       robustness=not args.no_robustness)
    except (cifar10.Cifar10Error, PrintRefused) as exc:
        raise SystemExit(f"error: {exc}") from None
    for name, section in report["models"].items():
        low, high = section["accuracy_ci95"]
        print(f"{name}: accuracy {100 * section['accuracy']:.2f}% (95% CI {100 * low:.2f}-{100 * high:.2f}), "
              f"ECE {100 * section['ece']:.2f}%")
    for c in report["comparisons"]:
        print(f"{c['a']} vs {c['b']}: difference {100 * c['accuracy_difference']:+.2f} points, McNemar p = "
              f"{c['mcnemar']['p_value']:.3g}, agreement {100 * c['agreement']:.1f}%")
    if "robustness" in report:
        for name, m in report["robustness"]["models"].items():
            print(f"{name}: mean corruption accuracy {100 * m['mean_corruption_accuracy']:.2f}% "
                  f"(clean {100 * m['clean_accuracy']:.2f}% on the {report['robustness']['images_per_cell']:,}-image "
                  f"subset)")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'index.html'}, {args.out / 'report.pdf'}")


if __name__ == "__main__":
    main()
