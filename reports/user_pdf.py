"""The own-images report as a PDF (reportlab), from the dictionary reports/user_eval.py builds; returns bytes,
nothing touches the disk (the web app serves it straight from memory)."""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from models.cifar10 import CLASS_NAMES
from reports import wording
from reports.html import percent
from reports.pdf import BODY, CELL, H1, H2, MARGIN, SMALL, TEXT_WIDTH, _footer, table
from reports.user_data import plural


def _view(uri: str, size: float) -> Image:
    from PIL import Image as PILImage

    from reports.comparison import image_from_uri

    big = image_from_uri(uri).resize((128, 128), PILImage.Resampling.NEAREST)  # crisp pixels
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    buffer.seek(0)
    return Image(buffer, width=size, height=size)


def _maps(report: dict[str, Any], index: int) -> list:
    """Both models' explanation maps for a gallery image, drawn from their grids, and where each looked."""
    from reports.comparison import explanation_image, image_from_uri

    found = (report.get("explanations") or {}).get(str(index))
    if not found:
        return []
    view = image_from_uri(report["views"][str(index)])
    pictures = []
    for e in found["maps"].values():
        buffer = io.BytesIO()
        explanation_image(view, e["grid"]).save(buffer, "PNG")
        buffer.seek(0)
        pictures.append(Image(buffer, width=12 * mm, height=12 * mm))
    names = [Paragraph(escape(report["models"][m]["info"]["short_name"]), SMALL) for m in found["maps"]]
    words = "; ".join(f"{escape(report['models'][m]['info']['short_name'])}: {escape(e['where'])}"
                      for m, e in found["maps"].items())
    return [Table([pictures, names], colWidths=[13 * mm] * len(pictures), hAlign="LEFT",
                  style=[("LEFTPADDING", (0, 0), (-1, -1), 0)]), Paragraph(f"looked at: {words}", SMALL)]


def mistakes(report: dict[str, Any], name: str) -> int:
    """How many of the evaluated images `name` got wrong."""
    rows = report.get("per_image")
    if rows:
        return sum(not row["predictions"][name]["correct"] for row in rows)
    return round((1 - report["models"][name]["accuracy"]) * report["images"])


def per_image_table(report: dict[str, Any]) -> list:
    """Every evaluated image, one row each, as on the page (the HTML's every-image table): its file, true class,
    and what each model said with its confidence; a wrong answer is marked. The header repeats on every page."""
    names = list(report["models"])
    header = ["#", "file", "true", *[f"{report['models'][n]['info']['short_name']} says" for n in names],
              "verdict"]
    rows = [header]
    for row in report["per_image"]:
        said = [f"{'' if row['predictions'][n]['correct'] else '× '}{row['predictions'][n]['label']} "
                f"{100 * row['predictions'][n]['confidence']:.0f}%" for n in names]
        verdict = "out of scope" if row.get("out_of_scope") else ("uncertain" if row.get("uncertain") else "")
        rows.append([row["index"] + 1, escape(row["name"][:60]), row["true"], *said, verdict])
    # "automobile" (the longest class name) fits the true column whole: at 18 mm it broke as "automobil / e".
    other = (TEXT_WIDTH - 10 * mm - 56 * mm - 24 * mm - 22 * mm) / len(names)
    return [Paragraph("Every image", H2), Paragraph("× marks a wrong answer; the percentage is the model's "
                                                    "confidence in its answer.", SMALL),
            table(rows, [10 * mm, 56 * mm, 24 * mm, *[other] * len(names), 22 * mm])]


def _gallery(report: dict[str, Any], rows: list[dict[str, Any]], lines) -> Table:
    cells = []
    for g in rows:
        text = "<br/>".join([escape(g["name"][:26]), f"true: {g['true']}", *lines(g)])
        cells.append([_view(report["views"][str(g["index"])], 18 * mm), Paragraph(text, SMALL),
                      *_maps(report, g["index"])])
    per_row = 5  # six to a row broke file names ("automobile/00037.p / ng")
    grid = [cells[i:i + per_row] + [""] * (per_row - len(cells[i:i + per_row])) for i in range(0, len(cells), per_row)]
    t = Table(grid, colWidths=[TEXT_WIDTH / per_row] * per_row, hAlign="LEFT")
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return t


