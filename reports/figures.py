"""The report's figures, drawn with matplotlib (Agg) and saved as PNG files that the HTML page
and the PDF both embed. Each function draws one figure from plain arrays and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

DPI = 150
COLOURS = ("#1f5fa8", "#d9822b", "#3a8f4d", "#8e44ad")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    return path


def confusion_matrices(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    """Counts and row-normalised (recall per true class) side by side; sized so that the PDF, which scales it to
    its text width, prints the cell numbers at about 6 pt (13 inches wide with 6.5 pt numbers printed 3.3 pt)."""
    matrix = np.asarray(matrix)
    normalised = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.2), layout="constrained")
    for ax, data, fmt, label in ((axes[0], matrix, "d", "images"), (axes[1], normalised, ".2f", "fraction of row")):
        im = ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=10)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        threshold = data.max() / 2
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, format(data[i, j], fmt).lstrip("0") if fmt == ".2f" else format(data[i, j], fmt),
                        ha="center", va="center", fontsize=9,
                        color="white" if data[i, j] > threshold else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    axes[0].set_title("counts")
    axes[1].set_title("row-normalised")
    fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: list[dict], title: str, path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    # Constrained layout leaves room for the title above the two panel titles (they crowded it before).
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for key, style, label in (("train", "-", "train"), ("val", "--", "validation")):
        loss_ax.plot(epochs, [h[f"{key}_loss"] for h in history], style, marker="o", ms=3, label=label)
        acc_ax.plot(epochs, [100 * h[f"{key}_acc"] for h in history], style, marker="o", ms=3, label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def reliability_diagram(bins: list[dict], ece: float, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 4.6))
    filled = [b for b in bins if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar(centres, [b["accuracy"] for b in filled], width=width * 0.95, color=COLOURS[0], alpha=0.8,
           label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color=COLOURS[1], ms=3,
            label="(mean confidence, accuracy)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy",
           title=f"{title}\nECE = {100 * ece:.2f}%")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def per_class_difference(class_names: list[str], acc_a: np.ndarray, acc_b: np.ndarray, name_a: str, name_b: str,
                         path: Path) -> Path:
    diff = 100 * (np.asarray(acc_a) - np.asarray(acc_b))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.bar(class_names, diff, color=[COLOURS[0] if d >= 0 else COLOURS[1] for d in diff])
    ax.axhline(0, color="black", lw=0.8)
    for x, d in enumerate(diff):
        ax.text(x, d + (0.15 if d >= 0 else -0.15), f"{d:+.1f}", ha="center", va="bottom" if d >= 0 else "top",
                fontsize=8)
    # Room above and below the bars, so that no value label touches the title or the class names.
    low, high = min(diff.min(), 0.0), max(diff.max(), 0.0)
    pad = 0.18 * max(high - low, 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set(ylabel="accuracy difference (points)", title=f"per-class accuracy: {name_a} minus {name_b}")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def gallery(images: np.ndarray, captions: list[str], title: str, path: Path, columns: int = 6) -> Path:
    """Thumbnails (CIFAR 32x32, drawn without smoothing) with a caption above each; cells are wide and tall
    enough for two caption lines of up to ~22 characters. Six columns: the PDF scales a figure to its text width,
    and eight columns' captions came out at about 4 pt there (now about 6)."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * (1.6 + 0.2 * lines)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=8.5, pad=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def robustness_heatmaps(section: dict, titles: dict[str, str], path: Path) -> Path:
    """Accuracy per corruption (rows) and severity (columns), one panel per model, same colour scale."""
    names = list(section["models"])
    corruptions, severities = section["corruptions"], section["severities"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 6.4), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names, strict=True):
        cells = section["models"][name]["cells"]
        data = np.array([[100 * cells[f"{c}/{s}"]["accuracy"] for s in severities] for c in corruptions])
        im = ax.imshow(data, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(severities)), [str(s) for s in severities])
        ax.set_yticks(range(len(corruptions)),
                      [c.replace("_", " ") + (" *" if c in section["not_comparable"] else "") for c in corruptions],
                      fontsize=8)
        ax.set_xlabel("severity")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{titles[name]}: mean {100 * section['models'][name]['mean_corruption_accuracy']:.1f}%",
                     fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label="accuracy (%)")
    return _save(fig, path)


def explanation_curves(section: dict, titles: dict[str, str], path: Path) -> Path:
    """Deletion (top row) and insertion (bottom row) curves on the test images under each removal (columns): the
    explained class's probability against the share of cells hidden (or shown), each model's maps (solid) against
    random orders (dashed) and the centre prior (dotted)."""
    removals = section["removals"]
    fig, axes = plt.subplots(2, len(removals), figsize=(10.4, 6.0), sharex=True, sharey=True)
    xs = [100 * f for f in section["fractions"]]
    results = section["results"]["test"]
    for column, removal in enumerate(removals):
        for row, kind in enumerate(("deletion", "insertion")):
            ax = axes[row, column]
            for colour, (name, result) in zip(COLOURS, results.items(), strict=False):
                curves = result["removals"][removal]
                for order, style in (("map", "-"), ("random", "--"), ("centre", ":")):
                    label = f"{titles[name]}: {'its maps' if order == 'map' else order}"
                    ax.plot(xs, curves[f"curve/{kind}/{order}"], color=colour, linestyle=style, label=label)
            ax.set(ylim=(0, 1), title=f"{kind}, {removal}")
            ax.grid(alpha=0.3)
        axes[0, column].title.set_fontsize(9), axes[1, column].title.set_fontsize(9)
    fig.supxlabel("share of the cells hidden (deletion) or shown again (insertion), %", fontsize=9)
    for row in range(2):
        axes[row, 0].set_ylabel("probability of the explained class")
    axes[0, 0].legend(loc="upper right", fontsize=6.5)
    fig.tight_layout()
    return _save(fig, path)


def severity_curves(section: dict, titles: dict[str, str], path: Path) -> Path:
    """Mean accuracy over the 15 corruptions at each severity (0 = clean), one line per model."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for colour, (name, m) in zip(COLOURS, section["models"].items(), strict=False):
        xs = [0, *section["severities"]]
        ys = [100 * m["clean_accuracy"]] + [100 * m["by_severity"][str(s)] for s in section["severities"]]
        ax.plot(xs, ys, marker="o", color=colour, label=titles[name])
    ax.set(xlabel="severity (0 = clean)", ylabel="accuracy (%)", ylim=(0, 100),
           title="accuracy as corruption gets worse (mean of 15 corruptions)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)
