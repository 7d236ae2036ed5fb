"""The web app over real requests (Flask test client): pages, API, errors (fake models), and one end-to-end
pass with the committed models."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from PIL import Image

from devkit.images import encode, photo
from devkit.url_server import LocalServer
from tests.helpers import REAL_CIFAR, needs_real_cifar, overlapping_words, pdf_text
from webapp.openapi import openapi_document

JPEG = encode(photo(120, 90), "JPEG")
RGBA_PNG = encode(Image.new("RGBA", (50, 50), (0, 128, 255, 100)), "PNG")


def csrf_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def upload(*files: tuple[bytes, str]) -> list:
    import io

    return [(io.BytesIO(data), name) for data, name in files]


def schema_validator(app, name: str) -> Draft202012Validator:
    document = openapi_document(app.config)
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema)


# ----------------------------------------------------------------------------- health
def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_reports_every_model_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"ready": True, "models": {"custom_cnn": "ok", "mobilenetv2": "ok"}}


def test_readyz_is_503_and_the_ui_names_the_broken_model(client, monkeypatch):
    import webapp.health
    from models import load_predictor

    def broken(name):
        if name == "custom_cnn":
            raise FileNotFoundError(f"models/{name}/weights.pt")
        return load_predictor(name)

    monkeypatch.setattr(webapp.health, "load_predictor", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "weights.pt" in response.get_json()["models"]["custom_cnn"]
    assert response.get_json()["models"]["mobilenetv2"] == "ok"
    assert "custom_cnn is unavailable" in client.get("/").get_data(as_text=True)


# ----------------------------------------------------------------------------- pages
def test_index_has_the_upload_form_limits_and_security_headers(client):
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert 'type="file"' in page and "multiple" in page and 'id="dropzone"' in page and 'name="urls"' in page
    assert "Up to 32 images per comparison" in page and "10 MB per image" in page
    assert 'name="csrf_token"' in page
    assert "cdn" not in page.lower()  # Bootstrap is served locally
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page  # no inline scripts


def test_form_classifies_good_files_and_reports_bad_ones_inline(client):
    response = client.post("/", data={"csrf_token": csrf_token(client), "files": upload(
        (JPEG, "photo.jpg"), (b"not an image at all", "../../etc/passwd.jpg"), (RGBA_PNG, "alpha.png"))},
        content_type="multipart/form-data")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count('class="card result"') == 3
    assert page.count('data-model="custom_cnn"') == 2 and page.count('data-model="mobilenetv2"') == 2
    assert "Could not classify this file: the file is not an image" in page
    assert "passwd.jpg" in page and "../" not in page.split('id="results"')[1]  # only the base name is shown
    assert page.split('id="results"')[1].count("data:image/jpeg;base64,") == 2  # thumbnails from memory
    assert re.search(r"models (agree|disagree)", page)
    timing = page.split('id="timing">')[1].split("</p>")[0]
    assert re.search(r"You waited \d+ ms", timing)
    assert re.search(r"Custom CNN computed for \d+ ms over the\s+2\s+images", timing)
    summary = " ".join(page.split('id="summary">')[1].split("</p>")[0].split())
    assert summary.startswith("3 images:") and "of 2" in summary and "1 could not be read" in summary
    assert page.count('class="img-thumbnail pixelated"') == 2  # the model's view beside each readable image
    assert "ms/image" not in page.split('id="results"')[1]  # no batch average repeated on every card


def test_form_without_csrf_token_is_refused(client):
    response = client.post("/", data={"files": upload((JPEG, "a.jpg"))}, content_type="multipart/form-data")
    assert response.status_code == 400 and "reload the page" in response.get_data(as_text=True)


def test_form_with_nothing_or_too_many_images(app, client):
    token = csrf_token(client)
    response = client.post("/", data={"csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 400 and "send at least one image" in response.get_data(as_text=True)
    app.config["MAX_IMAGES"] = 2
    response = client.post("/", data={"csrf_token": token, "files": upload(*[(JPEG, f"{i}.jpg") for i in range(3)])},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)  # a browser without JavaScript: the first 2 compared, with a notice
    assert response.status_code == 200 and page.count('class="card result"') == 2
    assert "3 images were sent; the limit is 2 per comparison, so the first 2 were compared." in page
    assert "0.jpg" in page and "2.jpg" not in page


def test_examples_gallery_runs_in_one_click(client):
    from webapp.examples import gallery

    page = client.get("/").get_data(as_text=True)
    examples = gallery()
    assert len(examples) >= 14 and sum(not e["in_scope"] for e in examples) >= 2
    assert page.count('name="examples"') == len(examples) + 1  # one button each and "all"
    for c in ("airplane", "automobile", "frog", "truck"):  # the first screen names the 10 classes
        assert f">{c}</li>" in page
    one = client.post("/", data={"csrf_token": csrf_token(client), "examples": examples[0]["file"]})
    assert one.status_code == 200 and one.get_data(as_text=True).count('class="card result"') == 1
    every = client.post("/", data={"csrf_token": csrf_token(client), "examples": ["all", "../app.py", "nope"]})
    text = every.get_data(as_text=True)
    assert every.status_code == 200 and text.count('class="card result"') == len(examples)
    assert examples[-1]["title"] in text
    assert client.post("/", data={"csrf_token": csrf_token(client), "examples": "../../app.py"}).status_code == 400


def test_models_page_and_report_pages(client):
    page = client.get("/models").get_data(as_text=True)
    assert "Custom CNN (PyTorch, from scratch)" in page and "TensorFlow/Keras" in page and "sha256" in page
    report = client.get("/reports")
    assert report.status_code == 200 and "McNemar" in report.get_data(as_text=True)
    figure = re.search(r'src="(/reports/figures/[^"]+\.png)"', report.get_data(as_text=True)).group(1)
    assert client.get(figure).headers["Content-Type"] == "image/png"
    pdf = client.get("/reports/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF") and "attachment" in pdf.headers[
        "Content-Disposition"]
    assert client.get("/reports/figures/../metrics.json").status_code == 404
    assert client.get("/reports/report.css").status_code == 200


def test_unknown_page_is_a_friendly_404(client):
    response = client.get("/nope")
    assert response.status_code == 404 and "text/html" in response.headers["Content-Type"]
    page = response.get_data(as_text=True)
    assert "Page not found" in page and "something went wrong" not in page and "alert-danger" not in page
    assert all(f'href="{path}"' in page for path in ("/", "/evaluate", "/reports", "/models"))


def test_oversized_request_gets_a_friendly_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    big = encode(photo(400, 400), "PNG")
    response = client.post("/", data={"csrf_token": "x", "files": upload((big, "big.png"))},
                           content_type="multipart/form-data")
    assert response.status_code == 413 and "larger than" in response.get_data(as_text=True)
    api = client.post("/api/v1/predict", data={"files": upload((big, "big.png"))}, content_type="multipart/form-data")
    assert api.status_code == 413 and api.get_json()["error"]["code"] == "request_too_large"


# ----------------------------------------------------------------------------- API
def test_api_predict_multipart_matches_the_openapi_schema(app, client):
    response = client.post("/api/v1/predict", data={"files": upload((JPEG, "photo.jpg"), (b"", "empty.png"),
                                                                     (RGBA_PNG, "alpha.png")), "top_k": "5"},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    body = response.get_json()
    schema_validator(app, "PredictResponse").validate(body)
    assert body["models"] == ["custom_cnn", "mobilenetv2"] and body["top_k"] == 5
    first, empty, third = body["results"]
    assert empty["error"]["code"] == "invalid_image" and "empty" in empty["error"]["message"]
    for result in (first, third):
        for name in ("custom_cnn", "mobilenetv2"):
            prediction = result["predictions"][name]
            assert len(prediction["top_k"]) == 5 and len(prediction["probabilities"]) == 10
            assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-6
            assert prediction["top_k"][0]["probability"] == max(prediction["probabilities"].values())
    assert first["source"] == {"type": "file", "name": "photo.jpg"} and (first["width"], first["height"]) == (120, 90)


def test_api_predict_one_model_and_urls_as_json(app, client):
    app.config["FETCH_ALLOWED_TEST_HOSTS"] = ["127.0.0.1"]
    with LocalServer() as server:
        response = client.post("/api/v1/predict", json={
            "urls": [f"{server.base}/image.png", f"{server.base}/html", "file:///etc/passwd"],
            "models": ["mobilenetv2"], "top_k": 1})
    assert response.status_code == 200
    body = response.get_json()
    schema_validator(app, "PredictResponse").validate(body)
    ok, html, local_file = body["results"]
    assert list(ok["predictions"]) == ["mobilenetv2"] and len(ok["predictions"]["mobilenetv2"]["top_k"]) == 1
    assert ok["agree"] is None  # one model: nothing to agree with
    assert html["error"]["code"] == "url_fetch_failed" and "not an image" in html["error"]["message"]
    assert "only http and https" in local_file["error"]["message"]


@pytest.mark.parametrize("data, code", [
    ({"top_k": "0"}, "invalid_top_k"), ({"top_k": "-1"}, "invalid_top_k"), ({"top_k": "11"}, "invalid_top_k"),
    ({"top_k": "abc"}, "invalid_top_k"), ({"models": "resnet"}, "unknown_model"), ({}, "no_images"),
])
def test_api_predict_rejects_bad_options_with_the_error_shape(app, client, data, code):
    files = {} if code == "no_images" else {"files": upload((JPEG, "a.jpg"))}
    response = client.post("/api/v1/predict", data={**data, **files}, content_type="multipart/form-data")
    assert response.status_code == 400
    schema_validator(app, "Error").validate(response.get_json())
    assert response.get_json()["error"]["code"] == code


def test_api_wrong_field_name_and_bad_json(app, client):
    response = client.post("/api/v1/predict", data={"image": upload((JPEG, "a.jpg"))},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "wrong_field_name"
    response = client.post("/api/v1/predict", data="[1, 2", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"
    response = client.post("/api/v1/predict", json={"urls": "http://example.com/a.png"})
    assert response.get_json()["error"]["code"] == "invalid_urls"


def test_api_too_many_images(app, client):
    app.config["MAX_IMAGES"] = 3
    response = client.post("/api/v1/predict", data={"files": upload(*[(JPEG, f"{i}.jpg") for i in range(4)])},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "too_many_images"


def test_api_per_file_size_limit_keeps_the_rest_of_the_batch(app, client):
    app.config["MAX_FILE_BYTES"] = 5_000
    big = encode(photo(300, 300), "PNG")
    response = client.post("/api/v1/predict", data={"files": upload((big, "big.png"), (encode(photo(20, 20), "PNG"),
                                                                                        "small.png"))},
                           content_type="multipart/form-data")
    big_result, small_result = response.get_json()["results"]
    assert big_result["error"]["code"] == "file_too_large" and "predictions" in small_result


def test_api_models_metrics_and_openapi(app, client):
    models = client.get("/api/v1/models").get_json()
    schema_validator(app, "ModelsResponse").validate(models)
    assert [m["name"] for m in models["models"]] == ["custom_cnn", "mobilenetv2"]
    metrics = client.get("/api/v1/metrics")
    assert metrics.status_code == 200 and set(metrics.get_json()["models"]) == {"custom_cnn", "mobilenetv2"}
    document = client.get("/api/v1/openapi.json").get_json()
    validate_openapi(document)
    assert set(document["paths"]) >= {"/api/v1/predict", "/api/v1/models", "/api/v1/metrics"}


def test_api_unknown_route_and_method_use_the_json_error_shape(app, client):
    for response, status in ((client.get("/api/v1/nope"), 404), (client.get("/api/v1/predict"), 405)):
        assert response.status_code == status
        schema_validator(app, "Error").validate(response.get_json())


def test_nothing_under_the_api_answers_in_html(app, client):
    """Found by an independent attack: /api/ and POST /api answered HTML 404/405, /api//v1/models an HTML 308, and
    OPTIONS a 200 text/html with an empty body."""
    for response, status in ((client.get("/api/"), 404), (client.post("/api"), 405),
                             (client.get("/api//v1/models"), 404), (client.get("/api/v1/models/"), 404)):
        assert response.status_code == status and response.mimetype == "application/json", response.status
        schema_validator(app, "Error").validate(response.get_json())
    for path in ("/api/v1/predict", "/api/v1/evaluate", "/api/v1/models"):
        response = client.options(path)
        assert response.status_code == 204 and not response.data and "Content-Type" not in response.headers
        assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]
    assert client.get("/api").mimetype == "text/html"  # the API's own page stays a page
    assert client.options("/").status_code == 200  # elsewhere, Flask's own answer


def test_api_metrics_404_when_no_report(app, client, tmp_path):
    app.config["REPORTS_DIR"] = str(tmp_path)
    response = client.get("/api/v1/metrics")
    assert response.status_code == 404 and "make report" in response.get_json()["error"]["message"]
    schema_validator(app, "Error").validate(response.get_json())


# ----------------------------------------------------------------------------- the committed models, end to end
@pytest.mark.slow
@needs_real_cifar
def test_real_models_answer_through_the_api_as_they_do_in_python(real_app):
    """PNG bytes of CIFAR test images through the API give the probabilities the predictors give directly."""
    from models import cifar10, load_predictor

    test = cifar10.load_split("test", str(REAL_CIFAR))
    images = test.images[:6]
    files = upload(*[(encode(Image.fromarray(image), "PNG"), f"{i}.png") for i, image in enumerate(images)])
    body = real_app.test_client().post("/api/v1/predict", data={"files": files},
                                       content_type="multipart/form-data").get_json()
    for name in ("custom_cnn", "mobilenetv2"):
        direct = load_predictor(name).predict_proba(images)
        served = np.array([[r["predictions"][name]["probabilities"][c] for c in cifar10.CLASS_NAMES]
                           for r in body["results"]])
        np.testing.assert_allclose(served, direct, atol=1e-6)
        assert (served.argmax(axis=1) == test.labels[:6]).mean() >= 5 / 6


# ----------------------------------------------------------------------------- configuration
def test_config_precedence_defaults_then_environment_then_the_config_argument(fake_models, monkeypatch):
    from webapp import DEFAULTS, create_app

    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("APP_MAX_IMAGES", "7")
    monkeypatch.setenv("APP_MODELS", '["mobilenetv2"]')
    app = create_app({"TESTING": True})
    assert app.config["SECRET_KEY"] == "from-the-environment" and app.config["MAX_IMAGES"] == 7
    assert app.config["MODELS"] == ["mobilenetv2"] and app.config["DEFAULT_TOP_K"] == DEFAULTS["DEFAULT_TOP_K"]
    app = create_app({"TESTING": True, "SECRET_KEY": "from-the-argument", "MAX_IMAGES": 3})
    assert app.config["SECRET_KEY"] == "from-the-argument" and app.config["MAX_IMAGES"] == 3


@pytest.mark.parametrize("name, value", [
    ("APP_MAX_IMAGES", "seven"), ("APP_MAX_IMAGES", "0"), ("APP_DEFAULT_TOP_K", "-2"),
    ("APP_PRELOAD_MODELS", '"perhaps"'), ("APP_COSTLY_SLOTS", "[1, 2]"), ("APP_COSTLY_SLOTS", '{"evaluat": 1}'),
    ("APP_COSTLY_SLOTS", '{"evaluate": "x"}'), ("APP_FETCH_READ_TIMEOUT", "soon"), ("APP_MODELS", '"custom_cnn"'),
    ("APP_MODELS", '["nonexistent"]'), ("APP_TRUSTED_PROXY_HOPS", "abc")])
def test_a_config_key_of_the_wrong_type_stops_the_app_naming_it(fake_models, monkeypatch, name, value):
    """Issue 40: the APP_ keys are typed by the table that documents them (webapp.AppConfig): a wrong value stops
    the start in one line naming it, instead of a TypeError inside some request later."""
    from webapp import create_app

    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=f"invalid setting: {name}[=. ]"):
        create_app({"TESTING": True})


def test_an_empty_config_key_is_unset_and_a_misspelt_one_is_named_in_the_log(fake_models, monkeypatch, caplog):
    from webapp import DEFAULTS, create_app

    monkeypatch.setenv("APP_MAX_IMAGES", "")
    monkeypatch.setenv("APP_MAX_IMAGS", "5")
    app = create_app({"TESTING": True})
    assert app.config["MAX_IMAGES"] == DEFAULTS["MAX_IMAGES"]
    assert "APP_MAX_IMAGS is not a setting of this app" in caplog.text


def test_gunicorn_stops_on_a_bad_config_key_instead_of_restarting_its_worker(tmp_path):
    """A worker that cannot build the app exits as gunicorn's 'worker failed to boot': the master stops, with the
    setting's one line in its log, instead of restarting the worker every two seconds."""
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    env = {**os.environ, "APP_MAX_IMAGES": "seven", "GUNICORN_BIND": f"unix:{tmp_path / 'g.sock'}"}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "app:app", "-c", "gunicorn.conf.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.count("invalid setting: APP_MAX_IMAGES='seven'") == 1 and "failed to boot" in done.stderr


