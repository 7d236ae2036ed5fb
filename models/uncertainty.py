"""Two verdicts per image, fitted on the validation split: out of scope, and uncertain.

    .venv/bin/python -m models.uncertainty [--data-dir DIR]    # -> models/uncertainty.json (the committed file)

Both networks answer with one of the 10 CIFAR-10 classes whatever they are shown: a portrait comes back "dog",
noise "cat". So:
- **out of scope** ("probably not one of the 10 classes"): the out-of-scope gate (models/scope/) scores the image
  at or above `scope_threshold`. It looks at the image, not at the classifiers' answers.
- **uncertain**: out of scope, or the models disagree, or the least confident model's calibrated top-1
  probability is below `threshold`, or the image has no colour and that probability is below `grey_threshold`
  (the networks learnt from colour photos, under 2% of CIFAR-10 is black and white, and they are measurably less
  reliable, yet still confident, on grey images: a grey image needs more confidence).
`grey_threshold` is the smallest line (to 0.01) above which the validation images turned grey are at least
MIN_UNFLAGGED_ACCURACY right for every model. The other two thresholds are chosen together on the validation split
(never the test split): every validation share the gate may flag (SCOPE_SHARES) gets the largest confidence
threshold that keeps all flags together at most MAX_FLAGGED; of the pairs whose unflagged images are at least
MIN_UNFLAGGED_ACCURACY right for every model, the one giving the gate the largest share wins. The file also
records, on validation, the shares flagged, the accuracy on the unflagged images and each model's accuracy on the
validation images turned grey; `make report` and bench/bench_out_of_scope.py measure the same on the test split
and the held-out families.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.scope.broad import BroadAnswer

PACKAGE_DIR = Path(__file__).resolve().parent
RULE_FILE = PACKAGE_DIR / "uncertainty.json"
TARGET_FLAGGED = 0.10  # the most a fresh split (the test split, a user's photos of the 10 classes) may have flagged
VALIDATION_IMAGES = 5_000
# Of the validation images, all reasons together: the target less the one-sided 95% sampling margin of a share
# measured on 5,000 images (1.645 standard errors, 0.7 points), so that the target holds on a split not fitted on.
# Fitted at 10%, the rule flagged 10.7% of the test split.
MAX_FLAGGED = round(TARGET_FLAGGED - 1.645 * math.sqrt(TARGET_FLAGGED * (1 - TARGET_FLAGGED) / VALIDATION_IMAGES), 3)
# The test-split target is 98.5% for both models; 0.1 point of margin (about one standard error of the accuracy
# of 4,500 unflagged validation images). With 0.3 points the gate got no share at all (docs/how-it-works.md).
MIN_UNFLAGGED_ACCURACY = 0.986
# The most of a fresh split the gate may call out of scope (CIFAR-10's own photos are all in scope), and so, less its
# sampling margin on the validation split, the largest share of validation it may flag.
TARGET_OUT_OF_SCOPE = 0.01
MAX_SCOPE_SHARE = TARGET_OUT_OF_SCOPE - 1.645 * math.sqrt(TARGET_OUT_OF_SCOPE * (1 - TARGET_OUT_OF_SCOPE)
                                                          / VALIDATION_IMAGES)
SCOPE_SHARES = tuple(share for share in (round(0.0025 * i, 4) for i in range(0, 37)) if share <= MAX_SCOPE_SHARE)
# An image "has no colour" when its 32x32 view's channels differ by less than this on average (0-255 scale):
# grey photos, scans and drawings, also after JPEG's small colour errors. 1.5% of CIFAR-10's images are.
COLOURLESS_CHROMA = 2.0


def colourless(views: np.ndarray) -> np.ndarray:
    """Per uint8 (N, H, W, 3) view: True where the image has no colour."""
    views = np.asarray(views, dtype=np.int16)
    return (views.max(axis=-1) - views.min(axis=-1)).mean(axis=(1, 2)) < COLOURLESS_CHROMA


def to_grey(images: np.ndarray) -> np.ndarray:
    """The same uint8 images in black and white (ITU-R 601 luma in all three channels)."""
    luma = np.rint(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def scope_score(logits: np.ndarray | float, scope_threshold: float) -> np.ndarray | float:
    """The gate's logit as the API's `out_of_scope_score`: between 0 and 1, 0.5 exactly at the threshold, larger = less
    like CIFAR-10's photos. Not a probability; monotone in the logit, so it ranks images as the gate does."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(logits, dtype=np.float64) - scope_threshold)))


