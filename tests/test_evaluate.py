"""Comparing the models on a person's labelled images: reading folders, ZIPs and CSVs safely, the statistics,
the CLI, the Evaluate page and POST /api/v1/evaluate."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from devkit.images import encode, photo
from reports.user_data import (
    DatasetError,
    Limits,
    class_for,
    label_from_filename,
    read_folder,
    read_named_files,
    read_zip,
)
from tests.helpers import REAL_CIFAR, REPO, needs_real_cifar, overlapping_words, pdf_text, poppler

JPEG = encode(photo(40, 40), "JPEG")


def make_zip(members: dict[str, bytes], infos: dict[str, zipfile.ZipInfo] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr((infos or {}).get(name, name), data)
    return buffer.getvalue()


def mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the 'encrypted' flag of one member in its local header and central directory entry (zipfile cannot
    write encrypted members)."""
    raw = bytearray(data)
    encoded = name.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := raw.find(signature, start)) != -1:
            if raw[start + name_at:start + name_at + len(encoded)] == encoded:
                raw[start + flags_at] |= 0x1
            start += 4
    return bytes(raw)


# ----------------------------------------------------------------------------- reading
def test_class_names_are_matched_like_a_person_writes_them():
    assert class_for("Cats") == 3 and class_for("CAR") == 1 and class_for("plane") == 0 and class_for("boats") == 8
    assert class_for("automobiles") == 1 and class_for("lorry") == 9 and class_for("person") is None
    assert label_from_filename("cat_01.jpg") == 3 and label_from_filename("Dog-3.PNG") == 5
    assert label_from_filename("airplane 2.jpg") == 0 and label_from_filename("IMG_0001.jpg") is None


def test_zip_layouts_class_folders_a_wrapping_folder_and_a_labels_csv():
    folders = read_zip(make_zip({"pets/Cats/a.jpg": JPEG, "pets/dog/b.jpg": JPEG, "pets/dog/c.txt": b"x"}))
    assert [(i.name, i.label) for i in folders.items if i.usable] == [("pets/Cats/a.jpg", 3), ("pets/dog/b.jpg", 5)]
    assert [p.name for p in folders.problems] == ["pets/dog/c.txt"] and "not an image" in folders.problems[0].problem
    listed = read_zip(make_zip({"labels.csv": b"filename,label\nx.jpg,ship\nimgs/y.jpg,Truck\n",
                                "x.jpg": JPEG, "imgs/y.jpg": JPEG, "z.jpg": JPEG}))
    assert "CSV" in listed.layout and [(i.name, i.label) for i in listed.items if i.usable] == [("x.jpg", 8),
                                                                                              ("imgs/y.jpg", 9)]
    assert "no label" in listed.problems[0].problem  # z.jpg is not in the CSV


def test_unknown_class_folders_are_one_clear_error_listing_the_valid_names():
    with pytest.raises(DatasetError, match=r"found people.*Valid class names: airplane, automobile"):
        read_zip(make_zip({"cat/a.jpg": JPEG, "people/b.jpg": JPEG}))
    with pytest.raises(DatasetError, match="unknown labels person"):
        read_zip(make_zip({"labels.csv": b"a.jpg,person\n", "a.jpg": JPEG}))


