"""The one seam between a caller (web page, JSON API, CLI, Python) and the models.

    answers = classify(images, ["custom_cnn", "mobilenetv2"], top_k=3)

preprocess (centre crop + resize, once per input size, not once per model) -> forward (each model's
`Predictor`, calibrated probabilities) -> postprocess (top-k with one tie-break rule, the full
distribution, timing). Callers only decode their inputs with `models.images.decode_image` and
format the answers for their own transport; none of them resizes an image, builds a top-k or
branches on which model it is talking to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from models.cifar10 import CLASS_NAMES
from models.explanation import Explanation, comparison_sentence, explain_views
from models.images import frame, to_model_input
from models.predictor import Predictor, top_k_labels
from models.registry import REGISTRY, load_predictor
from models.scope.broad import load_broad
from models.scope.faces import face_score, load_faces
from models.scope.gate import VIEW_SIZE, load_gate
from models.uncertainty import rule_for, scope_score


@dataclass
class ModelAnswer:
    """One model's answer for one image."""

    top_k: list[tuple[str, float]]
    probabilities: dict[str, float]
    latency_ms: float  # the model's time for the whole batch, divided by the images in it
    explanation: Explanation | None = None  # where the model looked for its top-1 class (only when asked)

    @property
    def label(self) -> str:
        return self.top_k[0][0]

    def to_dict(self) -> dict[str, Any]:
        answer = {"top_k": [{"label": label, "probability": p} for label, p in self.top_k],
                  "probabilities": self.probabilities, "latency_ms": self.latency_ms}
        if self.explanation is not None:
            answer["explanation"] = self.explanation.to_dict()
        return answer


@dataclass
class ImageAnswer:
    """Every requested model's answer for one image; a model that could not run is in `model_errors`.
    The verdicts are models/uncertainty.py's rule (None where no rule fits these weights): `out_of_scope`
    (probably not one of the 10 classes, from the gate in models/scope/) and `uncertain` (out of scope, or the
    models disagree or are unsure); `out_of_scope_score` is in (0, 1), 0.5 and above being out of scope."""

    predictions: dict[str, ModelAnswer] = field(default_factory=dict)
    model_errors: dict[str, str] = field(default_factory=dict)
    uncertain: bool | None = None
    uncertain_reason: str | None = None
    out_of_scope: bool | None = None
    out_of_scope_score: float | None = None
    looks_like: str | None = None  # out of scope by the broad view: what it looks like to it ("bookcase")
    model_view: np.ndarray | None = field(default=None, repr=False)  # the uint8 (S, S, 3) input the models saw
    looks: str | None = None  # when explained: a sentence if the models looked at different regions
    explanation_skipped: str | None = None  # asked for, but the request's explanation time ran out first: why
    not_reached: bool = False  # not classified: the call's deadline passed before its chunk (classify's `deadline`)

    @property
    def agree(self) -> bool | None:
        """Whether every model that answered picked the same class (None with fewer than two answers)."""
        if len(self.predictions) < 2:
            return None
        return len({answer.label for answer in self.predictions.values()}) == 1


@dataclass
class ModelTiming:
    images: int
    batch_ms: float
    explain_ms: float | None = None  # the explanation maps' time, for all the images (only when asked)

    @property
    def ms_per_image(self) -> float:
        return self.batch_ms / self.images

    def to_dict(self) -> dict[str, float]:
        timing = {"batch_ms": self.batch_ms, "ms_per_image": self.ms_per_image, "images": self.images}
        if self.explain_ms is not None:
            timing["explain_ms"] = self.explain_ms
        return timing


@dataclass
class Classification:
    """The answers for a batch of images, in input order, and how long each model took."""

    images: list[ImageAnswer]
    timing: dict[str, ModelTiming]


DEADLINE_CHUNK = 16  # images classified between two looks at a deadline (one batching slice: models/batching.py)