def user_pdf(report: dict[str, Any]) -> bytes:
    models = report["models"]
    story: list = [Paragraph(escape(report["title"]), H1),
                   Paragraph(f"{report['images']:,} labelled image{'s' if report['images'] != 1 else ''} from "
                             f"{escape(report['source'])} "
                             f"({escape(report['layout'])}); classes present: "
                             + ", ".join(f"{c} ({report['per_class_counts'][c]})" for c in report["classes_present"])
                             + f". Generated {report['generated_at']}.", SMALL), Spacer(1, 3 * mm)]
    if report.get("verdict"):
        story += [Paragraph(f"<b>{escape(report['verdict'])}</b>", BODY), Spacer(1, 3 * mm)]
    if report.get("explanations"):
        from reports.comparison import MAP_LEGEND

        story += [Paragraph(f"{escape(MAP_LEGEND)} Made for the first {len(report['explanations'])} of the "
                            "disagreements and mistakes shown (each map is labelled by its model).", SMALL),
                  Spacer(1, 2 * mm)]
    rows = [["model", "accuracy", "95% interval", "top-3", "macro F1", "ECE"]]
    for m in models.values():
        low, high = m["accuracy_ci95"]
        rows.append([m["info"]["short_name"], f"<b>{percent(m['accuracy'], 1)}</b>",
                     f"{percent(low, 1)} – {percent(high, 1)}", percent(m["top3_accuracy"], 1),
                     f"{m['macro_f1']:.3f}", percent(m["calibration"]["ece"], 1) if m.get("calibration") else "–"])
    story += [table(rows, [45 * mm, 24 * mm, 36 * mm, 20 * mm, 22 * mm, 20 * mm]), Spacer(1, 2 * mm)]
    notes = [wording.ECE_EXPLAINED, *[m["calibration_note"] for m in models.values() if m.get("calibration_note")][:1]]
    if report.get("uncertain"):
        u = report["uncertain"]
        notes.append(f"The app's 'uncertain' flag fired on {u['flagged']} of {report['images']} images "
                     f"({percent(u['share'], 1)}).")
        if "out_of_scope" in u:
            notes.append(wording.false_alarms(u["out_of_scope"]))
    story += [Paragraph(" ".join(escape(n) for n in notes), SMALL), Spacer(1, 4 * mm)]
    c = report.get("comparison")
    if c:
        a, b = models[c["a"]]["info"]["short_name"], models[c["b"]]["info"]["short_name"]
        mc = c["mcnemar"]
        story += [KeepTogether([Paragraph("Do the models differ?", H2), table([
            ["", "images"], [f"{a} right, {b} wrong", mc["a_right_b_wrong"]],
            [f"{a} wrong, {b} right", mc["a_wrong_b_right"]],
            ["both right / both wrong", f"{c['both_correct']} / {c['both_wrong']}"],
            ["McNemar's exact test", f"p = {mc['p_value']:.3g}"],
            list(wording.lead_row(c, models)),
            ["same answer", f"{percent(c['agreement'], 1)} ({plural(c['disagreements'], 'image')} "
                            f"{'differs' if c['disagreements'] == 1 else 'differ'})"]],
            [80 * mm, 70 * mm])]), Spacer(1, 3 * mm)]
        if c.get("gallery"):
            shown, differ = len(c["gallery"]), c["disagreements"]
            heading = "Where they disagree" + (f": the {shown} most confident of the {differ}" if shown < differ
                                               else ": the only one" if differ == 1 else f": all {differ}")
            story.append(KeepTogether([Paragraph(heading, H2), _gallery(report, c["gallery"], lambda g: [
                f"{models[m]['info']['short_name']}: {p[0]} {100 * p[1]:.0f}%" for m, p in g["predicted"].items()])]))
    for name, m in models.items():
        per_class = [["class", "images", "precision", "recall", "F1"]] + [
            [cls, r["support"], f"{r['precision']:.2f}", f"{r['recall']:.2f}", f"{r['f1']:.2f}"]
            for cls, r in m["per_class"].items()]
        confusion = [["true \\ predicted", *[c[:5] for c in CLASS_NAMES]]]
        style = []
        for row, cls in enumerate(report["classes_present"], 1):
            i = CLASS_NAMES.index(cls)
            counts = m["confusion_matrix"][i]
            confusion.append([cls, *[str(v) if v else "" for v in counts]])
            for j, v in enumerate(counts):
                if v:
                    style.append(("BACKGROUND", (j + 1, row), (j + 1, row),
                                  colors.HexColor("#dcebdc" if j == i else "#f7dcdc")))
        matrix = table(confusion, [28 * mm] + [14.5 * mm] * 10)
        matrix.setStyle(TableStyle(style))
        # Each table stays whole, with its heading (a short table split over two pages reads as two).
        story += [KeepTogether([Paragraph(escape(m["info"]["display_name"]), H2),
                                table(per_class, [30 * mm] + [22 * mm] * 4)]), Spacer(1, 2 * mm),
                  KeepTogether([Paragraph("Confusion matrix (rows: true class; columns: predicted)", CELL), matrix]),
                  Spacer(1, 2 * mm)]
        if m.get("confident_mistakes"):
            shown, wrong = len(m["confident_mistakes"]), mistakes(report, name)
            which = (f"the {shown} most confident of its {wrong}" if shown < wrong else
                     "its only one" if wrong == 1 else "both, the more confident first" if wrong == 2 else
                     f"all {wrong}, most confident first")
            # The model's name in this heading too: a page break between the tables above and this gallery left
            # "Its most confident mistakes" without saying whose.
            story.append(KeepTogether([Paragraph(escape(f"{m['info']['short_name']}'s mistakes: {which}"
                                                        + (", most confident first" if shown < wrong else "")),
                                                 CELL), _gallery(
                report, m["confident_mistakes"],
                lambda g, name=name: [f"said: {g['predicted'][name][0]} {100 * g['predicted'][name][1]:.0f}%"])]))
    if report.get("per_image"):
        story += per_image_table(report)
    if report["problems"]:
        story += [Paragraph("Files that could not be used", H2)] + [
            Paragraph(f"<font face='Courier'>{escape(p['name'][:80])}</font>: {escape(p['problem'])}", SMALL)
            for p in report["problems"][:200]]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                      bottomMargin=MARGIN + 4 * mm, title=report["title"]).build(
        story, onFirstPage=_footer, onLaterPages=_footer)
    return buffer.getvalue()
