"""Evaluate both models on a person's labelled images, in the browser (/evaluate) and over the API
(/api/v1/evaluate): a ZIP (one folder per class, or a labels CSV) or image files labelled by name or by choice.

Stateless: nothing is stored. The page carries its own report, signed with the app's secret key, so that the
PDF button can post it back and get the same report as a PDF on any replica (they share SECRET_KEY).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template, request
from itsdangerous import BadSignature
from pydantic import ValidationError

from models.cifar10 import CLASS_NAMES
from reports.user_data import DatasetError, LabelledSet, Limits, plural, read_named_files, read_zip
from webapp import schema
from webapp.admission import costly, request_started
from webapp.health import model_status
from webapp.inference import RequestError, chosen, display_name
from webapp.options import read_options
from webapp.schema import EvaluateResponse, dump
from webapp.security import sign, unsign

bp = Blueprint("evaluation", __name__)
SIGNING_SALT = "own-images-report"


def dataset_limits() -> Limits:
    """The limits one evaluation is read and run within (reports.user_data.Limits), from the settings."""
    config = current_app.config
    return Limits(max_images=config["EVALUATE_MAX_IMAGES"], max_file_bytes=config["MAX_FILE_BYTES"],
                  max_total_bytes=config["EVALUATE_MAX_UNPACKED_BYTES"], max_ratio=config["EVALUATE_MAX_RATIO"],
                  max_members=config["EVALUATE_MAX_MEMBERS"], max_pixels=config["EVALUATE_MAX_PIXELS"],
                  max_seconds=config["EVALUATE_MAX_SECONDS"])


def read_request(options: schema.EvaluateRequest) -> tuple[LabelledSet, str]:
    """(the labelled set, what to call it) from the multipart request: `archive` (a ZIP) or `files` (+ `labels`)."""
    archive = request.files.get("archive")
    files = chosen(request.files.getlist("files"))
    archive = next(iter(chosen([archive] if archive is not None else [])), None)
    if archive is not None and files:
        raise RequestError("choose a ZIP or image files, not both: evaluate them one after the other",
                           "archive_and_files")
    try:
        if archive is not None:
            cap = current_app.config["EVALUATE_MAX_ARCHIVE_BYTES"]
            data = archive.stream.read(cap + 1)
            if len(data) > cap:
                raise RequestError(f"the ZIP is larger than {cap / 1e6:.0f} MB", "archive_too_large", 413)
            return read_zip(data, dataset_limits()), display_name(archive.filename)
        if files:
            cap = current_app.config["MAX_FILE_BYTES"]
            named = [(display_name(f.filename), f.stream.read(cap + 1)) for f in files]
            return (read_named_files(named, options.labels, dataset_limits()),
                    plural(len(files), "uploaded file"))
    except DatasetError as exc:
        raise RequestError(str(exc), "invalid_dataset") from None
    if request.path.startswith("/api/"):  # API callers need the field names; people on the page do not
        raise RequestError("send a ZIP of labelled images (field 'archive') or image files (field 'files')",
                           "no_images")
    raise RequestError("choose a ZIP of labelled images, or some image files, first", "no_images")


def evaluation_options() -> schema.EvaluateRequest:
    """The evaluation's options from its form and query, as webapp/schema.py describes them (this parses the body:
    call it once admitted)."""
    return read_options(schema.EvaluateRequest, request.values, current_app.config)


def run(dataset: LabelledSet, source: str, explain: bool) -> dict[str, Any]:
    """Evaluate; with `explain`, the gallery's maps too, within the explanation budget."""
    from reports.user_eval import evaluate

    names = [m["name"] for m in model_status() if m["ready"]]
    limit = current_app.config["EXPLAIN_MAX_IMAGES"]
    try:
        return evaluate(dataset, names, source=source, explain=limit if explain else 0,
                        explain_seconds=current_app.config["EXPLAIN_SECONDS"], started=request_started())
    except DatasetError as exc:
        raise RequestError(str(exc), "invalid_dataset") from None


def pdf_response(report: dict[str, Any]) -> Response:
    from reports.pdf import user_pdf  # WeasyPrint only when someone asks for a PDF

    return Response(user_pdf(report), mimetype="application/pdf", headers={
        "Content-Disposition": 'attachment; filename="cifar10-your-images.pdf"', "Cache-Control": "no-store"})


def page(**context: Any) -> str:
    config = current_app.config
    return render_template("evaluate.html", class_names=CLASS_NAMES, max_images=config["EVALUATE_MAX_IMAGES"],
                           max_archive_mb=config["EVALUATE_MAX_ARCHIVE_BYTES"] / 1e6,
                           explain_limit=config["EXPLAIN_MAX_IMAGES"],
                           explain_seconds=config["EXPLAIN_SECONDS"], **context)


@bp.get("/evaluate")
def form():
    return page()


@bp.post("/evaluate")
def evaluate_page():
    try:
        with costly("evaluate"):  # before the upload is read: a 429 costs nothing
            options = evaluation_options()
            dataset, source = read_request(options)
            report = run(dataset, source, options.explain)
    except RequestError as exc:
        return page(form_error=str(exc)), exc.status
    from reports.user_eval import for_signing

    return page(R=report, signed=sign(for_signing(report), SIGNING_SALT))


def signed_report() -> dict[str, Any]:
    """The report the page carries, posted back: this site's signature, and still only the report's own shape."""
    try:
        report = unsign(request.form.get("report", ""), SIGNING_SALT)
    except BadSignature:
        raise RequestError("this report expired or was not made by this site: evaluate the images again",
                           "invalid_report") from None
    from reports.user_eval import without_views

    try:
        EvaluateResponse.model_validate(without_views(report) if isinstance(report, dict) else report)
    except ValidationError:
        raise RequestError("this report cannot be rendered: evaluate the images again", "invalid_report") from None
    return report


def csv_response(report: dict[str, Any]) -> Response:
    from reports.user_eval import per_image_csv

    return Response(per_image_csv(report), mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="cifar10-your-images.csv"', "Cache-Control": "no-store"})


@bp.post("/evaluate/report.pdf")
def evaluate_pdf():
    with costly("export"):
        return pdf_response(signed_report())


@bp.post("/evaluate/images.csv")
def evaluate_csv():
    return csv_response(signed_report())


def api_evaluate():
    """POST /api/v1/evaluate: the metrics as JSON, or ?format=pdf the PDF (registered by webapp.api)."""
    from flask import jsonify

    from reports.user_eval import without_views

    fmt = read_options(schema.EvaluateRequest, request.args, current_app.config).format  # before the body is read
    with costly("evaluate"):
        options = evaluation_options()
        dataset, source = read_request(options)
        report = run(dataset, source, options.explain)
    if fmt == "pdf":
        return pdf_response(report)
    if fmt == "csv":
        return csv_response(report)
    return jsonify(dump(EvaluateResponse.model_validate(without_views(report))))
