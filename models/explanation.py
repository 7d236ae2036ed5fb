"""Why each model decided: an explanation map per image and model, computed only through `predict_proba`.

Black-box occlusion over the 32x32 view both models see: windows of the view are hidden by each of the method's
removals (models/removals.py: a blurred copy and the mean colour), and a cell's importance is how much the target
class's log-odds fall, on average over the removals and the windows, when the cell is hidden
(log-odds, not probability: a 99% answer barely moves in probability, but its log-odds do), scaled so that the
most important cell is 1 (larger = more support for the target; negative = hiding it helps the target). The same
windows are used for every model, so the PyTorch CNN's and the LiteRT MobileNetV2's maps are directly comparable,
and nothing here depends on a framework. The perturbed views go through each model's own scheduler
(`Predictor.predict_proba`) in jobs of CHUNK images, so a request waiting behind an explanation waits one pass,
not the whole explanation.

The served method (SERVED: windows and removals) was chosen on the validation split by `bench/bench_explanations.py
choose` (docs/how-it-works.md, "Why each model decided"); the test split and held-out real photos measure it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.removals import remove

VIEW = 32
GRID = 8  # the map: 8x8 cells of 4x4 pixels
CHUNK = 32  # perturbed views per scheduler job
TOP_SHARE = 0.2  # the cells that "where" names and the comparison overlaps: the top 20% of the map

Probabilities = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 32, 32, 3) -> float (N, 10)


@dataclass
class Explanation:
    method: str
    target: str
    grid: list[list[float]]  # GRID x GRID, aligned to the 32x32 view, row 0 at the top
    where: str  # the map in words: "the centre and lower left"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "grid": self.grid, "where": self.where}


@dataclass(frozen=True)
class Method:
    """An occlusion map: which windows are hidden, by which removals (models/removals.py; a window's drop is the
    mean over them), and whether the mirrored view is explained too and its map mirrored back and averaged in."""

    windows: tuple[tuple[int, int], ...] = ((8, 4),)  # (side, stride) in pixels
    removals: tuple[str, ...] = ("blur",)
    mirrored: bool = False

    @property
    def name(self) -> str:
        windows = " + ".join(f"{side}x{side} windows, stride {stride}" for side, stride in self.windows)
        mirror = "; the view and its mirror image" if self.mirrored else ""
        return f"occlusion ({windows}; hidden by {' and by '.join(self.removals)}{mirror})"

    @property
    def passes(self) -> int:
        """Forward passes one map costs a model: per view explained, the view and each window under each removal."""
        return (1 + len(occlusion_masks(self.windows)) * len(self.removals)) * (2 if self.mirrored else 1)


def occlusion_masks(windows: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """One boolean (32, 32) mask per window position, every scale in turn (the same for every image)."""
    masks = []
    for side, stride in windows:
        for top in range(0, VIEW - side + 1, stride):
            for left in range(0, VIEW - side + 1, stride):
                mask = np.zeros((VIEW, VIEW), bool)
                mask[top:top + side, left:left + side] = True
                masks.append(mask)
    return masks


# The served method, chosen on the validation split by `bench/bench_explanations.py choose` (docs/how-it-works.md,
# "Why each model decided"); the test split and the held-out real photos measure it.
SERVED = Method(windows=((12, 4),), removals=("blur", "mean colour"))
METHOD = SERVED.name
REMOVAL_WORDS = {"blur": "a blurred copy", "mean colour": "a flat mean colour",
                 "noisy linear imputation": "a fill that follows the colours around it"}


def in_words(method: Method) -> str:
    """The method for a person reading a map's legend, one sentence."""
    sizes = " and ".join(f"{side}×{side}" for side, _ in method.windows)
    hidden = " and once by ".join(REMOVAL_WORDS[removal] for removal in method.removals)
    once = "once by " if len(method.removals) > 1 else "by "
    mirror = ", in the view and in its mirror image" if method.mirrored else ""
    return (f"Each part of the 32×32 view is hidden in {sizes}-pixel windows, {once}{hidden}{mirror}; its colour is "
            "how much hiding it lowers the model's confidence in its answer. The same windows for every model.")


IN_WORDS = in_words(SERVED)  # every legend and description of the maps reads this
# Forward passes one map costs each model. Messages and settings that tell people what a map costs read it from here.
PASSES_PER_MAP = SERVED.passes