def classify(images: Sequence[Image.Image | np.ndarray], model_names: Sequence[str], top_k: int = 3,
             explain: bool | int = False, explain_seconds: float | None = None,
             crop: str = "centre", deadline: float | None = None) -> Classification:
    """Run every named model over the images. A model that fails to load or run is reported per image (the
    others still answer); an unknown model name is a `KeyError`. The options are trusted: callers validate them
    once, at their edge (the web app against webapp/schema.py's PredictRequest, the CLI with argparse). With
    `explain` (True, or how many of the first images), each answer also gets its explanation map for its top-1
    class (models/explanation.py): 50 forward passes per image and model, so callers bound how many, and
    `explain_seconds` bounds their time: images not reached by then say so (`explanation_skipped`). `crop` is how
    each photo becomes the square every model and check reads (models/images.py CROPS: its centre square, or the
    whole photo padded).

    `deadline` (a time.monotonic() value) bounds the whole call: the images are classified DEADLINE_CHUNK at a
    time, and the chunks that would end after it (by the last chunk's time) are answered `not_reached` (the first
    chunk always runs); the maps get what is left, none once it has passed. Under a mixed flood a 32-image
    comparison took 23 s and a 16-image explanation 25 s, each step within its own budget."""
    unknown = [name for name in model_names if name not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown model {unknown[0]!r}; available: {', '.join(REGISTRY)}")
    answers = [ImageAnswer() for _ in images]
    timing: dict[str, ModelTiming] = {}
    if not images:
        return Classification(answers, timing)
    if crop != "centre":
        images = [frame(image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)), crop)
                  for image in images]
    chunk = len(images) if deadline is None else DEADLINE_CHUNK
    answered: dict[str, Predictor] = {}
    chunk_seconds = 0.0  # the last chunk's time: a chunk that would end past the deadline is not started
    for start in range(0, len(images), chunk):
        if start and time.monotonic() + chunk_seconds > deadline:
            for answer in answers[start:]:
                answer.not_reached = True
            break
        chunk_started = time.monotonic()
        answered = classify_chunk(images[start:start + chunk], answers[start:start + chunk], model_names, top_k,
                                  timing)
        chunk_seconds = time.monotonic() - chunk_started
    if explain:
        if deadline is not None:
            left = max(0.0, deadline - time.monotonic())
            explain_seconds = left if explain_seconds is None else min(explain_seconds, left)
        reached = sum(not answer.not_reached for answer in answers)  # a prefix: chunks stop, never skip
        count = reached if explain is True else min(int(explain), reached)
        add_explanations(answers[:count], answered, timing, explain_seconds,
                         first_always=deadline is None or time.monotonic() < deadline)
    return Classification(answers, timing)


def classify_chunk(images: Sequence[Image.Image | np.ndarray], answers: list[ImageAnswer],
                   model_names: Sequence[str], top_k: int, timing: dict[str, ModelTiming]) -> dict[str, Predictor]:
    """Fill `answers` (one per image) with every named model's answer and the verdicts; add each model's time to
    `timing`. Returns the models that answered."""
    model_inputs: dict[int, np.ndarray] = {}
    answered: dict[str, Predictor] = {}
    for name in model_names:
        try:
            predictor = load_predictor(name)
            size = predictor.input_size
            if size not in model_inputs:
                model_inputs[size] = to_model_input(images, size)
                for answer, view in zip(answers, model_inputs[size], strict=True):
                    if answer.model_view is None:
                        answer.model_view = view
            start = time.perf_counter()
            probs = predictor.predict_proba(model_inputs[size])
            elapsed_ms = 1000 * (time.perf_counter() - start)
        except Exception as exc:  # a broken model must not take the other one down
            for answer in answers:
                answer.model_errors[name] = f"{name} is unavailable: {exc}"
            continue
        so_far = timing.get(name)
        timing[name] = ModelTiming(images=len(images) + (so_far.images if so_far else 0),
                                   batch_ms=elapsed_ms + (so_far.batch_ms if so_far else 0.0))
        answered[name] = predictor
        best = top_k_labels(probs, predictor.class_names, top_k)
        for answer, row, ranked in zip(answers, probs, best, strict=True):
            answer.predictions[name] = ModelAnswer(
                top_k=ranked,
                probabilities={label: float(p) for label, p in zip(predictor.class_names, row, strict=True)},
                latency_ms=elapsed_ms / len(images))
    add_verdicts(answers, answered, images)
    return answered


def explain(images: Sequence[Image.Image | np.ndarray], model_names: Sequence[str], target: str | None = None
            ) -> list[dict[str, Explanation]]:
    """Per image, each model's explanation map over the 32x32 view it saw, for `target` (a class name) or, by
    default, for that model's own top-1; the same masks for every model. `classify(..., explain=True)` gives the
    top-1 maps with the answers; this is for another class ("why not cat?")."""
    if target is not None and target not in CLASS_NAMES:
        raise ValueError(f"target must be one of {', '.join(CLASS_NAMES)}, got {target!r}")
    maps: list[dict[str, Explanation]] = [{} for _ in images]
    for name in model_names:
        predictor = load_predictor(name)
        views = to_model_input(images, predictor.input_size)
        targets = ([predictor.class_names.index(target)] * len(views) if target is not None
                   else list(predictor.predict_proba(views).argmax(axis=1)))
        for row, explanation in zip(maps, explain_views(views, targets, predictor.predict_proba,
                                                        predictor.class_names), strict=True):
            row[name] = explanation
    return maps


