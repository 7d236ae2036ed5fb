"""How often the "uncertain" verdict fires on images that are none of the 10 classes.

    .venv/bin/python bench/bench_out_of_scope.py    # -> docs/measurements/out-of-scope.txt (make readme shows it)

Two sets, both classified through the one seam (`models.classify`) with the committed models and rule:
16 images drawn in code (devkit.images.out_of_scope) and 42 real photographs and scans from scikit-image's
data (devkit.images.out_of_scope_photos). Prints each image's answers and verdict, then the counts.
"""

from __future__ import annotations

from devkit.images import out_of_scope, out_of_scope_photos
from devkit.transcript import MEASUREMENTS, Transcript
from models import available_models, classify
from models.machine import describe_machine


def main() -> None:
    say = Transcript()
    say(f"machine: {describe_machine()}")
    names = available_models()
    totals = []
    for title, images in (("drawn", out_of_scope()), ("photos", out_of_scope_photos())):
        answers = classify(list(images.values()), names).images
        flagged = sum(bool(a.uncertain) for a in answers)
        totals.append((title, flagged, len(answers)))
        say(f"-- {title}: {flagged} of {len(answers)} flagged")
        for name, answer in zip(images, answers, strict=True):
            tops = "  ".join(f"{a.top_k[0][0]} {100 * a.top_k[0][1]:.0f}%" for a in answer.predictions.values())
            say(f"{'FLAGGED' if answer.uncertain else 'missed '}  {name:22s} {tops}")
    flagged = sum(f for _, f, _ in totals)
    count = sum(n for _, _, n in totals)
    say("summary: " + ", ".join(f"{t} {f}/{n}" for t, f, n in totals)
        + f"; all {flagged}/{count} = {100 * flagged / count:.0f}% flagged")
    say.save(MEASUREMENTS / "out-of-scope.txt")


if __name__ == "__main__":
    main()