def cell_map(drops: np.ndarray, masks: list[np.ndarray], windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """(GRID, GRID) importance: per scale, each pixel's mean drop over the windows hiding it; scales averaged;
    then the mean over each cell's pixels."""
    per_scale, start = [], 0
    for side, stride in windows:
        count = len(range(0, VIEW - side + 1, stride)) ** 2
        total, hits = np.zeros((VIEW, VIEW)), np.zeros((VIEW, VIEW))
        for mask, drop in zip(masks[start:start + count], drops[start:start + count], strict=True):
            total[mask] += drop
            hits[mask] += 1
        per_scale.append(total / np.maximum(hits, 1))
        start += count
    pixels = np.mean(per_scale, axis=0)
    cell = VIEW // GRID
    return pixels.reshape(GRID, cell, GRID, cell).mean(axis=(1, 3))


FLAT = 1e-3  # log-odds: a map whose cells all move the answer less than this is flat (FLAT_WORDS)


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def occlusion_grid(view: np.ndarray, target: int, probabilities: Probabilities, method: Method = SERVED
                   ) -> np.ndarray:
    """The (GRID, GRID) map of one view for one class, through `probabilities` alone, in [-1, 1]."""
    masks = occlusion_masks(method.windows)
    views = [view, view[:, ::-1]] if method.mirrored else [view]
    batch = np.concatenate([np.concatenate([v[None]] + [remove(v, masks, removal) for removal in method.removals])
                            for v in views])
    probs = np.concatenate([probabilities(batch[i:i + CHUNK]) for i in range(0, len(batch), CHUNK)])
    scores = log_odds(probs[:, target]).reshape(len(views), 1 + len(method.removals) * len(masks))
    grids = []
    for row in scores:
        drops = (row[0] - row[1:]).reshape(len(method.removals), len(masks)).mean(0)
        grids.append(cell_map(drops, masks, method.windows))
    grid = (grids[0] + grids[1][:, ::-1]) / 2 if method.mirrored else grids[0]
    largest = float(np.abs(grid).max())
    return grid / largest if largest >= FLAT else np.zeros_like(grid)


REGIONS = (("upper left", "top", "upper right"), ("left", "centre", "right"), ("lower left", "bottom", "lower right"))


def top_cells(grid: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """Boolean mask of the map's most important cells: the top `share`, among those that support the target
    (ties broken by position, so the result is fixed)."""
    flat = np.asarray(grid, float).reshape(-1)
    keep = min(max(1, round(share * flat.size)), int((flat > 0).sum()))
    order = np.lexsort((np.arange(flat.size), -flat))[:keep]
    mask = np.zeros(flat.size, bool)
    mask[order] = True
    return mask.reshape(np.shape(grid))


FLAT_WORDS = "no part in particular (hiding any part changes the answer little)"


def named_regions(grid: np.ndarray) -> list[str]:
    """The 3x3-layout regions holding the map's weight: the peak cell's region first, then any other holding at
    least half as much of the top cells' positive importance; at most two. Empty for a flat map."""
    grid = np.asarray(grid, float)
    mask = top_cells(grid)
    if not np.isfinite(grid).all() or not mask.any():
        return []
    thirds = lambda index, size: min(2, index * 3 // size)  # noqa: E731
    mass: dict[str, float] = {}
    for r, c in zip(*np.nonzero(mask), strict=True):
        name = REGIONS[thirds(r, grid.shape[0])][thirds(c, grid.shape[1])]
        mass[name] = mass.get(name, 0.0) + float(grid[r, c])
    peak_r, peak_c = np.unravel_index(int(np.argmax(grid)), grid.shape)
    peak = REGIONS[thirds(peak_r, grid.shape[0])][thirds(peak_c, grid.shape[1])]
    others = [name for name, weight in sorted(mass.items(), key=lambda item: -item[1])
              if name != peak and weight >= 0.5 * max(mass.values())]
    return [peak, *others][:2]


def where(grid: np.ndarray) -> str:
    """The map in words: "the centre", "the top and the upper left", or FLAT_WORDS."""
    names = named_regions(grid)
    return " and ".join(f"the {name}" for name in names) if names else FLAT_WORDS


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of the two maps' top cells: 1 = the same cells, 0 = none in common."""
    a, b = top_cells(first), top_cells(second)
    return float((a & b).sum() / max((a | b).sum(), 1))


DIFFERENT_BELOW = 0.25  # top-cell overlap under which the page says the models look at different regions


def comparison_sentence(maps: dict[str, Explanation], names: dict[str, str]) -> str | None:
    """A sentence when two models' maps point at different regions (their top cells barely overlap and the regions
    they are named by differ), else None."""
    if len(maps) < 2:
        return None
    (a, first), (b, second) = list(maps.items())[:2]
    grid_a, grid_b = np.array(first.grid), np.array(second.grid)
    regions_a, regions_b = set(named_regions(grid_a)), set(named_regions(grid_b))
    if not regions_a or not regions_b or regions_a & regions_b or overlap(grid_a, grid_b) >= DIFFERENT_BELOW:
        return None
    return (f"The two models look at different parts of the image: {names.get(a, a)} at {first.where}, "
            f"{names.get(b, b)} at {second.where}.")


def explain_views(views: np.ndarray, targets: Sequence[int], probabilities: Probabilities,
                  class_names: Sequence[str]) -> list[Explanation]:
    """One explanation per view, for its target class index."""
    explanations = []
    for view, target in zip(np.asarray(views, np.uint8), targets, strict=True):
        grid = occlusion_grid(view, int(target), probabilities)
        explanations.append(Explanation(METHOD, class_names[int(target)],
                                        [[round(float(x), 5) for x in row] for row in grid], where(grid)))
    return explanations