def add_explanations(answers: list[ImageAnswer], predictors: dict[str, Predictor],
                     timing: dict[str, ModelTiming], seconds: float | None = None, first_always: bool = True) -> None:
    """Each model's map for its own top-1 class, over the view it saw, with the same windows for every model.
    Image by image (both models' maps or neither), until `seconds` have passed: sixteen maps took 26 s on a
    busy 2-core server, a request that held a thread that long; the images after that are marked, not explained.
    The first image is explained whatever `seconds` (a request for one map gets it) unless not `first_always`
    (the caller's deadline has already passed)."""
    started = time.perf_counter()
    for position, answer in enumerate(answers):
        if (position or not first_always) and seconds is not None and time.perf_counter() - started >= seconds:
            answer.explanation_skipped = (
                f"not explained: the request's {seconds:g} seconds for explanation maps ran out; ask for this "
                "image's map in a request of its own" if first_always else "not explained: the request's time ran "
                "out before the maps; ask for this image's map in a request of its own")
            continue
        for name, predictor in predictors.items():
            if name not in answer.predictions:
                continue
            start = time.perf_counter()
            target = predictor.class_names.index(answer.predictions[name].label)
            answer.predictions[name].explanation = explain_views(
                answer.model_view[None], [target], predictor.predict_proba, predictor.class_names)[0]
            timing[name].explain_ms = (timing[name].explain_ms or 0.0) + 1000 * (time.perf_counter() - start)
        maps = {name: a.explanation for name, a in answer.predictions.items() if a.explanation is not None}
        answer.looks = comparison_sentence(maps, {name: p.short_name for name, p in predictors.items()})


def add_verdicts(answers: list[ImageAnswer], predictors: dict[str, Predictor],
                 images: Sequence[Image.Image | np.ndarray] = ()) -> None:
    """The two verdicts (models/uncertainty.py) when the rule was fitted for these weights: the out-of-scope gate
    reads each image's 32x32 view, the person check (models/scope/faces.py) and the broad view (models/scope/broad.py)
    the image as sent; with one model, its confidence alone stands for agreement."""
    rule = rule_for({name: p.weights_sha256 for name, p in predictors.items()}) if predictors else None
    if rule is None:
        return
    logits: list[float | None] = [None] * len(answers)
    gate = load_gate() if rule.gate_sha256 else None
    if gate is not None and gate.sha256 == rule.gate_sha256:
        views = [a.model_view for a in answers]
        if all(v is not None and v.shape == (VIEW_SIZE, VIEW_SIZE, 3) for v in views):
            logits = [float(x) for x in gate.scores(np.stack(views))]
    faces = load_faces() if logits[0] is not None and images else None
    confidences = faces.scores(images) if faces is not None and faces.threshold is not None else [None] * len(answers)
    broad = load_broad() if rule.photo is not None and images else None
    broad_answers = (broad.read(images) if broad is not None and broad.sha256 == rule.photo.broad_sha256
                     else [None] * len(answers))
    for answer, logit, face, seen in zip(answers, logits, confidences, broad_answers, strict=True):
        tops = {name: (a.top_k[0][0], a.top_k[0][1], predictors[name].short_name)
                for name, a in answer.predictions.items() if name in predictors}
        found = face if faces is not None and faces.found(face) else None
        if logit is not None:
            kept = seen is not None and seen.inside >= rule.photo.keep_line  # gate and face do not count then
            scores = [] if kept else [scope_score(logit, rule.scope_threshold)]
            if face is not None and not kept:
                scores.append(face_score(face, faces.threshold))
            if seen is not None:
                scores.append(rule.photo.score(seen.inside, seen.looks_like_probability))
            answer.out_of_scope_score = float(max(scores))
        verdict = rule.judge(tops, answer.model_view, logit, found, seen, score=answer.out_of_scope_score)
        answer.uncertain_reason = verdict.reason
        answer.uncertain = verdict.reason is not None
        answer.out_of_scope = verdict.out_of_scope
        answer.looks_like = verdict.looks_like
