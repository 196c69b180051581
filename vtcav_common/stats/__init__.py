"""Significance of TCAV scores: two-sample tests against the random null, corrected per family.

- :mod:`.methods`: the tests (registry: Student's t as in the paper, Welch, Mann-Whitney U,
  a permutation test, a test of the magnitudes) and the smallest p each can attain;
- :mod:`.corrections`: the multiple-testing corrections (registry: Bonferroni, Holm, BH, none);
- :mod:`.hypotheses`: one hypothesis per (target, layer, concept, against), families;
- :mod:`.inputs`: score records validated, duplicates and mixed runs refused;
- :mod:`.controls`: sanity controls (randomised models, gradients) beside the real verdicts.
- :mod:`.tables`: the significance table and the unreachable-significance warning;
- :mod:`.plots`: the TCAV figure.

Example:
    >>> correct([0.01, 0.02, 0.5], "bonferroni").round(3).tolist()
    [0.03, 0.06, 1.0]
"""

from __future__ import annotations

import numpy as np

from . import controls, corrections, methods
from .corrections import correct
from .hypotheses import FAMILIES, significance_tests, strict
from .inputs import check_scores
from .methods import cohens_d

CORRECTIONS = corrections.NAMES
TESTS = methods.NAMES
# Chosen from bench/calibration.py's measurements (docs/statistics.md): the set-level test is
# calibrated on its own, without a correction or the accuracy gate; the paper's "ttest" is kept.
DEFAULT_TEST = methods.DEFAULT
DEFAULT_FAMILY = "all"
DEFAULT_CORRECTION = "bonferroni"

__all__ = ["controls", "CORRECTIONS", "TESTS", "FAMILIES", "DEFAULT_TEST", "DEFAULT_FAMILY", "DEFAULT_CORRECTION",
           "correct", "cohens_d", "ttest", "significance_tests", "check_scores", "strict"]


def ttest(a, b, welch: bool = False) -> tuple[float, float]:
    """Two-sided t statistic and p (Student's, or Welch's); kept for callers of the old API."""
    return methods.run("welch" if welch else "ttest", np.asarray(a, float), np.asarray(b, float))
