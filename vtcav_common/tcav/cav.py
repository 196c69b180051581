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
eigendecomposition of the Gram matrix ``X X^T`` per layer, which can be accumulated
block by block (:mod:`vtcav_common.tcav` streams it from HDF5), and mapping back is one
product ``X^T (U S^-1 c)``, streamed the same way.

Classifiers are a registry (:mod:`vtcav_common.tcav.classifiers`): a new one is one function
there, decorated with ``register_classifier``; help texts and validation come from the list.

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

from .classifiers import CLASSIFIERS, check_classifier, classifier_help, register_classifier  # noqa: F401

TEST_FRACTION = 1 / 3


# --------------------------------------------------------------------------- the activation space
class ActivationSpace:
    """The rows of ``X`` (``M x D``) in an orthonormal basis of their span.

    ``coords`` (``M x r``) preserves every inner product between rows, so any linear
    classifier with an L2 penalty fits the same boundary on ``coords`` as on ``X``.
    Built from the rows (small problems, tests) or from their Gram matrix
    (:meth:`from_gram`, when the rows are streamed and never held at once).
    """

    def __init__(self, rows: np.ndarray | None = None, rel_tol: float = 1e-7, *, gram: np.ndarray | None = None):
        if rows is not None:
            rows = np.asarray(rows, dtype=np.float32)
            if rows.ndim != 2:
                raise ValueError(f"expected an M x D matrix, got shape {rows.shape}")
            gram = (rows @ rows.T).astype(np.float64)
        self.rows = rows
        eigval, eigvec = np.linalg.eigh(np.asarray(gram, np.float64))
        keep = eigval > rel_tol * max(float(eigval[-1]) if len(eigval) else 0.0, 1e-30)
        self._scale = np.sqrt(eigval[keep])                  # singular values of X
        self.coords = eigvec[:, keep] * self._scale          # U S: rows in the basis

    @classmethod
    def from_gram(cls, gram: np.ndarray, rel_tol: float = 1e-7) -> "ActivationSpace":
        return cls(None, rel_tol, gram=gram)

    @property
    def rank(self) -> int:
        return self.coords.shape[1]

    def mix(self, coef: np.ndarray) -> np.ndarray:
        """Weights over the rows (``M x k``) whose combination ``X^T mix`` is each CAV.

        The basis is ``Q = X^T U S^-1``, so ``Q c = X^T (U S^-1 c)`` and ``U = coords / S``.
        """
        coef = np.atleast_2d(coef)
        return ((self.coords / self._scale ** 2) @ coef.T).astype(np.float32)

    def to_features(self, coef: np.ndarray) -> np.ndarray:
        """Map weight vectors from basis coordinates (``k x r``) back to ``k x D`` (rows held)."""
        if self.rows is None:
            raise ValueError("this space was built from a Gram matrix: stream the rows through mix()")
        return self.mix(coef).T @ self.rows


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


def fit_cav(space: ActivationSpace, positive: np.ndarray, negative: np.ndarray,
            classifier: str = "sgd", seed: int = 0, paired: bool = False) -> CAVFit:
    """Fit one CAV: rows ``positive`` (the concept) against rows ``negative``.

    Classes are balanced, split 2/3 train 1/3 test (stratified, seeded); the returned
    coefficient points toward the concept.  Call :func:`finalize` for unit vectors.
    ``paired``: row i of each side is the same clip (a set and its temporal twin): the split
    is by pair, so a clip and its twin are always on the same side of it. Otherwise a test
    clip's twin could be a training example, and a training clip's appearance would have no
    counterpart to cancel it: the CAV and its accuracy would mix appearance into "motion".
    """
    from sklearn.model_selection import train_test_split

    method = check_classifier(classifier)
    rng = np.random.default_rng(seed)
    positive, negative = np.asarray(positive), np.asarray(negative)
    if paired and len(positive) != len(negative):
        raise ValueError(f"paired sets differ in size ({len(positive)} and {len(negative)} clips)")
    if not paired:
        positive, negative = balanced_indices(positive, negative, rng)
    if len(positive) < 3:
        raise ValueError(f"need at least 3 examples on each side, got {len(positive)}")
    index = np.concatenate([positive, negative])
    label = np.concatenate([np.ones(len(positive), int), np.zeros(len(negative), int)])
    if paired:
        n = len(positive)
        train_pairs, test_pairs = train_test_split(np.arange(n), test_size=TEST_FRACTION, random_state=seed)
        train, test = np.concatenate([train_pairs, n + train_pairs]), np.concatenate([test_pairs, n + test_pairs])
    else:
        train, test = train_test_split(np.arange(len(index)), test_size=TEST_FRACTION, stratify=label,
                                       random_state=seed)
    x, basis = local_coordinates(space.coords[index])
    coef, predict = method.fit(x[train], label[train], seed)
    accuracy = float(np.mean(predict(x[test]) == label[test]))
    return CAVFit(basis @ np.asarray(coef, np.float64), accuracy, len(train), len(test))


def local_coordinates(x: np.ndarray, rel_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``x`` (``m x r``) in an orthonormal basis of their own span: (``m x k``
    coordinates, the ``r x k`` basis), k <= m. Every inner product between the rows is kept, so
    a linear classifier with an L2 penalty fits the same boundary on them as on ``x``, and
    ``basis @ coef`` is its weight in ``x``'s coordinates. Why: ``r`` is the rank of all the
    clips of a layer (thousands at R = 50), a CAV sees 2 x clips rows; fitted in ``r``
    columns, the hundreds of null CAVs cost more than the model's passes.

    >>> x = np.random.default_rng(0).normal(size=(6, 40))
    >>> c, basis = local_coordinates(x)
    >>> c.shape, bool(np.allclose(c @ c.T, x @ x.T)), bool(np.allclose(c @ basis.T, x))
    ((6, 6), True, True)
    """
    eigval, eigvec = np.linalg.eigh(x @ x.T)
    keep = eigval > rel_tol * max(float(eigval[-1]) if len(eigval) else 0.0, 1e-30)
    scale = np.sqrt(eigval[keep])
    return eigvec[:, keep] * scale, x.T @ (eigvec[:, keep] / scale)


def finalize(space: ActivationSpace, fits: list[CAVFit]) -> np.ndarray:
    """Unit CAVs in feature space for many fits at once (``k x D`` float32; rows held)."""
    if not fits:
        return np.zeros((0, space.rows.shape[1]), np.float32)
    vectors = normalize(space.to_features(np.stack([f.coef for f in fits])))
    for fit, vector in zip(fits, vectors):
        fit.vector = vector
    return vectors


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-30)).astype(np.float32)