def test_hostile_archives_become_per_file_problems_or_a_clear_refusal():
    link = zipfile.ZipInfo("cat/link.jpg")
    link.external_attr = (0o120777 << 16)
    bomb = zipfile.ZipInfo("cat/bomb.png")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    members = {"cat/good.jpg": JPEG, "cat/../../etc/passwd.jpg": JPEG, "/abs/cat/x.jpg": JPEG,
               "cat/link.jpg": b"/etc/passwd", "cat/locked.jpg": JPEG, "cat/inner.zip": make_zip({"a": b"b"}),
               "cat/disguised.jpg": make_zip({"a": b"b"}), "cat/bomb.png": bytes(5_000_000), "cat/big.jpg":
               bytes(200) + bytes(np.random.default_rng(0).integers(0, 256, 2_000_000, dtype=np.uint8)),
               "cat/script.sh": b"rm -rf /", "cat/": b""}
    data = mark_encrypted(make_zip(members, {"cat/link.jpg": link, "cat/bomb.png": bomb}), "cat/locked.jpg")
    found = read_zip(data, Limits(max_images=50, max_file_bytes=1_000_000, max_total_bytes=50_000_000, max_ratio=100))
    loaded = [i.name for i in found.items if i.load() is not None]  # members are read only now, one at a time
    problems = {p.name: p.problem for p in found.problems}
    assert loaded == ["cat/good.jpg"]
    assert "outside the archive" in problems["cat/../../etc/passwd.jpg"]
    assert "outside the archive" in problems["/abs/cat/x.jpg"]
    assert "symbolic link" in problems["cat/link.jpg"] and "encrypted" in problems["cat/locked.jpg"]
    assert "nested archives" in problems["cat/inner.zip"] and "nested archives" in problems["cat/disguised.jpg"]
    assert "zip bomb" in problems["cat/bomb.png"] and "larger than 1 MB" in problems["cat/big.jpg"]
    assert "not an image" in problems["cat/script.sh"]
    with pytest.raises(DatasetError, match="unpacks to"):
        read_zip(data, Limits(max_total_bytes=1_000_000))
    with pytest.raises(DatasetError, match="the limit is 3 images"):
        read_zip(make_zip({f"cat/{i}.jpg": JPEG for i in range(4)}), Limits(max_images=3))
    with pytest.raises(DatasetError, match="not a ZIP"):
        read_zip(b"%PDF-1.4 not a zip")
    with pytest.raises(DatasetError, match="no files"):
        read_zip(make_zip({"cat/": b"", "dog/": b""}))
    with pytest.raises(DatasetError, match="found no class folders"):
        read_zip(make_zip({"cat/a.txt": b"x"}))
    with pytest.raises(DatasetError, match=r"no usable labelled image.*symbolic link"):
        read_zip(make_zip({"cat/link.jpg": b"/etc/passwd"}, {"cat/link.jpg": link}))


# ----------------------------------------------------------------------------- the same numbers three ways
def official_rows(count: int = 120):
    from models import cifar10

    test = cifar10.load_split("test", str(REAL_CIFAR))
    return test, np.arange(count)


