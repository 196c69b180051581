"""The CAV classifiers, as a registry: one list, from which ``--help`` and validation are made.

A new classifier is one function here, decorated with :func:`register_classifier`: it takes
the training rows ``x`` (basis coordinates, see :mod:`vtcav_common.tcav.cav`), their 0/1 labels
and a seed, and returns the coefficient pointing toward label 1 and a ``predict(rows)``
giving 0/1 labels. Nothing heavy is imported here (scikit-learn only inside a fit), so the
front ends can build their help text without the cost.

Example:
    >>> sorted(CLASSIFIERS)
    ['logistic', 'mean', 'sgd']
    >>> check_classifier("svm")
    Traceback (most recent call last):
    ...
    vtcav_common.core.registry.UnknownName: unknown classifier 'svm'; choose from sgd, logistic, mean

An installed package adds one through the entry-point group ``vtcav.classifiers``
(:mod:`vtcav_common.core.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.registry import Registry


@dataclass(frozen=True)
class Classifier:
    name: str
    help: str
    # fit(x, label, seed) -> (coefficient toward label 1, predict(x) -> 0/1 labels)
    fit: Callable


CLASSIFIERS: Registry[Classifier] = Registry("classifier", group="vtcav.classifiers", kind=Classifier)


def register_classifier(name: str, help: str):
    """Decorator: add a CAV classifier under ``name`` (its ``help`` goes into ``--help``)."""
    def register(function):
        CLASSIFIERS.add(name, Classifier(name, help, function))
        return function
    return register


def classifier_help() -> str:
    return "; ".join(f"{c.name}: {c.help}" for c in CLASSIFIERS.values()) + "."


def check_classifier(name: str) -> Classifier:
    return CLASSIFIERS[name]   # an unknown name: a usage error listing the choices


def _sklearn_direction(model):
    """The coefficient of a fitted binary scikit-learn linear model, pointing toward label 1."""
    coef = model.coef_[0] if model.classes_[1] == 1 else -model.coef_[0]
    return coef, model.predict


@register_classifier("sgd", "SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3), the TCAV reference")
def _sgd(x, label, seed: int):
    from sklearn.linear_model import SGDClassifier

    return _sklearn_direction(SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed).fit(x, label))


@register_classifier("logistic", "L2 logistic regression")
def _logistic(x, label, seed: int):
    from sklearn.linear_model import LogisticRegression

    return _sklearn_direction(LogisticRegression(C=1.0, max_iter=2000).fit(x, label))


@register_classifier("mean", "mean difference of the two sets (FastCAV), no fitting")
def _mean_difference(x, label, seed: int):
    """The direction from the random mean to the concept mean, threshold midway."""
    mean_pos, mean_neg = x[label == 1].mean(0), x[label == 0].mean(0)
    direction = mean_pos - mean_neg
    threshold = float(direction @ (mean_pos + mean_neg) / 2)
    return direction, lambda rows: (rows @ direction > threshold).astype(int)
