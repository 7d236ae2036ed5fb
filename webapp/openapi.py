"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json: the paths are written here, every
object's schema is generated from webapp/schema.py (JSON Schema 2020-12), and the tests fuzz the app against it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from webapp import schema
from webapp.schema import COMPONENTS


def component_schemas() -> dict[str, Any]:
    """Every object's JSON Schema, generated from webapp/schema.py (as the answers are serialised)."""
    _, top = models_json_schema([(model, "serialization") for model in COMPONENTS],
                                ref_template="#/components/schemas/{model}")
    return top["$defs"]


def request_properties(model: type[BaseModel], config: dict[str, Any], *skip: str) -> dict[str, Any]:
    """A request's fields as JSON Schema properties, generated from its one description in webapp/schema.py (what
    validates it): the values the server decides filled in from `config` (the default top_k, the served models,
    the limits a description names in braces)."""
    properties = model.model_json_schema()["properties"]
    for name, prop in properties.items():
        prop.pop("title", None)
        if "description" in prop:
            prop["description"] = prop["description"].format_map(config)
        if name == "top_k":
            prop["default"] = config["DEFAULT_TOP_K"]
        if name == "models":
            prop["items"] = {"enum": list(config["MODELS"])}
            prop.pop("default", None)
    return {name: prop for name, prop in properties.items() if name not in skip}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for s in statuses}


def openapi_document(config: dict[str, Any]) -> dict[str, Any]:
    limits = (f"At most {config['MAX_IMAGES']} images (files + URLs) per request, "
              f"{config['MAX_FILE_BYTES'] // (1024 * 1024)} MB per image, "
              f"{config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB per request.")
    options = request_properties(schema.PredictRequest, config)
    evaluate_options = request_properties(schema.EvaluateRequest, config, "format")
    return {
        "openapi": "3.1.0",
        "info": {"title": "CIFAR-10 model comparison API", "version": "1.0.0",
                 "description": "Classify images with every served model side by side. " + limits},
        "servers": [{"url": "/"}],
        "paths": {
            "/api/v1/predict": {"post": {
                "summary": "Classify uploaded images and/or image URLs with each model",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}, **options}}},
                    "application/json": {"schema": {"type": "object", "properties": options}},
                }},
                "responses": {
                    "200": {"description": "one result per image, in order; a bad image has `error` in place",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                    **error_responses(400, 413, 429),
                },
            }},
            "/api/v1/evaluate": {"post": {
                "summary": "Compare the models on your labelled images: the metrics (or ?format=pdf, ?format=csv)",
                "description": (f"A ZIP with one folder per class (cat/001.jpg) or a labels CSV (filename,label), "
                                f"or image files labelled by name (cat_01.jpg) or by `labels` (same order). At most "
                                f"{config['EVALUATE_MAX_IMAGES']} images, "
                                f"{config['EVALUATE_MAX_ARCHIVE_BYTES'] // 1_000_000} MB per ZIP. Unusable files "
                                f"are listed in `problems`."),
                "parameters": [{"name": "format", "in": "query",
                                "schema": request_properties(schema.EvaluateRequest, config)["format"]}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {
                        "archive": {"type": "string", "format": "binary"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        **evaluate_options}}}}},
                "responses": {
                    "200": {"description": "the metrics (JSON), the report (PDF) or the every-image table (CSV)",
                            "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EvaluateResponse"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                        "text/csv": {"schema": {"type": "string"}}}},
                    **error_responses(400, 413, 429),
                },
            }},
            "/api/v1/models": {"get": {"summary": "What each model is (the predictor `info`)", "responses": {
                "200": {"description": "models", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ModelsResponse"}}}}}}},
            "/api/v1/metrics": {"get": {"summary": "The evaluation report's metrics.json", "responses": {
                "200": {"description": "report metrics", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["models", "comparisons"]}}}},
                **error_responses(404)}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": component_schemas()},
    }
