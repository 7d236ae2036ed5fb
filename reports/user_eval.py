"""Compare the models on a person's labelled images: the test-split report's statistics, where they apply,
computed on their images (reports/user_data.py reads them).

Everything here runs in the web app too, so it uses only the serving dependencies (numpy, Pillow; WeasyPrint
prints the page as the PDF): tables instead of matplotlib figures, and an exact binomial test instead of scipy's.
Images go through the app's image intake one at a time and are kept only as the 32x32 view the models see.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

import models
from models import decoder
from models.cifar10 import CLASS_NAMES
from models.images import to_model_input
from models.registry import load_predictor
from models.scoring import calibration, classification_metrics
from reports import stats, wording
from reports.user_data import LabelledSet

MIN_FOR_CALIBRATION = 200  # fewer images: 15 bins would hold a handful each, and the ECE would be noise
MAX_TABLE_VIEWS = 1_000  # thumbnails in the every-image table: beyond this (the command line) the rows have none
GALLERY = 12
CHUNK = 16  # images per call to the models: the deadline is looked at between chunks (64: a chunk took 5 s on a
# loaded 2-core server, and an evaluation answered after 19 s against its 12), and a progress tick per chunk
REPORT_SHARE = 0.15  # of an evaluation's seconds, what is kept for building the report after the models


def view_uri(view: np.ndarray) -> str:
    from reports.comparison import png_uri

    return png_uri(Image.fromarray(view))


def decode_views(dataset: LabelledSet, progress: Callable[[int, int], None] | None = None,
                 seconds: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(32x32 views, labels, names) of the images the intake accepts; the rest get their problem recorded.

    Each file is read (from its archive or folder) only now, decoded and shrunk to its view before the next is
    read. The set's limits bound the work: decoded pixels for all images together, and `seconds` of decoding;
    what does not fit becomes that file's problem, so one request cannot hold the worker for long."""
    limits = dataset.limits
    deadline = time.monotonic() + seconds if seconds is not None else None
    views, labels, names = [], [], []
    usable = [item for item in dataset.items if item.usable]
    allowed = limits.max_seconds or seconds or 0
    outcomes = decoder.decode_each([item.load for item in usable], limits.max_pixels, deadline, bulk=True,
                                   out_of_time=f"not evaluated: the evaluation's {allowed:g} seconds ran out while "
                                               f"decoding; send fewer or smaller images")
    for done, (item, outcome) in enumerate(zip(usable, outcomes, strict=True), 1):
        item.data = None  # only the 32x32 view is kept
        if isinstance(outcome, Image.Image):
            views.append(to_model_input([outcome], 32)[0])
            labels.append(item.label)
            names.append(item.name)
        elif outcome is not None:
            item.fail(str(outcome))
        if progress:
            progress(done, len(usable))
    # In name order, whatever order the archive or folder listed them in: the bootstrap's intervals depend on the
    # order of the rows, and the same images must give the same report as a ZIP, a folder or uploaded files.
    order = sorted(range(len(names)), key=lambda i: names[i])
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    return ((np.stack([views[i] for i in order]) if views else empty), np.array([labels[i] for i in order],
            dtype=np.int64), [names[i] for i in order])


