"""Intervals for TCAV scores that reflect where the score's variation comes from.

A concept's TCAV score is a mean over R CAVs (one per random set, or per resample of a
relative pair) of a mean over the class's N inputs.  Both are samples: another draw of random
sets, or of the class's inputs, gives another score.  ``± 1 std over the R CAVs`` reflects
neither (it does not shrink with R, and ignores the inputs), so each score gets a two-way
percentile bootstrap: random sets (CAVs) and inputs resampled together, the same inputs for
every CAV of a draw (vt-score's per-input derivatives; over the CAVs only when a record lacks
them, and the record says so).  The null gets the band a random set's own score falls in
(the set-level prediction interval), the grey band of the figure.

Example:
    >>> import numpy as np
    >>> rows = [{"score": 0.8, "derivatives": [1.0, 2.0, -1.0, 3.0, 0.5]},
    ...         {"score": 1.0, "derivatives": [1.0, 0.2, 0.1, 2.0, 0.5]}]
    >>> out = score_intervals(rows, np.array([0.4, 0.5, 0.6]), 3, np.random.default_rng(0))
    >>> out["ci_method"], out["ci_low"] <= 0.9 <= out["ci_high"]
    ('bootstrap over CAVs and inputs', True)
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
DRAWS = 2000


def score_intervals(rows: list[dict], null_scores: np.ndarray, units: int, rng: np.random.Generator,
                    level: float = LEVEL, draws: int = DRAWS) -> dict:
    """``ci_low``/``ci_high`` of the concept's mean score, and ``null_low``/``null_high``."""
    out = {"ci_level": level}
    derivatives = [r.get("derivatives") for r in rows]
    lengths = {len(d) for d in derivatives if d is not None}
    if all(d is not None for d in derivatives) and len(lengths) == 1 and lengths != {0}:
        positive = (np.asarray(derivatives, float) > 0).astype(float)             # CAVs x inputs
        cav_weights = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), draws)
        input_weights = rng.multinomial(positive.shape[1], np.full(positive.shape[1], 1 / positive.shape[1]), draws)
        boot = np.einsum("br,rn,bn->b", cav_weights, positive, input_weights) / (len(rows) * positive.shape[1])
        out["ci_method"] = "bootstrap over CAVs and inputs"
    else:
        scores = np.array([r["score"] for r in rows], float)
        boot = rng.choice(scores, (draws, len(scores))).mean(axis=1)
        out["ci_method"] = "bootstrap over CAVs (no per-input derivatives in the records)"
    tail = (1 - level) / 2
    out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boot, [tail, 1 - tail]))
    null_scores = np.asarray(null_scores, float)
    if len(null_scores) >= 2 and units and units >= 2:
        from scipy.special import stdtrit

        half = float(stdtrit(units - 1, 1 - tail)) * float(null_scores.std(ddof=1)) * np.sqrt(1 + 1 / units)
        centre = float(null_scores.mean())
        out["null_low"], out["null_high"] = max(0.0, centre - half), min(1.0, centre + half)
    else:
        out["null_low"] = out["null_high"] = float("nan")
    return out
