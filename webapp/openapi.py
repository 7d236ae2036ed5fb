"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json and checked against real
responses by the tests (its schemas are plain JSON Schema 2020-12)."""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"], "additionalProperties": False,
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}},
    }},
}
LABELLED = {"type": "object", "required": ["label", "probability"], "additionalProperties": False,
            "properties": {"label": {"type": "string"}, "probability": {"type": "number", "minimum": 0, "maximum": 1}}}
MODEL_PREDICTION = {
    "type": "object", "required": ["top_k", "probabilities", "latency_ms"], "additionalProperties": False,
    "properties": {
        "top_k": {"type": "array", "items": {"$ref": "#/components/schemas/Labelled"}, "minItems": 1},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                          "description": "the full 10-way distribution, by class name"},
        "latency_ms": {"type": "number", "description": "this model's time per image in this request"},
    },
}
ITEM_ERROR = {"type": "object", "required": ["code", "message"], "additionalProperties": False,
              "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
SOURCE = {"type": "object", "required": ["type"], "additionalProperties": False,
          "properties": {"type": {"enum": ["file", "url"]}, "name": {"type": "string"}, "url": {"type": "string"}}}
RESULT = {
    "type": "object", "required": ["index", "source"], "additionalProperties": False,
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "source": {"$ref": "#/components/schemas/Source"},
        "error": {"$ref": "#/components/schemas/ItemError"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "predictions": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ModelPrediction"}},
        "model_errors": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ItemError"}},
        "agree": {"type": ["boolean", "null"], "description": "all models' top-1 labels are equal"},
        "uncertain": {"type": ["boolean", "null"], "description": "the models disagree or are unsure: the image "
                      "may not show one of the 10 classes (rule fitted on the validation split; null if none fits)"},
        "uncertain_reason": {"type": ["string", "null"], "description": "why, in words"},
    },
}
PREDICT_RESPONSE = {
    "type": "object", "required": ["models", "top_k", "results", "timing"], "additionalProperties": False,
    "properties": {
        "models": {"type": "array", "items": {"type": "string"}},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
        "timing": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["batch_ms", "ms_per_image", "images"],
            "properties": {"batch_ms": {"type": "number"}, "ms_per_image": {"type": "number"},
                           "images": {"type": "integer"}}}},
    },
}
MODELS_RESPONSE = {
    "type": "object", "required": ["models"], "additionalProperties": False,
    "properties": {"models": {"type": "array", "items": {
        "type": "object", "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}, "error": {"type": "string"},
                       "info": {"type": "object", "required": ["name", "display_name", "framework", "parameters",
                                                               "weights_sha256", "class_names"]}}}}},
}

INTERVAL = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
EVALUATE_MODEL = {
    "type": "object", "required": ["info", "accuracy", "accuracy_ci95", "top3_accuracy", "per_class", "macro_f1",
                                   "confusion_matrix", "confident_mistakes"],
    "properties": {
        "info": {"type": "object", "required": ["display_name", "short_name"]},
        "accuracy": {"type": "number", "minimum": 0, "maximum": 1}, "accuracy_ci95": INTERVAL,
        "top3_accuracy": {"type": "number"}, "macro_f1": {"type": "number"},
        "per_class": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["precision", "recall", "f1", "support"]}},
        "confusion_matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "calibration": {"type": "object", "required": ["ece", "mean_confidence", "bins"]},
        "calibration_note": {"type": "string", "description": "why calibration is not measured (too few images)"},
        "confident_mistakes": {"type": "array", "items": {"type": "object", "required": ["index", "name", "true"]}},
    },
}
EVALUATE_RESPONSE = {
    "type": "object", "required": ["title", "source", "layout", "files", "images", "classes_present", "problems",
                                   "models", "generated_at"],
    "properties": {
        "source": {"type": "string"}, "layout": {"type": "string"}, "title": {"type": "string"},
        "files": {"type": "integer"}, "images": {"type": "integer", "description": "labelled images evaluated"},
        "classes_present": {"type": "array", "items": {"type": "string"}},
        "per_class_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "problems": {"type": "array", "items": {"type": "object", "required": ["name", "problem"],
                                                "properties": {"name": {"type": "string"},
                                                               "problem": {"type": "string"}}}},
        "models": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/EvaluateModel"}},
        "comparison": {"type": "object", "required": ["a", "b", "accuracy_difference", "accuracy_difference_ci95",
                                                      "mcnemar", "agreement"]},
        "verdict": {"type": "string", "description": "the comparison in plain words"},
        "uncertain": {"type": "object", "required": ["flagged", "share", "accuracy_unflagged"]},
        "generated_at": {"type": "string"}, "seconds": {"type": "number"}, "bootstrap_resamples": {"type": "integer"},
    },
}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for s in statuses}


def openapi_document(config: dict[str, Any]) -> dict[str, Any]:
    limits = (f"At most {config['MAX_IMAGES']} images (files + URLs) per request, "
              f"{config['MAX_FILE_BYTES'] // (1024 * 1024)} MB per image, "
              f"{config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB per request.")
    options = {
        "top_k": {"type": "integer", "minimum": 1, "maximum": 10, "default": config["DEFAULT_TOP_K"]},
        "models": {"type": "array", "items": {"enum": list(config["MODELS"])},
                   "description": "default: every model"},
    }
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
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "urls": {"type": "array", "items": {"type": "string", "format": "uri"}},
                        **options}}},
                    "application/json": {"schema": {"type": "object", "properties": {
                        "urls": {"type": "array", "items": {"type": "string", "format": "uri"}}, **options}}},
                }},
                "responses": {
                    "200": {"description": "one result per image, in order; a bad image has `error` in place",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                    **error_responses(400, 413),
                },
            }},
            "/api/v1/evaluate": {"post": {
                "summary": "Compare the models on your labelled images: the report's metrics (or ?format=pdf)",
                "description": (f"A ZIP with one folder per class (cat/001.jpg) or a labels CSV (filename,label), "
                                f"or image files labelled by name (cat_01.jpg) or by `labels` (same order). At most "
                                f"{config['EVALUATE_MAX_IMAGES']} images, "
                                f"{config['EVALUATE_MAX_ARCHIVE_BYTES'] // 1_000_000} MB per ZIP. Unusable files "
                                f"are listed in `problems`."),
                "parameters": [{"name": "format", "in": "query", "schema": {"enum": ["json", "pdf"],
                                                                           "default": "json"}}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {
                        "archive": {"type": "string", "format": "binary"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "labels": {"type": "array", "items": {"type": "string"}}}}}}},
                "responses": {
                    "200": {"description": "the metrics (JSON) or the report (PDF)", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EvaluateResponse"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                    **error_responses(400, 413),
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
        "components": {"schemas": {
            "Error": ERROR, "Labelled": LABELLED, "ModelPrediction": MODEL_PREDICTION, "ItemError": ITEM_ERROR,
            "Source": SOURCE, "Result": RESULT, "PredictResponse": PREDICT_RESPONSE,
            "ModelsResponse": MODELS_RESPONSE, "EvaluateModel": EVALUATE_MODEL, "EvaluateResponse": EVALUATE_RESPONSE,
        }},
    }