def evaluate(dataset: LabelledSet, model_names: Sequence[str], source: str = "your images",
             progress: Callable[[str, int, int], None] | None = None, explain: int = 0,
             explain_seconds: float | None = None, started: float | None = None) -> dict[str, Any]:
    """The report dictionary (JSON-ready; the gallery views are data: URIs under "views"). With `explain`, both
    models' explanation maps for up to that many of the gallery's images (the disagreements first, then each
    model's most confident mistakes), under "explanations"; their pictures under "map_views".

    The set's `max_seconds` bounds the whole evaluation, not only its decoding: 500 photos took 17 s on a 2-core
    server without bf16 (the Custom CNN's six test-time views cost 12 ms an image there), and the maps 0.5 s an
    image more. Decoding may use decoder.DECODING_SHARE of it; classification stops at the end (after at least one
    chunk), and the images not reached become problems, in name order; the maps get what is left, at most
    `explain_seconds`. The seconds count from `started` (time.monotonic(): the web app passes its request's start,
    so reading the upload counts too), else from now."""
    clock = time.perf_counter()
    total = dataset.limits.max_seconds
    started = time.monotonic() if started is None else started
    # The models and the maps stop REPORT_SHARE before the end: the report itself (intervals, tables, the page) comes
    # after them, and under a soak's load a 12 s evaluation answered after 17 s.
    deadline = started + total * (1 - REPORT_SHARE) if total else None
    views, labels, names = decode_views(dataset, (lambda d, n: progress("decoding", d, n)) if progress else None,
                                        max(0.0, started + total * decoder.DECODING_SHARE - time.monotonic())
                                        if total else None)
    if not len(labels):
        from reports.user_data import DatasetError

        raise DatasetError("none of the images could be read: " + "; ".join(
            f"{p.name}: {p.problem}" for p in dataset.problems[:5]))
    probs: dict[str, np.ndarray] = {name: np.zeros((0, 10)) for name in model_names}
    uncertain: list[bool | None] = []
    outside: list[bool | None] = []
    chunk_seconds = 0.0  # the last chunk's time: a chunk that would end past the deadline is not started
    for start in range(0, len(views), CHUNK):
        if start and deadline is not None and time.monotonic() + chunk_seconds > deadline:
            views, labels, names = views[:start], labels[:start], unreached(dataset, names, start, total)
            break
        chunk_started = time.monotonic()
        answers = models.classify(list(views[start:start + CHUNK]), list(model_names), top_k=3).images
        chunk_seconds = time.monotonic() - chunk_started
        for name in model_names:
            rows = [[a.predictions[name].probabilities[c] for c in CLASS_NAMES] for a in answers]
            probs[name] = np.concatenate([probs[name], np.array(rows)])
        uncertain += [a.uncertain for a in answers]
        outside += [a.out_of_scope for a in answers]
        if progress:
            progress("classifying", min(start + CHUNK, len(views)), len(views))
    present = sorted(set(labels.tolist()))
    sections = {name: model_section(name, probs[name], labels, present) for name in model_names}
    report: dict[str, Any] = {
        "title": "CIFAR-10 model comparison on your images",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "source": source, "layout": dataset.layout,
        "files": len(dataset.items), "images": len(labels),
        "classes_present": [CLASS_NAMES[c] for c in present],
        "per_class_counts": {CLASS_NAMES[c]: int((labels == c).sum()) for c in present},
        "problems": [{"name": p.name, "problem": p.problem} for p in dataset.problems],
        "models": sections,
        "bootstrap_resamples": stats.BOOTSTRAP_RESAMPLES,
        "views": {},
    }
    flagged = np.array([bool(u) for u in uncertain])
    if any(u is not None for u in uncertain):
        report["uncertain"] = {
            "flagged": int(flagged.sum()), "share": float(flagged.mean()),
            "accuracy_unflagged": {name: (float((probs[name].argmax(1) == labels)[~flagged].mean())
                                          if (~flagged).any() else None) for name in model_names}}
        if any(o is not None for o in outside):
            # Every image here has one of the 10 labels, so each one called out of scope is a false alarm.
            report["uncertain"]["out_of_scope"] = sum(bool(o) for o in outside)
    report["per_image"] = image_rows(names, labels, probs, uncertain, outside)
    if len(views) <= MAX_TABLE_VIEWS:
        report["views"].update({str(i): view_uri(view) for i, view in enumerate(views)})
    for name in model_names:
        sections[name]["confident_mistakes"] = gallery_rows(
            confident_mistakes(probs[name], labels), names, labels, probs, report["views"], views)
    if len(model_names) >= 2:
        a, b = model_names[:2]
        report["comparison"] = comparison(a, b, probs[a], probs[b], labels)
        report["comparison"]["gallery"] = gallery_rows(
            disagreements(probs[a], probs[b]), names, labels, probs, report["views"], views)
        report["verdict"] = wording.verdict(report["comparison"], sections, images=f"your {len(labels)} images")
    if explain and (deadline is None or time.monotonic() < deadline):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        seconds = min((s for s in (left, explain_seconds) if s is not None), default=None)
        add_explanations(report, views, list(model_names), explain, seconds)
    report["seconds"] = time.perf_counter() - clock
    return report


