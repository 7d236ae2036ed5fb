"""A results page taken away: one comparison (the API's answer plus the page's thumbnails) as CSV or PDF.

The input is the dictionary `webapp.exports.read_comparison` validated: {"models": {name: {short_name,
test_accuracy}}, "results": [...], "timing": {...}, "created": ISO time}; images are already decoded (PIL).
Nothing here touches a disk: both writers return bytes.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from PIL import Image as PILImage

from models.explanation import IN_WORDS
from reports.wording import VERDICTS_EXPLAINED

CSV_COLUMNS = ("image", "source", "width", "height", "true_label", "model", "rank", "label", "probability", "correct",
               "looked_at", "models_agree",
               "uncertain", "uncertain_reason", "out_of_scope", "out_of_scope_score", "looks_like", "error")


def source_text(result: dict[str, Any]) -> str:
    source = result["source"]
    return source.get("name") or source.get("url") or ""


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")  # and their full-width forms


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (`=HYPERLINK(...)`, `-2+3`, `@SUM(...)`, also after
    leading spaces) gets a leading apostrophe, as OWASP's CSV-injection advice says; spreadsheet programs show it
    as text. Numbers stay numbers."""
    if isinstance(value, str) and value.lstrip(" \u3000").startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SpreadsheetSafeWriter:
    def __init__(self, out: io.StringIO):
        self.writer = csv.writer(out)

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow([spreadsheet_safe(cell) for cell in row])


def blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def to_csv(comparison: dict[str, Any]) -> bytes:
    """One row per image, model and rank (a spreadsheet's natural shape); an unreadable image is one row. Every
    text cell is neutralised against formula injection (file names and URLs come from users)."""
    out = io.StringIO()
    writer = SpreadsheetSafeWriter(out)
    writer.writerow(CSV_COLUMNS)
    for r in comparison["results"]:
        common = [r["index"] + 1, source_text(r), r.get("width", ""), r.get("height", ""), r.get("true_label") or ""]
        verdict = ["" if r.get("agree") is None else r["agree"], blank_if_none(r.get("uncertain")),
                   r.get("uncertain_reason") or "", blank_if_none(r.get("out_of_scope")),
                   "" if r.get("out_of_scope_score") is None else f"{r['out_of_scope_score']:.4f}",
                   r.get("looks_like") or ""]
        if r.get("error"):
            writer.writerow([*common, "", "", "", "", "", "", "", "", "", "", "", "", r["error"]["message"]])
            continue
        for model, answer in r["predictions"].items():
            for rank, t in enumerate(answer["top_k"], 1):
                correct = t["label"] == r["true_label"] if r.get("true_label") and rank == 1 else ""
                looked = (answer.get("explanation") or {}).get("where", "") if rank == 1 else ""
                writer.writerow([*common, model, rank, t["label"], f"{t['probability']:.4f}", correct, looked,
                                 *verdict, ""])
        for model, error in r.get("model_errors", {}).items():
            writer.writerow([*common, model, "", "", "", "", "", *verdict, error["message"]])
    # A byte-order mark so that spreadsheet programs read the UTF-8 file names correctly.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


MAP_STOPS = ((255, 255, 255, 0.0), (252, 187, 44, 0.6), (226, 49, 30, 0.75), (120, 0, 60, 0.85))
AGAINST = (40, 90, 220, 0.55)  # a cell whose hiding helps the answer: blue, by how much


def explanation_image(view: PILImage.Image, grid: list[list[float]], scale: int = 4) -> PILImage.Image:
    """A model's map over the view it saw (the results page, the exports): the view enlarged without smoothing,
    each cell tinted from transparent (no support) to dark red (most support), or blue where hiding it helps."""
    import numpy as np

    base = np.asarray(view.convert("RGB").resize((view.width * scale, view.height * scale),
                                                 PILImage.Resampling.NEAREST), dtype=float)
    rows, cols = len(grid), len(grid[0])
    cell_h, cell_w = base.shape[0] / rows, base.shape[1] / cols
    stops = np.array(MAP_STOPS)
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value < 0:
                colour = np.array(AGAINST, float)
                colour[3] *= min(-float(value), 1.0)
            else:
                x = min(float(value), 1.0) * (len(stops) - 1)
                i = min(int(x), len(stops) - 2)
                colour = stops[i] + (stops[i + 1] - stops[i]) * (x - i)
            top, left = round(r * cell_h), round(c * cell_w)
            patch = base[top:round((r + 1) * cell_h), left:round((c + 1) * cell_w)]
            patch[:] = patch * (1 - colour[3]) + colour[:3] * colour[3]
    return PILImage.fromarray(base.clip(0, 255).astype("uint8"))


