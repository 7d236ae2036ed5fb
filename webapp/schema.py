"""The API's objects, described once.

Each class here is the one description of an object the service sends or takes back: the OpenAPI document's
schemas are generated from them (webapp/openapi.py), every JSON answer of /api/v1/predict is built through them,
and the comparison a results page posts back for export, and the JSON export itself, are validated against them.
pydantic because its JSON Schema output is 2020-12, the dialect of OpenAPI 3.1, and its validation and
serialisation come from the same class; its core is compiled and maintained by many.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from models.cifar10 import CLASS_NAMES
from models.images import CROPS

ClassName = Literal[tuple(CLASS_NAMES)]  # type: ignore[valid-type]
Crop = Literal[CROPS]  # type: ignore[valid-type]
Probability = Annotated[float, Field(ge=0, le=1)]
MAX_TOP_K = len(CLASS_NAMES)


class Strict(BaseModel):
    """Unknown fields are an error: what is not described here is never accepted or sent."""

    model_config = ConfigDict(extra="forbid")


# ---- what a request asks for ----

def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def _shown(value: Any) -> str:
    """A value as an error message quotes it: repr, at most 40 characters (a name may be anything a client sent)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _refuse(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


class PredictRequest(BaseModel):
    """The options of a comparison, described once. The page's form, /api/v1/predict's multipart form and its JSON
    body are each read into this class (webapp/options.py `read_options`), validated here and nowhere else, and the
    OpenAPI document's description of the request is its JSON Schema (webapp/openapi.py). A field added here is
    accepted, validated and documented in all three (tests/test_options.py adds one). Form fields arrive as text,
    so each validator also takes the text a form sends; the values the server decides (the default top_k, the
    served models) come from the validation context's `config`."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    urls: list[str] = Field(default_factory=list, description="image addresses (http or https) to fetch and "
                            "classify; a form field may hold several, one per line",
                            json_schema_extra={"items": {"type": "string", "format": "uri"}})
    top_k: int = Field(default=None, ge=1, le=MAX_TOP_K, description="classes listed per model")  # type: ignore
    models: list[str] = Field(default_factory=list, description="the models to run (a list, or names separated by "
                              "commas); default: every model")
    crop: Crop = Field(default=CROPS[0], description="how each photo becomes the square the models see: its centre "
                       "square (as CIFAR-10's images are), or the whole photo padded to a square (a wide photo's "
                       "subject is not cut, but is smaller)")
    explain: bool = Field(default=False, description="add each model's explanation map "
                          "(`predictions[model].explanation`) for its top-1 class: at most {EXPLAIN_MAX_IMAGES} "
                          "images, as many as {EXPLAIN_SECONDS} seconds allow (the images left have "
                          "`explanation_skipped`); 429 with Retry-After while the server is making as many maps as "
                          "it takes (true/false; a form may also send 1/0, on/off, yes/no)")

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> list[str]:
        if _blank(value):
            return []
        if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
            raise _refuse("invalid_urls", '"urls" must be a list of strings')
        return [line.strip() for url in value for line in url.splitlines() if line.strip()]

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k(cls, value: Any, info: ValidationInfo) -> int:
        if _blank(value):
            return (info.context or {}).get("config", {}).get("DEFAULT_TOP_K", 3)
        wanted = f"top_k must be an integer from 1 to {MAX_TOP_K}"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _refuse("invalid_top_k", wanted)
        try:
            top_k = int(value)
        except ValueError:
            raise _refuse("invalid_top_k", f"{wanted}, got {_shown(value)}") from None
        if not 1 <= top_k <= MAX_TOP_K:
            raise _refuse("invalid_top_k", f"{wanted}, got {top_k}")
        return top_k

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any, info: ValidationInfo) -> list[str]:
        available = list((info.context or {}).get("config", {}).get("MODELS") or [])
        names = value.split(",") if isinstance(value, str) else [] if value is None else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _refuse("invalid_models", "models must be a list of model names")
        names = [n.strip() for name in names for n in name.split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown:
            raise _refuse("unknown_model", f"unknown model {_shown(unknown[0])}; available: {', '.join(available)}")
        return list(dict.fromkeys(names)) or available

    @field_validator("crop", mode="before")
    @classmethod
    def _crop(cls, value: Any) -> str:
        if _blank(value):
            return CROPS[0]
        if isinstance(value, str) and value.strip().lower() in CROPS:
            return value.strip().lower()
        raise _refuse("invalid_crop", f"crop must be one of {', '.join(CROPS)}, got {_shown(value)}")

    @field_validator("explain", mode="before")
    @classmethod
    def _explain(cls, value: Any) -> bool:
        return as_bool("explain", value)


TRUE_WORDS, FALSE_WORDS = ("true", "1", "on", "yes"), ("false", "0", "off", "no")


def as_bool(name: str, value: Any) -> bool:
    """A JSON boolean, or a form's true/false (1/0, on/off, yes/no); absent: false."""
    if _blank(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise _refuse(f"invalid_{name}", f"{name} must be true or false, got {_shown(value)}")


class EvaluateRequest(BaseModel):
    """The options of an evaluation (the Evaluate page's form, /api/v1/evaluate's form or query), described once
    like PredictRequest's."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    labels: list[str] = Field(default_factory=list, description="with `files`: each file's class, in the same order "
                              "(else each file is labelled by its name, cat_01.jpg)")
    explain: bool = Field(default=False, description="both models' explanation maps for up to {EXPLAIN_MAX_IMAGES} "
                          "of the disagreements and mistakes (`explanations`)")
    format: Literal["json", "pdf", "csv"] = Field(default="json", description="json: the metrics and every image's "
                                                  "row; pdf: the report; csv: the every-image table, one row per "
                                                  "image and model (in the query)")

    @field_validator("explain", mode="before")
    @classmethod
    def _explain(cls, value: Any) -> bool:
        return as_bool("explain", value)

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> str:
        if _blank(value):
            return "json"
        if value not in ("json", "pdf", "csv"):
            raise _refuse("bad_format", "format must be json, pdf or csv")
        return value


class ErrorDetail(Strict):
    status: int = Field(ge=400, le=599)
    code: str = Field(max_length=64)
    message: str = Field(max_length=2000)


class Error(Strict):
    """Every 4xx/5xx answer under /api/ (the app's and the front server's)."""

    error: ErrorDetail


class Labelled(Strict):
    label: ClassName
    probability: Probability


class Explanation(Strict):
    """Where a model looked: a map over the 32x32 view it saw (models/explanation.py), computed only on request."""

    method: str = Field(max_length=120, description="how the map was made (black-box occlusion: the same masks "
                        "for every model)")
    target: ClassName = Field(description="the class the map explains: the model's top-1")
    grid: list[list[Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]]] = Field(
        min_length=1, max_length=32, description="rows x cols (each 1-32), row 0 at the top, aligned to the 32x32 "
        "view; a cell is how much hiding it (as `method` says) lowers the target's log-odds, scaled so the largest "
        "is 1: larger = more support, negative = hiding it helps the target")
    where: str = Field(max_length=200, description="the map in words: where the model looked")

    @field_validator("grid")
    @classmethod
    def _rectangular(cls, grid: list[list[float]]) -> list[list[float]]:
        if not all(1 <= len(row) <= 32 and len(row) == len(grid[0]) for row in grid):
            raise ValueError("the grid's rows must all have the same length, 1 to 32")
        return grid


class ModelPrediction(Strict):
    top_k: list[Labelled] = Field(min_length=1, max_length=MAX_TOP_K, description="best first")
    probabilities: dict[ClassName, Probability] = Field(description="the full 10-way distribution, by class name")
    latency_ms: float = Field(ge=0, description="this model's time per image in this request")
    explanation: Explanation | None = Field(default=None, description="with explain=true: where the model looked "
                                            "for its top-1 class")


class ItemError(Strict):
    code: str = Field(max_length=64)
    message: str = Field(max_length=500)


class Source(Strict):
    type: Literal["file", "url", "example"]
    name: str | None = Field(default=None, max_length=200, description="the file's name (display only)")
    url: str | None = Field(default=None, max_length=2048)


class Result(Strict):
    """One image: the models' answers, or `error` in their place."""

    index: int = Field(ge=0)
    source: Source
    error: ItemError | None = None
    width: int | None = Field(default=None, gt=0, lt=1_000_000)
    height: int | None = Field(default=None, gt=0, lt=1_000_000)
    predictions: dict[str, ModelPrediction] | None = None
    model_errors: dict[str, ItemError] | None = None
    agree: bool | None = Field(default=None, description="all models' top-1 labels are equal")
    uncertain: bool | None = Field(default=None, description="the image is out of scope, or the models disagree or "
                                   "are unsure, or it has no colour and they are not sure enough for a grey "
                                   "image (rule fitted on the validation split; null if none fits these weights)")
    uncertain_reason: str | None = Field(default=None, max_length=500, description="why, in words")
    out_of_scope: bool | None = Field(default=None, description="probably not one of the 10 classes: the "
                                      "broad view, the out-of-scope gate or the face check scores 0.5 or more (on a "
                                      "photo the broad view sees as one of the 10 classes, the gate and the face "
                                      "check do not count; null if no check is in use)")
    out_of_scope_score: float | None = Field(default=None, ge=0, le=1, description="the largest of the scores that "
                                             "count (the broad view's, the out-of-scope gate's, the face check's), "
                                             "larger = less like the 10 classes; 0.5 and above is out of scope "
                                             "(not a probability)")
    looks_like: str | None = Field(default=None, max_length=120, description="when out of scope by the broad view "
                                   "(an ImageNet-1k model reading the photo as sent): what it looks like to that model "
                                   "instead, in its own words (\"bookcase\"), or \"person\" where a face detector "
                                   "also found a face; null otherwise")
    looks: str | None = Field(default=None, max_length=400, description="with explain=true, when the models' maps "
                              "point at different regions: that, in words")
    explanation_skipped: str | None = Field(default=None, max_length=200, description="with explain=true, when the "
                                            "request's seconds for explanation maps (EXPLAIN_SECONDS) ran out before "
                                            "this image: why it has no map")
    true_label: ClassName | None = Field(default=None, description="the image's true class, when the person gave "
                                         "it on the page (or an example's label); exports only")


class Timing(Strict):
    batch_ms: float = Field(ge=0)
    ms_per_image: float = Field(ge=0)
    images: int = Field(ge=0)
    explain_ms: float | None = Field(default=None, ge=0, description="with explain=true: the maps' time, all images")


class PredictResponse(Strict):
    models: list[str]
    top_k: int = Field(ge=1, le=MAX_TOP_K)
    crop: Crop = Field(default=CROPS[0], description="how each photo became the square the models saw: "
                                 "its centre square, or the whole photo padded to a square")
    results: list[Result]
    timing: dict[str, Timing]


class PageResult(Result):
    """A result as the results page carries it for export: the API's shape plus the two pictures it shows."""

    thumbnail: str | None = Field(default=None, max_length=200_000, description="a JPEG data: URI")
    model_view: str | None = Field(default=None, max_length=20_000, description="the 32x32 PNG the models saw")


class Comparison(Strict):
    """What a results page signs and posts back to /export/<format>."""

    created: str = Field(max_length=40)
    models: list[str] = Field(min_length=1, max_length=8)
    top_k: int = Field(ge=1, le=MAX_TOP_K)
    crop: Crop = Field(default=CROPS[0], description="how each photo became the square the models saw")
    results: list[PageResult] = Field(min_length=1, max_length=500)


class JsonExport(Strict):
    """The JSON export: /api/v1/predict's results for the images of one page, and when they were made."""

    models: list[str]
    created: str
    crop: Crop = Field(default=CROPS[0], description="how each photo became the square the models saw: "
                                 "its centre square, or the whole photo padded to a square")
    results: list[Result]


class Training(Strict):
    epochs: int | None = None
    train_images: int | None = None
    seconds: float | None = Field(default=None, description="wall time of the whole training command")
    machine: str | None = Field(default=None, description="the machine that trained it")
    val_accuracy: Probability | None = Field(default=None, description="accuracy on the validation split")


class PhotoAccuracy(Strict):
    accuracy: Probability
    interval: Interval
    images: Count
    weights_sha256: str


class ModelInfo(Strict):
    """A served model's facts (models/predictor.py `info`), the same keys for every backend."""

    name: str
    display_name: str
    short_name: str
    framework: str
    framework_version: str
    parameters: Count
    input_size: list[int] = Field(description="height, width, channels of what the model takes")
    weights_file: str
    weights_bytes: Count
    weights_sha256: str
    preprocessing: str
    description: str
    training: Training
    test_accuracy: Probability | None = Field(description="on the 10,000 CIFAR-10 test images, measured for these "
                                              "weights")
    photo_accuracy: PhotoAccuracy | None = Field(description="on the real-photo benchmark's held-out sources")
    temperature: float | None = Field(description="the calibration temperature fitted on the validation split")
    class_names: list[ClassName]
    test_time_augmentation: str | None = None
    precision: str | None = Field(default=None, description="the arithmetic it runs in (fp32, bf16 autocast)")
    runtime: str | None = None
    serving_savedmodel: str | None = Field(default=None, description="a TensorFlow Serving export, where one ships")


class ModelEntry(Strict):
    name: str
    ready: bool
    error: str | None = Field(default=None, description="why it is not ready")
    info: ModelInfo | None = None


class ModelsResponse(Strict):
    models: list[ModelEntry]


class Problem(Strict):
    name: str = Field(max_length=200)
    problem: str = Field(max_length=200)


class EvaluatedAnswer(Strict):
    label: ClassName
    confidence: Probability
    correct: bool


class EvaluatedImage(Strict):
    """One row of the every-image table (the page's, its CSV's and the API's)."""

    index: int = Field(ge=0, description="row number, in file-name order")
    name: str = Field(max_length=300, description="the file's name as sent (shown escaped, never used as a path)")
    true: ClassName = Field(description="its label")
    predictions: dict[str, EvaluatedAnswer] = Field(description="per model: top-1 answer, its confidence, right?")
    uncertain: bool | None = None
    out_of_scope: bool | None = None


Interval = Annotated[list[Annotated[float, Field(ge=-1, le=1)]], Field(min_length=2, max_length=2)]
Count = Annotated[int, Field(ge=0)]


class ModelNames(Strict):
    display_name: str
    short_name: str


class ClassScores(Strict):
    precision: Probability
    recall: Probability
    f1: Probability
    support: Count


class CalibrationBin(Strict):
    low: Probability
    high: Probability
    count: Count
    accuracy: Probability
    confidence: Probability


class Calibration(Strict):
    ece: Probability = Field(description="expected calibration error: the average gap between confidence and "
                             "accuracy over the confidence bins")
    mean_confidence: Probability
    bins: list[CalibrationBin] = Field(description="the bins that hold images")


class GalleryImage(Strict):
    """An image a gallery shows (the disagreements, a model's most confident mistakes)."""

    index: Count = Field(description="its per_image row")
    name: str = Field(max_length=300)
    true: ClassName
    predicted: dict[str, tuple[ClassName, Probability]] = Field(description="per model: its answer and confidence")


class EvaluatedModel(Strict):
    info: ModelNames
    accuracy: Probability
    accuracy_ci95: Interval = Field(description="95% bootstrap interval over the images")
    top3_accuracy: Probability
    per_class: dict[ClassName, ClassScores] = Field(description="the classes present in the images")
    macro_f1: Probability
    confusion_matrix: list[list[Count]] = Field(min_length=10, max_length=10,
                                                description="rows: true class, columns: predicted (CIFAR-10 order)")
    calibration: Calibration | None = None
    calibration_note: str | None = Field(default=None, description="why calibration was not measured")
    confident_mistakes: list[GalleryImage] | None = None


class McNemar(Strict):
    a_right_b_wrong: Count
    a_wrong_b_right: Count
    discordant: Count
    p_value: Probability = Field(description="McNemar's exact test, two-sided")
    significant_at_0_05: bool


class PairedComparison(Strict):
    a: str
    b: str
    accuracy_difference: Annotated[float, Field(ge=-1, le=1)] = Field(description="accuracy of a minus b")
    accuracy_difference_ci95: Interval
    mcnemar: McNemar
    agreement: Probability = Field(description="share of images with the same answer")
    both_correct: Count
    both_wrong: Count
    disagreements: Count
    gallery: list[GalleryImage] | None = Field(default=None, description="the disagreements shown, both confident "
                                               "first")


class UncertainSummary(Strict):
    flagged: Count = Field(description="images the app's 'uncertain' flag fired on")
    share: Probability
    accuracy_unflagged: dict[str, Probability | None] = Field(description="per model, on the images not flagged")
    out_of_scope: Count | None = Field(default=None, description="of the flagged, those called out of scope")


class ImageMaps(Strict):
    maps: dict[str, Explanation] = Field(description="per model")
    looks: str | None = Field(default=None, description="a sentence when the models looked at different parts")


class EvaluateResponse(Strict):
    """The metrics of a comparison on a person's labelled images (the report without its pictures)."""

    title: str
    source: str
    layout: str
    files: Count
    images: Count = Field(description="labelled images evaluated")
    classes_present: list[ClassName]
    per_class_counts: dict[ClassName, Count] | None = None
    problems: list[Problem]
    models: dict[str, EvaluatedModel] = Field(description="per model: accuracy with its 95% interval, top-3, "
                                              "per-class precision/recall/F1, confusion matrix, calibration, "
                                              "confident mistakes")
    comparison: PairedComparison | None = Field(default=None, description="accuracy difference with its interval, "
                                                "McNemar's test, agreement")
    verdict: str | None = Field(default=None, description="the comparison in plain words")
    uncertain: UncertainSummary | None = None
    per_image: list[EvaluatedImage] | None = Field(default=None, description="every evaluated image, in "
                                                   "file-name order: its label and each model's answer")
    explanations: dict[str, ImageMaps] | None = Field(default=None, description="with explain=true: by image row "
                                                      "(per_image index), both models' explanation maps and `looks`, "
                                                      "for the disagreements and mistakes shown")
    generated_at: str
    seconds: float | None = None
    bootstrap_resamples: Count | None = None


COMPONENTS: tuple[type[BaseModel], ...] = (Error, PredictResponse, JsonExport, Comparison, ModelsResponse,
                                           EvaluateResponse)


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready, with only the fields that were set (an errored image has no `predictions` key at all)."""
    return model.model_dump(mode="json", exclude_unset=True)


def first_problem(exc: ValidationError) -> str:
    """The first validation error in words: where, and what."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "the top level"
    return f"{where}: {error['msg']}"[:300]
