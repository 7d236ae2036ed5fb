"""Report statistics on hand-made inputs, calibration, and the generated report (JSON, HTML, real PDF)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.calibrate import fit_temperature
from models.predictor import temper
from models.scoring import calibration
from reports import stats
from tests.helpers import REAL_CIFAR, REPO, needs_real_cifar, pdf_text, poppler


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.random(400) < 0.9, rng.random(10_000) < 0.9
    lo_s, hi_s = stats.bootstrap_ci(small)
    lo_l, hi_l = stats.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    # Normal approximation for a proportion: half-width 1.96 * sqrt(p (1 - p) / n) ~ 0.0059 for n = 10,000.
    assert abs((hi_l - lo_l) / 2 - 1.96 * np.sqrt(0.09 / 10_000)) < 0.001


def test_mcnemar_exact_on_known_tables():
    a = np.array([True] * 10 + [True] * 50)
    b = np.array([False] * 10 + [True] * 50)
    result = stats.mcnemar_exact(a, b)
    assert result["a_right_b_wrong"] == 10 and result["a_wrong_b_right"] == 0
    assert result["p_value"] == pytest.approx(2 * 0.5**10) and result["significant_at_0_05"]
    balanced = stats.mcnemar_exact(np.array([True, False] * 20), np.array([False, True] * 20))
    assert balanced["p_value"] == pytest.approx(1.0) and not balanced["significant_at_0_05"]
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    labels = np.zeros(1000, dtype=int)
    probs = np.full((1000, 10), 0.2 / 9)
    probs[:, 0] = 0.8
    probs[800:, 0], probs[800:, 1] = 0.2 / 9, 0.8  # 80% confident everywhere, right 80% of the time
    assert calibration(probs, labels)["ece"] == pytest.approx(0.0, abs=1e-9)
    overconfident = np.eye(10)[np.r_[np.zeros(500, int), np.ones(500, int)]] * 0.99 + 0.001
    result = calibration(overconfident, labels)
    assert result["ece"] == pytest.approx(0.99 + 0.001 - 0.5, abs=1e-6)
    assert sum(b["count"] for b in result["bins"]) == 1000


def test_temperature_scaling_keeps_the_class_and_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20_000, 10)) * 2
    true_probs = temper(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.5)
    labels = np.array([rng.choice(10, p=p) for p in true_probs])
    model_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # under-confident by a factor 2
    assert fit_temperature(model_probs, labels) == pytest.approx(0.5, abs=0.03)
    assert (temper(model_probs, 0.5).argmax(1) == model_probs.argmax(1)).all()
    assert np.allclose(temper(model_probs, 0.5).sum(1), 1.0)


@pytest.mark.slow
def test_served_probabilities_are_the_calibrated_ones():
    from models import load_predictor

    cnn = load_predictor("custom_cnn")
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    raw = cnn.predict_proba(images, calibrated=False)
    assert cnn.temperature != 1.0  # calibration.json matches the committed weights
    assert np.allclose(cnn.predict_proba(images), temper(raw, cnn.temperature))


@pytest.mark.slow
@needs_real_cifar
def test_report_build_writes_json_html_and_a_real_pdf(tmp_path):
    """From the committed prediction cache (no test-set pass): every artefact, with the same numbers."""
    from reports.build import build

    report = build(["custom_cnn", "mobilenetv2"], str(REAL_CIFAR), latency="skip", out=tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert set(on_disk["models"]) == {"custom_cnn", "mobilenetv2"} and len(on_disk["comparisons"]) == 1
    for name, section in on_disk["models"].items():
        committed = json.loads((REPO / "models" / name / "metrics.json").read_text())
        assert section["accuracy"] == pytest.approx(committed["accuracy"], abs=1e-9)
        low, high = section["accuracy_ci95"]
        assert low < section["accuracy"] < high
        for figure in section["figures"].values():
            assert (tmp_path / figure).stat().st_size > 10_000
    comparison = report["comparisons"][0]
    assert comparison["mcnemar"]["discordant"] == comparison["disagreements"] - _both_wrong_but_different(tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert f"{100 * on_disk['models']['custom_cnn']['accuracy']:.2f}%" in html and "McNemar" in html
    assert 'id="method"' in html and 'id="limitations"' in html and "custom_cnn vs" not in html
    pdf = tmp_path / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = pdf_text(pdf, "-layout")
    assert "Comparison: Custom CNN vs MobileNetV2" in text and "McNemar" in text
    assert "MobileNetV2 is more accurate than Custom CNN" in " ".join(text.split())
    assert "Limitations" in text and "ECE (expected calibration error)" in " ".join(text.split())
    assert f"{100 * on_disk['models']['mobilenetv2']['accuracy']:.2f}%" in text
    assert text.count("\f") >= 7


def _both_wrong_but_different(out) -> int:
    """Disagreements where both models are wrong count as disagreements but are not discordant pairs."""
    from models import cifar10
    from tests.helpers import REAL_CIFAR

    labels = cifar10.load_split("test", REAL_CIFAR).labels
    preds = {}
    for name in ("custom_cnn", "mobilenetv2"):
        with np.load(REPO / "models" / name / "test_probabilities.npz") as stored:
            preds[name] = stored["probabilities"].argmax(1)
    a, b = preds["custom_cnn"], preds["mobilenetv2"]
    return int(np.sum((a != b) & (a != labels) & (b != labels)))


@pytest.mark.slow
def test_committed_report_matches_the_committed_models():
    from models import load_predictor

    report = json.loads((REPO / "reports" / "metrics.json").read_text())
    for name, section in report["models"].items():
        committed = json.loads((REPO / "models" / name / "metrics.json").read_text())
        assert section["info"]["weights_sha256"] == load_predictor(name).weights_sha256 == committed["weights_sha256"]
        assert section["accuracy"] == pytest.approx(committed["accuracy"], abs=1e-9)
        assert section["latency"]["batch_1_ms_per_image"] > 0
    assert (REPO / "reports" / "report.pdf").read_bytes().startswith(b"%PDF")
    assert (REPO / "reports" / "index.html").is_file()


def fake_run(name: str, labels: np.ndarray, accuracy: float, seed: int):
    """A model that is right on a fraction `accuracy` of the images, with plausible probabilities."""
    from reports.build import ModelRun

    rng = np.random.default_rng(seed)
    predicted = np.where(rng.random(len(labels)) < accuracy, labels, rng.integers(0, 10, len(labels)))
    logits = rng.normal(size=(len(labels), 10))
    logits[np.arange(len(labels)), predicted] += 4
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    info = {"name": name, "display_name": f"Fake {name}", "framework": "NumPy", "framework_version": "2",
            "parameters": 1234, "weights_file": "w.bin", "weights_bytes": 4096, "weights_sha256": "0" * 64,
            "preprocessing": "none", "description": "a fake model for the report test", "temperature": 1.0,
            "test_time_augmentation": "none",
            "training": {"epochs": 3, "train_images": 100, "seconds": 12.0, "val_accuracy": accuracy}}
    history = [{"epoch": e, "train_loss": 2 / e, "val_loss": 2.2 / e, "train_acc": 0.3 * e, "val_acc": 0.28 * e}
               for e in (1, 2, 3)]
    return ModelRun(name=name, info=info, recipe={"epochs": 3}, history=history, probs=probs,
                    latency={"batch_1_ms_per_image": 5.0, "batch_64_ms_per_image": 1.0,
                             "batch_1_images_per_second": 200.0, "batch_64_images_per_second": 1000.0})


@pytest.mark.slow
def test_report_from_fake_predictions_renders_html_and_pdf(tmp_path):
    """No model, no dataset: 300 fake test images and two fake models -> metrics.json, index.html, report.pdf."""
    from models.cifar10 import CLASS_NAMES, Split
    from reports.build import write_report

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    test = Split(rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), labels, CLASS_NAMES)
    report = write_report([fake_run("alpha", labels, 0.9, 1), fake_run("beta", labels, 0.6, 2)], test, tmp_path)
    alpha, beta = report["models"]["alpha"], report["models"]["beta"]
    assert alpha["accuracy"] > beta["accuracy"] and alpha["n_images"] == 300
    assert report["comparisons"][0]["mcnemar"]["significant_at_0_05"]
    assert "Fake alpha" in (tmp_path / "index.html").read_text()
    pdf = tmp_path / "report.pdf"
    poppler("pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page"))
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 6
    from PIL import Image

    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"))
        assert pixels.min() < 100  # every page has ink on it


def test_the_verdict_speaks_plainly_and_says_when_a_gap_is_not_significant():
    from reports.wording import verdict

    models = {"a": {"info": {"display_name": "Alpha net (PyTorch)"}, "accuracy": 0.91},
              "b": {"info": {"display_name": "Beta net (Keras)", "short_name": "Beta"}, "accuracy": 0.90}}
    close = {"a": "a", "b": "b", "accuracy_difference": 0.01, "accuracy_difference_ci95": [-0.01, 0.03],
             "mcnemar": {"p_value": 0.31, "significant_at_0_05": False}, "agreement": 0.93}
    text = verdict(close, models)
    assert text.startswith("Alpha net and Beta are about equally accurate: 91.0% vs 90.0%")
    assert "cannot tell them apart" in text and "31 times in 100" in text
    far = dict(close, accuracy_difference=-0.02, accuracy_difference_ci95=[-0.03, -0.01],
               mcnemar={"p_value": 2e-4, "significant_at_0_05": True})
    assert verdict(far, models).startswith("Beta is more accurate than Alpha net")
    assert "about once in 5,000" in verdict(far, models) and "between 1.0 and 3.0 points" in verdict(far, models)
    few = dict(close, accuracy_difference=0.25, accuracy_difference_ci95=[0.0, 0.75],
               mcnemar={"p_value": 1.0, "significant_at_0_05": False})  # 4 images: 100% vs 75%
    models_few = {"a": dict(models["a"], accuracy=1.0), "b": dict(models["b"], accuracy=0.75)}
    text = verdict(few, models_few, images="your 4 images")
    assert "equally accurate" not in text and "not conclusive: 100.0% vs 75.0% on your 4 images" in text
    # The interval belongs to the model the sentence is about: b ahead by 6 points, a minus b in [-18, +6].
    behind = dict(close, accuracy_difference=-0.06, accuracy_difference_ci95=[-0.18, 0.06],
                  mcnemar={"p_value": 0.3, "significant_at_0_05": False})
    text = verdict(behind, {"a": dict(models["a"], accuracy=0.74), "b": dict(models["b"], accuracy=0.80)})
    assert text.startswith("Beta got more right than Alpha net") and "Beta's true lead could be anywhere from " \
        "-6.0 to +18.0 points" in text


def test_the_difference_row_states_the_leaders_lead_and_a_tie_is_worded_as_one():
    """Found by a newcomer walk: beside "MobileNetV2's true lead could be anywhere from -3.3 to +6.7", the table
    read "accuracy difference -1.7 points (-6.7 to +3.3)" without saying it was Custom CNN minus MobileNetV2; and two
    models right on exactly the same images were said to have a "true lead anywhere from +0.0 to +0.0" that
    "chance alone would give almost every time"."""
    from reports.wording import lead_row, verdict

    models = {"a": {"info": {"display_name": "Alpha net (PyTorch)"}, "accuracy": 0.95},
              "b": {"info": {"display_name": "Beta net (Keras)", "short_name": "Beta"}, "accuracy": 0.967}}
    behind = {"a": "a", "b": "b", "accuracy_difference": -0.017, "accuracy_difference_ci95": [-0.067, 0.033],
              "mcnemar": {"p_value": 0.69, "significant_at_0_05": False}, "agreement": 0.95}
    assert lead_row(behind, models) == ("Beta's lead, 95% paired interval", "+1.7 points (-3.3 to +6.7)")
    assert "Beta's true lead could be anywhere from -3.3 to +6.7 points" in verdict(behind, models)
    ahead = dict(behind, accuracy_difference=0.02, accuracy_difference_ci95=[0.01, 0.03])
    assert lead_row(ahead, models) == ("Alpha net's lead, 95% paired interval", "+2.0 points (+1.0 to +3.0)")
    same = dict(behind, accuracy_difference=0.0, accuracy_difference_ci95=[0.0, 0.0],
                mcnemar={"p_value": 1.0, "significant_at_0_05": False}, agreement=1.0)
    tied = {"a": dict(models["a"], accuracy=0.833), "b": dict(models["b"], accuracy=0.833)}
    text = verdict(same, tied, images="your 12 images")
    assert "right on exactly the same images" in text and "+0.0 to +0.0" not in text and "chance" not in text
    assert lead_row(same, tied)[0] == "accuracy difference (Alpha net − Beta), 95% paired interval"
    spread = dict(same, accuracy_difference_ci95=[-0.083, 0.083])
    assert "the true gap, Alpha net minus Beta, could be anywhere from -8.3 to +8.3 points" in verdict(spread, tied)


def test_the_report_opens_with_which_model_to_use_and_its_evidence():
    """Issue 41: the report stated the accuracy gap only, and "trust MobileNetV2 more" appeared deep in the
    robustness section. It now opens with a recommendation weighing accuracy on the test split, on real photos and
    on corrupted images (each counted only when chance is an unlikely explanation), calibration and speed."""
    from reports.wording import recommendation

    report = json.loads((REPO / "reports" / "metrics.json").read_text())
    advice = recommendation(report)
    assert [aspect for aspect, _ in advice["points"]] == ["the test split", "real photographs", "corrupted images",
                                                          "calibration", "speed"]
    c = report["comparisons"][0]
    better = c["b"] if c["accuracy_difference"] < 0 else c["a"]
    assert advice["model"] == better  # on the committed figures every accuracy point goes one way
    assert advice["headline"].startswith(f"Use {report['models'][better]['info']['short_name']}: more accurate on")
    assert all("McNemar p = " in sentence for aspect, sentence in advice["points"][:2])
    # Nothing significant: no accuracy point is won, and the faster model is named, saying so.
    even = json.loads(json.dumps(report))
    even["comparisons"][0]["mcnemar"]["significant_at_0_05"] = False
    even["out_of_scope"]["real_photos"]["real_photo_accuracy"]["mcnemar_p"] = 0.4
    even["robustness"]["comparison"]["difference_ci95"] = [-0.01, 0.02]
    advice = recommendation(even)
    faster = min(report["models"], key=lambda n: report["models"][n]["latency"]["batch_1_ms_per_image"])
    assert advice["model"] == faster and "no clear difference in accuracy, and faster" in advice["headline"]
    assert sum("no clear difference" in sentence for _, sentence in advice["points"]) == 3
    html = (REPO / "reports" / "index.html").read_text()
    from models.machine import trained_on

    for name in report["models"]:  # the training column names where each trained (a GPU vs a 2-core CPU)
        where = trained_on(json.loads((REPO / "models" / name / "config.json").read_text()))
        assert report["models"][name]["trained_on"] == where and f"({where})</td>" in html
    assert 'id="recommendation"' in html and recommendation(report)["headline"].split(":")[0] in html
    assert recommendation(report)["headline"].split(":")[0] in pdf_text(REPO / "reports" / "report.pdf")


def test_robustness_suite_caches_per_weights_and_lands_in_the_report(fake_models, tmp_path, monkeypatch):
    """On 20 images (2 per class) with the fake models: every cell and the upload path, cached; the cache is
    reused, dropped when the weights change; the section renders in HTML and PDF."""
    from models import corruptions
    from models.cifar10 import CLASS_NAMES, Split
    from reports import robustness
    from reports.build import write_report

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    test = Split(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), labels, CLASS_NAMES)
    section = robustness.robustness_section(list(fake_models), test, per_class=2)
    cells = section["models"]["custom_cnn"]["cells"]
    assert len(cells) == 75 and section["images_per_cell"] == 20
    assert set(section["models"]["mobilenetv2"]["upload_path"]) == {"png", "jpeg90", "jpeg70", "jpeg50"}
    assert section["comparison"]["difference_ci95"][0] <= section["comparison"]["mean_corruption_accuracy_difference"]
    assert (fake_models["custom_cnn"].model_dir / robustness.CACHE_FILE).is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(corruptions, "corrupt", refuse)
    assert robustness.robustness_section(list(fake_models), test, per_class=2)["models"] == section["models"]
    (fake_models["custom_cnn"].model_dir / "weights.bin").write_bytes(b"new weights")
    fake_models["custom_cnn"].__dict__.pop("weights_sha256", None)
    with pytest.raises(AssertionError, match="cache should have been used"):
        robustness.robustness_section(list(fake_models), test, per_class=2)
    monkeypatch.undo()
    assert section["versions"] == []  # no earlier version recorded yet: no before/after table

    # A replaced model keeps its suite predictions and test metrics in runs/<run>/: the before/after rows.
    model_dir = fake_models["custom_cnn"].model_dir
    (model_dir / "runs" / "old").mkdir(parents=True)
    (model_dir / robustness.CACHE_FILE).rename(model_dir / "runs" / "old" / robustness.CACHE_FILE)
    (model_dir / "runs" / "old" / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    for name in fake_models:
        (fake_models[name].model_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.75}))
    section = robustness.robustness_section(list(fake_models), test, per_class=2)
    old = section["models"]["custom_cnn"]["earlier_versions"]
    assert [v["run"] for v in old] == ["old"] and old[0]["test_accuracy"] == 0.5
    assert [(v["model"], v["run"], v["test_accuracy"]) for v in section["versions"]] == [
        ("custom_cnn", "old", 0.5), ("custom_cnn", None, 0.75), ("mobilenetv2", None, 0.75)]
    assert section["versions"][1]["mean_corruption_accuracy"] == \
        section["models"]["custom_cnn"]["mean_corruption_accuracy"]
    runs = [fake_run("custom_cnn", labels, 0.9, 1), fake_run("mobilenetv2", labels, 0.8, 2)]
    report = write_report(runs, test, tmp_path, robustness=section)
    html = (tmp_path / "index.html").read_text()
    assert 'id="robustness"' in html and "RobustBench" in html and "JPEG q50" in html
    assert "Before and after robust training" in html and "run old" in html and "served now" in html
    assert (tmp_path / report["robustness"]["figures"]["heatmaps"]).stat().st_size > 10_000
    text = " ".join(pdf_text(tmp_path / "report.pdf").split())
    assert "Robustness: corrupted images and the upload path" in text and "The upload path" in text
    assert "Before and after robust training" in text and "run old" in text


def test_every_comparison_with_robustbench_says_what_training_simulated():
    """The committed report: the 13-corruption mean is the mean of the per-corruption figures without the two that
    training simulates, and the caveat stands next to the table in the page, the PDF and the docs."""
    import json

    from reports.robustness import SIMULATED_IN_TRAINING
    from reports.wording import robustbench_caveat
    from tests.helpers import REPO

    r = json.loads((REPO / "reports" / "metrics.json").read_text())["robustness"]
    for m in r["models"].values():
        others = [a for c, a in m["by_corruption"].items() if c not in SIMULATED_IN_TRAINING]
        assert len(others) == 13 and m["mean_corruption_accuracy_unsimulated"] == pytest.approx(np.mean(others))
    caveat = robustbench_caveat(r)
    assert "gaussian noise and contrast" in caveat and "13 corruptions" in caveat
    assert caveat in (REPO / "docs" / "robustness.md").read_text()
    assert "Not like for like with RobustBench" in (REPO / "reports" / "index.html").read_text()
    text = pdf_text(REPO / "reports" / "report.pdf")
    assert "Not like for like with RobustBench" in " ".join(text.split())


def first_lines(pdf) -> list[str]:
    """The first line of text on each page of a PDF (pdftotext -bbox-layout)."""
    import re

    xhtml = pdf_text(pdf, "-bbox-layout")
    lines = []
    for page in xhtml.split("<page ")[1:]:
        first = re.search(r"<line[^>]*>(.*?)</line>", page, re.S)
        lines.append(" ".join(re.findall(r">([^<]+)</word>", first.group(1))) if first else "")
    return lines


def test_no_table_of_the_committed_report_is_split_across_a_page_break():
    """A table's rows stay on one page with its heading: no page begins with a table's cell (the orphaned
    'training' row of the model summary, a header row of a table whose heading stayed behind)."""
    from tests.helpers import REPO

    cells = {"training", "weights", "parameters", "Custom CNN", "MobileNetV2", "model", "family", "faces"}
    starts = first_lines(REPO / "reports" / "report.pdf")
    assert len(starts) >= 10 and not [(n, line) for n, line in enumerate(starts, 1) if line in cells]


def test_no_text_of_the_committed_report_is_painted_over_other_text():
    """pdftotext's word boxes: no two words of a page overlap (a row's text over the next row's, a caption over
    a table), in the committed report.pdf."""
    from tests.helpers import REPO, overlapping_words

    assert overlapping_words(REPO / "reports" / "report.pdf") == []


def test_counts_are_worded_for_none_one_and_two():
    """Found by a newcomer walk: "0 of them were called out of scope, although … false alarms", "false alarms"
    for one image, and "all 2, most confident first"."""
    from reports.wording import false_alarms

    assert false_alarms(0) == "None of them was called out of scope: no false alarm of the out-of-scope check."
    assert "1 of them was called out of scope" in false_alarms(1) and "a false alarm of" in false_alarms(1)
    assert "3 of them were called" in false_alarms(3) and "false alarms of" in false_alarms(3)


def test_a_borderline_gap_is_called_borderline_not_indistinguishable():
    """Found by a newcomer walk: "your 300 images cannot tell them apart (MobileNetV2's true lead could be anywhere
    from +0.3 to +6.0 points)": McNemar's p was 0.064 while the bootstrap interval left out zero."""
    from reports.wording import verdict

    models = {"a": {"info": {"display_name": "Alpha net (PyTorch)"}, "accuracy": 0.90},
              "b": {"info": {"display_name": "Beta net (Keras)", "short_name": "Beta"}, "accuracy": 0.93}}
    edge = {"a": "a", "b": "b", "accuracy_difference": -0.03, "accuracy_difference_ci95": [-0.06, -0.003],
            "mcnemar": {"p_value": 0.064, "significant_at_0_05": False}, "agreement": 0.9}
    text = verdict(edge, models, images="your 300 images")
    assert "borderline" in text and "cannot tell them apart" not in text
    assert "Beta's lead, +0.3 to +6.0 points, leaves out zero" in text


