"""A benchmark's printed lines, kept so that the docs can show exactly what the command printed."""

from __future__ import annotations

from pathlib import Path

MEASUREMENTS = Path(__file__).resolve().parent.parent / "docs" / "measurements"


def announce_if_committed(path: Path) -> None:
    """docs/development.md's promise: a command that rewrites a committed file says so (the same NOTE as the
    model commands print)."""
    from models.commands import announce_committed

    path = Path(path).resolve()
    if path.is_relative_to(MEASUREMENTS.resolve()):
        announce_committed(str(path.relative_to(MEASUREMENTS.parent.parent)))


class Transcript:
    """Call it like print (one line); `save` writes every line to docs/measurements/<name>.txt or a given path,
    which `make readme` copies into the page that shows it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save_with(self, result: dict, path: Path) -> None:
        """A bench's two outputs: its figures as JSON at `path` (the report and the tests read them) and, beside it
        as .txt, what it printed."""
        import json

        announce_if_committed(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        self.save(path.with_suffix(".txt"))

    def save(self, path: Path) -> None:
        announce_if_committed(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        print(f"wrote {path} (make readme copies docs/measurements/*.txt into the docs)")