def write_folder(root, test, rows) -> None:
    for i in rows:
        folder = root / test.class_names[test.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(folder / f"{i:05d}.png")


@pytest.mark.slow
@needs_real_cifar
def test_folder_zip_cli_page_and_api_give_the_array_paths_numbers(tmp_path, real_app):
    from models import load_predictor
    from reports.user_eval import evaluate
    from tests.test_app import csrf_token, schema_validator

    test, rows = official_rows()
    write_folder(tmp_path / "set", test, rows)
    expected = {name: float((load_predictor(name).predict_proba(test.images[rows]).argmax(1)
                             == test.labels[rows]).mean()) for name in ("custom_cnn", "mobilenetv2")}
    from_folder = evaluate(read_folder(tmp_path / "set"), list(expected))
    assert {n: m["accuracy"] for n, m in from_folder["models"].items()} == expected
    assert from_folder["images"] == len(rows) and "calibration_note" in from_folder["models"]["custom_cnn"]
    archive = make_zip({p.relative_to(tmp_path / "set").as_posix(): p.read_bytes()
                        for p in sorted((tmp_path / "set").rglob("*.png"))})
    (tmp_path / "set.zip").write_bytes(archive)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "reports.build", "--images", str(tmp_path / "set.zip"), "--out",
                             str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {n: m["accuracy"] for n, m in metrics["models"].items()} == expected
    assert "views" not in metrics and (out / "index.html").stat().st_size > 10_000
    text = pdf_text(out / "report.pdf")
    assert overlapping_words(out / "report.pdf") == []
    assert "CIFAR-10 model comparison on your images" in text and "Confusion matrix" in " ".join(text.split())
    client = real_app.test_client()
    api = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(archive), "set.zip")},
                      content_type="multipart/form-data")
    assert api.status_code == 200 and {n: m["accuracy"] for n, m in api.json["models"].items()} == expected
    schema_validator(real_app, "EvaluateResponse").validate(api.json)
    page = client.post("/evaluate", data={"csrf_token": csrf_token(client),
                                          "archive": (io.BytesIO(archive), "set.zip")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert all(f"{100 * accuracy:.1f}%" in page for accuracy in expected.values())


# ----------------------------------------------------------------------------- web and API (fake models)
def evaluate_zip() -> bytes:
    members = {f"{c}/{i}.jpg": encode(photo(48, 48, seed=10 * k + i), "JPEG")
               for k, c in enumerate(("cat", "dog", "ship")) for i in range(4)}
    members["cat/readme.txt"] = b"hello"
    return make_zip(members)


def test_evaluate_page_shows_the_report_and_its_signed_pdf(client):
    from tests.test_app import csrf_token

    assert 'name="archive"' in client.get("/evaluate").get_data(as_text=True)
    response = client.post("/evaluate", data={"csrf_token": csrf_token(client),
                                              "archive": (io.BytesIO(evaluate_zip()), "mine.zip")},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "12 labelled images from mine.zip" in page
    assert "cat/readme.txt" in page and "Calibration is not measured: 12 images are too few" in page
    assert "cannot tell them apart" in page or "more accurate than" in page or "borderline result" in page
    signed = re.search(r'name="report" value="([^"]+)"', page).group(1)
    pdf = client.post("/evaluate/report.pdf", data={"csrf_token": csrf_token(client), "report": signed})
    assert pdf.status_code == 200 and pdf.data[:5] == b"%PDF-"
    forged = signed[:-6] + ("AAAAAA" if not signed.endswith("AAAAAA") else "BBBBBB")
    refused = client.post("/evaluate/report.pdf", data={"csrf_token": csrf_token(client), "report": forged})
    assert refused.status_code == 400 and "evaluate the images again" in refused.get_data(as_text=True)


def test_every_image_has_a_row_and_the_table_downloads_as_csv(app, client):
    """The every-image table: one row per evaluated image with each model's answer, consistent with the report's
    accuracy and confusion matrices; the page's signed report downloads it as CSV (file names neutralised), and
    so does the API (?format=csv); the signed field carries only the thumbnails the PDF shows."""
    import csv

    from tests.test_app import csrf_token

    members = {f"{c}/{i}.jpg": encode(photo(48, 48, seed=10 * k + i), "JPEG")
               for k, c in enumerate(("cat", "dog", "ship")) for i in range(4)}
    members["cat/odd name.jpg"] = JPEG
    archive = make_zip(members)
    body = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(archive), "m.zip")},
                       content_type="multipart/form-data").json
    rows = body["per_image"]
    assert len(rows) == body["images"] == 13 and [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    for name, section in body["models"].items():
        right = [r["predictions"][name]["correct"] for r in rows]
        assert sum(right) / len(rows) == pytest.approx(section["accuracy"])
        from models.cifar10 import CLASS_NAMES

        cells = np.zeros((10, 10), int)  # a confusion cell's drill-down lists exactly the images it counts
        for r in rows:
            cells[CLASS_NAMES.index(r["true"]), CLASS_NAMES.index(r["predictions"][name]["label"])] += 1
        assert cells.tolist() == section["confusion_matrix"]
        assert all(r["predictions"][name]["correct"] == (r["true"] == r["predictions"][name]["label"]) for r in rows)
    page = client.post("/evaluate", data={"csrf_token": csrf_token(client), "archive": (io.BytesIO(archive), "m.zip")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert page.count('<tr data-index="') == 13 and 'id="image-table"' in page and "cell-link" in page
    signed = re.search(r'name="report" value="([^"]+)"', page).group(1)
    table = client.post("/evaluate/images.csv", data={"csrf_token": csrf_token(client), "report": signed})
    assert table.status_code == 200 and table.mimetype == "text/csv"
    assert "attachment" in table.headers["Content-Disposition"]
    lines = list(csv.DictReader(io.StringIO(table.data.decode("utf-8-sig"))))
    assert len(lines) == 13 * len(body["models"])
    first = rows[0]["predictions"]
    assert [(line["model"], line["predicted"]) for line in lines[:len(first)]] == [(m, a["label"]) for m, a in
                                                                                 first.items()]
    api = client.post("/api/v1/evaluate?format=csv", data={"archive": (io.BytesIO(archive), "m.zip")},
                      content_type="multipart/form-data")
    assert api.status_code == 200 and api.data == table.data
    formula = client.post("/api/v1/evaluate?format=csv", data={"files": [(io.BytesIO(JPEG), "=HYPERLINK(x).jpg")],
                                                               "labels": ["cat"]}, content_type="multipart/form-data")
    assert {line["file"] for line in csv.DictReader(io.StringIO(formula.data.decode("utf-8-sig")))} == {
        "'=HYPERLINK(x).jpg"}
    forged = client.post("/evaluate/images.csv", data={"csrf_token": csrf_token(client),
                                                       "report": signed[:-4] + "AAAA"})
    assert forged.status_code == 400
    from itsdangerous import URLSafeTimedSerializer

    from webapp.evaluation import SIGNING_SALT

    carried = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SIGNING_SALT).loads(signed)
    shown = {str(g["index"]) for g in carried.get("comparison", {}).get("gallery", [])}
    for section in carried["models"].values():
        shown |= {str(g["index"]) for g in section["confident_mistakes"]}
    assert set(carried["views"]) == shown and page.count('width="32" height="32"') == 13


def test_evaluate_with_files_labelled_by_name_or_by_choice(client):
    from tests.test_app import csrf_token

    files = [(io.BytesIO(JPEG), "cat_01.jpg"), (io.BytesIO(JPEG), "IMG_0002.jpg"), (io.BytesIO(JPEG), "x.jpg")]
    response = client.post("/evaluate", data={"csrf_token": csrf_token(client), "files": files,
                                              "labels": ["", "truck", ""]}, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "2 labelled images" in page and "x.jpg" in page and "no label" in page


def test_api_evaluate_json_pdf_and_errors(app, client):
    from tests.test_app import schema_validator

    body = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(evaluate_zip()), "m.zip")},
                       content_type="multipart/form-data")
    assert body.status_code == 200
    schema_validator(app, "EvaluateResponse").validate(body.json)
    assert body.json["images"] == 12 and body.json["problems"][0]["name"] == "cat/readme.txt"
    pdf = client.post("/api/v1/evaluate?format=pdf", data={"archive": (io.BytesIO(evaluate_zip()), "m.zip")},
                      content_type="multipart/form-data")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    cases = [({"archive": (io.BytesIO(b"not a zip"), "m.zip")}, 400, "not a ZIP"),
             ({"archive": (io.BytesIO(make_zip({"people/a.jpg": JPEG})), "m.zip")}, 400, "Valid class names"),
             ({}, 400, "send a ZIP")]
    for data, status, message in cases:
        response = client.post("/api/v1/evaluate", data=data, content_type="multipart/form-data")
        assert response.status_code == status and message in response.json["error"]["message"]
        schema_validator(app, "Error").validate(response.json)
    app.config["EVALUATE_MAX_ARCHIVE_BYTES"] = 1000
    big = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(evaluate_zip()), "m.zip")},
                      content_type="multipart/form-data")
    assert big.status_code == 413 and "larger than" in big.json["error"]["message"]


