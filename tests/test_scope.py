"""The out-of-scope verdict: the gate's score, the two verdicts in the seam, the thresholds, the fitting data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import models.pipeline
from devkit.images import photo
from models import classify
from models.uncertainty import Rule, fit_thresholds, scope_score


class FixedGate:
    """A gate whose logits are given per call (the seam must only compare them with the rule's threshold)."""

    sha256 = "gate-under-test"

    def __init__(self, logits: list[float]):
        self.logits = logits
        self.seen: list[np.ndarray] = []

    def scores(self, views: np.ndarray) -> np.ndarray:
        self.seen.append(views)
        return np.array(self.logits[: len(views)], dtype=float)


def test_the_score_is_one_half_at_the_threshold_and_ranks_as_the_logit_does():
    logits = np.array([-5.0, 1.0, 2.0, 2.5, 9.0])
    scores = scope_score(logits, 2.0)
    assert scores[2] == pytest.approx(0.5)
    assert list(np.argsort(scores)) == list(np.argsort(logits)) and (scores > 0).all() and (scores < 1).all()


def test_an_out_of_scope_image_gets_both_verdicts_and_its_own_reason(fake_models, monkeypatch):
    rule = Rule(threshold=0.0, weights_sha256={}, scope_threshold=1.0, gate_sha256=FixedGate.sha256)
    gate = FixedGate([3.0, -2.0])
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: rule)
    monkeypatch.setattr(models.pipeline, "load_gate", lambda: gate)
    outside, inside = classify([photo(seed=1), photo(seed=2)], ["custom_cnn", "mobilenetv2"]).images
    assert gate.seen[0].shape == (2, 32, 32, 3) and gate.seen[0].dtype == np.uint8  # the views the models saw
    assert outside.out_of_scope is True and outside.uncertain is True
    assert outside.uncertain_reason.startswith("probably not one of the 10 classes")
    assert outside.out_of_scope_score == pytest.approx(float(scope_score(3.0, 1.0)), abs=1e-4) and \
        outside.out_of_scope_score > 0.5
    assert inside.out_of_scope is False and inside.out_of_scope_score < 0.5
    assert inside.uncertain == (not inside.agree)  # with threshold 0 only a disagreement can flag it
    if inside.uncertain:
        assert inside.uncertain_reason.startswith("the models disagree")


def test_without_its_gate_the_rule_still_judges_the_models_but_not_the_scope(fake_models, monkeypatch):
    rule = Rule(threshold=0.99, weights_sha256={}, scope_threshold=1.0, gate_sha256="fitted-for-another-gate")
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: rule)
    monkeypatch.setattr(models.pipeline, "load_gate", lambda: FixedGate([5.0]))  # not the gate it was fitted for
    answer = classify([photo()], ["custom_cnn", "mobilenetv2"]).images[0]
    assert answer.out_of_scope is None and answer.out_of_scope_score is None
    assert answer.uncertain is True and not answer.uncertain_reason.startswith("probably not")
    monkeypatch.setattr(models.pipeline, "load_gate", lambda: None)  # its files missing
    assert classify([photo()], ["custom_cnn"]).images[0].out_of_scope is None


def test_the_low_confidence_reason_never_rounds_the_probability_up_to_the_line():
    rule = Rule(threshold=0.61, weights_sha256={})
    reason = rule.judge({"a": ("ship", 0.6099, "CNN"), "b": ("ship", 0.9, "MobileNetV2")}).reason
    assert "ship only 60.99%" in reason and "61.0% line" in reason  # rounded, it would read as the line
    close = Rule(threshold=0.565, weights_sha256={}).judge({"a": ("dog", 0.5620, "CNN"), "b": ("dog", 0.9, "M")}).reason
    assert "dog only 56.2%, under the 56.5% line" in close  # not "56%, under the 56% line"
    # Elsewhere the reason rounds as the card's bar does: "dog 41.8%" in the bar was "only 41.7%" in the reason.
    assert "49.9%" in Rule(threshold=0.565, weights_sha256={}).judge({"a": ("dog", 0.4989, "CNN")}).reason
    assert "dog only 41.8%" in Rule(threshold=0.565, weights_sha256={}).judge({"a": ("dog", 0.4179, "CNN")}).reason