def unreached(dataset: LabelledSet, names: list[str], start: int, seconds: float) -> list[str]:
    """The names classified before the evaluation's time ran out; the others (from `start`) become problems."""
    left = set(names[start:])
    for item in dataset.items:
        if item.name in left:
            item.fail(f"not evaluated: the evaluation's {seconds:g} seconds ran out before the models reached it; "
                      "send fewer images")
    return names[:start]


def model_section(name: str, probs: np.ndarray, labels: np.ndarray, present: list[int]) -> dict[str, Any]:
    predictor = load_predictor(name)
    metrics = classification_metrics(labels, probs, CLASS_NAMES)
    correct = probs.argmax(1) == labels
    low, high = stats.bootstrap_ci(correct)
    per_class = {CLASS_NAMES[c]: metrics["per_class"][CLASS_NAMES[c]] for c in present}
    section = {
        "info": {"display_name": predictor.display_name, "short_name": predictor.short_name},
        "accuracy": metrics["accuracy"], "accuracy_ci95": [low, high], "top3_accuracy": metrics["top3_accuracy"],
        "per_class": per_class,
        "macro_f1": float(np.mean([r["f1"] for r in per_class.values()])),
        "confusion_matrix": metrics["confusion_matrix"],
    }
    if len(labels) >= MIN_FOR_CALIBRATION:
        fitted = calibration(probs, labels)
        section["calibration"] = {"ece": fitted["ece"], "mean_confidence": fitted["mean_confidence"],
                                  "bins": [b for b in fitted["bins"] if b["count"]]}
    else:
        section["calibration_note"] = (f"Calibration is not measured: {len(labels)} images are too few (it needs "
                                       f"{MIN_FOR_CALIBRATION} or more for the 15 confidence bins to mean anything).")
    return section


def comparison(a: str, b: str, probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    correct_a, correct_b = probs_a.argmax(1) == labels, probs_b.argmax(1) == labels
    low, high = stats.paired_difference_ci(correct_a, correct_b)
    return {"a": a, "b": b, "accuracy_difference": float(correct_a.mean() - correct_b.mean()),
            "accuracy_difference_ci95": [low, high], "mcnemar": stats.mcnemar_exact(correct_a, correct_b),
            "agreement": float((probs_a.argmax(1) == probs_b.argmax(1)).mean()),
            "both_correct": int((correct_a & correct_b).sum()), "both_wrong": int((~correct_a & ~correct_b).sum()),
            "disagreements": int((probs_a.argmax(1) != probs_b.argmax(1)).sum())}


def confident_mistakes(probs: np.ndarray, labels: np.ndarray) -> list[int]:
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    return wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:GALLERY].tolist()


def disagreements(probs_a: np.ndarray, probs_b: np.ndarray) -> list[int]:
    differ = np.flatnonzero(probs_a.argmax(1) != probs_b.argmax(1))
    both = probs_a[differ].max(1) * probs_b[differ].max(1)
    return differ[np.argsort(-both, kind="stable")][:GALLERY].tolist()


