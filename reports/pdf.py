"""Render the report dictionary as a PDF (reportlab): title page, method summary, one section per
model, the comparison, and the same figures as the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from reports import wording
from reports.html import duration, megabytes, percent

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 16 * mm
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN

STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=STYLES["BodyText"], fontSize=9.5, leading=13)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10, textColor=colors.HexColor("#5b6675"))
CELL = ParagraphStyle("cell", parent=BODY, fontSize=8.5, leading=10.5)
TITLE = ParagraphStyle("title", parent=STYLES["Title"], fontSize=26, leading=32, spaceAfter=12)
SUBTITLE = ParagraphStyle("subtitle", parent=BODY, fontSize=12, leading=16, alignment=TA_CENTER)
H1, H2 = STYLES["Heading1"], STYLES["Heading2"]


def table(rows: list[list[Any]], widths: list[float] | None = None, header: bool = True) -> Table:
    cells = [[c if isinstance(c, Paragraph) else Paragraph(str(c), CELL) for c in row] for row in rows]
    t = Table(cells, colWidths=widths, hAlign="LEFT", repeatRows=1 if header else 0)
    style = [("LINEBELOW", (0, 0), (-1, -1), 0.4, colors.HexColor("#d9dee5")),
             ("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 2),
             ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")))
    t.setStyle(TableStyle(style))
    return t


def figure_parts(path: Path, caption: str, max_width: float = TEXT_WIDTH, max_height: float = 120 * mm) -> list:
    """The image scaled to fit, and its caption (a list: a table cell takes it as it is)."""
    with PILImage.open(path) as im:
        w, h = im.size
    scale = min(max_width / w, max_height / h)
    return [Image(str(path), width=w * scale, height=h * scale), Paragraph(caption, SMALL), Spacer(1, 4 * mm)]


GALLERY_HEIGHT = 230 * mm  # a gallery of 24 may take a page: captions then print at 6-7 pt


def figure(path: Path, caption: str, max_width: float = TEXT_WIDTH, max_height: float = 120 * mm) -> KeepTogether:
    return KeepTogether(figure_parts(path, caption, max_width, max_height))


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.setFillColor(colors.HexColor("#5b6675"))
    canvas.drawString(MARGIN, 10 * mm, "CIFAR-10 model comparison")
    canvas.drawRightString(PAGE_WIDTH - MARGIN, 10 * mm, f"page {doc.page}")
    canvas.restoreState()


def title_page(report: dict[str, Any]) -> list:
    story = [Spacer(1, 30 * mm), Paragraph(report["title"], TITLE),
             Paragraph("Evaluation on the official CIFAR-10 test split", SUBTITLE), Spacer(1, 8 * mm)]
    advice = wording.recommendation(report)
    if advice:
        story += [Paragraph(f"<b>{escape(advice['headline'])}</b>", BODY),
                  *[Paragraph(f"<b>{escape(aspect.capitalize())}</b>: {escape(sentence)}", SMALL)
                    for aspect, sentence in advice["points"]], Spacer(1, 6 * mm)]
    rows = [["model", "test accuracy", "95% CI", "top-3", "macro F1", "ECE"]]
    for m in report["models"].values():
        low, high = m["accuracy_ci95"]
        rows.append([m["info"]["display_name"], f"<b>{percent(m['accuracy'])}</b>", f"{percent(low)} – {percent(high)}",
                     percent(m["top3_accuracy"]), f"{m['macro_f1']:.4f}", percent(m["ece"])])
    story.append(table(rows, [62 * mm, 24 * mm, 34 * mm, 18 * mm, 18 * mm, 18 * mm]))
    story.append(Spacer(1, 8 * mm))
    for c in report["comparisons"]:
        story.append(Paragraph(wording.verdict(c, report["models"]), BODY))
    story += [Spacer(1, 2 * mm), Paragraph(wording.ECE_EXPLAINED, SMALL), Spacer(1, 24 * mm),
              Paragraph(f"Generated {report['generated_at']} by <font face='Courier'>{report['generated_by']}</font>"
                        f" on {report['machine']}.", SMALL),
              Paragraph(f"{report['dataset']['name']} {report['dataset']['split']}, {report['dataset']['images']:,} "
                        f"images; {report['dataset']['note']}.", SMALL),
              PageBreak()]
    return story


def trained(m: dict[str, Any]) -> str:
    """A training time with the machine that took it ("1 min 23 s (NVIDIA H200)"): a GPU's minutes beside a 2-core
    CPU's hour mislead without it."""
    return duration(m["training_seconds"]) + (f" ({m['trained_on']})" if m.get("trained_on") else "")


