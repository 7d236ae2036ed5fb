"""Figures in the docs' prose that describe the committed artefacts match the files they come from.

Most figures live in generated blocks (`make readme`, checked by test_codebase). A few sentences quote a
current figure in running text; each is listed here with its source, so that retraining a model, refitting the
gate or changing a threshold fails this test at the sentence that went stale, instead of leaving it under a
generated block that says something else (issue 30, #7). A sentence not found means the prose changed: update
the claim with it.
"""

from __future__ import annotations

import json
import re

import pytest

from models import uncertainty
from tests.helpers import REPO


def page_text(name: str) -> str:
    """The page with every run of whitespace (line breaks included) as one space."""
    return re.sub(r"\s+", " ", (REPO / name).read_text())


def cnn_test_figures() -> str:
    metrics = json.loads((REPO / "models" / "custom_cnn" / "metrics.json").read_text())
    robustness = json.loads((REPO / "reports" / "metrics.json").read_text())["robustness"]
    mean = robustness["models"]["custom_cnn"]["mean_corruption_accuracy"]
    return (f"Scored once on test they reach {100 * metrics['accuracy']:.2f}% clean and {100 * mean:.1f}% mean "
            "accuracy over the 15 corruptions")


def scope_choice() -> str:
    config = json.loads((REPO / "models" / "scope" / "config.json").read_text())
    best = {}
    for candidate in config["candidates"]:
        size = candidate["resolution"]
        if size not in best or candidate["mean_auroc"] > best[size]["mean_auroc"]:
            best[size] = candidate
    served = best[config["resolution"]]
    return (f"128 px scored {best[128]['mean_auroc']:.3f}, 96 px {best[96]['mean_auroc']:.3f} and 64 px "
            f"{best[64]['mean_auroc']:.3f} mean AUROC, but 128 px costs {best[128]['ms_per_image']:.1f} ms per image "
            f"on the AMD EPYC VM, over the {config['max_ms_per_image']:.0f} ms budget on a machine "
            f"{config['slowest_machine_factor']} times slower, so {config['resolution']} px "
            f"({served['ms_per_image']:.1f} ms) is served")


def threshold_rule() -> str:
    return (f"Every share of validation images the gate may flag ({100 * min(uncertainty.SCOPE_SHARES):.0f}–"
            f"{100 * max(uncertainty.SCOPE_SHARES):.2f}%) gets the largest confidence threshold that keeps all "
            f"reasons together at or under {100 * uncertainty.MAX_FLAGGED:.1f}% of validation; of the pairs whose "
            f"unflagged images are at least {100 * uncertainty.MIN_UNFLAGGED_ACCURACY:.1f}% right for both models")


def examples_gallery() -> str:
    examples = json.loads((REPO / "static" / "examples" / "examples.json").read_text())
    cifar = sum(1 for example in examples if example["file"].startswith("cifar-"))
    return (f"offers {len(examples)} example images ({cifar} CIFAR-10 test images, {len(examples) - cifar} "
            "photos of other things)")


CLAIMS = [
    ("docs/custom-cnn.md", cnn_test_figures),
    ("docs/how-it-works.md", scope_choice),
    ("docs/how-it-works.md", threshold_rule),
    ("README.md", examples_gallery),
]


@pytest.mark.parametrize("page,claim", CLAIMS, ids=[claim.__name__ for _, claim in CLAIMS])
def test_a_current_figure_quoted_in_prose_matches_its_source(page, claim):
    expected = claim()
    assert expected in page_text(page), f"{page} should say, from the committed files: {expected!r}"
