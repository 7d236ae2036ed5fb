"""The report's words, shared by the HTML page and the PDF: the verdict in plain language, what ECE means,
how the numbers were made and what they cannot tell. Sentences are built from the numbers in the report."""

from __future__ import annotations

from typing import Any

ECE_EXPLAINED = ("ECE (expected calibration error) is the average gap between how sure a model says it is and "
                 "how often it is right: 0% is perfect; 2% means a model that says 90% is right about 88% or 92% "
                 "of the time.")

# What the verdicts mean, for the documents that define them (the comparison PDF); models/uncertainty.py decides.
VERDICTS_EXPLAINED = (
    "\"Out of scope\" means the image probably shows none of the 10 classes: on a photo, a model that knows 1,000 "
    "kinds of things (ImageNet's) reads it as sent and sees none of the 10; or, unless that model sees one of the 10, "
    "a gate on the 32×32 view (ImageNet features and a probe fitted on CIFAR-10 and some out-of-scope families) "
    "finds it unlike CIFAR-10, or a face detector finds a person. \"Uncertain\" means that, or the models "
    "disagree, or the less confident one is below the fitted threshold, or the image has no colour.")


def short_name(model: dict[str, Any]) -> str:
    info = model["info"]
    return info.get("short_name") or info["display_name"].split(" (")[0]


def chance(p: float) -> str:
    """A p-value in words: how often chance alone would produce a difference this large."""
    if p < 1e-6:
        return "less than once in a million"
    if p < 0.001:
        return f"about once in {round(1 / p, -3):,.0f}" if p > 1e-5 else f"about once in {round(1 / p, -4):,.0f}"
    if p < 0.05:
        return f"about once in {round(1 / p):,}"
    if p >= 0.995:
        return "almost every time"
    return f"{100 * p:.0f} times in 100"


def verdict(c: dict[str, Any], models: dict[str, Any], images: str = "the test images") -> str:
    """"MobileNetV2 is more accurate: 95.6% vs 94.5% (…); a difference this large would arise by chance …"."""
    a, b = models[c["a"]], models[c["b"]]
    better, worse = (a, b) if c["accuracy_difference"] >= 0 else (b, a)
    # The interval of the difference is a minus b; the sentences are about the better one's lead.
    sign = 1 if c["accuracy_difference"] >= 0 else -1
    low, high = sorted(sign * 100 * v for v in c["accuracy_difference_ci95"])
    gap = f"{100 * better['accuracy']:.1f}% vs {100 * worse['accuracy']:.1f}% on {images}"
    p = c["mcnemar"]["p_value"]
    if c["mcnemar"]["significant_at_0_05"]:
        head = f"{short_name(better)} is more accurate than {short_name(worse)}: {gap}"
        tail = (f"if the two were equally good, a gap this large would arise by chance {chance(p)} "
                f"(McNemar's exact test, p = {p:.2g}); the true "
                f"gap is most likely between {low:.1f} and {high:.1f} points (95% interval)")
    elif abs(c["accuracy_difference"]) <= 0.01 + 1e-9:  # within a point
        head = f"{short_name(better)} and {short_name(worse)} are about equally accurate: {gap}"
    else:  # a visible gap that these images are too few to confirm: say so rather than "equally accurate"
        head = (f"{short_name(better)} got more right than {short_name(worse)}, but the gap is not conclusive: "
                f"{gap}")
    if not c["mcnemar"]["significant_at_0_05"] and c["accuracy_difference"] == 0:
        tail = (f"they were right on exactly the same images, so {images} cannot tell them apart"
                if low == high == 0 else
                f"{images} cannot tell them apart (the true gap, {short_name(a)} minus {short_name(b)}, could be "
                f"anywhere from {low:+.1f} to {high:+.1f} points)")
    elif not c["mcnemar"]["significant_at_0_05"] and low > 0:
        # The two measures disagree at the edge (McNemar over the images only one model got right, the bootstrap
        # interval over all of them): say so, rather than "cannot tell them apart" beside an interval above zero.
        tail = (f"a borderline result: McNemar's exact test does not confirm the gap (chance alone would give it "
                f"{chance(p)}, p = {p:.2g}), though the interval of {short_name(better)}'s lead, {low:+.1f} to "
                f"{high:+.1f} points, leaves out zero; more images would settle it")
    elif not c["mcnemar"]["significant_at_0_05"]:
        tail = (f"chance alone would give a gap this large {chance(p)} (McNemar's exact test, p = {p:.2g}), so "
                f"{images} cannot tell them apart ({short_name(better)}'s true lead could be anywhere from "
                f"{low:+.1f} to {high:+.1f} points)")
    return (f"{head}; {tail}. They give the same answer on {100 * c['agreement']:.1f}% of the images.")