def test_the_model_report_pdf_shows_every_table_and_figure_of_its_page():
    """Issue 40: the PDF is the page printed, so it keeps everything the page shows (the reportlab layout had
    lost the accuracy-difference row): every table cell, heading and caption of reports/index.html is in
    reports/report.pdf's text, and it draws as many pictures as the page has."""
    from tests.helpers import page_contents, pdf_images

    cells, headings, images = page_contents((REPO / "reports" / "index.html").read_text())
    text = "".join(pdf_text(REPO / "reports" / "report.pdf", "-raw").split())
    missing = [t for t in cells + headings if "".join(t.split()) not in text]
    assert len(cells) > 300 and images >= 10 and missing == []
    assert pdf_images(REPO / "reports" / "report.pdf") == images


def test_the_report_shows_each_model_per_class_on_the_held_out_real_photos():
    """Issue 39: the real-photo section gives each model's accuracy per class and overall with intervals, the drop
    from the test split, McNemar on the same photos and the agreement, in the page and in its PDF, from the
    committed measurement (bench/bench_real_photos.py)."""
    measured = json.loads((REPO / "docs" / "measurements" / "real-photos.json").read_text())["real_photo_accuracy"]
    html = (REPO / "reports" / "index.html").read_text()
    section = html[html.index('id="real-photo-accuracy"'):]
    section = section[:section.index("</table>")]
    for model in measured["models"].values():
        low, high = model["interval"]
        assert f"{100 * model['accuracy']:.1f}%</strong>" in section
        assert f"({100 * low:.1f}%–{100 * high:.1f}%)" in section
        assert f"{model['drop_points']:.1f} points" in section
        for label, cell in model["per_class"].items():
            assert f"<td>{label}</td><td>{cell['images']}</td>" in section
            assert f"{100 * cell['accuracy']:.1f}%" in section
            assert f"({100 * cell['interval'][0]:.0f}%–{100 * cell['interval'][1]:.0f}%)" in section
    assert f"p = {measured['mcnemar_p']:.2g}" in section and f"{100 * measured['agreement']:.1f}%" in section
    text = " ".join(pdf_text(REPO / "reports" / "report.pdf").split())
    assert "Each model on the held-out class photos" in text and "drop from the test split" in text


