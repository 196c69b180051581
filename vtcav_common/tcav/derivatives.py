"""Directional derivatives and TCAV scores.

For input x, class k and CAV v at layer l: ``S(x) = grad_{f_l} logit_k(x) . v``.
The TCAV score of a CAV is the fraction of inputs with ``S > 0`` (sign count); the
magnitude is the mean of ``S`` (captum's ``magnitude``).

Example:
    >>> import numpy as np
    >>> grads = np.array([[1.0, 0.0], [0.5, -1.0], [-1.0, 0.2]])
    >>> s = directional_derivatives([grads], np.array([[1.0, 0.0]]))
    >>> tcav_scores(s)
    (array([0.66666667]), array([0.16666667]))
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def directional_derivatives(gradient_batches: Iterable[np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """``N x k`` derivatives of the target logit along ``k`` CAVs, streamed over inputs."""
    vectors = np.asarray(vectors, np.float32)
    blocks = [np.asarray(batch, np.float32) @ vectors.T for batch in gradient_batches]
    if not blocks:
        return np.zeros((0, len(vectors)), np.float64)
    return np.concatenate(blocks).astype(np.float64)


def tcav_scores(derivatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sign-count score and magnitude (mean derivative) per CAV."""
    return (derivatives > 0).mean(axis=0), derivatives.mean(axis=0)


def permute_features(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A negative control: each input's gradient with its features shuffled and their signs
    flipped at random.

    Shuffling alone keeps the gradient's mean, and CAVs of ReLU activations share a mean
    direction, so plain shuffling still scores "consistently positive"; random signs make
    the expected derivative zero, as a gradient unrelated to the concept should.
    """
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=batch.shape)
    return np.stack([row[rng.permutation(row.shape[0])] for row in batch]) * signs


class ConstancyCheck:
    """Watches gradient batches go by and tells whether every input had the same gradient.

    That happens at a layer that feeds a linear read-out directly (global pooling then a
    linear head): the directional derivative is then the same for every input, and the
    sign count can only be 0 or 1. Worth a warning, not an error.
    """

    def __init__(self, rtol: float = 1e-5):
        self.first: np.ndarray | None = None
        self.constant = True
        self.rtol = rtol

    def watch(self, batches: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
        for batch in batches:
            if self.first is None and len(batch):
                self.first = batch[0].copy()
            if self.constant and self.first is not None:
                scale = self.rtol * (np.abs(self.first).max() + 1e-30)
                self.constant = bool(np.all(np.abs(batch - self.first) <= scale))
            yield batch