def test_the_loopback_exemption_for_url_tests_exists_only_in_testing_apps(fake_models):
    from webapp import DEFAULTS, create_app
    from webapp.options import fetch_policy

    assert "FETCH_ALLOWED_TEST_HOSTS" not in DEFAULTS
    production = create_app({"SECRET_KEY": "x", "FETCH_ALLOWED_TEST_HOSTS": ["127.0.0.1"]})
    assert fetch_policy(production.config).allowed_hosts == frozenset()
    testing = create_app({"TESTING": True, "SECRET_KEY": "x", "FETCH_ALLOWED_TEST_HOSTS": ["127.0.0.1"]})
    assert fetch_policy(testing.config).allowed_hosts == {"127.0.0.1"}


def test_session_cookie_is_lax_and_secure_only_over_https_behind_a_trusted_proxy(fake_models):
    from webapp import create_app

    direct = create_app({"TESTING": True, "SECRET_KEY": "x"})
    cookie = direct.test_client().get("/").headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    spoofed = direct.test_client().get("/", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    assert "Secure" not in spoofed  # no trusted proxy: the header is the client's word
    proxied = create_app({"TESTING": True, "SECRET_KEY": "x", "TRUSTED_PROXY_HOPS": 1}).test_client()
    cookie = proxied.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}).headers[
        "Set-Cookie"]
    assert "Secure" in cookie and "SameSite=Lax" in cookie