@dataclass(frozen=True)
class PhotoLines:
    """How the broad view (models/scope/broad.py) joins the verdicts on a photo it reads (an upload of at least 64 px
    a side), fitted on the real-photo benchmark's fitting sources (`fit_photo_lines`). `inside` is the broad view's
    probability that the photo shows one of the 10 classes: under `inside_line` the photo is out of scope; at or above
    `keep_line` the gate's and the face check's calls do not count (the photo looks like a dog to a model that knows
    dogs, whatever a face detector found on its face); and a photo whose models agree on a class is uncertain when
    the broad view gives that class under `match_line` of `inside` (both say cat, it sees a husky). A photo is also
    out of scope when one single class outside the 10 gets at least `other_line` times what the 10 get together
    (a bus that lends a little to "trailer truck" and "moving van", but is most of all a bus)."""

    broad_sha256: str
    inside_line: float
    keep_line: float
    match_line: float
    other_line: float = math.inf  # inf: not used

    def outside(self, inside: np.ndarray | float, other: np.ndarray | float) -> np.ndarray | bool:
        """The broad view's own out-of-scope call, from its two probabilities."""
        below = np.asarray(inside) < self.inside_line
        if math.isinf(self.other_line):
            return below
        return below | (np.asarray(other) >= self.other_line * np.asarray(inside))

    def score(self, inside: float, other: float) -> float:
        """That call on the verdict's scale, 0.5 at the lines: the larger of the two lines' scores."""
        by_inside = (1.0 - inside / (2 * self.inside_line) if inside < self.inside_line
                     else 0.5 * (1.0 - inside) / (1.0 - self.inside_line))
        ratio = other / max(inside, 1e-9)
        by_other = 0.0 if math.isinf(self.other_line) else ratio / (ratio + self.other_line)
        return float(max(by_inside, by_other))


@dataclass(frozen=True)
class Verdict:
    """One image's verdicts: out of scope (None when nothing could judge it), why it is flagged (None: it is not),
    and, when the broad view calls it out of scope, what it looks like to it instead."""

    out_of_scope: bool | None
    reason: str | None
    looks_like: str | None = None