def test_the_faithfulness_page_gives_every_removal_both_baselines_and_the_mirror_check():
    """Issue 42: the report's explanation page shows, for the served method, each set, model and removal with its
    ratio to random orders and to the centre prior (intervals and the reachable ceiling), the mirror and sanity
    checks, in the page and in its PDF, from the committed measurement (bench/bench_explanations.py)."""
    from models.explanation import SERVED

    measured = json.loads((REPO / "docs" / "measurements" / "explanations.json").read_text())
    assert measured["method"] == SERVED.name
    html = (REPO / "reports" / "index.html").read_text()
    section = html[html.index('id="explanations"'):]
    section = section[:section.index("</section>")]
    assert SERVED.name in section
    for label, by_model in measured["results"].items():
        for name, result in by_model.items():
            for removal, row in result["removals"].items():
                low, high = row["ratio_centre_interval"]
                assert (f"<td>{label}</td><td>" in section and f"<td>{removal}</td>" in section
                        and f"{row['ratio_centre']:.2f}×</strong> ({low:.2f}–{high:.2f})" in section
                        and f"at most {row['ceiling_centre']:.2f}×" in section
                        and f"{row['ratio_random']:.2f}×</strong>" in section), (label, name, removal)
            assert f"ρ = {measured['mirror'][label][name]['spearman']:.2f}" in section
    text = " ".join(pdf_text(REPO / "reports" / "report.pdf").split())
    assert "are the explanation maps faithful?" in text and "noisy linear imputation" in text
    assert "What a map shows, and what it does not." in text