def test_the_thresholds_keep_the_budget_and_the_accuracy_floor_and_give_the_gate_the_most():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 10, n)
    confidence = rng.uniform(0.3, 1.0, n)
    right = confidence > 0.335  # about 5% wrong, all unsure
    answer = np.where(right, labels, (labels + 1) % 10)
    probs = np.full((n, 10), 0.0)
    probs[np.arange(n), answer] = confidence
    probs += (1 - probs.sum(1, keepdims=True)) / 10
    views = np.repeat(np.array([[[[200, 30, 30]]]], np.uint8), n, axis=0).repeat(32, 1).repeat(32, 2)
    scope_logits = rng.normal(0, 1, n) - 3 * right  # wrong answers look less like the training data
    threshold, scope_threshold, tried = fit_thresholds({"a": probs, "b": probs}, labels, views, scope_logits)
    rule = Rule(threshold, {}, {"colour": 1.0}, scope_threshold)
    flagged = rule.flags({"a": probs, "b": probs}, views, scope_logits)
    assert flagged.mean() <= 0.10
    chosen = next(t for t in tried if t["scope_threshold"] == scope_threshold)
    eligible = [t for t in tried if t["min_accuracy_unflagged"] >= 0.986]
    assert eligible and chosen in eligible and chosen["scope_share"] == max(t["scope_share"] for t in eligible)
    assert (answer == labels)[~flagged].mean() >= 0.986
    assert chosen["scope_share"] > 0 and rule.out_of_scope(scope_logits).mean() <= chosen["scope_share"] + 1e-9
    too_much = [t for t in tried if t["scope_share"] > chosen["scope_share"]]
    assert all(t["min_accuracy_unflagged"] < 0.986 for t in too_much)


def test_the_fitting_data_is_augmented_reproducibly():
    from models.scope.fit import augmented

    images = [Image.fromarray(np.asarray(photo(60, 40, seed=s))) for s in range(3)]
    first, second = augmented(images, copies=4, seed=1), augmented(images, copies=4, seed=1)
    assert len(first) == 12
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(augmented(images, copies=4, seed=2)[0]))
    assert all(8 <= im.size[0] <= 60 and 8 <= im.size[1] <= 40 for im in first)


def test_the_family_split_is_disjoint_and_the_reported_person_families_are_held_out():
    from models.scope.benchmark import FITTING_FAMILIES, HELD_OUT_FAMILIES

    assert not set(FITTING_FAMILIES) & set(HELD_OUT_FAMILIES)
    assert len(FITTING_FAMILIES) + len(HELD_OUT_FAMILIES) >= 6
    assert {"faces", "emoji-people"} <= set(HELD_OUT_FAMILIES)


@pytest.mark.slow
def test_the_committed_gate_is_the_one_the_rule_was_fitted_for():
    from models.scope.gate import ScopeGate
    from models.uncertainty import load_rule

    gate = ScopeGate()
    assert gate.sha256 == load_rule().gate_sha256
    views = np.stack([np.asarray(photo(32, 32, seed=s)) for s in range(3)])
    first, again = gate.scores(views), gate.scores(views[::-1])
    assert first.shape == (3,) and np.allclose(first, again[::-1])  # one image's score does not depend on the batch


def test_every_reason_that_applies_is_given_the_strongest_first():
    from models.uncertainty import to_grey

    grey = to_grey(np.asarray(photo(32, 32, seed=4)))
    rule = Rule(threshold=0.5, weights_sha256={}, grey_accuracy={"a": 0.88, "b": 0.91}, scope_threshold=0.0)
    reason = rule.judge({"a": ("dog", 0.7, "CNN"), "b": ("cat", 0.8, "MobileNetV2")}, grey, scope_logit=2.0).reason
    first, second, third = reason.split("; and ")
    assert first.startswith("probably not one of the 10 classes") and second == "the models disagree (dog vs cat)"
    assert third.startswith("almost no colour, as in a black-and-white photo") and "CNN 88%" in third
    assert len(reason) <= 500
    assert rule.judge({"a": ("dog", 0.9, "CNN"), "b": ("dog", 0.95, "MobileNetV2")}, None, -1.0).reason is None


