"""A benchmark's printed lines, kept so that the docs can show exactly what the command printed."""

from __future__ import annotations

from pathlib import Path

MEASUREMENTS = Path(__file__).resolve().parent.parent / "docs" / "measurements"


class Transcript:
    """Call it like print (one line); `save` writes every line to docs/measurements/<name>.txt or a given path,
    which `make readme` copies into the page that shows it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        print(f"wrote {path} (make readme copies docs/measurements/*.txt into the docs)")