def false_alarms(count: int) -> str:
    """What the out-of-scope check said about a set of labelled images (each one it flagged is a false alarm)."""
    if count == 0:
        return "None of them was called out of scope: no false alarm of the out-of-scope check."
    return (f"{count} of them {'was' if count == 1 else 'were'} called out of scope, although every image here is "
            f"labelled with one of the 10 classes: {'a false alarm' if count == 1 else 'false alarms'} of the "
            "out-of-scope check.")


def lead_row(c: dict[str, Any], models: dict[str, Any]) -> tuple[str, str]:
    """The comparison table's difference row, worded as the verdict is: the leading model's lead and its 95% paired
    interval ("MobileNetV2's lead", "+1.7 points (-3.3 to +6.7)"); with no leader, the first minus the second."""
    a, b = models[c["a"]], models[c["b"]]
    difference = c["accuracy_difference"]
    sign = -1 if difference < 0 else 1
    low, high = sorted(sign * 100 * v for v in c["accuracy_difference_ci95"])
    if difference == 0:
        label = f"accuracy difference ({short_name(a)} − {short_name(b)}), 95% paired interval"
    else:
        label = f"{short_name(a if sign > 0 else b)}'s lead, 95% paired interval"
    return label, f"{sign * 100 * difference:+.1f} points ({low:+.1f} to {high:+.1f})"


def method(report: dict[str, Any]) -> list[str]:
    return [
        "Both models learn from the same 45,000 training images. A stratified 5,000-image validation split, held "
        "out of the official training batches, makes every choice during training (epochs, checkpoint, "
        "calibration temperature, the 'uncertain' threshold). The official 10,000-image test split is scored "
        "once per set of weights, for this report.",
        f"Accuracy intervals are percentile bootstraps over the test images ({report['bootstrap_resamples']:,} "
        "resamples). The two models are compared on the same images: McNemar's exact test on the images only one "
        "of them gets right, and a paired bootstrap interval of the accuracy difference.",
        f"Probabilities are temperature-scaled on the validation split; calibration is measured in "
        f"{report['calibration_bins']} equal-width confidence bins. {ECE_EXPLAINED}",
    ]


LIMITATIONS = [
    "The models know only the 10 CIFAR-10 classes. Shown anything else (a person, a room, a chart) they still "
    "name one of the 10, often confidently; the app's 'uncertain' flag catches many such images, not all.",
    "Every image is reduced to 32×32 pixels, so fine detail in large photos is lost; the test images are small, "
    "centred photos, and accuracy on your own photos may be lower.",
    "Each model is one set of trained weights, chosen on the validation split; another seed of the same recipe "
    "moves test accuracy by a few tenths of a point.",
    "Latencies are CPU timings on the machine named beside them, not a GPU; they vary with the machine and load.",
    "The test split is 10,000 images: differences under about half a point are within noise (see the intervals).",
]


def robustness_verdict(section: dict[str, Any], models: dict[str, Any]) -> str:
    """Which model to trust on degraded photos, in words, from the mean corruption accuracies and their paired CI."""
    c = section.get("comparison")
    ms = section["models"]
    if not c:
        name, m = next(iter(ms.items()))
        return (f"{short_name(models[name])} keeps {100 * m['mean_corruption_accuracy']:.1f}% accuracy on corrupted "
                f"images against {100 * m['clean_accuracy']:.1f}% on clean ones.")
    a, b = c["a"], c["b"]
    better, worse = (a, b) if c["mean_corruption_accuracy_difference"] >= 0 else (b, a)
    low, high = sorted(abs(100 * v) for v in c["difference_ci95"])
    significant = c["difference_ci95"][0] > 0 or c["difference_ci95"][1] < 0
    gap = (f"{100 * ms[better]['mean_corruption_accuracy']:.1f}% vs {100 * ms[worse]['mean_corruption_accuracy']:.1f}% "
           f"mean accuracy over the 15 corruptions × 5 severities")
    if not significant:
        return f"{short_name(models[better])} and {short_name(models[worse])} are about as robust: {gap}."
    worst = min(ms[worse]["by_corruption"], key=ms[worse]["by_corruption"].get)
    return (f"On blurred, noisy or otherwise degraded photos, trust {short_name(models[better])} more: {gap} "
            f"(the gap is between {low:.1f} and {high:.1f} points, 95% paired interval). "
            f"{short_name(models[worse])} suffers most from {worst.replace('_', ' ')} "
            f"({100 * ms[worse]['by_corruption'][worst]:.0f}%).")


def robustbench_caveat(r: dict[str, Any]) -> str:
    """Said next to every comparison with RobustBench's entries: what makes ours not like for like."""
    simulated = r.get("simulated_in_training") or []
    if not simulated:
        return ""
    unsimulated = len(r["corruptions"]) - len(simulated)
    return (f"Not like for like with RobustBench: training simulated {len(simulated)} of the {len(r['corruptions'])} "
            f"test corruptions ({' and '.join(c.replace('_', ' ') for c in simulated)}: the photo damage both "
            "trainers add is Gaussian noise with the benchmark's own formula at its strengths, sigma up to 0.1, and "
            "the contrast corruption's formula, factor 0.15 to 1), which the CIFAR-10-C protocol asks not to do "
            f"and AugMix avoids. The mean over the {unsimulated} corruptions training did not simulate is given "
            "beside the 15-corruption mean.")


