"""Concept Activation Vectors: many linear classifiers fitted on shared activations.

A CAV for concept C against set R at a layer is the unit normal of a linear boundary
separating C's activations from R's, pointing toward C (Kim et al. 2018).

Why this is fast: every CAV of a layer is fitted on rows of the same matrix ``X``
(all sets' activations stacked, ``M x D`` with ``M`` clips << ``D`` features).  A
linear classifier with an L2 penalty, started at zero, only ever moves inside the
span of its training rows, and its loss sees the data only through inner products.
So we express every row in an orthonormal basis of ``span(X)`` (``r <= M`` numbers
instead of ``D``), fit scikit-learn's own classifier there, and map the weight back:
the fitted boundary is the same one the classifier would find in ``D`` dimensions,
at a cost of ``O(M r)`` per epoch instead of ``O(M D)``.  The basis comes from one
eigendecomposition of the Gram matrix ``X X^T`` per layer.

Classifiers:

- ``sgd``: ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)``, the TCAV reference;
- ``logistic``: L2 logistic regression;
- ``mean``: the mean difference of the two sets ("FastCAV"): no fitting at all.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> concept, rand = rng.normal(1, 1, (30, 500)), rng.normal(0, 1, (30, 500))
    >>> space = ActivationSpace(np.concatenate([concept, rand]))
    >>> fit = fit_cav(space, np.arange(30), np.arange(30, 60), "sgd", seed=0)
    >>> _ = finalize(space, [fit])
    >>> round(float(np.linalg.norm(fit.vector)), 6), fit.accuracy > 0.9
    (1.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import train_test_split

CLASSIFIERS = ("sgd", "logistic", "mean")
TEST_FRACTION = 1 / 3


class ActivationSpace:
    """The rows of ``X`` (``M x D``) in an orthonormal basis of their span.

    ``coords`` (``M x r``) preserves every inner product between rows, so any linear
    classifier with an L2 penalty fits the same boundary on ``coords`` as on ``X``.
    """

    def __init__(self, rows: np.ndarray, rel_tol: float = 1e-7):
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2:
            raise ValueError(f"expected an M x D matrix, got shape {rows.shape}")
        self.rows = rows
        # The one heavy product (M x M x D): torch's threaded BLAS; float32 in, float64 after.
        tensor = torch.from_numpy(rows)
        gram = (tensor @ tensor.T).double().numpy()
        eigval, eigvec = np.linalg.eigh(gram)
        keep = eigval > rel_tol * max(float(eigval[-1]), 1e-30)
        self._scale = np.sqrt(eigval[keep])                  # singular values of X
        self._left = eigvec[:, keep]                          # left singular vectors U
        self.coords = self._left * self._scale                # U S: rows in the basis

    @property
    def rank(self) -> int:
        return self.coords.shape[1]

    def to_features(self, coef: np.ndarray) -> np.ndarray:
        """Map weight vectors from basis coordinates (``k x r``) back to ``k x D``.

        The basis is ``Q = X^T U S^-1``, so ``Q c = X^T (U S^-1 c)``: one matmul for
        all the CAVs of a layer.
        """
        coef = np.atleast_2d(coef)
        mix = (self._left / self._scale) @ coef.T             # M x k
        mix = torch.from_numpy(mix.astype(np.float32))
        return (mix.T @ torch.from_numpy(self.rows)).numpy()  # k x D


@dataclass
class CAVFit:
    coef: np.ndarray        # weight in basis coordinates (r,), pointing toward the concept
    accuracy: float         # held-out accuracy (1/3 of the balanced examples)
    n_train: int
    n_test: int
    vector: np.ndarray | None = None   # unit CAV in feature space (D,), set by finalize


def balanced_indices(positive: np.ndarray, negative: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Truncate the larger set at random to the size of the smaller one."""
    n = min(len(positive), len(negative))
    if len(positive) > n:
        positive = np.sort(rng.choice(positive, n, replace=False))
    if len(negative) > n:
        negative = np.sort(rng.choice(negative, n, replace=False))
    return positive, negative


def _classifier(name: str, seed: int):
    if name == "sgd":
        return SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed)
    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=2000)
    raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")


def fit_cav(space: ActivationSpace, positive: np.ndarray, negative: np.ndarray,
            classifier: str = "sgd", seed: int = 0) -> CAVFit:
    """Fit one CAV: rows ``positive`` (the concept) against rows ``negative``.

    Classes are balanced, split 2/3 train 1/3 test (stratified, seeded); the returned
    coefficient points toward the concept.  Call :func:`finalize` for unit vectors.
    """
    rng = np.random.default_rng(seed)
    positive, negative = balanced_indices(np.asarray(positive), np.asarray(negative), rng)
    if len(positive) < 3:
        raise ValueError(f"need at least 3 examples on each side, got {len(positive)}")
    index = np.concatenate([positive, negative])
    label = np.concatenate([np.ones(len(positive), int), np.zeros(len(negative), int)])
    train, test = train_test_split(np.arange(len(index)), test_size=TEST_FRACTION, stratify=label,
                                   random_state=seed)
    x = space.coords[index]
    if classifier == "mean":
        coef, threshold = _mean_difference(x[train], label[train])
        predicted = (x[test] @ coef > threshold).astype(int)
    else:
        model = _classifier(classifier, seed).fit(x[train], label[train])
        coef = model.coef_[0] if model.classes_[1] == 1 else -model.coef_[0]
        predicted = model.predict(x[test])
    accuracy = float(np.mean(predicted == label[test]))
    return CAVFit(np.asarray(coef, np.float64), accuracy, len(train), len(test))


def _mean_difference(x: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
    """FastCAV: the direction from the random mean to the concept mean, threshold midway."""
    mean_pos, mean_neg = x[label == 1].mean(0), x[label == 0].mean(0)
    direction = mean_pos - mean_neg
    return direction, float(direction @ (mean_pos + mean_neg) / 2)


def finalize(space: ActivationSpace, fits: list[CAVFit]) -> np.ndarray:
    """Unit CAVs in feature space for many fits at once (``k x D`` float32)."""
    if not fits:
        return np.zeros((0, space.rows.shape[1]), np.float32)
    vectors = space.to_features(np.stack([f.coef for f in fits]))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-30)
    for fit, vector in zip(fits, vectors):
        fit.vector = vector
    return vectors.astype(np.float32)