def test_every_reason_at_once_fits_the_apis_500_characters():
    """A grey portrait with a face, out of scope, on which the models disagree with the longest labels: an
    independent check found such a reason over the schema's bound (the API answered 500)."""
    from models.uncertainty import to_grey
    from webapp.schema import Result

    grey = to_grey(np.asarray(photo(32, 32, seed=4)))
    rule = Rule(threshold=0.56, weights_sha256={}, grey_accuracy={"custom_cnn": 0.876, "mobilenetv2": 0.908},
                scope_threshold=0.0, grey_threshold=0.86)
    answers = {"custom_cnn": ("automobile", 0.3456, "Custom CNN"), "mobilenetv2": ("airplane", 0.5559, "MobileNetV2")}
    reason = rule.judge(answers, grey, scope_logit=9.0, face=0.99).reason
    parts = reason.split("; and ")
    assert [p.split(" (")[0].split(":")[0] for p in parts] == [
        "a face detector sees a person's face", "it looks unlike the photos the models learnt from too",
        "the models disagree", "almost no colour, as in a black-and-white photo"]
    assert parts[1].endswith("so whatever the models answer is a guess") and len(reason) <= 500
    same = {"custom_cnn": ("automobile", 0.3456, "Custom CNN"), "mobilenetv2": ("automobile", 0.5, "MobileNetV2")}
    merged = rule.judge(same, grey, scope_logit=9.0, face=0.99).reason
    assert "low confidence" not in merged and "Custom CNN gives automobile 34.6% and grey images need 86%" in merged
    assert Result.model_fields["uncertain_reason"].metadata[0].max_length == 500


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """bench/bench_out_of_scope.py's figures: the benchmark rebuilt here, the test split through the seam."""
    import importlib.util

    from tests.helpers import REAL_CIFAR, REPO, require_tool

    if not REAL_CIFAR:
        pytest.skip("needs the real CIFAR-10 test split")
    spec = importlib.util.spec_from_file_location("builder", REPO / "scripts" / "build_ood_benchmark.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    require_tool("adwaita-icon-theme", builder.ICONS.is_dir())
    require_tool("fonts-noto-color-emoji", builder.EMOJI_FONT.is_file())
    folder = tmp_path_factory.mktemp("ood-benchmark")
    builder.build(folder)
    spec = importlib.util.spec_from_file_location("bench_oos", REPO / "bench" / "bench_out_of_scope.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return {c["what"]: c for c in bench.measure(folder, str(REAL_CIFAR))["checks"]}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["held-out images flagged uncertain", "test images flagged uncertain",
                                    "AUROC, test vs held-out", "persons called out of scope",
                                    "custom_cnn accuracy on unflagged test images",
                                    "mobilenetv2 accuracy on unflagged test images"])
def test_issue_29_targets_hold_on_the_held_out_families_and_the_test_split(measured, target):
    assert measured[target]["met"], measured[target]


class FixedFaces:
    """A person check whose confidences are given (the seam must compare them with its line, on the images as
    sent)."""

    threshold = 0.8

    def __init__(self, confidences: list[float | None]):
        self.confidences = confidences
        self.seen: list = []

    def scores(self, images) -> list[float | None]:
        self.seen = list(images)
        return self.confidences[: len(images)]

    def found(self, score: float | None) -> bool:
        return score is not None and score >= self.threshold