def recommendation(report: dict[str, Any]) -> dict[str, Any] | None:
    """Which model to use, weighing what the report measured, each point with its evidence: accuracy on the test
    split, on real photographs and on corrupted images (a point counts only where chance is an unlikely
    explanation: p < 0.05, or a paired interval that excludes 0), then calibration and speed. The model with more
    of the three accuracy points wins; speed breaks a tie. {"model", "headline", "points": [(aspect, sentence)]};
    None with fewer than two models."""
    models = report["models"]
    if len(models) < 2 or not report.get("comparisons"):
        return None
    c = report["comparisons"][0]
    a, b = c["a"], c["b"]
    name = {n: short_name(models[n]) for n in (a, b)}
    wins: dict[str, list[str]] = {a: [], b: []}
    points: list[tuple[str, str]] = []

    def lead(aspect: str, first: str, second: str, value: dict[str, float], significant: bool, evidence: str) -> None:
        better = first if value[first] >= value[second] else second
        worse = second if better == first else first
        if significant:
            wins[better].append(aspect)
            points.append((aspect, f"{name[better]} is better: {100 * value[better]:.1f}% vs "
                                   f"{100 * value[worse]:.1f}% ({evidence})."))
        else:
            points.append((aspect, f"no clear difference: {name[better]} {100 * value[better]:.1f}%, "
                                   f"{name[worse]} {100 * value[worse]:.1f}% ({evidence})."))

    lead("the test split", a, b, {a: models[a]["accuracy"], b: models[b]["accuracy"]},
         c["mcnemar"]["significant_at_0_05"],
         f"{report['dataset']['images']:,} test images, McNemar p = {c['mcnemar']['p_value']:.2g}")
    photos = ((report.get("out_of_scope") or {}).get("real_photos") or {}).get("real_photo_accuracy")
    if photos and a in photos["models"] and b in photos["models"]:
        lead("real photographs", a, b, {n: photos["models"][n]["accuracy"] for n in (a, b)},
             photos["mcnemar_p"] < 0.05,
             f"{photos['images']} photos of the 10 classes from sources no setting was chosen on, McNemar "
             f"p = {photos['mcnemar_p']:.2g}")
    robustness = report.get("robustness") or {}
    if robustness.get("comparison"):
        low, high = robustness["comparison"]["difference_ci95"]
        lead("corrupted images", a, b, {n: robustness["models"][n]["mean_corruption_accuracy"] for n in (a, b)},
             low > 0 or high < 0, f"mean over the 15 CIFAR-10-C corruptions × 5 severities, paired interval of the "
                                  f"gap {100 * min(abs(low), abs(high)):.1f} to {100 * max(abs(low), abs(high)):.1f} "
                                  "points")
    ece = {n: models[n]["ece"] for n in (a, b)}
    steadier = min(ece, key=ece.get)
    other = b if steadier == a else a
    points.append(("calibration", f"{name[steadier]}'s confidence is closer to how often it is right: ECE "
                                  f"{100 * ece[steadier]:.1f}% vs {100 * ece[other]:.1f}%"
                                  + (" (both small: a stated 90% is right 88–92% of the time)."
                                     if max(ece.values()) <= 0.02 else ".")))
    latency = {n: (models[n].get("latency") or {}).get("batch_1_ms_per_image") for n in (a, b)}
    faster = None
    if all(latency.values()):
        faster = min(latency, key=latency.get)
        slower = b if faster == a else a
        machine = models[faster]["latency"].get("machine", report["machine"])
        points.append(("speed", f"{name[faster]} answers one image in {latency[faster]:.1f} ms, {name[slower]} in "
                                f"{latency[slower]:.1f} ms ({machine})."))
    ranked = sorted((a, b), key=lambda n: (-len(wins[n]), n != faster))  # more points, then the faster
    best, rest = ranked
    speed = ", and faster" if faster == best else ""
    headline = (f"Use {name[best]}: more accurate on {_and(wins[best])}{speed}" if wins[best]
                else f"Use {name[best]}: no clear difference in accuracy{speed}")
    headline += (f". {name[rest]} is more accurate on {_and(wins[rest])}" if wins[rest]
                 else f". {name[rest]} is more accurate on none of them")
    headline += (f"; its confidence is closer to how often it is right (ECE {100 * ece[rest]:.1f}% vs "
                 f"{100 * ece[best]:.1f}%)." if steadier == rest else ".")
    return {"model": best, "headline": headline, "points": points}


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