@dataclass(frozen=True)
class Rule:
    threshold: float
    weights_sha256: Mapping[str, str]  # the models it was fitted for
    # model name -> its accuracy on the validation images turned grey; empty: colour is not checked
    grey_accuracy: Mapping[str, float] = field(default_factory=dict)
    scope_threshold: float | None = None  # the gate's logit at or above which an image is out of scope
    gate_sha256: str | None = None  # the gate it was fitted for; None: out of scope is not judged
    grey_threshold: float = math.inf  # a colourless image under this confidence is flagged (inf: every one)
    photo: PhotoLines | None = None  # the broad view's lines; None: photos are judged as thumbnails are

    def out_of_scope(self, scope_logits: np.ndarray | None) -> np.ndarray | None:
        """Per image: the gate's logit at or above the threshold (None when the gate is not part of this rule)."""
        if self.scope_threshold is None or scope_logits is None:
            return None
        return np.asarray(scope_logits) >= self.scope_threshold

    def flags(self, probs: Mapping[str, np.ndarray], views: np.ndarray | None = None,
              scope_logits: np.ndarray | None = None) -> np.ndarray:
        """Per row of each model's (N, 10) probabilities (with the N images the models saw and the gate's logits):
        uncertain or not, every reason together."""
        least_sure = np.stack([p.max(axis=1) for p in probs.values()]).min(axis=0)
        labels = np.stack([p.argmax(axis=1) for p in probs.values()])
        disagree = (labels != labels[0]).any(axis=0)
        flagged = disagree | (least_sure < self.threshold)
        if self.grey_accuracy and views is not None:
            flagged |= colourless(views) & (least_sure < self.grey_threshold)
        outside = self.out_of_scope(scope_logits)
        if outside is not None:
            flagged |= outside
        return flagged

    def judge(self, answers: Mapping[str, tuple[str, float, str]], view: np.ndarray | None = None,
              scope_logit: float | None = None, face: float | None = None, broad: BroadAnswer | None = None,
              score: float | None = None) -> Verdict:
        """Both verdicts for one image, and why it is flagged in words (every reason that applies, the strongest
        first; at most 500 characters, the API's bound). answers: model name -> (label, probability, short name);
        view: the image the models saw; scope_logit: the gate's score of it; face: the face check's confidence when
        it found a face (models/scope/faces.py); broad: the broad view of the upload (None for a thumbnail); score:
        the API's `out_of_scope_score` of the image, which an out-of-scope reason then states, whatever its route."""
        lines = self.photo if broad is not None else None
        keep = lines is not None and broad.inside >= lines.keep_line
        gate_out = (self.scope_threshold is not None and scope_logit is not None
                    and scope_logit >= self.scope_threshold and not keep)
        face_out = face is not None and not keep
        broad_out = lines is not None and bool(lines.outside(broad.inside, broad.looks_like_probability))
        judged = (self.scope_threshold is not None and scope_logit is not None) or lines is not None
        reasons = []
        if broad_out:
            # Quoted, without an article: ImageNet's names include mass nouns ("a velvet", "a consomme").
            reasons.append(f"probably not one of the 10 classes: a model that knows 1,000 kinds of things reads it as "
                           f"\"{broad.looks_like}\" ({percent(broad.looks_like_probability)}), the 10 classes "
                           f"{percent(broad.inside)}")
        if face_out:
            # The detector's word, not a fact: it has taken a puppy's face for a person's (docs/how-it-works.md).
            reasons.append(f"a face detector sees a person's face too (confidence {face:.2f})" if broad_out else
                           f"a face detector sees a person's face (confidence {face:.2f}): people are not one of "
                           "the 10 classes")
        if gate_out and not broad_out:  # on a photo the broad view has read, its word is the stronger one
            unlike = ("it looks unlike the photos the models learnt from (out-of-scope score "
                      f"{scope_score(scope_logit, self.scope_threshold) if score is None else score:.2f}; 0.50 and "
                      "above is out of scope)")
            reasons.append(unlike.replace("learnt from", "learnt from too", 1) if reasons
                           else "probably not one of the 10 classes: " + unlike)
        if reasons and score is not None and "out-of-scope score" not in reasons[-1]:  # every route states the score
            reasons[-1] += f"; out-of-scope score {score:.2f} (0.50 and above is out of scope)"
        if reasons:  # said once, after the out-of-scope reasons
            reasons[-1] += ", so whatever the models answer is a guess"
        out_of_scope = bool(reasons)
        labels = {label for label, _, _ in answers.values()}
        least_sure = min((answer for answer in answers.values()), key=lambda answer: answer[1], default=None)
        grey = (self.grey_accuracy and view is not None and least_sure is not None
                and least_sure[1] < self.grey_threshold and colourless(np.asarray(view)[None])[0])
        if len(labels) > 1:
            reasons.append("the models disagree (" + " vs ".join(label for label, _, _ in answers.values()) + ")")
        elif least_sure is not None and least_sure[1] < self.threshold and not grey:  # grey: said below
            label, probability, model = least_sure
            reasons.append(f"low confidence: {model} gives {label} only {percent(probability, self.threshold)}, "
                           f"under the {100 * self.threshold:.1f}% line")
        if grey:
            label, probability, model = least_sure
            measured = ", ".join(f"{answers[name][2]} {100 * accuracy:.0f}%"
                                 for name, accuracy in self.grey_accuracy.items() if name in answers)
            line = (f"{model} gives {label} {percent(probability, self.grey_threshold)} and grey images need "
                    f"{100 * self.grey_threshold:.0f}%" if self.grey_threshold <= 1 else "the models are less sure")
            reasons.append(f"almost no colour, as in a black-and-white photo: {line} (they are harder: {measured} "
                           "right on grey validation photos)")
        if lines is not None and not out_of_scope and len(labels) == 1:
            (label,) = labels
            if broad.classes[label] < lines.match_line * broad.inside:
                seen = broad.top if broad.top_class == broad.best_class else broad.best_class
                named = article(seen) + ("" if seen.lower() == broad.best_class else f" ({broad.best_class})")
                reasons.append(f"to a model that knows 1,000 kinds of things it looks more like {named} than "
                               f"{article(label)}")
        # What it looks like instead: a person where a face was found (ImageNet has no "person" class, and its
        # guess is then the clothes: "suit", "pajama"), else the broad view's own word.
        looks_like = "person" if broad_out and face_out else broad.looks_like if broad_out else None
        return Verdict(out_of_scope if judged else None, "; and ".join(reasons) if reasons else None, looks_like)