def test_the_same_images_give_the_same_intervals_whatever_order_the_archive_lists_them(tmp_path, fake_models):
    from models import load_predictor
    from models.cifar10 import CLASS_NAMES
    from reports.user_eval import evaluate

    rng = np.random.default_rng(0)
    images = [Image.new("RGB", (40, 40), tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(200)]
    answers = load_predictor("custom_cnn").predict_proba(images).argmax(1)  # the fakes answer by colour
    labels = [a if i % 3 else (a + 1) % 10 for i, a in enumerate(answers)]  # two thirds right
    members = {f"{CLASS_NAMES[label]}/{i:03d}.png": encode(image, "PNG")
               for i, (image, label) in enumerate(zip(images, labels, strict=True))}
    folder = tmp_path / "set"
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    reversed_zip = make_zip(dict(reversed(list(members.items()))))
    names = ["custom_cnn", "mobilenetv2"]
    from_folder, from_zip = evaluate(read_folder(folder), names), evaluate(read_zip(reversed_zip), names)
    for name in names:
        low, high = from_folder["models"][name]["accuracy_ci95"]
        assert 0 < low < high < 1  # some right, some wrong: the interval depends on which rows are resampled
        assert from_folder["models"][name]["accuracy_ci95"] == from_zip["models"][name]["accuracy_ci95"]
    assert from_folder["comparison"] == from_zip["comparison"]


def test_evaluate_errors_speak_to_a_person_on_the_page_and_name_fields_for_the_api(client):
    from models.cifar10 import CLASS_NAMES
    from tests.test_app import csrf_token

    page = client.post("/evaluate", data={"csrf_token": csrf_token(client)}, content_type="multipart/form-data")
    text = page.get_data(as_text=True)
    assert page.status_code == 400 and "choose a ZIP of labelled images" in text and "field '" not in text
    api = client.post("/api/v1/evaluate", data={}, content_type="multipart/form-data")
    assert api.status_code == 400 and "field 'archive'" in api.json["error"]["message"]
    unlabelled = [(io.BytesIO(JPEG), f"IMG_{i}.jpg") for i in range(4)]
    response = client.post("/api/v1/evaluate", data={"files": unlabelled}, content_type="multipart/form-data")
    message = response.json["error"]["message"]
    assert response.status_code == 400 and message.count(", ".join(CLASS_NAMES)) == 1  # the names once, not per file


def test_chosen_classes_are_checked_like_the_compare_page_checks_them():
    """More classes than files, or a class that is not one of the 10, is a clear error naming it; a chosen class
    is never silently dropped in favour of the file name."""
    files = [("cat_1.png", JPEG)]
    with pytest.raises(DatasetError, match=r"2 classes were chosen for 1 file$"):
        read_named_files(files, ["cat", "dog"])
    with pytest.raises(DatasetError, match="not one of the 10 classes: unicorn"):
        read_named_files(files, ["unicorn"])
    assert [i.label for i in read_named_files(files, ["dog"]).items] == [5]
    assert [i.label for i in read_named_files(files, [""]).items] == [3]


def test_a_zip_and_files_together_is_a_clear_error_and_counts_read_in_the_singular(client):
    from tests.test_app import csrf_token

    both = client.post("/evaluate", data={"csrf_token": csrf_token(client),
                                          "archive": (io.BytesIO(evaluate_zip()), "m.zip"),
                                          "files": [(io.BytesIO(JPEG), "dog_1.jpg")]},
                       content_type="multipart/form-data")
    assert both.status_code == 400 and "not both" in both.get_data(as_text=True)
    one = client.post("/evaluate", data={"csrf_token": csrf_token(client), "files": [(io.BytesIO(JPEG), "dog_1.jpg")]},
                      content_type="multipart/form-data").get_data(as_text=True)
    assert "1 labelled image from 1 uploaded file (" in one
    expired = client.post("/evaluate/images.csv", data={"csrf_token": csrf_token(client), "report": "forged"})
    assert expired.status_code == 400 and 'href="/evaluate"' in expired.get_data(as_text=True)


def test_no_table_of_an_evaluate_pdf_is_split_across_pages(client, tmp_path):
    """A short table (a 4-row confusion matrix, a per-class table) stays on one page with its heading."""
    from tests.test_app import csrf_token
    from tests.test_reports import first_lines

    members = {f"{c}/{i}.jpg": encode(photo(48, 48, seed=i), "JPEG") for i, c in enumerate(("cat", "dog", "ship",
                                                                                             "truck"))}
    page = client.post("/evaluate", data={"csrf_token": csrf_token(client),
                                          "archive": (io.BytesIO(make_zip(members)), "four.zip")},
                       content_type="multipart/form-data").get_data(as_text=True)
    signed = re.search(r'name="report" value="([^"]+)"', page).group(1)
    pdf = client.post("/evaluate/report.pdf", data={"csrf_token": csrf_token(client), "report": signed})
    (tmp_path / "r.pdf").write_bytes(pdf.data)
    cells = {"cat", "dog", "ship", "truck", "class", "model", "true \\ predicted", "both right / both wrong"}
    starts = first_lines(tmp_path / "r.pdf")
    assert [line for line in starts[1:] if line.split(" ")[0] in cells or line in cells] == []


def test_evaluate_can_show_both_models_maps_for_the_disagreements_and_mistakes(app, client, tmp_path):
    from tests.test_app import csrf_token

    app.config["EXPLAIN_MAX_IMAGES"] = 3
    page = client.post("/evaluate", data={"csrf_token": csrf_token(client), "explain": "true",
                                          "archive": (io.BytesIO(evaluate_zip()), "m.zip")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert page.count("'s map for") >= 2 and "looked at" in page
    plain = client.post("/evaluate", data={"csrf_token": csrf_token(client),
                                           "archive": (io.BytesIO(evaluate_zip()), "m.zip")},
                        content_type="multipart/form-data").get_data(as_text=True)
    assert "'s map for" not in plain
    body = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(evaluate_zip()), "m.zip"), "explain": "true"},
                       content_type="multipart/form-data").json
    explained = body["explanations"]
    assert 1 <= len(explained) <= 3
    for row, found in explained.items():
        for name, e in found["maps"].items():
            assert e["target"] == body["per_image"][int(row)]["predictions"][name]["label"] and len(e["grid"]) == 8
    signed = re.search(r'name="report" value="([^"]+)"', page).group(1)
    pdf = client.post("/evaluate/report.pdf", data={"csrf_token": csrf_token(client), "report": signed})
    (tmp_path / "r.pdf").write_bytes(pdf.data)
    assert "looked at" in pdf_text(tmp_path / "r.pdf") and overlapping_words(tmp_path / "r.pdf") == []
    # The PDF draws every map the page shows (the signed report carries their grids, not their pictures).
    maps = [line for line in poppler("pdfimages", "-list", str(tmp_path / "r.pdf")).splitlines()[2:]
            if line.split()[3:5] == ["128", "128"]]
    assert len(maps) == page.count("'s map for")