def image_from_uri(uri: str) -> PILImage.Image:
    """The image in a data: URI this project made (a results page's or a report's view), as RGB."""
    import base64

    return PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def png_uri(image: PILImage.Image) -> str:
    import base64

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def explanation_uri(view_uri: str, grid: list[list[float]]) -> str:
    """explanation_image as a PNG data: URI, from the 32x32 view's own data: URI (the results page's)."""
    return png_uri(explanation_image(image_from_uri(view_uri), grid))


MAP_LEGEND = ("Maps: the 32×32 view the model saw, tinted from clear (hiding it changes nothing) to dark red (hiding "
              f"it lowers the answer most); blue where hiding it helps the answer. {IN_WORDS}")


def to_pdf(comparison: dict[str, Any]) -> bytes:
    """The comparison's page (reports/templates/comparison.html.j2) printed: the batch summary, then one row per
    image, pages breaking between rows, the header repeated."""
    from reports.html import environment
    from reports.pdf import html_to_pdf

    uris = []
    for r in comparison["results"]:
        view = r.get("model_view")
        maps = {name: png_uri(explanation_image(view, answer["explanation"]["grid"]))
                for name, answer in (r.get("predictions") or {}).items()
                if view is not None and answer.get("explanation")}
        uris.append({"thumbnail": png_uri(r["thumbnail"]) if r.get("thumbnail") else None,
                     "view": png_uri(view) if view is not None else None, "maps": maps})
    html = environment().get_template("comparison.html.j2").render(
        C=comparison, uris=uris, summary=summary_sentence(comparison), maps=any(u["maps"] for u in uris),
        map_legend=MAP_LEGEND, verdicts_explained=VERDICTS_EXPLAINED)
    return html_to_pdf(html)


def summary_sentence(comparison: dict[str, Any]) -> str:
    """"6 images: the models agree on 5 of 6; 1 uncertain." — the same words as the results page."""
    results = comparison["results"]
    read = [r for r in results if not r.get("error")]
    compared = [r for r in read if r.get("agree") is not None]
    text = f"{len(results)} image{'s' if len(results) != 1 else ''}: "
    text += (f"the models agree on {sum(bool(r['agree']) for r in compared)} of {len(compared)}" if compared
             else f"{len(read)} classified")
    uncertain = sum(bool(r.get("uncertain")) for r in read)
    outside = sum(bool(r.get("out_of_scope")) for r in read)
    if uncertain:
        text += f"; {uncertain} uncertain" + (f" ({outside} of them out of scope)" if outside else "")
    if len(read) != len(results):
        text += f"; {len(results) - len(read)} could not be read"
    return text + "." + (" " + right_sentence(read, comparison.get("models") or {}) if any(
        r.get("true_label") and r.get("predictions") for r in read) else "")


def right_sentence(read: list[dict[str, Any]], models: dict[str, Any]) -> str:
    """Which model was right on the images given a true class: counts, and a caution that a few images say
    little (the Evaluate page gives intervals)."""
    labelled = [r for r in read if r.get("true_label") and r.get("predictions")]
    right = {name: sum(r["predictions"][name]["top_k"][0]["label"] == r["true_label"]
                       for r in labelled if name in r["predictions"])
             for name in dict.fromkeys(n for r in labelled for n in r["predictions"])}
    short = {name: (models.get(name) or {}).get("short_name", name) if isinstance(models, dict) else name
             for name in right}
    n = len(labelled)
    names = list(right)
    counts = f"{short[names[0]]} was right on {right[names[0]]}" + "".join(
        f" and {short[name]} on {right[name]}" for name in names[1:])
    text = f"On the {n} image{'s' if n != 1 else ''} with a true class, {counts}"
    if len(right) >= 2:
        best = max(right.values())
        leaders = [short[name] for name, count in right.items() if count == best]
        text += (": equally often" if len(leaders) == len(right) else f": {leaders[0]} was right more often here")
    if n >= 30:
        return text + "."
    tested = {name: (models.get(name) or {}).get("test_accuracy") for name in right} if isinstance(models, dict) else {}
    if len(right) >= 2 and all(tested.values()):
        # A dozen images can tell the opposite of 10,000 (the one-click examples did): say what the test split says.
        ranked = sorted(right, key=lambda name: -tested[name])
        split = f"{short[ranked[0]]} is right {100 * tested[ranked[0]]:.1f}% of the time" + "".join(
            f" and {short[name]} {100 * tested[name]:.1f}%" for name in ranked[1:])
        return text + f" (so few images say little: on the 10,000 CIFAR-10 test images {split}; Evaluate gives " \
                      "intervals)."
    return text + " (so few images say little: Evaluate gives intervals)."
