"""How a model's probabilities are scored against true labels: accuracy, top-3, precision/recall/F1,
the confusion matrix, calibration (ECE and the reliability table) and negative log-likelihood.

Plain functions on (N, 10) probability arrays and (N,) labels, shared by the evaluation and
calibration commands here and by the report (`reports/`), which imports them from this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CALIBRATION_BINS = 15


def classification_metrics(labels: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, top-3 accuracy, per-class and macro precision/recall/F1, confusion matrix."""
    predicted = probs.argmax(axis=1)
    k = len(class_names)
    matrix = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)  # rows: true, columns: predicted
    hits, support, called = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # a class never predicted / never present scores 0
        precision = np.where(called > 0, hits / np.maximum(called, 1), 0.0)
        recall = np.where(support > 0, hits / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    top3 = np.argsort(-probs, axis=1)[:, :3]
    return {
        "n_images": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "top3_accuracy": float((top3 == labels[:, None]).any(axis=1).mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": matrix.tolist(),
    }


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error (top-1 confidence, equal-width bins) and the reliability-diagram table."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else None
        mean_conf = float(confidence[members].mean()) if count else None
        if count:
            ece += count / len(labels) * abs(accuracy - mean_conf)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                      "accuracy": accuracy, "confidence": mean_conf})
    return {"ece": float(ece), "bins": table, "mean_confidence": float(confidence.mean())}


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
