"""A request's options are described once (webapp/schema.py): the form, the JSON body and the OpenAPI document
follow from that one description."""

from __future__ import annotations

import io
from typing import Any, Literal

import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import Field, field_validator
from werkzeug.datastructures import MultiDict

from devkit.images import encode, photo
from webapp import schema
from webapp.inference import RequestError
from webapp.options import read_options

JPEG = encode(photo(64, 48), "JPEG")
CONFIG = {"DEFAULT_TOP_K": 3, "MODELS": ["custom_cnn", "mobilenetv2"]}


class WithPalette(schema.PredictRequest):
    """A new option, added in this one place."""

    palette: Literal["natural", "greyscale"] = Field(default="natural", description="how the photo is coloured")

    @field_validator("palette", mode="before")
    @classmethod
    def _palette(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def form(**fields: Any) -> dict[str, Any]:
    return {"files": [(io.BytesIO(JPEG), "a.jpg")], **fields}


def test_an_option_added_to_the_schema_is_validated_in_the_form_and_the_json_body_and_documented(client, monkeypatch):
    monkeypatch.setattr(schema, "PredictRequest", WithPalette)
    accepted = client.post("/api/v1/predict", data=form(palette="Greyscale"), content_type="multipart/form-data")
    refused_form = client.post("/api/v1/predict", data=form(palette="sepia"), content_type="multipart/form-data")
    refused_json = client.post("/api/v1/predict", json={"urls": [], "palette": "sepia"})
    assert accepted.status_code == 200, accepted.json
    for refused in (refused_form, refused_json):
        assert refused.status_code == 400
        error = refused.json["error"]
        assert error["code"] == "invalid_palette" and "natural" in error["message"] and "palette" in error["message"]
    document = client.get("/api/v1/openapi.json").json
    validate_openapi(document)
    bodies = document["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]
    for body in bodies.values():
        assert body["schema"]["properties"]["palette"] == {
            "default": "natural", "description": "how the photo is coloured", "enum": ["natural", "greyscale"],
            "type": "string"}
    monkeypatch.undo()  # the described schema is the one the app uses: without the option, none of this exists
    document = client.get("/api/v1/openapi.json").json
    assert "palette" not in document["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]


@pytest.mark.parametrize("source", [MultiDict([("top_k", "5"), ("models", "mobilenetv2, custom_cnn"),
                                               ("models", "custom_cnn"), ("crop", " Whole "), ("explain", "on"),
                                               ("urls", "http://a.example/1.png\n\n http://a.example/2.png ")]),
                                    {"top_k": 5, "models": ["mobilenetv2", "custom_cnn"], "crop": "whole",
                                     "explain": True, "urls": ["http://a.example/1.png", "http://a.example/2.png"]}])
def test_a_form_and_a_json_body_give_the_same_options(source):
    options = read_options(schema.PredictRequest, source, CONFIG)
    assert options.model_dump() == {"urls": ["http://a.example/1.png", "http://a.example/2.png"], "top_k": 5,
                                    "models": ["mobilenetv2", "custom_cnn"], "crop": "whole", "explain": True}


def test_absent_options_take_the_servers_defaults():
    options = read_options(schema.PredictRequest, MultiDict(), {**CONFIG, "DEFAULT_TOP_K": 4})
    assert options.model_dump() == {"urls": [], "top_k": 4, "models": CONFIG["MODELS"], "crop": "centre",
                                    "explain": False}


@pytest.mark.parametrize(("source", "code", "words"), [
    ({"top_k": True}, "invalid_top_k", "integer from 1 to 10"), ({"top_k": "2.5"}, "invalid_top_k", "'2.5'"),
    ({"top_k": 0}, "invalid_top_k", "got 0"), ({"models": [1]}, "invalid_models", "list of model names"),
    ({"models": "resnet"}, "unknown_model", "'resnet'; available: custom_cnn, mobilenetv2"),
    ({"crop": 3}, "invalid_crop", "one of centre, whole"), ({"explain": "maybe"}, "invalid_explain", "'maybe'"),
    ({"urls": "http://a.example/1.png"}, "invalid_urls", "list of strings"),
    ({"urls": [{"url": 1}]}, "invalid_urls", "list of strings"),
    ({"models": "x" * 500}, "unknown_model", "…"),  # what a client sent is quoted clipped
])
def test_each_bad_option_is_a_400_with_its_own_code(source, code, words):
    with pytest.raises(RequestError) as refused:
        read_options(schema.PredictRequest, source, CONFIG)
    assert refused.value.status == 400 and refused.value.code == code and words in str(refused.value)
    assert len(str(refused.value)) < 120


def test_a_json_body_that_is_not_an_object_is_refused():
    with pytest.raises(RequestError, match="must be an object") as refused:
        read_options(schema.PredictRequest, ["http://a.example/1.png"], CONFIG)
    assert refused.value.code == "invalid_json"


def test_evaluate_options_come_from_their_own_description():
    options = read_options(schema.EvaluateRequest, MultiDict([("labels", "cat"), ("labels", "dog"),
                                                              ("explain", "1"), ("format", "csv")]), CONFIG)
    assert options.model_dump() == {"labels": ["cat", "dog"], "explain": True, "format": "csv"}
    with pytest.raises(RequestError) as refused:
        read_options(schema.EvaluateRequest, MultiDict([("format", "xml")]), CONFIG)
    assert refused.value.code == "bad_format"