def test_an_expired_form_says_so(fake_models, monkeypatch):
    from webapp import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "x"})
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 3600
    client = app.test_client()
    token = csrf_token(client)
    import time as time_module

    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 3601)  # an hour and a second later
    response = client.post("/", data={"csrf_token": token, "files": upload((JPEG, "a.jpg"))},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and "The page expired" in response.get_data(as_text=True)


# ----------------------------------------------------------------------------- take it away
def compared_page(client) -> tuple[str, str]:
    """(the results page, the comparison it carries for export) for two photos and a non-image."""
    response = client.post("/", data={"csrf_token": csrf_token(client), "files": upload(
        (JPEG, "photo.jpg"), (b"not an image", "notes.txt"), (RGBA_PNG, "café.png"))},
        content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    import html

    field = re.search(r'name="comparison" value="([^"]*)"', page).group(1)
    return page, html.unescape(field)


def test_export_csv_and_json_hold_what_the_page_shows(client):
    import csv
    import io
    import json

    _, comparison = compared_page(client)
    token = csrf_token(client)
    as_json = client.post("/export/json", data={"csrf_token": token, "comparison": comparison})
    assert as_json.status_code == 200 and as_json.mimetype == "application/json"
    assert "attachment" in as_json.headers["Content-Disposition"] and as_json.headers["Cache-Control"] == "no-store"
    body = json.loads(as_json.data)
    assert body["models"] == ["custom_cnn", "mobilenetv2"] and len(body["results"]) == 3
    first = body["results"][0]
    assert first["source"] == {"type": "file", "name": "photo.jpg"} and "thumbnail" not in first
    assert set(first["predictions"]) == {"custom_cnn", "mobilenetv2"}
    assert len(first["predictions"]["custom_cnn"]["top_k"]) == 3
    assert body["results"][1]["error"]["code"] == "invalid_image"
    as_csv = client.post("/export/csv", data={"csrf_token": token, "comparison": comparison})
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(as_csv.data.decode("utf-8-sig"))))
    assert len(rows) == 2 * 2 * 3 + 1  # 2 images x 2 models x top-3, and the unreadable file
    assert rows[0]["source"] == "photo.jpg" and rows[0]["rank"] == "1" and rows[-1]["source"] == "café.png"
    assert rows[3]["error"] == "" and any("not an image" in r["error"] for r in rows)
    top = body["results"][0]["predictions"]["custom_cnn"]["top_k"][0]
    assert rows[0]["label"] == top["label"]
    assert float(rows[0]["probability"]) == pytest.approx(top["probability"], abs=1e-4)