def test_counts_and_classes_are_said_in_good_english_on_the_page_and_in_the_pdf(fake_models, tmp_path):
    """"1 of them were called out of scope" and the alt text "a automobile" (issue 41): one count and one class
    name, through the page's template and the PDF."""
    from reports.html import render_user_html
    from reports.pdf import user_pdf
    from reports.user_eval import evaluate

    report = evaluate(read_zip(evaluate_zip()), ["custom_cnn", "mobilenetv2"])
    report["uncertain"] = {**(report.get("uncertain") or {"flagged": 3, "share": 0.25,
                                                          "accuracy_unflagged": {"custom_cnn": 0.5,
                                                                                 "mobilenetv2": 0.5}}),
                           "out_of_scope": 1}
    gallery = report["comparison"].setdefault("gallery", [])
    gallery[:] = [{**(gallery[0] if gallery else {"name": "car.jpg", "index": 0,
                                                   "predicted": {"custom_cnn": ["cat", 0.6],
                                                                 "mobilenetv2": ["dog", 0.7]}}),
                   "true": "automobile"}]
    page = render_user_html(report)
    assert "1 of them was called" in re.sub(r"\s+", " ", page) and "were called" not in page
    assert ", an automobile" in page and ", a automobile" not in page
    (tmp_path / "report.pdf").write_bytes(user_pdf(report))
    text = re.sub(r"\s+", " ", pdf_text(tmp_path / "report.pdf"))
    assert "1 of them was called out of scope" in text and "were called" not in text