def test_a_face_makes_an_image_out_of_scope_whatever_the_gate_says(fake_models, monkeypatch):
    from models.scope.faces import face_score

    rule = Rule(threshold=0.0, weights_sha256={}, scope_threshold=1.0, gate_sha256=FixedGate.sha256)
    faces = FixedFaces([0.95, 0.5, None])
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: rule)
    monkeypatch.setattr(models.pipeline, "load_gate", lambda: FixedGate([-3.0, -3.0, -3.0]))
    monkeypatch.setattr(models.pipeline, "load_faces", lambda: faces)
    sent = [photo(200, 150, seed=1), photo(200, 150, seed=2), photo(40, 40, seed=3)]
    face, plain, small = classify(sent, ["custom_cnn", "mobilenetv2"]).images
    assert [image.size for image in faces.seen] == [(200, 150), (200, 150), (40, 40)]  # as sent, not the views
    assert face.out_of_scope is True and face.uncertain is True
    assert face.uncertain_reason.startswith("a face detector sees a person's face (confidence 0.95)")
    assert face.out_of_scope_score == pytest.approx(face_score(0.95, 0.8)) and face.out_of_scope_score > 0.5
    assert plain.out_of_scope is False and 0 < plain.out_of_scope_score < 0.5
    assert small.out_of_scope is False and small.out_of_scope_score == pytest.approx(float(scope_score(-3.0, 1.0)))


def test_the_face_score_is_one_half_at_the_line_and_rises_with_the_confidence():
    from models.scope.faces import choose_threshold, face_score

    values = [face_score(c, 0.74) for c in (0.0, 0.3, 0.74, 0.8, 1.0)]
    assert values[2] == pytest.approx(0.5) and values == sorted(values) and values[0] == 0 and values[-1] == 1
    validation = np.r_[np.full(995, 0.45), [0.6, 0.7, 0.72, 0.73, 0.9]]
    assert choose_threshold(validation, max_share=0.001) == pytest.approx(0.74)  # only the 0.9 reaches it
    assert choose_threshold(validation, max_share=0.003) == pytest.approx(0.71)  # 0.72, 0.73 and 0.9
    assert choose_threshold(np.full(10, 0.3), max_share=0.001) == pytest.approx(0.5)  # never under MediaPipe's own


@pytest.mark.slow
def test_the_committed_face_detector_finds_the_astronaut_and_not_an_enlarged_cifar_image(tmp_path):
    """The examples gallery's astronaut (a person, none of the 10 classes) is out of scope through the seam
    because of its face; a CIFAR-10 cat enlarged 4x is not found; its 32 px original is not even checked. A
    detector file that is not the measured one is refused."""
    import json
    import shutil

    from models.predictor import ModelLoadError
    from models.scope import faces
    from tests.helpers import REPO

    check = faces.FaceCheck()
    entry = json.loads((REPO / "models" / "scope" / "config.json").read_text())["faces"]
    assert check.threshold == entry["threshold"] and entry["validation_share"] <= faces.MAX_VALIDATION_SHARE
    examples = REPO / "static" / "examples"
    astronaut = Image.open(examples / "outside-astronaut.jpg")
    cat = Image.open(examples / "cifar-0000-cat.png").convert("RGB")
    assert check.found(check.score(astronaut)) and not check.found(check.score(cat.resize((128, 128))))
    assert check.score(cat) is None
    answer = classify([astronaut], ["custom_cnn", "mobilenetv2"]).images[0]
    assert answer.out_of_scope is True
    assert "a face detector sees a person's face" in answer.uncertain_reason
    shutil.copytree(REPO / "models" / "scope", tmp_path / "scope", ignore=shutil.ignore_patterns("*.npz", "features*"))
    path = tmp_path / "scope" / faces.DETECTOR_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="not the detector"):
        faces.FaceCheck(tmp_path / "scope")



def test_the_gate_and_the_face_check_are_built_once_and_a_failure_is_remembered_as_none():
    from models.predictor import ModelLoadError
    from models.scope import load_once

    calls = []

    def build():
        calls.append(1)
        return object()

    def broken():
        calls.append(1)
        raise ModelLoadError("missing file")

    load = load_once(build)
    assert load() is load() and len(calls) == 1
    calls.clear()
    load_broken = load_once(broken)
    assert load_broken() is None and load_broken() is None and len(calls) == 1