def test_export_pdf_renders_every_image(client, tmp_path):
    _, comparison = compared_page(client)
    response = client.post("/export/pdf", data={"csrf_token": csrf_token(client), "comparison": comparison})
    assert response.status_code == 200 and response.mimetype == "application/pdf" and response.data[:5] == b"%PDF-"
    (tmp_path / "c.pdf").write_bytes(response.data)
    text = pdf_text(tmp_path / "c.pdf", "-layout")
    assert "3 images: the models agree on" in text and "1 could not be read" in text
    assert "photo.jpg" in text and "café.png" in text and "could not classify" in text
    assert "Custom CNN" in text and "MobileNetV2" in text and "the models' view" in text
    flat = re.sub(r"\s+", " ", pdf_text(tmp_path / "c.pdf"))
    assert "a face detector finds a person" in flat and "as sent" in flat  # every check the verdict makes (issue 41)


def test_the_exports_say_how_each_photo_became_the_models_square(client, tmp_path):
    """Found by a newcomer walk: with "the whole photo" chosen, the PDF export said the models see a centre crop
    (its thumbnails showed the padded view), and the JSON export had no crop field."""
    import html
    import json

    for crop, words in (("whole", "the whole photo, padded to a square"), ("centre", "the photo's centre square")):
        response = client.post("/", data={"csrf_token": csrf_token(client), "crop": crop,
                                          "files": upload((JPEG, "photo.jpg"))}, content_type="multipart/form-data")
        comparison = html.unescape(re.search(r'name="comparison" value="([^"]*)"',
                                             response.get_data(as_text=True)).group(1))
        as_json = client.post("/export/json", data={"csrf_token": csrf_token(client), "comparison": comparison})
        assert json.loads(as_json.data)["crop"] == crop
        as_pdf = client.post("/export/pdf", data={"csrf_token": csrf_token(client), "comparison": comparison})
        (tmp_path / f"{crop}.pdf").write_bytes(as_pdf.data)
        flat = re.sub(r"\s+", " ", pdf_text(tmp_path / f"{crop}.pdf"))
        assert words in flat and "centre crop" not in flat


