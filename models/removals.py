"""What a hidden part of the 32x32 view shows: the three removals the explanation maps are built and judged with.

A map says which parts of the view a model's answer rests on, and it is judged by hiding those parts first. "Hiding"
has to put something in their place, and whatever goes there can itself move the answer: a blurred copy keeps the
colours but takes the edges (and can *raise* the score of a saturated object), a flat colour draws a new shape, and
both leak the mask's outline (ROAD, Rong et al. ICML 2022). A map that is only good under its own removal is good at
that removal, not at the model, so the maps are measured under three (`bench/bench_explanations.py`):

- "blur": a Gaussian-blurred copy of the view (radius BLUR_RADIUS);
- "mean colour": CIFAR-10's mean colour;
- "noisy linear imputation" (ROAD): each hidden pixel becomes the weighted mean of its 8 neighbours (1/6 each side,
  1/12 each corner, renormalised at the border), solved jointly for every hidden pixel, plus Gaussian noise of
  NOISE_STD, so the fill follows the surrounding colours and carries no edge along the mask's outline.

The served method (models/explanation.py) is built on the first two only: the third stays a removal it was not built
on. Serving uses only the first two, which are numpy and Pillow; the imputation uses SciPy's sparse solver
where it is installed (the benchmarks), numpy's dense one elsewhere.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageFilter

VIEW = 32
BLUR_RADIUS = 4.0  # PIL radius, pixels
MEAN_COLOUR = np.array([0.4914, 0.4822, 0.4465]) * 255  # CIFAR-10's training mean, RGB
NOISE_STD = 0.01 * 255  # ROAD's noise: 1% of the pixel range
REGULARISER = 1e-3  # pulls the imputation towards MEAN_COLOUR when nothing around a region is left to follow
REMOVALS = ("blur", "mean colour", "noisy linear imputation")


def blurred(view: np.ndarray) -> np.ndarray:
    """A Gaussian-blurred copy of the view (no new colours, no hard edges)."""
    return np.asarray(Image.fromarray(np.asarray(view, np.uint8)).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))


def _neighbour_weights() -> np.ndarray:
    """(1024, 1024): each pixel's 8 neighbours weighted as in ROAD, each row summing to 1 (dense: numpy only)."""
    weights = np.zeros((VIEW * VIEW, VIEW * VIEW))
    rows, cols = np.divmod(np.arange(VIEW * VIEW), VIEW)
    for dr, dc, w in ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                      (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < VIEW) & (c >= 0) & (c < VIEW)
        weights[np.flatnonzero(inside), (r * VIEW + c)[inside]] = w
    return weights / weights.sum(1, keepdims=True)


NEIGHBOURS = _neighbour_weights()


def _solve(hidden: np.ndarray, known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """x_h from (I(1 + REGULARISER) - W_hh) x_h = W_hk x_k + REGULARISER * MEAN_COLOUR: sparse (SciPy, which the
    benchmarks have) when it is installed, 8 nonzeros a row, else dense."""
    try:
        from scipy import sparse
        from scipy.sparse.linalg import splu
    except ImportError:
        rhs = NEIGHBOURS[np.ix_(hidden, known)] @ values[known] + REGULARISER * MEAN_COLOUR
        system = (1 + REGULARISER) * np.eye(hidden.size) - NEIGHBOURS[np.ix_(hidden, hidden)]
        return np.linalg.solve(system, rhs)
    rows = _sparse_neighbours()[hidden]
    rhs = rows[:, known] @ values[known] + REGULARISER * MEAN_COLOUR
    system = (1 + REGULARISER) * sparse.identity(hidden.size, format="csc") - rows[:, hidden].tocsc()
    return splu(system).solve(rhs)


@functools.cache
def _sparse_neighbours():
    from scipy import sparse

    return sparse.csr_matrix(NEIGHBOURS)


def imputed(view: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ROAD's noisy linear imputation of the masked pixels: every hidden pixel the weighted mean of its neighbours,
    solved for all of them at once (plus a tiny pull to the mean colour so an all-hidden view is defined), then the
    noise."""
    hidden = np.flatnonzero(np.asarray(mask, bool).reshape(-1))
    if hidden.size == 0:
        return np.asarray(view, np.uint8).copy()
    out = np.asarray(view, float).reshape(-1, 3).copy()
    known = np.setdiff1d(np.arange(VIEW * VIEW), hidden)
    out[hidden] = _solve(hidden, known, out) + rng.normal(0.0, NOISE_STD, (hidden.size, 3))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(VIEW, VIEW, 3)


def fill(view: np.ndarray, removal: str) -> np.ndarray:
    """What a mask-independent removal puts everywhere (blur, mean colour)."""
    if removal == "blur":
        return blurred(view)
    if removal == "mean colour":
        return np.broadcast_to(np.rint(MEAN_COLOUR).astype(np.uint8), (VIEW, VIEW, 3))
    raise ValueError(f"{removal!r} depends on the mask; use remove()")


def remove(view: np.ndarray, masks: np.ndarray, removal: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """(N, 32, 32, 3) uint8: the view with each (32, 32) boolean mask's pixels hidden by `removal`."""
    view = np.asarray(view, np.uint8)
    masks = np.asarray(masks, bool)
    if removal == "noisy linear imputation":
        rng = rng if rng is not None else np.random.default_rng(0)
        return np.stack([imputed(view, mask, rng) for mask in masks])
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; one of {REMOVALS}")
    return np.where(masks[..., None], fill(view, removal)[None], view[None]).astype(np.uint8)
