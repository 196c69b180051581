"""TCAV as a library: one call per step, the same for vt-cav, vt-score, vt-ace and the benchmarks.

- :func:`fit_cavs` (:mod:`.fitting`): embeddings files -> CAV file, every concept x random
  set, the random-vs-random null and relative CAVs at every layer, activations streamed
  from HDF5 (:mod:`.streaming`: memory flat in the number of clips);
- :func:`score_cavs` (:mod:`.scores`): CAV file + gradients file -> :class:`ScoreRecord` per CAV.

Example::

    from vtcav_common.tcav import FitOptions, fit_cavs, score_cavs
    fit_cavs(["acts.h5"], "cavs.h5", relative=[("ball_right", "ball_static")], options=FitOptions(seed=0))
    records = [r.to_dict() for r in score_cavs("cavs.h5", "grads.h5")]
"""

from .fitting import CAVTask, FitOptions, FitSummary, fit_cavs, fit_layer, plan, quiet_convergence  # noqa: F401
from .scores import ScoreOptions, ScoreRecord, score_cavs  # noqa: F401
