"""TCAV as a library: one call per step, the same for vt-cav, vt-score, vt-ace and the benchmarks.

- :func:`fit_cavs` (:mod:`.fitting`): embeddings files -> CAV file, every concept x random
  set, the random-vs-random null and relative CAVs at every layer, activations streamed
  from HDF5 (:mod:`.streaming`: memory flat in the number of clips);
- :func:`score_cavs` (:mod:`.scores`): CAV file + gradients file -> :class:`ScoreRecord` per CAV.

Example (in a project folder, after shell/pipeline.sh: acts.h5 and grads.h5 from vt-embed):
    >>> from vtcav_common.tcav import FitOptions, fit_cavs, score_cavs
    >>> summary = fit_cavs(["acts.h5"], "cavs.h5", layers=["block3"], relative=[("ball_right", "ball_static")],
    ...                    options=FitOptions(seed=0))
    >>> len(summary.tasks)           # 3 concepts x 3 random sets, 3 null pairs, 3 relative resamples
    15
    >>> records = [r.to_dict() for r in score_cavs("cavs.h5", "grads.h5")]
    >>> [(r["concept"], r["against"], r["score"]) for r in records if r["kind"] == "relative"]
    [('ball_right', 'ball_static', 1.0), ('ball_right', 'ball_static', 1.0), ('ball_right', 'ball_static', 1.0)]
"""

# Lazy: a front end that only needs the classifier list (vt-cav --help, --version) imports
# .classifiers, which imports this package first; HDF5 and the file formats load on first use.
_LAZY = {name: ".fitting" for name in ("CAVTask", "FitOptions", "FitSummary", "fit_cavs", "fit_layer", "plan",
                                        "quiet_convergence")}
_LAZY.update({name: ".scores" for name in ("ScoreOptions", "ScoreRecord", "score_cavs")})
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