def article(noun: str) -> str:
    """'a bookcase', 'an airliner', 'a European fire salamander', 'a unicycle' (by sound, for ImageNet's names)."""
    lower = noun.lower()
    vowel_sound = lower[:1] in "aeiou" and not lower.startswith(("eu", "uni", "use", "one", "ewe"))
    return ("an " if vowel_sound or lower.startswith(("hour", "honest")) else "a ") + noun


def percent(probability: float, under: float | None = None) -> str:
    """Rounded to a tenth of a per cent, as the result card's bar shows it ("dog 41.8%" in the bar and "41.7%" in the
    reason puzzled a reader). A probability said to be under a line `under` never reads as the line: 55.96% under
    a 56% line is "55.96%", not "56.0%"."""
    text = f"{100 * probability:.1f}%"
    if under is not None and probability < under and float(text[:-1]) >= 100 * under:
        text = f"{math.floor(10000 * probability) / 100:.2f}%"
    return text


def fit_grey_threshold(grey_probs: Mapping[str, np.ndarray], labels: np.ndarray,
                       min_accuracy: float = MIN_UNFLAGGED_ACCURACY) -> float:
    """The smallest confidence line (to 0.01) above which images turned grey, where the models agree, are at least
    `min_accuracy` right for every model (infinity, every grey image flagged, when none is)."""
    answers = np.stack([p.argmax(axis=1) for p in grey_probs.values()])
    agree = (answers == answers[0]).all(axis=0)
    least_sure = np.stack([p.max(axis=1) for p in grey_probs.values()]).min(axis=0)
    for line in np.round(np.arange(0.0, 1.0, 0.01), 2):
        kept = agree & (least_sure >= line)
        if kept.any() and min(float((a == labels)[kept].mean()) for a in answers) >= min_accuracy:
            return float(line)
    return math.inf


def fit_threshold(probs: Mapping[str, np.ndarray], max_flagged: float = MAX_FLAGGED,
                  views: np.ndarray | None = None, already: np.ndarray | None = None,
                  grey_threshold: float = math.inf) -> float:
    """The largest confidence threshold (to 0.005) that flags at most `max_flagged` of these images, counting
    colourless ones under `grey_threshold` (when `views` is given) and those `already` flagged for another reason."""
    labels = np.stack([p.argmax(axis=1) for p in probs.values()])
    least_sure = np.stack([p.max(axis=1) for p in probs.values()]).min(axis=0)
    other = (labels != labels[0]).any(axis=0)  # a disagreement flags whatever the threshold
    if views is not None:
        other |= colourless(views) & (least_sure < grey_threshold)
    if already is not None:
        other |= already
    least_sure = least_sure[~other]
    best = 0.0
    for threshold in np.arange(0.0, 1.0, 0.005):
        if (other.sum() + (least_sure < threshold).sum()) / len(other) <= max_flagged:
            best = float(threshold)
    return round(best, 3)


def fit_thresholds(probs: Mapping[str, np.ndarray], labels: np.ndarray, views: np.ndarray,
                   scope_logits: np.ndarray, grey_threshold: float = math.inf
                   ) -> tuple[float, float, list[dict[str, float]]]:
    """(confidence threshold, scope threshold, every pair tried): see the module's docstring."""
    tried = []
    for share in SCOPE_SHARES:
        scope_threshold = float(np.quantile(scope_logits, 1 - share)) if share else float(scope_logits.max()) + 1
        outside = scope_logits >= scope_threshold
        threshold = fit_threshold(probs, views=views, already=outside, grey_threshold=grey_threshold)
        rule = Rule(threshold, {}, {"colour": 1.0}, scope_threshold, grey_threshold=grey_threshold)
        flagged = rule.flags(probs, views, scope_logits)
        accuracy = min(float((p.argmax(axis=1) == labels)[~flagged].mean()) for p in probs.values())
        tried.append({"scope_share": share, "scope_threshold": scope_threshold, "threshold": threshold,
                      "out_of_scope": float(outside.mean()), "flagged": float(flagged.mean()),
                      "min_accuracy_unflagged": accuracy})
    eligible = [t for t in tried if t["min_accuracy_unflagged"] >= MIN_UNFLAGGED_ACCURACY] or tried[:1]
    chosen = max(eligible, key=lambda t: t["scope_share"])
    return chosen["threshold"], chosen["scope_threshold"], tried