def test_export_pdf_never_paints_one_rows_text_over_another(app, client, tmp_path):
    """The longest reasons and names the schema allows: every row grows to hold its text (issue 30, #10)."""
    from webapp.exports import sign_comparison

    _, comparison = compared_page(client)
    payload = signed_payload(app, comparison)
    for n, result in enumerate(payload["results"]):
        result["source"]["name"] = f"a-long-file-name-from-a-phone-camera-roll-{n}-" + "x" * 60 + ".jpg"
        if result.get("predictions"):
            result["uncertain"] = True
            result["uncertain_reason"] = ("out of scope: probably not one of the 10 classes; and the models "
                                          "disagree; and low confidence: " + "every word matters " * 20)[:500]
    with app.test_request_context():
        resigned = sign_comparison(payload)
    response = client.post("/export/pdf", data={"csrf_token": csrf_token(client), "comparison": resigned})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    (tmp_path / "long.pdf").write_bytes(response.data)
    assert "every word matters" in " ".join(pdf_text(tmp_path / "long.pdf").split())
    assert overlapping_words(tmp_path / "long.pdf") == []


def signed_payload(app, comparison: str) -> dict:
    from itsdangerous import URLSafeTimedSerializer

    from webapp.exports import SIGNING_SALT

    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SIGNING_SALT).loads(comparison)


KNOWN = {"custom_cnn": {"short_name": "CNN", "test_accuracy": 0.9}, "mobilenetv2": {"short_name": "MNv2",
                                                                                     "test_accuracy": 0.95}}


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(results=[]), "results: List should have at least 1 item"),
    (lambda c: c["results"][0]["predictions"]["custom_cnn"]["top_k"][0].update(label="<script>"), "label"),
    (lambda c: c["results"][0]["predictions"]["custom_cnn"]["top_k"][0].update(probability=7), "less than or equal"),
    (lambda c: c["results"][0]["predictions"].update(evil=c["results"][0]["predictions"]["custom_cnn"]),
     "served models"),
    (lambda c: c["results"][0].update(thumbnail="data:image/svg+xml;base64,PHN2Zz4="), "PNG or JPEG"),
    (lambda c: c["results"][0].update(model_view="data:image/png;base64,!!!"), "could not be decoded"),
    (lambda c: c["results"][0].update(width="wide"), "width"),
    (lambda c: c["results"][0]["source"].update(type="disk"), "source.type"),
    (lambda c: c["results"][0].update(model_errors={"custom_cnn": 5}), "model_errors.custom_cnn"),
    (lambda c: c["results"][0].update(model_errors={"custom_cnn": "boom"}), "model_errors.custom_cnn"),
    (lambda c: c["results"][0].update(model_errors=[1]), "model_errors"),
    (lambda c: c["results"][0].update(extra=1), "Extra inputs are not permitted"),
])
def test_a_signed_comparison_is_still_checked_against_the_schema(app, client, mutate, message):
    """Even a comparison carrying a valid signature (a leaked key) is checked field by field: a clear 400."""
    from webapp.exports import checked
    from webapp.inference import RequestError

    _, comparison = compared_page(client)
    data = signed_payload(app, comparison)
    mutate(data)
    with app.app_context(), pytest.raises(RequestError, match=message) as raised:
        checked(data, KNOWN, 32)
    assert raised.value.status == 400


@pytest.mark.parametrize("tamper", [
    lambda c: "{not json",
    lambda c: c[:-3] + ("AAA" if not c.endswith("AAA") else "BBB"),  # the signature no longer matches
    lambda c: json.dumps({"results": [{"source": {"type": "file"}, "model_errors": {"custom_cnn": 5}}]}),
])
def test_export_renders_only_what_this_site_signed(client, tamper):
    _, comparison = compared_page(client)
    for fmt in ("pdf", "csv", "json"):
        response = client.post(f"/export/{fmt}", data={"csrf_token": csrf_token(client), "comparison":
                                                       tamper(comparison)})
        assert response.status_code == 400 and "not made by this site" in response.get_data(as_text=True)


def test_export_of_a_huge_image_or_without_csrf_is_refused(app, client):
    import base64

    from webapp.exports import checked
    from webapp.inference import RequestError

    _, comparison = compared_page(client)
    data = signed_payload(app, comparison)
    big = encode(Image.new("RGB", (2000, 10)), "PNG")
    data["results"][0]["thumbnail"] = "data:image/png;base64," + base64.b64encode(big).decode()
    with app.app_context(), pytest.raises(RequestError, match="more than this page makes"):
        checked(data, KNOWN, 32)
    assert client.post("/export/csv", data={"comparison": comparison}).status_code == 400
    unknown = client.post("/export/xls", data={"csrf_token": csrf_token(client), "comparison": comparison})
    assert unknown.status_code == 404


