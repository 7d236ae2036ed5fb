"""The examples gallery: images shipped with the app (static/examples/, written by scripts/make_examples.py)
that a visitor can compare in one click. Requests name an example; only names in the manifest are read."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "static" / "examples"


@cache
def gallery(folder: Path = EXAMPLES_DIR) -> tuple[dict[str, Any], ...]:
    """The manifest entries (file, title, label, in_scope, note), in display order; none if it is missing."""
    manifest = folder / "examples.json"
    return tuple(json.loads(manifest.read_text())) if manifest.is_file() else ()


def chosen_examples(names: list[str], folder: Path = EXAMPLES_DIR) -> list[dict[str, Any]]:
    """The manifest entries of the named examples in request order; "all" means the whole gallery. Unknown names
    are ignored (a stale page after an update), duplicates sent once."""
    known = {entry["file"]: entry for entry in gallery(folder)}
    wanted = list(known) if "all" in names else list(dict.fromkeys(n for n in names if n in known))
    return [known[name] for name in wanted]


def example_files(names: list[str], folder: Path = EXAMPLES_DIR) -> list[tuple[str, bytes]]:
    """(title, bytes) of the named examples (see chosen_examples)."""
    return [(entry["title"], (folder / entry["file"]).read_bytes()) for entry in chosen_examples(names, folder)]


def example_labels(names: list[str], folder: Path = EXAMPLES_DIR) -> list[str | None]:
    """Their true classes: the CIFAR-10 test images' labels, None for the photos of other things."""
    return [entry["label"] if entry["in_scope"] else None for entry in chosen_examples(names, folder)]