def summary(rule: Rule, probs: Mapping[str, np.ndarray], labels: np.ndarray,
            views: np.ndarray | None = None, scope_logits: np.ndarray | None = None) -> dict[str, float]:
    """Shares flagged (uncertain, out of scope), and each model's accuracy on all images and the unflagged ones."""
    flagged = rule.flags(probs, views, scope_logits)
    result = {"images": len(labels), "flagged": float(flagged.mean())}
    outside = rule.out_of_scope(scope_logits)
    if outside is not None:
        result["out_of_scope"] = float(outside.mean())
    if views is not None:
        result["colourless"] = float(colourless(views).mean())
    for name, p in probs.items():
        correct = p.argmax(axis=1) == labels
        result[f"{name}_accuracy"] = float(correct.mean())
        result[f"{name}_accuracy_unflagged"] = float(correct[~flagged].mean()) if (~flagged).any() else 0.0
    return result


@dataclass(frozen=True)
class PhotoSignals:
    """What the verdicts read, per photo, measured once so that every candidate line can be scored on it."""

    probs: Mapping[str, np.ndarray]  # model name -> (N, 10) calibrated probabilities
    views: np.ndarray  # uint8 (N, 32, 32, 3): what the models saw
    scope_logits: np.ndarray  # (N,) the gate's
    face_found: np.ndarray  # bool (N,): the face check's line reached
    inside: np.ndarray  # (N,) the broad view's probability of the 10 classes (NaN: a thumbnail it does not read)
    classes: np.ndarray  # (N, 10) how it splits that between them
    other: np.ndarray  # (N,) its probability of its most likely class outside the 10


def photo_signals(images: Sequence, predictors: Mapping, gate, faces, broad) -> PhotoSignals:
    """Every signal of the verdicts for these images (PIL images as uploaded), through the same loaders as the seam."""
    from models.images import to_model_input

    views = to_model_input(images, 32)
    probs = {name: p.predict_proba(to_model_input(images, p.input_size)) for name, p in predictors.items()}
    seen = broad.read(images)
    inside = np.array([np.nan if a is None else a.inside for a in seen])
    classes = np.array([[np.nan] * 10 if a is None else list(a.classes.values()) for a in seen])
    other = np.array([np.nan if a is None else a.looks_like_probability for a in seen])
    return PhotoSignals(probs, views, gate.scores(views), np.array([faces.found(f) for f in faces.scores(images)]),
                        inside, classes, other)


