"""Metrics every stage shares: top-1 accuracy, agreement between two models, and the
paired standard error of an accuracy difference measured on the same images.
"""

from __future__ import annotations

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Share of inputs on which two models pick the same top-1 class."""
    return float(np.mean(np.argmax(probs_a, 1) == np.argmax(probs_b, 1)))


def paired_noise_pp(probs: np.ndarray, reference: np.ndarray, y: np.ndarray) -> float:
    """Standard error, in points, of the accuracy difference of two models on the same images.

    Paired (McNemar): only the images one model gets right and the other wrong vary the
    difference, so ``var = ((b + c) / n - ((b - c) / n) ** 2) / n`` with ``b`` and ``c`` the
    two kinds of disagreement on ``n`` images.
    """
    y = np.asarray(y)
    ok, ok_ref = np.argmax(probs, axis=1) == y, np.argmax(reference, axis=1) == y
    n = len(y)
    b, c = float(np.sum(ok & ~ok_ref)), float(np.sum(~ok & ok_ref))
    return 100 * float(np.sqrt(max((b + c) / n - ((b - c) / n) ** 2, 0.0) / n))
