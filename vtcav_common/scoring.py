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
    """A negative control: each input's gradient with its features shuffled."""
    return np.stack([row[rng.permutation(row.shape[0])] for row in batch])
