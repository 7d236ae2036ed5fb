"""Render the report dictionary as a static HTML page (reports/index.html) that also prints well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from models.cifar10 import CLASS_NAMES

TEMPLATES = Path(__file__).resolve().parent / "templates"


def percent(value: float | None, digits: int = 2) -> str:
    """A share as a percentage; "–" where there is none (None, or NaN: a share of no images)."""
    return "–" if value is None or value != value else f"{100 * value:.{digits}f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def megabytes(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def register(env: Environment) -> None:
    """The filters and words the report templates use; the web app registers them in its own environment."""
    from models.explanation import IN_WORDS
    from models.uncertainty import article
    from reports import wording
    from reports.comparison import source_text
    from reports.user_data import plural

    env.filters.update(percent=percent, duration=duration, megabytes=megabytes, verdict=wording.verdict,
                       robustness_verdict=wording.robustness_verdict,
                       robustbench_caveat=wording.robustbench_caveat,
                       short_name=wording.short_name, article=article, plural=plural, lead_row=wording.lead_row,
                       false_alarms=wording.false_alarms, source_text=source_text)
    env.globals.update(report_method=wording.method, recommendation=wording.recommendation,
                       report_limitations=wording.LIMITATIONS, ece_explained=wording.ECE_EXPLAINED,
                       class_names=list(CLASS_NAMES), map_method=IN_WORDS)


def environment() -> Environment:
    # Every template escapes what it prints, whatever its file name: names and problems come from users.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    register(env)
    return env


def render_html(report: dict[str, Any], figure_prefix: str = "") -> str:
    """The report page; `figure_prefix` is prepended to figure paths (the web app serves them elsewhere)."""
    return environment().get_template("report.html.j2").render(report=report, fig=figure_prefix)


def write_html(report: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(report))
    return path


def render_user_html(report: dict[str, Any], printing: bool = False) -> str:
    """The own-images report as one self-contained page (its images are data: URIs); `printing`: the page the
    PDF prints."""
    return environment().get_template("user_report.html.j2").render(R=report, printing=printing)