def method_summary(report: dict[str, Any]) -> list:
    story = [Paragraph("Method", H1), *[Paragraph(text, BODY) for text in wording.method(report)],
             Paragraph("Limitations", H2), *[Paragraph(f"• {text}", BODY) for text in wording.LIMITATIONS]]
    for m in report["models"].values():
        info = m["info"]
        training = (f"{info['training']['epochs']} epochs, {info['training']['train_images']:,} images, "
                    f"{duration(m['training_seconds'])}"
                    + (f" on {m['training_machine']}" if m.get("training_machine") else "")
                    + f"; validation accuracy {percent(info['training']['val_accuracy'])}")
        rows = [["framework", f"{info['framework']} ({info['framework_version']})"],
                ["preprocessing", info["preprocessing"]],
                ["test-time augmentation", info.get("test_time_augmentation", "none")],
                ["parameters", f"{info['parameters']:,}"],
                ["weights", f"{info['weights_file']}, {megabytes(info['weights_bytes'])}, sha256 "
                            f"{info['weights_sha256'][:16]}…"],
                ["training", training]]
        # One block per model: a page break never leaves its table's last row alone on the next page.
        story.append(KeepTogether([Paragraph(info["display_name"], H2), Paragraph(info["description"], BODY),
                                   Spacer(1, 2 * mm), table(rows, [40 * mm, TEXT_WIDTH - 40 * mm], header=False)]))
    story.append(PageBreak())
    return story