def gallery_rows(indices: list[int], names: list[str], labels: np.ndarray, probs: dict[str, np.ndarray],
                 uris: dict[str, str], views: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for i in indices:
        uris.setdefault(str(i), view_uri(views[i]))
        rows.append({"index": i, "name": names[i], "true": CLASS_NAMES[labels[i]],
                     "predicted": {m: [CLASS_NAMES[int(p[i].argmax())], float(p[i].max())] for m, p in probs.items()}})
    return rows


def gallery_indices(report: dict[str, Any]) -> list[int]:
    """The images the report shows as pictures: the disagreements first, then each model's confident mistakes."""
    rows = list(report.get("comparison", {}).get("gallery", []))
    mistakes = [section.get("confident_mistakes", []) for section in report["models"].values()]
    for group in itertools.zip_longest(*mistakes):
        rows += [g for g in group if g is not None]
    return list(dict.fromkeys(g["index"] for g in rows))


def add_explanations(report: dict[str, Any], views: np.ndarray, model_names: list[str], limit: int,
                     seconds: float | None = None) -> None:
    """Both models' maps (models/explanation.py) for the first `limit` gallery images, as many as `seconds` allow
    (the first always); their pictures as data URIs."""
    from reports.comparison import explanation_image

    chosen = gallery_indices(report)[:limit]
    if not chosen:
        return
    answers = models.classify([views[i] for i in chosen], model_names, top_k=1, explain=True,
                              explain_seconds=seconds).images
    report["explanations"], report["map_views"] = {}, {}
    for index, answer in zip(chosen, answers, strict=True):
        maps = {name: a.explanation.to_dict() for name, a in answer.predictions.items() if a.explanation}
        if not maps:
            continue
        report["explanations"][str(index)] = {"maps": maps, "looks": answer.looks}
        for name, e in maps.items():
            report["map_views"][f"{index}:{name}"] = view_uri(np.asarray(
                explanation_image(Image.fromarray(views[index]), e["grid"])))


def image_rows(names: list[str], labels: np.ndarray, probs: dict[str, np.ndarray], uncertain: list[bool | None],
               outside: list[bool | None]) -> list[dict[str, Any]]:
    """One row per evaluated image, in the report's (name) order: what the every-image table, its CSV and a
    confusion cell's drill-down show."""
    rows = []
    for i, name in enumerate(names):
        answers = {m: {"label": CLASS_NAMES[int(p[i].argmax())], "confidence": float(p[i].max()),
                       "correct": bool(p[i].argmax() == labels[i])} for m, p in probs.items()}
        rows.append({"index": i, "name": name, "true": CLASS_NAMES[labels[i]], "predictions": answers,
                     "uncertain": uncertain[i], "out_of_scope": outside[i]})
    return rows


PER_IMAGE_COLUMNS = ("image", "file", "true_class", "model", "predicted", "confidence", "correct", "models_agree",
                     "uncertain", "out_of_scope")


def per_image_csv(report: dict[str, Any]) -> bytes:
    """The every-image table as CSV: one row per image and model; file names are neutralised against formula
    injection like the comparison export's."""
    from reports.comparison import SpreadsheetSafeWriter, blank_if_none

    out = io.StringIO()
    writer = SpreadsheetSafeWriter(out)
    writer.writerow(PER_IMAGE_COLUMNS)
    for row in report.get("per_image", []):
        labels = {answer["label"] for answer in row["predictions"].values()}
        for model, answer in row["predictions"].items():
            writer.writerow([row["index"] + 1, row["name"], row["true"], model, answer["label"],
                             f"{answer['confidence']:.4f}", answer["correct"], len(labels) == 1,
                             blank_if_none(row.get("uncertain")), blank_if_none(row.get("out_of_scope"))])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def for_signing(report: dict[str, Any]) -> dict[str, Any]:
    """What the page signs and posts back for the PDF and the CSV: the report with only the thumbnails the PDF
    shows (the galleries), so the hidden field stays small whatever the number of images."""
    shown = {str(g["index"]) for g in report.get("comparison", {}).get("gallery", [])}
    for section in report["models"].values():
        shown |= {str(g["index"]) for g in section.get("confident_mistakes", [])}
    return {**report, "views": {i: uri for i, uri in report.get("views", {}).items() if i in shown},
            "map_views": {}}  # the PDF draws the maps again from their grids


def without_views(report: dict[str, Any]) -> dict[str, Any]:
    """The metrics alone (metrics.json, the API's JSON): no image data."""
    return {k: v for k, v in report.items() if k not in ("views", "map_views")}