@pytest.mark.parametrize(("path", "kind"), [("/api/v1/predict", "image/jpeg"), ("/api/v1/evaluate?format=csv",
                                                                             "multipart/form-data; boundary=x"),
                                             ("/export/xls", "application/x-www-form-urlencoded")])
def test_a_body_the_app_refuses_unread_is_read_away_so_the_answer_arrives_whole(client, path, kind):
    """gunicorn reads away at most 64 KB of an unread body, then closes, and nginx turns that into a 502: the app
    reads the rest itself (webapp/transport.py)."""
    import io

    body = bytes(3 * 2**20)
    stream = io.BytesIO(body)
    response = client.post(path, input_stream=stream, content_length=len(body), content_type=kind)
    assert 400 <= response.status_code < 500 and stream.tell() == len(body)


def test_the_api_and_every_export_carry_both_verdicts(app, client, monkeypatch, tmp_path):
    import csv
    import io
    import json

    import models.pipeline
    from models.uncertainty import Rule
    from tests.test_scope import FixedGate

    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: Rule(0.0, {}, {}, 1.0, FixedGate.sha256))
    monkeypatch.setattr(models.pipeline, "load_gate", lambda: FixedGate([4.0, -3.0]))
    api = client.post("/api/v1/predict", data={"files": upload((JPEG, "a.jpg"), (RGBA_PNG, "b.png"))},
                      content_type="multipart/form-data")
    assert api.status_code == 200
    schema_validator(app, "PredictResponse").validate(api.json)
    outside, inside = api.json["results"]
    assert outside["out_of_scope"] is True and outside["uncertain"] is True and outside["out_of_scope_score"] > 0.5
    assert inside["out_of_scope"] is False and inside["out_of_scope_score"] < 0.5
    page, comparison = compared_page(client)  # photo.jpg (4.0: out of scope), notes.txt, café.png (-3.0)
    assert page.count("out of scope: probably not one of the 10 classes") == 1
    assert 'data-out-of-scope="true"' in page
    token = csrf_token(client)
    body = json.loads(client.post("/export/json", data={"csrf_token": token, "comparison": comparison}).data)
    assert [r.get("out_of_scope") for r in body["results"]] == [True, None, False]
    rows = list(csv.DictReader(io.StringIO(client.post("/export/csv", data={
        "csrf_token": token, "comparison": comparison}).data.decode("utf-8-sig"))))
    assert {r["out_of_scope"] for r in rows if r["source"] == "photo.jpg"} == {"True"}
    assert all(float(r["out_of_scope_score"]) > 0.5 for r in rows if r["source"] == "photo.jpg")
    (tmp_path / "c.pdf").write_bytes(client.post("/export/pdf", data={"csrf_token": token,
                                                                      "comparison": comparison}).data)
    text = " ".join(pdf_text(tmp_path / "c.pdf").split())
    assert "(1 of them out of scope)" in text and "probably not one of the 10 classes" in text, text