def model_pages(name: str, m: dict[str, Any], out: Path) -> list:
    info = m["info"]
    low, high = m["accuracy_ci95"]
    rows = [["test accuracy", f"<b>{percent(m['accuracy'])}</b> (95% CI {percent(low)} – {percent(high)})"],
            ["top-3 accuracy", percent(m["top3_accuracy"])],
            ["macro precision / recall / F1", f"{m['macro_precision']:.4f} / {m['macro_recall']:.4f} / "
                                              f"{m['macro_f1']:.4f}"],
            ["expected calibration error", f"{percent(m['ece'])} (mean confidence "
                                           f"{percent(m['calibration']['mean_confidence'])}; temperature "
                                           f"{info['temperature']:.3f} fitted on the validation split)"]]
    if m["latency"]:
        where = f" (on {m['latency']['machine']})" if m["latency"].get("machine") else ""
        rows.append(["latency", f"{m['latency']['batch_1_ms_per_image']:.1f} ms/image at batch 1, "
                                f"{m['latency']['batch_64_ms_per_image']:.2f} ms/image at batch 64{where}"])
    rows += [["parameters / file size", f"{info['parameters']:,} / {megabytes(info['weights_bytes'])}"],
             ["training time", trained(m)]]
    per_class = [["class", "precision", "recall", "F1", "support"]] + [
        [cls, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
        for cls, r in m["per_class"].items()]
    story = [Paragraph(info["display_name"], H1), table(rows, [55 * mm, TEXT_WIDTH - 55 * mm], header=False),
             Spacer(1, 3 * mm), Paragraph("Per-class precision, recall and F1", H2),
             table(per_class, [35 * mm, 25 * mm, 25 * mm, 25 * mm, 25 * mm]), Spacer(1, 3 * mm)]
    f = m["figures"]
    story.append(figure(out / f["confusion"], "Confusion matrices on the test split: counts and row-normalised.",
                        max_height=100 * mm))
    # The training curves at the text's width: beside the reliability diagram, half a page shrank their tick labels
    # to about 3.5 pt (a newcomer's walk). The galleries may take a page: at 95 mm high their captions were 3-4.5 pt.
    if "curves" in f:
        story.append(figure(out / f["curves"], "Training curves (training and validation splits).",
                            max_height=80 * mm))
    story += [figure(out / f["reliability"], "Reliability: accuracy against confidence per bin; the dashed line is "
                     "perfect calibration.", max_width=(TEXT_WIDTH - 6 * mm) / 2, max_height=80 * mm),
              figure(out / f["mistakes"], f"Its {len(m['confident_mistakes'])} most confident of "
                     f"{m['n_images'] - round(m['accuracy'] * m['n_images']):,} mistakes (#index in the test split).",
                     max_height=GALLERY_HEIGHT), PageBreak()]
    return story


def comparison_pages(report: dict[str, Any], c: dict[str, Any], out: Path) -> list:
    a, b = report["models"][c["a"]], report["models"][c["b"]]
    name_a, name_b = wording.short_name(a), wording.short_name(b)
    rows = [["measure", name_a, name_b],
            ["test accuracy", percent(a["accuracy"]), percent(b["accuracy"])],
            ["95% CI", " – ".join(percent(v) for v in a["accuracy_ci95"]),
             " – ".join(percent(v) for v in b["accuracy_ci95"])],
            ["top-3 accuracy", percent(a["top3_accuracy"]), percent(b["top3_accuracy"])],
            ["macro F1", f"{a['macro_f1']:.4f}", f"{b['macro_f1']:.4f}"],
            ["ECE", percent(a["ece"]), percent(b["ece"])],
            ["parameters", f"{a['info']['parameters']:,}", f"{b['info']['parameters']:,}"],
            ["weights file", megabytes(a["info"]["weights_bytes"]), megabytes(b["info"]["weights_bytes"])],
            ["training time", trained(a), trained(b)]]
    if a["latency"] and b["latency"]:
        rows += [["ms/image, batch 1", f"{a['latency']['batch_1_ms_per_image']:.1f}",
                  f"{b['latency']['batch_1_ms_per_image']:.1f}"],
                 ["ms/image, batch 64", f"{a['latency']['batch_64_ms_per_image']:.2f}",
                  f"{b['latency']['batch_64_ms_per_image']:.2f}"]]
    mc = c["mcnemar"]
    paired = [["", "images"],
              [f"{name_a} right, {name_b} wrong", mc["a_right_b_wrong"]],
              [f"{name_a} wrong, {name_b} right", mc["a_wrong_b_right"]],
              ["both right / both wrong", f"{c['both_correct']} / {c['both_wrong']}"],
              ["McNemar's exact test (two-sided)", f"p = {mc['p_value']:.3g}"],
              ["agreement", f"{percent(c['agreement'], 1)} ({c['disagreements']} images differ)"]]
    f = c["figures"]
    return [Paragraph(f"Comparison: {name_a} vs {name_b}", H1), Paragraph(wording.verdict(c, report["models"]), BODY),
            Spacer(1, 3 * mm),
            table(rows, [55 * mm, 55 * mm, 55 * mm]), Spacer(1, 3 * mm),
            Paragraph("Paired correctness", H2), table(paired, [75 * mm, 60 * mm]), Spacer(1, 3 * mm),
            figure(out / f["per_class_difference"], f"Per-class accuracy, {name_a} minus {name_b}.",
                   max_height=62 * mm),
            figure(out / f["disagreements"], f"{len(c['disagreement_gallery'])} of the {c['disagreements']:,} test "
                   "images where the models disagree, both confident first.", max_height=GALLERY_HEIGHT)]


def robustness_pages(report: dict[str, Any], out: Path) -> list:
    r = report["robustness"]
    models = report["models"]
    rows = [["model", "clean (subset)", "mean corruption acc.", "without frost", "not simulated", "relative drop"]]
    for name, m in r["models"].items():
        rows.append([wording.short_name(models[name]), percent(m["clean_accuracy"], 1),
                     f"<b>{percent(m['mean_corruption_accuracy'], 1)}</b>",
                     percent(m["mean_corruption_accuracy_comparable"], 1),
                     percent(m.get("mean_corruption_accuracy_unsimulated"), 1), percent(m["relative_drop"], 1)])
    for ref in r["references"]:
        rows.append([f"{ref['model']} (RobustBench)", percent(ref["clean"], 1), percent(ref["corruptions"], 1), "–",
                     "–", percent((ref["clean"] - ref["corruptions"]) / ref["clean"], 1)])
    upload = [["model", "32-px original", *[k.replace("jpeg", "JPEG q").replace("png", "PNG")
                                           for k in r["upload_path"]["conditions"]]]]
    for name, m in r["models"].items():
        upload.append([wording.short_name(models[name]), percent(m["clean_accuracy"], 1),
                       *[percent(m["upload_path"][k], 1) for k in r["upload_path"]["conditions"]]])
    f = r["figures"]
    story = [Paragraph("Robustness: corrupted images and the upload path", H1),
             Paragraph(wording.robustness_verdict(r, models), BODY), Spacer(1, 2 * mm),
             Paragraph(f"The 15 CIFAR-10-C corruptions (Hendrycks &amp; Dietterich, 2019) at 5 severities with the "
                       f"benchmark's CIFAR-10 parameters, on {r['subset']} ({r['images_per_cell']:,} images per "
                       "cell, seeded). Frost uses drawn ice textures instead of the original photographs: that row "
                       "is not comparable with published numbers.", SMALL), Spacer(1, 2 * mm),
             table(rows, [62 * mm, 22 * mm, 28 * mm, 20 * mm, 22 * mm, 20 * mm]), Spacer(1, 2 * mm)]
    if wording.robustbench_caveat(r):
        story += [Paragraph(escape(wording.robustbench_caveat(r)), SMALL), Spacer(1, 3 * mm)]
    if r.get("comparison"):
        c = r["comparison"]
        story.append(Paragraph(
            f"Difference in mean corruption accuracy ({wording.short_name(models[c['a']])} − "
            f"{wording.short_name(models[c['b']])}): {100 * c['mean_corruption_accuracy_difference']:+.1f} points, "
            f"95% paired bootstrap interval {100 * c['difference_ci95'][0]:+.1f} to "
            f"{100 * c['difference_ci95'][1]:+.1f}.", BODY))
    if r.get("versions"):
        versions = [["model", "version", "test accuracy", "mean corruption acc.", "noise", "contrast"]]
        for v in r["versions"]:
            versions.append([wording.short_name(models[v["model"]]), f"run {v['run']}" if v["run"] else "served now",
                             percent(v["test_accuracy"], 2) if v["test_accuracy"] is not None else "–",
                             f"<b>{percent(v['mean_corruption_accuracy'], 1)}</b>", percent(v["noise"], 1),
                             percent(v["contrast"], 1)])
        story.append(KeepTogether([
            Paragraph("Before and after robust training", H2),
            Paragraph("Each model's earlier committed version, scored by the same suite on the same images, beside "
                      "the one served now. Test accuracy is on the full test split; noise is the mean of Gaussian, "
                      "shot and impulse noise.", SMALL), Spacer(1, 1 * mm),
            table(versions, [40 * mm, 26 * mm, 26 * mm, 32 * mm, 24 * mm, 24 * mm])]))
    story += [Spacer(1, 3 * mm), figure(out / f["heatmaps"], "Accuracy (%) per corruption and severity.",
                                        max_height=120 * mm),
              figure(out / f["severity"], "Mean accuracy over the 15 corruptions at each severity.",
                     max_width=110 * mm, max_height=65 * mm),
              KeepTogether([Paragraph("The upload path", H2),
                            Paragraph(f"The same images enlarged to {r['upload_path']['size']} px (bicubic), saved "
                                      "as PNG or JPEG, then decoded and shrunk by the app's own intake.", BODY),
                            table(upload, [50 * mm] + [24 * mm] * (len(upload[0]) - 1))])]
    return story


def out_of_scope_pages(report: dict[str, Any]) -> list:
    o = report["out_of_scope"]
    h, t, p = o["held_out"], o["test"], o["persons"]
    rows = [["family", "images", "AUROC", "FPR at 95% TPR", "out of scope", "uncertain"]] + [
        [family + ("" if f["held_out"] else " (fitting)"), f["images"], f"{f['auroc']:.3f}",
         percent(f["fpr_at_95_tpr"], 1), percent(f["out_of_scope"], 1), percent(f["uncertain"], 1)]
        for family, f in o["families"].items()]
    checks = [f"• {'met' if c['met'] else 'not met'}: {c['what']} {c['value']:.3f} "
              f"(target {'≥' if c['op'] == '>=' else '≤'} {c['target']})" for c in o["checks"]]
    return [Paragraph("Out of scope: images that are none of the 10 classes", H1),
            Paragraph("A gate beside the models (ImageNet MobileNetV2 features and a linear probe) scores how unlike "
                      "CIFAR-10's photos each image is; its threshold and the confidence threshold were chosen on "
                      "the validation split. It learnt from CIFAR-10's training images and the benchmark's fitting "
                      f"families ({', '.join(o['fitting_families'])}); the held-out families "
                      f"({', '.join(o['held_out_families'])}) were never used to fit or choose anything"
                      + (" (the portraits family was added after a first gate missed the held-out faces: that row is "
                         "a second look)" if "portraits" in o["fitting_families"] else "")
                      + f". In scope: the {t['images']:,} test images. Measured on {escape(o['machine'])}.", BODY),
            Paragraph(f"On the held-out families: AUROC {h['auroc']:.3f}, {percent(h['out_of_scope'], 1)} called out "
                      f"of scope and {percent(h['uncertain'], 1)} uncertain, while {percent(t['out_of_scope'], 1)} "
                      f"of test images are called out of scope and {percent(t['uncertain'], 1)} uncertain. Images "
                      f"of people: {percent(p['out_of_scope'], 1)} out of scope.", BODY),
            Spacer(1, 2 * mm), table(rows, [40 * mm, 18 * mm, 18 * mm, 30 * mm, 28 * mm, 24 * mm]), Spacer(1, 3 * mm),
            *[Paragraph(escape(c), BODY) for c in checks], *real_photo_flowables(report, o.get("real_photos")),
            PageBreak()]


def real_photo_flowables(report: dict[str, Any], photos: dict[str, Any] | None) -> list:
    """The verdicts and accuracy on the real-photo benchmark, by source (the HTML report's table, as a PDF table)."""
    if not photos:
        return []
    rows = [["source", "everyday<br/>photos", "out<br/>of scope", "no flag<br/>at all", "other<br/>mammals",
             "out<br/>of scope", "class<br/>photos", "out<br/>of scope", "right, of<br/>unflagged",
             "right and<br/>unflagged"]]
    for source, r in [*photos["sources"].items(), ("held-out together", photos["held_out"])]:
        rows.append([source + (" (fitting)" if r.get("role") == "fitting" else ""), r["everyday_images"],
                     percent(r["everyday_out_of_scope"], 1), percent(r["everyday_unflagged"], 1), r["mammal_images"],
                     percent(r["mammal_out_of_scope"], 1), r["class_images"], percent(r["class_out_of_scope"], 1),
                     percent(r["class_unflagged_right"], 1), percent(r["class_right_and_unflagged"], 1)])
    acc = photos["real_photo_accuracy"]
    names = {name: report["models"][name]["info"]["short_name"] if name in report["models"] else name
             for name in acc["models"]}
    accuracy = "; ".join(f"{names[n]} {percent(m['accuracy'], 1)} ({percent(m['interval'][0], 1)}–"
                         f"{percent(m['interval'][1], 1)}), against {percent(m['test_accuracy'], 1)} on the test split"
                         for n, m in acc["models"].items())
    return [PageBreak(), Paragraph("On real photographs, by source", H2),
            Paragraph("The real-photo benchmark: photographs from eight public collections, each looked at before it "
                      "was labelled. On photos a broad view (an ImageNet-1k classifier mapped to the 10 classes "
                      "through WordNet) reads the photo as sent; its lines were chosen on the fitting sources only. "
                      f"Measured on {escape(photos['machine'])}.", BODY),
            table(rows, [26 * mm, 17 * mm, 15 * mm, 13 * mm, 18 * mm, 15 * mm, 14 * mm, 14 * mm, 19 * mm, 19 * mm]),
            Paragraph(f"Accuracy on the {acc['images']} held-out class photos (McNemar p = {acc['mcnemar_p']:.2g}; "
                      f"the models agree on {percent(acc['agreement'], 1)}): {accuracy}.", BODY),
            *[Paragraph(escape(f"• {'met' if c['met'] else 'not met'} on the held-out sources: "
                               f"{c['what'].replace('_', ' ')} {c['value']:.3f} (target "
                               f"{'≥' if c['op'] == '>=' else '≤'} {c['target']})"), BODY) for c in photos["checks"]]]


def explanation_pages(report: dict[str, Any], out: Path) -> list:
    x = report["explanations"]
    rows = [["model", "top 20%: drop", "random 20%: drop", "ratio", "deletion AUC", "insertion AUC", "randomised"]]
    for name, m in x["models"].items():
        rows.append([report["models"][name]["info"]["short_name"] if name in report["models"] else name,
                     f"{m['drop_at_20_map']:.3f}", f"{m['drop_at_20_random']:.3f}",
                     f"{m['ratio_at_20']:.1f}× ({'met' if m['ratio_at_20'] >= x['target_ratio'] else 'not met'})",
                     f"{m['deletion_auc_map']:.3f} / {m['deletion_auc_random']:.3f}",
                     f"{m['insertion_auc_map']:.3f} / {m['insertion_auc_random']:.3f}",
                     f"{m['sanity']['mean_spearman_trained_vs_randomised']:+.2f}"])
    return [Paragraph("Why each model decided: are the explanation maps faithful?", H1),
            Paragraph("Parts of the 32×32 view are blurred (8×8-pixel windows at a 4-pixel stride, the same for both "
                      "models); a cell's "
                      "importance is how much the answer's log-odds fall. A faithful map removes the answer faster, "
                      "when its top parts are blurred first, than random parts do (target: the top 20% drop the "
                      f"answer at least {x['target_ratio']}× as much as a random 20% of 4×4 patches). The first "
                      f"{x['images']:,} test images, measured on {escape(x['machine'])}. Randomised: the rank "
                      "correlation between the trained network's maps and those of the same network with random "
                      "weights (Adebayo et al., 2018): near 0, the maps depend on what the model learnt.", BODY),
            Spacer(1, 2 * mm), table(rows, [28 * mm, 22 * mm, 24 * mm, 24 * mm, 26 * mm, 26 * mm, 20 * mm]),
            Spacer(1, 3 * mm),
            figure(out / x["figure"], "Deletion (lower is better) and insertion (higher is better) curves: each "
                   "model's maps (solid) against random maps (dashed). Cost through the app, both models: one image "
                   f"{x['cost']['1_images_seconds']:.2f} s, 16 images {x['cost']['16_images_seconds']:.1f} s."),
            PageBreak()]


def write_pdf(report: dict[str, Any], out: Path, path: Path) -> Path:
    doc = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN + 4 * mm, title=report["title"], author="reports.build",
                            subject="CIFAR-10 model comparison", creator="reportlab")
    story = title_page(report) + method_summary(report)
    for name, m in report["models"].items():
        story += model_pages(name, m, out)
    for c in report["comparisons"]:
        story += comparison_pages(report, c, out)
    if report.get("robustness"):
        if not isinstance(story[-1], PageBreak):
            story.append(PageBreak())  # its heading was left alone at the foot of the comparison's last page
        story += robustness_pages(report, out)
    if report.get("out_of_scope"):
        if not isinstance(story[-1], PageBreak):
            story.append(PageBreak())  # its own page, as in the web report
        story += out_of_scope_pages(report)
    if report.get("explanations"):
        if not isinstance(story[-1], PageBreak):
            story.append(PageBreak())
        story += explanation_pages(report, out)
    if isinstance(story[-1], PageBreak):
        story.pop()
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return path