def photo_verdicts(rule: Rule, lines: PhotoLines, signals: PhotoSignals,
                   base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(out of scope, flagged uncertain) per photo: `Rule.judge`'s decisions, vectorised to score many lines.
    base: `rule.flags` of these photos, when already computed (it does not depend on the lines)."""
    read = ~np.isnan(signals.inside)
    inside = np.nan_to_num(signals.inside, nan=0.0)
    keep = read & (inside >= lines.keep_line)
    out = ((signals.scope_logits >= rule.scope_threshold) | signals.face_found) & ~keep
    out |= read & lines.outside(inside, np.nan_to_num(signals.other, nan=0.0))
    labels = np.stack([p.argmax(axis=1) for p in signals.probs.values()])
    agree = (labels == labels[0]).all(axis=0)
    shared = np.take_along_axis(np.nan_to_num(signals.classes), labels[0][:, None], axis=1)[:, 0]
    mismatch = read & ~out & agree & (shared < lines.match_line * inside)
    flagged = (rule.flags(signals.probs, signals.views) if base is None else base) | out | mismatch
    return out, flagged


def photo_summary(out: np.ndarray, flagged: np.ndarray, group: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """The issue's figures for one set of photos: shares out of scope by group, everyday photos answered with no
    flag, and of the class photos: right (every model) among the unflagged, and right and unflagged of all."""
    result: dict[str, float] = {}
    for name in ("everyday", "mammal", "class"):
        mask = group == name
        result[f"{name}_images"] = int(mask.sum())
        result[f"{name}_out_of_scope"] = float(out[mask].mean()) if mask.any() else math.nan
    everyday, photos = group == "everyday", group == "class"
    result["everyday_unflagged"] = float((~flagged[everyday]).mean()) if everyday.any() else math.nan
    kept = photos & ~flagged
    result["class_unflagged_right"] = float(right[kept].mean()) if kept.any() else math.nan
    result["class_right_and_unflagged"] = float((right & ~flagged)[photos].mean()) if photos.any() else math.nan
    result["class_right"] = float(right[photos].mean()) if photos.any() else math.nan
    return result


# The targets on held-out photos; the lines must meet each on the fitting photos with its one-sided 95%
# sampling margin (1.645 standard errors of a share measured on that many photos), so that they hold on new sources.
PHOTO_TARGETS = (("everyday_out_of_scope", ">=", 0.90, "everyday_images"),
                 ("everyday_unflagged", "<=", 0.03, "everyday_images"),
                 ("mammal_out_of_scope", ">=", 0.60, "mammal_images"),
                 ("class_out_of_scope", "<=", 0.05, "class_images"),
                 ("class_unflagged_right", ">=", 0.95, "class_images"),
                 ("class_right_and_unflagged", ">=", 0.60, "class_images"))
INSIDE_LINES = tuple(round(0.05 * i, 2) for i in range(1, 17))
KEEP_LINES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01)  # 1.01: the gate and the face check always count
MATCH_LINES = tuple(round(0.05 * i, 2) for i in range(0, 19))
OTHER_LINES = (math.inf, 4.0, 3.0, 2.0, 1.5, 1.0, 0.75, 0.5)


def shortfall(result: Mapping[str, float]) -> float:
    """How far these figures are from every target with its margin (0: all met)."""
    total = 0.0
    for key, sense, target, count in PHOTO_TARGETS:
        n = max(int(result[count]), 1)
        margin = 1.645 * math.sqrt(target * (1 - target) / n)
        value = result[key]
        if math.isnan(value):
            continue
        total += max(0.0, (target + margin) - value) if sense == ">=" else max(0.0, value - (target - margin))
    return total


def fit_photo_lines(rule: Rule, broad_sha256: str, signals: PhotoSignals, group: np.ndarray,
                    right: np.ndarray) -> tuple[PhotoLines, dict[str, float], int]:
    """The lines, chosen on the fitting photos: of those meeting every target with its margin, the one that leaves
    most class photos right and unflagged, and of equals the one that separates best (everyday photos out of scope
    less class photos out of scope); when none meets them all, the one nearest to meeting them."""
    best: tuple[tuple[float, float], PhotoLines, dict[str, float]] | None = None
    tried = 0
    base = rule.flags(signals.probs, signals.views)
    for inside_line in INSIDE_LINES:
        for keep_line in KEEP_LINES:
            for match_line in MATCH_LINES:
                for other_line in OTHER_LINES:
                    lines = PhotoLines(broad_sha256, inside_line, keep_line, match_line, other_line)
                    result = photo_summary(*photo_verdicts(rule, lines, signals, base), group, right)
                    tried += 1
                    key = (-shortfall(result), result["class_right_and_unflagged"],
                           result["everyday_out_of_scope"] - result["class_out_of_scope"])
                    if best is None or key > best[0]:
                        best = (key, lines, result)
    assert best is not None
    return best[1], best[2], tried


@cache
def load_rule(path: Path = RULE_FILE) -> Rule | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    scope, photos = data.get("scope"), data.get("photos")
    lines = (PhotoLines(photos["broad_sha256"], float(photos["inside_line"]), float(photos["keep_line"]),
                        float(photos["match_line"]),
                        math.inf if photos.get("other_line") is None else float(photos["other_line"]))
             if photos else None)
    return Rule(float(data["threshold"]), dict(data["weights_sha256"]), dict(data.get("grey_accuracy", {})),
                float(scope["threshold"]) if scope else None, scope["gate_sha256"] if scope else None,
                float(data.get("grey_threshold", math.inf)), lines)


def rule_for(models: Mapping[str, str]) -> Rule | None:
    """The committed rule if it was fitted for these exact weights (model name -> weights sha256), else None."""
    rule = load_rule()
    if rule is None or any(rule.weights_sha256.get(name) != sha for name, sha in models.items()):
        return None
    return rule


def fit_photos(rule: Rule, predictors: Mapping, gate, directory: Path | None) -> dict:
    """The broad view's lines, fitted on the real-photo benchmark's fitting sources (never its held-out ones)."""
    from models.cifar10 import CLASS_NAMES
    from models.scope.benchmark import PHOTOS_DIR, load_photos
    from models.scope.broad import load_broad
    from models.scope.faces import load_faces

    broad, faces = load_broad(), load_faces()
    if broad is None or faces is None:
        raise SystemExit("the broad view or the face check (models/scope/) failed to load")
    photos = load_photos(directory or PHOTOS_DIR)
    fitting = photos.subset(photos.role == "fitting")
    signals = photo_signals(fitting.images, predictors, gate, faces, broad)
    truth = np.array([CLASS_NAMES.index(label) if label in CLASS_NAMES else -1 for label in fitting.label])
    right = np.stack([p.argmax(axis=1) == truth for p in signals.probs.values()]).all(axis=0)
    lines, result, tried = fit_photo_lines(rule, broad.sha256, signals, fitting.group, right)
    return {"broad_sha256": broad.sha256, "inside_line": lines.inside_line, "keep_line": lines.keep_line,
            "match_line": lines.match_line,
            "other_line": None if math.isinf(lines.other_line) else lines.other_line,
            "fitting_sources": sorted(set(fitting.source)),
            "fitting_photos": len(fitting.images), "candidates_tried": tried,
            "targets": [list(target[:3]) for target in PHOTO_TARGETS], "shortfall": shortfall(result),
            "fitting": result}


def main(argv: Sequence[str] | None = None) -> None:
    from models import cifar10
    from models.commands import announce_committed
    from models.registry import available_models, load_predictor
    from models.scope.gate import load_gate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--photos", type=Path, default=None,
                        help="the real-photo benchmark (default: build/photo-benchmark)")
    args = parser.parse_args(argv)
    val = cifar10.load_split("val", args.data_dir)
    predictors = {name: load_predictor(name) for name in available_models()}
    probs = {name: p.predict_proba(val.images) for name, p in predictors.items()}
    grey = to_grey(val.images)
    grey_probs = {name: p.predict_proba(grey) for name, p in predictors.items()}
    grey_accuracy = {name: float((p.argmax(axis=1) == val.labels).mean()) for name, p in grey_probs.items()}
    grey_threshold = fit_grey_threshold(grey_probs, val.labels)
    gate = load_gate()
    if gate is None:
        raise SystemExit("the out-of-scope gate (models/scope/) is missing: run python -m models.scope.fit first")
    scope_logits = gate.scores(val.images)
    threshold, scope_threshold, tried = fit_thresholds(probs, val.labels, val.images, scope_logits, grey_threshold)
    rule = Rule(threshold, {name: p.weights_sha256 for name, p in predictors.items()}, grey_accuracy,
                scope_threshold, gate.sha256, grey_threshold)
    record = {"threshold": threshold, "target_flagged": TARGET_FLAGGED, "max_flagged": MAX_FLAGGED,
              "min_unflagged_accuracy": MIN_UNFLAGGED_ACCURACY,
              "split": "validation", "weights_sha256": dict(rule.weights_sha256), "grey_accuracy": grey_accuracy,
              "grey_threshold": grey_threshold, "colourless_chroma": COLOURLESS_CHROMA,
              "scope": {"threshold": scope_threshold, "gate_sha256": gate.sha256, "tried": tried},
              "validation": summary(rule, probs, val.labels, val.images, scope_logits)}
    record["photos"] = fit_photos(rule, predictors, gate, args.photos)
    announce_committed(str(RULE_FILE.relative_to(PACKAGE_DIR.parent)))
    RULE_FILE.write_text(json.dumps(record, indent=2) + "\n")
    photos = record["photos"]
    print(f"photo lines (fitted on {', '.join(photos['fitting_sources'])}): inside {photos['inside_line']}, keep "
          f"{photos['keep_line']}, match {photos['match_line']}, other {photos['other_line']}; fitting photos: "
          + ", ".join(f"{key} {value:.3f}" for key, value in photos["fitting"].items() if isinstance(value, float)))
    v = record["validation"]
    print(f"confidence threshold {threshold:.3f}, out-of-scope logit {scope_threshold:.3f}: flags "
          f"{100 * v['flagged']:.1f}% of {v['images']:,} validation images ({100 * v['out_of_scope']:.1f}% out of "
          f"scope, {100 * v['colourless']:.1f}% have no colour); accuracy unflagged: "
          + ", ".join(f"{n} {100 * v[f'{n}_accuracy_unflagged']:.2f}%" for n in probs)
          + f" -> {RULE_FILE}")


if __name__ == "__main__":
    from models.commands import user_errors

    with user_errors():
        main()
