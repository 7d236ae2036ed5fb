"""Fuzzing: Schemathesis drives every API operation from the app's own OpenAPI document (no 5xx; every answer,
errors included, conforms to its schema), and Hypothesis throws arbitrary archives at the ZIP reader and
arbitrary JSON at the export reader (a clear refusal or a result, never another exception)."""

from __future__ import annotations

import io
import zipfile
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reports.user_data import DatasetError, Limits, read_zip
from tests.helpers import fake_predictors

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    """The app over fast fake models; URL fetching answers at once (the fetcher has its own tests), so fuzzed URLs
    never leave the process."""
    from webapp import create_app, inference
    from webapp.fetch import FetchError

    with fake_predictors(tmp_path_factory.mktemp("fuzz-models")), pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "fetch_all", lambda urls, policy: [FetchError("not fetched in this test")] * len(urls))
        app = create_app({"TESTING": True, "SECRET_KEY": "fuzz", "PRELOAD_MODELS": True})
        yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


OPERATIONS = ["POST /api/v1/predict", "POST /api/v1/evaluate", "GET /api/v1/models", "GET /api/v1/metrics"]


def test_the_fuzzed_operations_are_every_operation_of_the_document(api_schema):
    """Schemathesis leaves out the document's own path (it loaded it: that is its test)."""
    found = sorted(result.ok().label for result in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), [(label, mode) for label in OPERATIONS for mode in GenerationMode
                                             if mode is GenerationMode.POSITIVE or label.startswith("POST")])
def test_every_api_operation_survives_fuzzing_and_answers_as_documented(api_schema, label, mode):
    """Schemathesis's cases for the operation, valid (positive) and invalid (negative) bodies, parameters and
    headers (the GET operations take none, so only valid ones): no 5xx, a documented status and content type,
    and a body that matches the documented schema."""
    operation = next(r.ok() for r in api_schema.get_all_operations() if r.ok().label == label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def run(case) -> None:
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                       response_schema_conformance])

    run()


# ----------------------------------------------------------------------------- the ZIP reader
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
members = st.dictionaries(names, st.binary(max_size=2_000), min_size=1, max_size=8)


def zip_of(files: dict[str, bytes], method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


LIMITS = Limits(max_images=5, max_file_bytes=1_000, max_total_bytes=10_000, max_ratio=100, max_members=12)


def read_everything(data: bytes) -> None:
    try:
        dataset = read_zip(data, LIMITS)
    except DatasetError:
        return
    for item in dataset.items:
        item.load()
        assert item.problem is None or len(item.problem) <= 200
        assert len(item.name) <= 200


@given(files=members, method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
@FUZZ
def test_any_archive_is_read_or_refused_in_words(files, method):
    read_everything(zip_of(files, method))


@given(files=members, flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6))
@FUZZ
def test_a_damaged_archive_is_read_or_refused_in_words(files, flips):
    data = bytearray(zip_of(files, zipfile.ZIP_DEFLATED))
    for position, value in flips:
        data[position % len(data)] = value
    read_everything(bytes(data))


@given(data=st.binary(max_size=3_000))
@FUZZ
def test_any_bytes_are_read_or_refused_in_words(data):
    read_everything(data)


@given(files=members, comment=st.binary(max_size=300), zip64=st.booleans())
@FUZZ
def test_the_end_record_reader_finds_what_zipfile_finds(files, comment, zip64):
    """reports.user_data.directory_extent is hand-written at the boundary (zipfile's own reader is private): on
    any archive zipfile writes, with or without a comment (one may hold a fake signature) or ZIP64 records, it
    reads the entry count and directory size that zipfile itself then parses."""
    from reports.user_data import directory_extent

    buffer = io.BytesIO()
    # A file-count limit of 0 makes zipfile write the ZIP64 end record and its locator (as CPython's own tests do).
    with mock.patch.object(zipfile, "ZIP_FILECOUNT_LIMIT", 0 if zip64 else zipfile.ZIP_FILECOUNT_LIMIT), \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.comment = comment
    assert b"PK\x06\x07" in buffer.getvalue() or not zip64
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as reread:
        entries = len(reread.infolist())
    found = directory_extent(buffer.getvalue())
    assert found is not None and found[0] == entries
    assert found[1] == sum(46 + len(i.filename.encode()) + len(i.extra) + len(i.comment) for i in reread.infolist())


@given(data=st.binary(max_size=3_000), tail=st.sampled_from([b"", b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"]))
@FUZZ
def test_the_end_record_reader_reads_any_bytes(data, tail):
    """Any bytes give an extent or None, never an error."""
    from reports.user_data import directory_extent

    found = directory_extent(tail + data + tail + bytes(22))
    assert found is None or all(isinstance(n, int) and n >= 0 for n in found)


@given(data=st.binary(max_size=600), head=st.sampled_from([b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"]))
@FUZZ
def test_any_tiff_like_bytes_are_refused_in_words(data, head):
    from models.images import ImageIntakeError, decode_image

    with pytest.raises(ImageIntakeError, match="TIFF images are not accepted"):
        decode_image(head + data)


# ----------------------------------------------------------------------------- the export reader
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                        max_size=5), max_leaves=30)
result_like = st.fixed_dictionaries({"index": st.integers(-1, 3), "source": st.fixed_dictionaries(
    {"type": st.sampled_from(["file", "url", "example", "disk"])}, optional={"name": json_values}),
    "predictions": json_values | st.dictionaries(st.sampled_from(["custom_cnn", "evil"]), json_values),
    "model_errors": json_values}, optional={"width": json_values, "thumbnail": json_values})
comparison_like = st.fixed_dictionaries({"created": json_values, "models": json_values, "top_k": json_values,
                                         "results": st.lists(result_like, max_size=3) | json_values})


@given(body=json_values | comparison_like)
@FUZZ
def test_any_posted_comparison_is_exported_or_refused_in_words(body):
    from flask import Flask

    from webapp.exports import checked
    from webapp.inference import RequestError

    known = {"custom_cnn": {"short_name": "CNN", "test_accuracy": 0.9}}
    with Flask(__name__).app_context():
        try:
            result = checked(body, known, 32)
        except RequestError as exc:
            assert exc.status == 400 and len(str(exc)) < 500
            return
    assert set(result) == {"models", "results", "created"}