def test_the_evaluate_pdf_lists_every_image_and_says_whose_mistakes_and_how_many(fake_models, tmp_path):
    """Issue 41: the Evaluate PDF had no per-image table, showed 12 of the CNN's 13 mistakes without saying so, and
    a page break separated "Its most confident mistakes" from the model's name."""
    from reports.pdf import user_pdf
    from reports.user_eval import evaluate

    report = evaluate(read_zip(evaluate_zip()), ["custom_cnn", "mobilenetv2"])
    (tmp_path / "report.pdf").write_bytes(user_pdf(report))
    text = re.sub(r"\s+", " ", pdf_text(tmp_path / "report.pdf"))
    assert "Every image" in text and all(row["name"] in text for row in report["per_image"])
    for name, section in report["models"].items():
        wrong = sum(not row["predictions"][name]["correct"] for row in report["per_image"])
        shown = len(section.get("confident_mistakes") or [])
        if shown:
            which = f"all {wrong}" if shown >= wrong else f"the {shown} most confident of its {wrong}"
            assert f"{section['info']['short_name']}'s mistakes: {which}" in text
    assert overlapping_words(tmp_path / "report.pdf") == []


def test_gallery_captions_are_readable_in_the_pdf(tmp_path):
    """Eight columns of captions at 6.5 pt, scaled down to the PDF's text width, came out at about 4 pt."""
    import numpy as np
    from PIL import Image

    from reports import figures
    from reports.html import TEMPLATES

    # The PDF's text width: A4 less the side margins of the print CSS's @page rule.
    margins = re.search(r"@page \{ size: A4; margin: (\d+)mm (\d+)mm", (TEMPLATES / "report.css").read_text())
    text_width = (210 - 2 * int(margins[2])) / 25.4 * 72

    path = figures.gallery(np.zeros((16, 32, 32, 3), np.uint8), ["cat 99%\nsaid: dog"] * 16, "mistakes",
                           tmp_path / "g.png")
    with Image.open(path) as image:
        width_px, dpi = image.size[0], (image.info.get("dpi") or (100, 100))[0]
    scale = text_width / (72 * width_px / dpi)  # the PDF draws the figure at most this wide
    assert 8.5 * min(1.0, scale) >= 6.0


def test_an_evaluation_that_finds_the_decoder_busy_is_answered_429_not_500(client, monkeypatch):
    """In a 30-minute soak an evaluation whose decode waited all its seconds for the bulk child raised DecoderBusy
    through the evaluation and was answered 500 (77 of a second user's 161 evaluations). It is the server's state,
    not the request's fault: 429 `busy` with Retry-After, in the API's shape."""
    from models import decoder
    from models.images import DecoderBusy

    def busy(*args, **kwargs):
        raise DecoderBusy("the server was decoding other images for all the seconds this one could wait")

    monkeypatch.setattr(decoder, "decode", busy)
    response = client.post("/api/v1/evaluate", data={"archive": (io.BytesIO(evaluate_zip()), "m.zip")})
    assert response.status_code == 429 and response.json["error"]["code"] == "busy"
    assert response.headers["Retry-After"]
