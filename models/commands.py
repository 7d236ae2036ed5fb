"""What the model commands share: one command line for both trainers (the same flags, presets and `--set`
overrides for any Recipe field), and a loud note whenever a command rewrites committed files.

    python -m models.<model>.train [--preset NAME] [--epochs N] [--batch-size B] [--seed S] [--threads T]
        [--max-train-images N] [--set FIELD=VALUE ...] [--data-dir DIR] [--out DIR] [--work-dir DIR]
        [--resume] [--no-progress]

By default a run writes to `build/<model>/` (git-ignored), never over the committed model; pass
`--out models/<model>` to replace it (the command then says so).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models import cifar10

REPO = Path(__file__).resolve().parent.parent
# Recipe fields with their own flag (the rest go through --set).
FLAG_FIELDS = ("epochs", "batch_size", "seed", "threads", "max_train_images")


def parser_for(model: str, description: str, presets: dict[str, dict[str, Any]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m models.{model}.train", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default="default",
                        help="a named recipe (the Recipe dataclass and PRESETS in this trainer's file)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-train-images", type=int, help="train on a prefix of the split (smoke tests)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any other Recipe field, e.g. --set label_smoothing=0.1 (repeatable)")
    parser.add_argument("--data-dir", default=None, help=f"CIFAR-10 folder (default: ${cifar10.ENV_VAR} or download)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / model,
                        help=f"where the trained model goes (default: build/{model}/; models/{model} replaces the "
                             "committed one)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / model / "checkpoints",
                        help="per-epoch checkpoints (what --resume continues from)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work-dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs)")
    return parser


def _parse_value(kind: str, text: str) -> Any:
    """A --set value as the field's annotated type ("int", "float", "str", "bool", "int | None", "tuple[int, ...]")."""
    kind = kind.replace(" ", "")
    if kind.endswith("|None"):
        return None if text.lower() in ("", "none") else _parse_value(kind.removesuffix("|None"), text)
    if kind.startswith("tuple["):
        return tuple(int(v) for v in text.split(","))
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return {"int": int, "float": float, "str": str}[kind](text)


def recipe_from_args(recipe_cls: type, presets: dict[str, dict[str, Any]], args: argparse.Namespace,
                     adjust: Callable[[dict[str, Any], set[str]], None] | None = None) -> Any:
    """Recipe() <- the preset <- `--set` pairs <- the flags. `adjust(fields, explicit)` may then fill in fields
    that depend on others (e.g. a schedule scaled to --epochs) unless the user set them (`explicit`)."""
    fields = {f.name: f for f in dataclasses.fields(recipe_cls)}
    values: dict[str, Any] = dict(presets[args.preset])
    explicit: set[str] = set()
    for assignment in args.set:
        name, sep, text = assignment.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"error: --set expects FIELD=VALUE with FIELD one of {', '.join(fields)}; "
                             f"got {assignment!r}")
        try:
            values[name] = _parse_value(str(fields[name].type), text)
        except (ValueError, KeyError):
            raise SystemExit(f"error: --set {name} needs a {fields[name].type}, got {text!r}") from None
        explicit.add(name)
    for name in FLAG_FIELDS:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
            explicit.add(name)
    for name in ("epochs", "batch_size", "threads", "max_train_images"):
        if values.get(name) is not None and values[name] < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be at least 1")
    if adjust is not None:
        adjust(values, explicit)
    return recipe_cls(**values)


def announce_output(model: str, out: Path) -> None:
    """Say loudly when a run is about to replace the committed model."""
    if out.resolve() == (REPO / "models" / model).resolve():
        announce_committed(f"models/{model}/ (the committed model files)")


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """What a person can fix (no CIFAR-10 folder, a missing model file, no benchmark built, ...) ends a command
    with one line, never a traceback: the same as the make targets print."""
    from models.cifar10 import Cifar10Error
    from models.predictor import ModelLoadError

    try:
        yield
    except (Cifar10Error, ModelLoadError, *extra) as exc:
        raise SystemExit(f"error: {exc}") from None


def announce_committed(what: str) -> None:
    print(f"NOTE: this rewrites {what} (committed files; review with `git diff --stat`).", flush=True)