def test_a_true_class_per_file_says_which_model_was_right_on_the_page_and_in_every_export(client, tmp_path):
    """The optional true class of each file (and the examples' own labels): each model's answer marked right or
    wrong, a summary sentence counting them, and the class in the CSV, JSON and PDF exports."""
    import csv
    import html
    import io
    import json

    from models import load_predictor
    from models.cifar10 import CLASS_NAMES

    image = [Image.open(io.BytesIO(JPEG))]
    said = {name: CLASS_NAMES[load_predictor(name).predict_proba(image).argmax(1)[0]]
            for name in ("custom_cnn", "mobilenetv2")}
    right = said["custom_cnn"]
    wrong = next(c for c in CLASS_NAMES if c not in said.values())
    mobilenet_right = int(said["mobilenetv2"] == right)
    response = client.post("/", data={"csrf_token": csrf_token(client), "true_labels": [right, "", wrong.upper()],
                                      "files": upload((JPEG, "a.jpg"), (JPEG, "b.jpg"), (JPEG, "c.jpg"))},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and page.count("true class: <strong>") == 2
    assert page.count("verdict-right") == 1 + mobilenet_right and page.count("verdict-wrong") == 3 - mobilenet_right
    summary = re.search(r'id="summary">([^<]*)<', page).group(1)
    assert (f"On the 2 images with a true class, Custom CNN was right on 1 and MobileNetV2 on {mobilenet_right}"
            in summary)
    assert ("equally often" if mobilenet_right else "Custom CNN was right more often here") in summary
    assert "Evaluate gives intervals" in summary
    comparison = html.unescape(re.search(r'name="comparison" value="([^"]*)"', page).group(1))
    token = csrf_token(client)
    rows = list(csv.DictReader(io.StringIO(client.post("/export/csv", data={
        "csrf_token": token, "comparison": comparison}).data.decode("utf-8-sig"))))
    first = [(r["source"], r["model"], r["true_label"], r["correct"]) for r in rows if r["rank"] == "1"]
    assert first[:2] == [("a.jpg", "custom_cnn", right, "True"), ("a.jpg", "mobilenetv2", right,
                                                                   str(bool(mobilenet_right)))]
    assert {r["true_label"] for r in rows if r["source"] == "b.jpg"} == {""}
    assert {r["correct"] for r in rows if r["rank"] != "1"} == {""}
    body = json.loads(client.post("/export/json", data={"csrf_token": token, "comparison": comparison}).data)
    assert [r.get("true_label") for r in body["results"]] == [right, None, wrong]
    (tmp_path / "c.pdf").write_bytes(client.post("/export/pdf", data={"csrf_token": token,
                                                                      "comparison": comparison}).data)
    text = " ".join(pdf_text(tmp_path / "c.pdf").split())
    assert f"true class: {right}" in text and "Custom CNN was right on 1" in text and "wrong" in text


@pytest.mark.parametrize("labels, message", [
    (["person"], "the true class must be one of the 10 classes"),
    (["cat", "dog"], "2 true classes were sent for 1 file"),
])
def test_a_bad_true_class_is_a_clear_error(client, labels, message):
    response = client.post("/", data={"csrf_token": csrf_token(client), "true_labels": labels,
                                      "files": upload((JPEG, "a.jpg"))}, content_type="multipart/form-data")
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_the_examples_carry_their_own_true_class(client):
    page = client.post("/", data={"csrf_token": csrf_token(client), "examples": "all"}).get_data(as_text=True)
    assert "On the 12 images with a true class" in page and page.count("true class: <strong>") == 12


def test_file_names_are_shown_as_sent_but_a_crafted_path_keeps_only_its_last_part():
    from webapp.inference import display_name

    assert display_name("a\\b.png") == "a\\b.png"  # a legal character on Linux
    assert display_name("../../etc/passwd") == "passwd" and display_name("x/\u202eevil.png") == "evil.png"


def test_the_comparison_pdf_never_leaves_a_page_holding_one_row(client, tmp_path):
    """Rows flow from page to page (no fixed blocks of six that leave a lone row on a page of its own)."""
    files = [(JPEG, f"photo-{n:02d}-" + "long-name-" * (20 if n == 0 else 1) + ".jpg") for n in range(9)]
    page = client.post("/", data={"csrf_token": csrf_token(client), "files": upload(*files)},
                       content_type="multipart/form-data").get_data(as_text=True)
    import html

    comparison = html.unescape(re.search(r'name="comparison" value="([^"]*)"', page).group(1))
    (tmp_path / "c.pdf").write_bytes(client.post("/export/pdf", data={"csrf_token": csrf_token(client),
                                                                      "comparison": comparison}).data)
    pages = pdf_text(tmp_path / "c.pdf").split("\f")[:-1]
    rows = [page.count(" px") for page in pages]
    assert sum(rows) == 9 and all(count >= 2 for count in rows[:-1]), rows


def test_explanations_on_the_page_and_in_every_export(client, tmp_path):
    """Asked on the form, each card carries both maps (drawn by the page's script from the grid) with their text;
    without, "Explain these results" computes them from the views the signed comparison carries; the JSON, CSV
    and PDF exports then include them."""
    import csv
    import html
    import io
    import json

    asked = client.post("/", data={"csrf_token": csrf_token(client), "explain": "true",
                                   "files": upload((JPEG, "a.jpg"), (b"not an image", "b.txt"))},
                        content_type="multipart/form-data").get_data(as_text=True)
    assert asked.count('class="explanation"') == 2 and 'id="why-all"' in asked and "looked at" in asked
    assert '<details class="why" id="why-0" open>' in asked and "explain-results" not in asked
    assert "and" in re.search(r'id="timing">(.*?)</p>', asked, re.S).group(1) and "on its\n  maps" in asked
    plain = client.post("/", data={"csrf_token": csrf_token(client), "files": upload((JPEG, "a.jpg"))},
                        content_type="multipart/form-data").get_data(as_text=True)
    assert 'class="explanation"' not in plain and 'id="explain-results"' in plain
    comparison = html.unescape(re.search(r'name="comparison" value="([^"]*)"', plain).group(1))
    later = client.post("/explain", data={"csrf_token": csrf_token(client), "comparison": comparison})
    page = later.get_data(as_text=True)
    assert later.status_code == 200 and page.count('class="explanation"') == 2
    assert '<details class="why" id="why-0" open>' in page  # asked for by a click: shown, not one more click away
    grids = [json.loads(html.unescape(g)) for g in re.findall(r'data-grid="([^"]*)"', page)]
    assert all(len(g) == 8 and len(g[0]) == 8 for g in grids)
    signed = html.unescape(re.search(r'name="comparison" value="([^"]*)"', page).group(1))
    token = csrf_token(client)
    body = json.loads(client.post("/export/json", data={"csrf_token": token, "comparison": signed}).data)
    explanation = body["results"][0]["predictions"]["custom_cnn"]["explanation"]
    assert explanation["target"] == body["results"][0]["predictions"]["custom_cnn"]["top_k"][0]["label"]
    rows = list(csv.DictReader(io.StringIO(client.post("/export/csv", data={
        "csrf_token": token, "comparison": signed}).data.decode("utf-8-sig"))))
    assert all(r["looked_at"].startswith(("the ", "no part in particular")) for r in rows if r["rank"] == "1")
    (tmp_path / "c.pdf").write_bytes(client.post("/export/pdf", data={"csrf_token": token, "comparison": signed}).data)
    assert " ".join(pdf_text(tmp_path / "c.pdf").split()).count("looked at") == 2
    assert overlapping_words(tmp_path / "c.pdf") == []
    forged = client.post("/explain", data={"csrf_token": token, "comparison": comparison[:-4] + "AAAA"})
    assert forged.status_code == 400 and "to explain them" in forged.get_data(as_text=True)
    reloaded = client.get("/explain")
    assert reloaded.status_code == 302 and reloaded.headers["Location"].endswith("/")


def test_on_the_page_maps_over_the_limit_or_when_busy_never_cost_the_visitor_the_results(app, client):
    """Over EXPLAIN_MAX_IMAGES the first ones get maps, with a notice; with every slot taken the results come
    without maps, with a notice (the API answers 400 and 429 with Retry-After instead)."""
    import io

    app.config["EXPLAIN_MAX_IMAGES"] = 1
    response = client.post("/", data={"csrf_token": csrf_token(client), "explain": "true",
                                      "files": upload((JPEG, "a.jpg"), (JPEG, "b.jpg"))},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="why-0"' in page and 'id="why-1"' not in page
    assert "Maps were made for the first 1 of the 2 images" in page
    app.extensions["admission"].slots["explain"] = 0  # every explanation slot taken
    busy = client.post("/", data={"csrf_token": csrf_token(client), "explain": "true",
                                  "files": upload((JPEG, "a.jpg"))}, content_type="multipart/form-data")
    page = busy.get_data(as_text=True)
    assert busy.status_code == 200 and "without them" in page and 'id="why-0"' not in page and 'id="results"' in page
    api = client.post("/api/v1/predict", data={"files": [(io.BytesIO(JPEG), "a.jpg")], "explain": "true"},
                      content_type="multipart/form-data")
    assert api.status_code == 429 and api.headers["Retry-After"] == "5" and api.json["error"]["code"] == "busy"


def test_explaining_again_and_again_cannot_keep_a_comparison_alive_past_the_hour(app, client):
    """/explain signs the page afresh, so the age is taken from the comparison's first classification."""
    import datetime as dt
    import html

    from webapp.exports import sign_comparison

    page = client.post("/", data={"csrf_token": csrf_token(client), "files": upload((JPEG, "a.jpg"))},
                       content_type="multipart/form-data").get_data(as_text=True)
    body = signed_payload(app, html.unescape(re.search(r'name="comparison" value="([^"]*)"', page).group(1)))
    body["created"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    with app.test_request_context():
        old = sign_comparison(body)  # a valid signature made now, on a comparison first made two hours ago
    response = client.post("/explain", data={"csrf_token": csrf_token(client), "comparison": old})
    assert response.status_code == 400 and "more than an hour old" in response.get_data(as_text=True)


def test_a_few_labelled_images_are_put_beside_the_test_splits_verdict():
    """Issue 41: the one-click examples said "Custom CNN was right more often here" while the report finds
    MobileNetV2 better on 10,000 test images. A count over a few images now carries the test split's figures."""
    from reports.comparison import summary_sentence

    results = [{"true_label": "cat", "agree": False, "predictions": {
        "custom_cnn": {"top_k": [{"label": "cat"}]}, "mobilenetv2": {"top_k": [{"label": "dog"}]}}}]
    models = {"custom_cnn": {"short_name": "Custom CNN", "test_accuracy": 0.9402},
              "mobilenetv2": {"short_name": "MobileNetV2", "test_accuracy": 0.9522}}
    text = summary_sentence({"results": results, "models": models})
    assert text.endswith("Custom CNN was right more often here (so few images say little: on the 10,000 CIFAR-10 "
                         "test images MobileNetV2 is right 95.2% of the time and Custom CNN 94.0%; Evaluate gives "
                         "intervals).")
    untested = {name: {"short_name": m["short_name"]} for name, m in models.items()}
    assert summary_sentence({"results": results, "models": untested}).endswith(
        "(so few images say little: Evaluate gives intervals).")


def test_the_crop_is_a_request_option_in_the_form_the_api_and_its_schema(app, client):
    """Issue 41: a wide photo's centre square cut its subject and there was no way to keep the whole photo. `crop`
    ("centre" or "whole") is validated once, reaches the seam, is echoed by the API and described by OpenAPI."""
    import io

    wide = io.BytesIO()
    Image.new("RGB", (300, 100), (200, 40, 40)).save(wide, "PNG")
    files = lambda: {"files": [(io.BytesIO(wide.getvalue()), "wide.png")]}  # noqa: E731
    centre = client.post("/api/v1/predict", data=files(), content_type="multipart/form-data")
    whole = client.post("/api/v1/predict", data={**files(), "crop": "whole"}, content_type="multipart/form-data")
    assert centre.status_code == whole.status_code == 200
    assert centre.json["crop"] == "centre" and whole.json["crop"] == "whole"
    schema_validator(app, "PredictResponse").validate(whole.json)
    as_json = client.post("/api/v1/predict", json={"urls": [], "crop": "sideways"})
    assert as_json.status_code == 400 and as_json.json["error"]["code"] == "invalid_crop"
    document = client.get("/api/v1/openapi.json").json
    bodies = document["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]
    assert all(body["schema"]["properties"]["crop"]["enum"] == ["centre", "whole"] for body in bodies.values())
    page = client.post("/", data={**files(), "crop": "whole", "csrf_token": csrf_token(client)},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert re.search(r'id="crop-whole"\s+checked', page) and not re.search(r'id="crop-centre"\s+checked', page)
    assert "the 32×32 view the models saw" in page
    refused = client.post("/", data={**files(), "crop": "edge", "csrf_token": csrf_token(client)},
                          content_type="multipart/form-data")
    assert refused.status_code == 400 and "crop must be one of centre, whole" in refused.get_data(as_text=True)


def test_one_signer_and_a_signature_for_one_purpose_is_refused_for_another(app):
    """The export's comparison and the evaluation's report are signed by webapp.security alone, each for its own
    purpose: an evaluation report posted as a comparison to export (or the other way) is refused."""
    from itsdangerous import BadSignature

    from webapp.evaluation import SIGNING_SALT as REPORT
    from webapp.exports import SIGNING_SALT as COMPARISON
    from webapp.security import sign, unsign

    with app.test_request_context():
        signed = sign({"title": "a report"}, REPORT)
        assert unsign(signed, REPORT) == {"title": "a report"}
        with pytest.raises(BadSignature):
            unsign(signed, COMPARISON)
