"""The one seam (`models.classify`): what every caller gets, with fake models (fast) and the rules it keeps."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import models.pipeline
from devkit.images import photo
from models import classify, registry
from models.predictor import top_k_labels


def test_every_image_gets_every_model_top_k_distribution_and_timing(fake_models):
    images = [photo(64, 48, seed=s) for s in range(3)]
    answers = classify(images, ["custom_cnn", "mobilenetv2"], top_k=4)
    assert len(answers.images) == 3 and set(answers.timing) == {"custom_cnn", "mobilenetv2"}
    for name, predictor in fake_models.items():
        expected = predictor.predict_topk(images, k=4)
        for answer, ranked in zip(answers.images, expected, strict=True):
            got = answer.predictions[name]
            assert got.top_k == ranked and len(got.probabilities) == 10
            assert got.top_k[0][1] == max(got.probabilities.values())
            assert sum(got.probabilities.values()) == pytest.approx(1.0)
        assert answers.timing[name].images == 3 and answers.timing[name].batch_ms > 0


def test_images_are_cropped_and_resized_once_per_input_size_not_once_per_model(fake_models, monkeypatch):
    calls = []
    original = models.pipeline.to_model_input
    monkeypatch.setattr(models.pipeline, "to_model_input",
                        lambda imgs, size: calls.append(size) or original(imgs, size))
    classify([photo(300, 200)], ["custom_cnn", "mobilenetv2"])
    assert calls == [32]  # both fakes take 32x32: one crop + resize for the two models


def test_a_model_that_cannot_load_is_reported_per_image_and_the_other_still_answers(fake_models, monkeypatch):
    def broken(name):
        if name == "custom_cnn":
            raise registry.ModelLoadError("models/custom_cnn/weights.pt is missing")
        return fake_models[name]

    monkeypatch.setattr(models.pipeline, "load_predictor", broken)
    answers = classify([photo(), photo(seed=1)], ["custom_cnn", "mobilenetv2"])
    for answer in answers.images:
        assert list(answer.predictions) == ["mobilenetv2"]
        assert "weights.pt is missing" in answer.model_errors["custom_cnn"]
        assert answer.agree is None  # one answer: nothing to agree with
    assert list(answers.timing) == ["mobilenetv2"]


def test_agreement_compares_the_top_classes(fake_models):
    answer = classify([photo()], ["custom_cnn", "mobilenetv2"]).images[0]
    labels = {a.label for a in answer.predictions.values()}
    assert answer.agree == (len(labels) == 1)


def test_an_unknown_model_fails_before_any_model_runs(fake_models):
    with pytest.raises(KeyError, match="resnet"):
        classify([photo()], ["resnet"])
    empty = classify([], ["custom_cnn", "mobilenetv2"])
    assert empty.images == [] and empty.timing == {}


def test_ties_go_to_the_lower_class_index():
    probs = np.array([[0.1, 0.3, 0.3, 0.3] + [0.0] * 6])
    names = [f"c{i}" for i in range(10)]
    assert [label for label, _ in top_k_labels(probs, names, 3)[0]] == ["c1", "c2", "c3"]
    with pytest.raises(ValueError):
        top_k_labels(probs, names, 11)


def test_arrays_and_pil_images_are_the_same_input(fake_models):
    array = np.asarray(photo(40, 40))
    from_array = classify([array], ["custom_cnn"]).images[0].predictions["custom_cnn"]
    from_pil = classify([Image.fromarray(array)], ["custom_cnn"]).images[0].predictions["custom_cnn"]
    assert from_array.probabilities == from_pil.probabilities


# ----------------------------------------------------------------------------- the uncertain verdict
def test_no_verdict_without_a_rule_fitted_for_these_weights(fake_models):
    answer = classify([photo()], ["custom_cnn", "mobilenetv2"]).images[0]
    assert answer.uncertain is None and answer.uncertain_reason is None


def test_disagreement_or_low_confidence_flags_an_image(fake_models, monkeypatch):
    from models.uncertainty import Rule

    rule = Rule(threshold=0.99, weights_sha256={})
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: rule)
    answers = classify([photo(seed=s) for s in range(4)], ["custom_cnn", "mobilenetv2"]).images
    for answer in answers:
        assert answer.uncertain is True  # nothing the fakes say reaches 99%
        if answer.agree:
            assert answer.uncertain_reason.startswith("low confidence")
        else:
            assert answer.uncertain_reason.startswith("the models disagree")
    lenient = Rule(threshold=0.0, weights_sha256={})
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: lenient)
    for answer in classify([photo(seed=s) for s in range(4)], ["custom_cnn", "mobilenetv2"]).images:
        assert answer.uncertain == (not answer.agree)


def test_a_black_and_white_image_is_flagged_with_its_own_reason(fake_models, monkeypatch):
    from models.uncertainty import Rule, colourless, to_grey

    colour = np.asarray(photo(64, 48, seed=3))
    grey = to_grey(colour)
    assert grey.shape == colour.shape and list(colourless(np.stack([colour, grey]))) == [False, True]
    jpeg = io.BytesIO()
    Image.fromarray(grey).save(jpeg, "JPEG", quality=70)  # JPEG's small colour errors: still grey
    assert colourless(np.asarray(Image.open(jpeg).convert("RGB"))[None])[0]

    lenient = Rule(threshold=0.0, weights_sha256={}, grey_accuracy={"custom_cnn": 0.886, "mobilenetv2": 0.898})
    monkeypatch.setattr(models.pipeline, "rule_for", lambda shas: lenient)
    answers = classify([Image.fromarray(colour), Image.fromarray(grey)], ["custom_cnn", "mobilenetv2"]).images
    assert answers[1].agree  # the fakes agree on this grey image: only its colour can flag it
    for answer, is_grey in zip(answers, (False, True), strict=True):
        if answer.agree:
            assert answer.uncertain is is_grey
            if is_grey:
                assert answer.uncertain_reason.startswith("almost no colour, as in a black-and-white photo")
                assert "89%, " in answer.uncertain_reason and "90% right on grey validation photos" in \
                    answer.uncertain_reason
    probs = {"a": np.eye(10)[[1, 1]], "b": np.eye(10)[[1, 1]]}  # agreeing and sure: only colour can flag
    assert list(lenient.flags(probs, np.stack([colour[:32, :32], grey[:32, :32]]))) == [False, True]
    assert list(Rule(0.0, {}).flags(probs, np.stack([colour[:32, :32], grey[:32, :32]]))) == [False, False]


def test_a_black_and_white_image_needs_the_grey_line_not_just_the_colour_line():
    """A grey image the models agree on is flagged only under the grey line, and the reason names that line."""
    from models.uncertainty import Rule, to_grey

    grey = to_grey(np.asarray(photo(32, 32, seed=5)))
    rule = Rule(threshold=0.5, weights_sha256={}, grey_accuracy={"a": 0.88, "b": 0.91}, grey_threshold=0.86)
    sure, unsure = np.eye(10)[[2]] * 0.9 + 0.01, np.eye(10)[[2]] * 0.7 + 0.03  # top-1 0.91 and 0.73
    views = grey[None]
    assert not rule.flags({"a": sure, "b": sure}, views)[0]
    assert rule.flags({"a": sure, "b": unsure}, views)[0]
    assert not rule.flags({"a": sure, "b": unsure}, np.asarray(photo(32, 32, seed=5))[None])[0]  # in colour: fine
    assert rule.judge({"a": ("bird", 0.91, "CNN"), "b": ("bird", 0.95, "MobileNetV2")}, grey).reason is None
    reason = rule.judge({"a": ("bird", 0.91, "CNN"), "b": ("bird", 0.733, "MobileNetV2")}, grey).reason
    assert reason == ("almost no colour, as in a black-and-white photo: MobileNetV2 gives bird 73.3% and grey images "
                      "need 86% (they are harder: CNN 88%, MobileNetV2 91% right on grey validation photos)")


def test_the_grey_line_is_the_lowest_above_which_grey_images_are_right_often_enough():
    from models.uncertainty import fit_grey_threshold

    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, 4000)
    labels = rng.integers(0, 10, 4000)
    right = rng.uniform(size=4000) < confidence  # more confident, more often right
    answers = np.where(right, labels, (labels + 1) % 10)
    probs = np.full((4000, 10), 0.0)
    probs[np.arange(4000), answers] = confidence
    line = fit_grey_threshold({"a": probs, "b": probs}, labels, min_accuracy=0.9)
    kept = confidence >= line
    assert right[kept].mean() >= 0.9 > right[confidence >= line - 0.01].mean()
    assert fit_grey_threshold({"a": probs}, (labels + 5) % 10, min_accuracy=0.9) == np.inf  # never right: all


def test_the_threshold_is_the_largest_that_flags_at_most_the_allowed_share():
    from models.uncertainty import Rule, fit_threshold

    rng = np.random.default_rng(0)
    raw = rng.dirichlet(np.ones(10) * 0.3, size=2000)
    probs = {"a": raw, "b": raw}  # same answers: only confidence can flag
    threshold = fit_threshold(probs, max_flagged=0.25)
    assert Rule(threshold, {}).flags(probs).mean() <= 0.25 < Rule(threshold + 0.005, {}).flags(probs).mean()


@pytest.mark.slow
def test_the_committed_rule_flags_out_of_scope_images_and_few_test_images():
    """Fitted on validation (models/uncertainty.json); on the test split (cached probabilities) it flags few
    images and the unflagged ones are more often right; most drawn out-of-scope images are flagged."""
    from devkit.images import out_of_scope, out_of_scope_photos
    from models import cifar10, load_predictor
    from models.predictor import temper
    from models.uncertainty import rule_for
    from tests.helpers import REAL_CIFAR, REPO

    predictors = {name: load_predictor(name) for name in ("custom_cnn", "mobilenetv2")}
    rule = rule_for({name: p.weights_sha256 for name, p in predictors.items()})
    assert rule is not None  # fitted for the committed weights
    probs, labels = {}, None
    for name, predictor in predictors.items():
        with np.load(REPO / "models" / name / "test_probabilities.npz") as stored:
            probs[name] = temper(stored["probabilities"].astype(np.float64), predictor.temperature)
            labels = stored["labels"]
    views = cifar10.load_split("test", REAL_CIFAR).images if REAL_CIFAR else None  # for the colour and the gate
    from models.scope.gate import load_gate

    flagged = rule.flags(probs, views, load_gate().scores(views) if views is not None else None)
    assert 0.05 <= flagged.mean() <= 0.12
    for p in probs.values():
        correct = p.argmax(axis=1) == labels
        assert correct[~flagged].mean() > correct.mean() + 0.03
    oos = classify(list(out_of_scope().values()) + list(out_of_scope_photos().values()), list(predictors)).images
    assert sum(bool(a.uncertain) for a in oos) / len(oos) >= 0.90  # the issue-17 design set, rule and gate


def test_the_crop_reaches_every_model_and_the_view_they_saw(fake_models):
    """`crop` is an option of the seam: with "whole", the 32x32 view every model reads is the padded photo (its
    top and bottom rows the padding), and the answers come from that view."""
    wide = Image.new("RGB", (300, 100), (30, 60, 90))
    wide.paste((230, 220, 20), (0, 0, 40, 100))  # a yellow band at the left edge
    centre = classify([wide], ["custom_cnn", "mobilenetv2"]).images[0]
    whole = classify([wide], ["custom_cnn", "mobilenetv2"], crop="whole").images[0]
    assert not (centre.model_view[..., 2] < 60).any()  # no yellow in the centre square
    assert (whole.model_view[12:20, :4, 2] < 60).all()  # the yellow band, at the left of the padded view
    assert np.ptp(whole.model_view[:4].reshape(-1, 3), axis=0).max() <= 2  # padding: one colour
    assert set(whole.predictions) == {"custom_cnn", "mobilenetv2"}
    with pytest.raises(ValueError, match="crop must be one of"):
        classify([wide], ["custom_cnn"], crop="diagonal")
