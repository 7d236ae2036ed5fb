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

from models import available_models, load_predictor
from models.images import DECODE_MIN_SIDE, ImageIntakeError, decode_image


def classify_files(paths: list[Path], model_names: list[str], top_k: int) -> list[dict[str, Any]]:
    """One result per file: {"file", "predictions": {model: [{"label", "probability"}...]}} or {"file", "error"}."""
    results: list[dict[str, Any]] = []
    images, slots = [], []
    for path in paths:
        try:
            images.append(decode_image(path.read_bytes(), min_side=DECODE_MIN_SIDE))
            slots.append(len(results))
            results.append({"file": str(path), "width": images[-1].width, "height": images[-1].height,
                            "predictions": {}})
        except (OSError, ImageIntakeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            results.append({"file": str(path), "error": reason})
    for name in model_names:
        for slot, top in zip(slots, load_predictor(name).predict_topk(images, top_k) if images else [], strict=True):
            results[slot]["predictions"][name] = [{"label": label, "probability": p} for label, p in top]
    return results


def format_table(results: list[dict[str, Any]], model_names: list[str]) -> str:
    width = max(len(n) for n in model_names)
    lines = []
    for result in results:
        lines.append(result["file"])
        if "error" in result:
            lines.append(f"  error: {result['error']}")
            continue
        for name in model_names:
            cells = "   ".join(f"{p['label']:<10} {100 * p['probability']:5.1f}%" for p in result["predictions"][name])
            lines.append(f"  {name:<{width}}  {cells}")
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
    results = classify_files(args.images, names, args.top_k)
    print(json.dumps(results, indent=2) if args.json else format_table(results, names))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
