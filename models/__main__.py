"""Command line: classify image files with every model (or the ones named).

    python -m models predict IMG [IMG ...] [--model NAME ...] [--top-k 3] [--json]
    python -m models list

Images go through the same intake as the web app (`models.images.decode_image`): a file that is
not a usable image is reported in place and the others are still classified; the exit status is
1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.images import CROPS, DECODE_MIN_SIDE, ImageIntakeError, decode_image
from models.pipeline import classify
from models.registry import available_models, load_predictor


def classify_files(paths: list[Path], model_names: list[str], top_k: int, crop: str = CROPS[0]
                   ) -> list[dict[str, Any]]:
    """One result per file: {"file", "width", "height", "predictions": {model: [{"label", "probability"}...]},
    "agree", "uncertain", "uncertain_reason", "out_of_scope", "out_of_scope_score", "looks_like"} (the API's fields), or
    {"file", "error"}; a model that cannot run is listed under "model_errors"."""
    results: list[dict[str, Any]] = []
    images, slots = [], []
    for path in paths:
        try:
            image = decode_image(path.read_bytes(), min_side=DECODE_MIN_SIDE)
        except (OSError, ImageIntakeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            results.append({"file": str(path), "error": reason})
            continue
        width, height = image.info.get("original_size", image.size)
        images.append(image)
        slots.append(len(results))
        results.append({"file": str(path), "width": width, "height": height})
    answers = classify(images, model_names, top_k, crop=crop)
    for slot, answer in zip(slots, answers.images, strict=True):
        results[slot]["predictions"] = {name: a.to_dict()["top_k"] for name, a in answer.predictions.items()}
        results[slot].update(agree=answer.agree, uncertain=answer.uncertain, uncertain_reason=answer.uncertain_reason,
                             out_of_scope=answer.out_of_scope, out_of_scope_score=answer.out_of_scope_score,
                             looks_like=answer.looks_like)
        if answer.model_errors:
            results[slot]["model_errors"] = answer.model_errors
    return results


def verdict_text(result: dict[str, Any]) -> str:
    """The results page's badge in words: out of scope, uncertain (and why), or whether the models agree."""
    if result.get("out_of_scope"):
        looks = f"; looks like: {result['looks_like']}" if result.get("looks_like") else ""
        return f"out of scope (score {result['out_of_scope_score']:.2f}): probably not one of the 10 classes{looks}"
    if result.get("uncertain"):
        return f"uncertain: {result['uncertain_reason']}"
    if result.get("agree") is not None:
        return "models agree" if result["agree"] else "models disagree"
    return "no verdict (no rule was fitted for these models)" if result.get("uncertain") is None else "confident"


def format_table(results: list[dict[str, Any]], model_names: list[str]) -> str:
    width = max(len(n) for n in model_names)
    lines = []
    for result in results:
        lines.append(result["file"])
        if "error" in result:
            lines.append(f"  error: {result['error']}")
            continue
        for name, message in result.get("model_errors", {}).items():
            lines.append(f"  {name:<{width}}  error: {message}")
        for name in result["predictions"]:
            cells = "   ".join(f"{p['label']:<10} {100 * p['probability']:5.1f}%" for p in result["predictions"][name])
            lines.append(f"  {name:<{width}}  {cells}")
        lines.append(f"  {'verdict':<{width}}  {verdict_text(result)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", action="append", choices=available_models(),
                         help="repeat for several (default: all models)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--crop", choices=CROPS, default=CROPS[0],
                         help="what the models see of a photo that is not square: its centre square, or the whole "
                              "photo padded to a square")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("list", help="the available models and what they are")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in available_models():
            info = load_predictor(name).info
            accuracy = f"{100 * info['test_accuracy']:.2f}% test" if info["test_accuracy"] else "not evaluated"
            print(f"{name:<12} {info['display_name']} — {info['parameters']:,} parameters, {accuracy}")
        return 0
    if not 1 <= args.top_k <= 10:
        parser.error("--top-k must be between 1 and 10")
    names = args.model or available_models()
    results = classify_files(args.images, names, args.top_k, args.crop)
    print(json.dumps(results, indent=2) if args.json else format_table(results, names))
    return 1 if any("error" in r or "model_errors" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
