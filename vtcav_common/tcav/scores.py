"""TCAV scores of a target class along every CAV of a CAV file: the one score record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..formats.cavs import CAVFile
from ..formats.embeddings import Embeddings, require_same_model
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..models.controls import scoring_control
from .derivatives import ConstancyCheck, directional_derivatives, permute_features, tcav_scores

BATCH_BYTES = 64 << 20      # gradient rows read at a time: about 64 MB, whatever the layer's width


@dataclass
class ScoreRecord:
    """One CAV's score for the target class: the record vt-score writes and vt-stats reads.

    ``cav_run`` and ``gradients_run`` are the ``run_id`` of the CAV file and of the
    gradients file, so that records of different runs are never pooled by mistake.
    """

    target: str
    layer: str
    concept: str
    against: str
    kind: str              # "concept", "null" or "relative"
    replicate: int
    score: float           # fraction of inputs with a positive directional derivative (6 decimals)
    magnitude: float       # mean directional derivative
    cav_accuracy: float
    n_inputs: int
    classifier: str | None
    model: str | None
    cav_run: str
    gradients_run: str
    # The sanity control the scores come from (vt-embed --control: "reinit", "cascade:LAYER",
    # "permute-grads", "permute-labels"; vt-score --permute-gradients: "permuted-gradients"); None: a real run.
    control: str | None = None
    n_clips: int | None = None   # clips a side the CAV was fitted on (balanced)
    # the directional derivative of every input (5 significant digits), in the gradients file's
    # order: vt-stats bootstraps over inputs with them (intervals) and mirrors null CAVs exactly
    derivatives: list[float] | None = None

    def to_dict(self) -> dict:
        record = asdict(self)
        for optional in ("n_clips", "derivatives"):
            if record[optional] is None:
                del record[optional]
        return record

    def to_json(self) -> str:
        """Strict JSON: a NaN or infinity is an error here, never a bare ``NaN`` in the output."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


@dataclass
class ScoreOptions:
    set_name: str = ""                # the inputs' set in the gradients file (default: the one with gradients)
    permute_gradients: bool = False   # negative control
    seed: int = 0
    skip_nonfinite: bool = False      # drop inputs with non-finite gradients instead of refusing
    per_input: bool = True            # write every input's derivative in the records


def score_cavs(cavs: str | Path, gradients: str | Path, options: ScoreOptions = ScoreOptions(),
               warn: Callable[[str], None] = lambda message: None) -> list[ScoreRecord]:
    """Directional derivatives of the target logit along every CAV, streamed over the inputs."""
    with CAVFile(cavs) as cav_file, Embeddings(gradients) as grads:
        require_same_model(str(cavs), cav_file.provenance, str(gradients), grads.provenance)
        control = scoring_control(str(cavs), cav_file.provenance, str(gradients), grads.provenance)
        if options.permute_gradients:
            control = "permuted-gradients" if control is None else f"{control}+permuted-gradients"
        target = grads.provenance.get("target")
        if target is None:
            raise VtcavError(f"{gradients}: has no gradients (run vt-embed with --target CLASS)")
        name = _inputs_set(grads, options.set_name)
        rng = np.random.default_rng(options.seed)
        records = []
        for layer in cav_file.layers:
            layer_cavs = cav_file.read_layer(layer)
            if layer not in grads.layers:
                raise IncompatibleError(f"{gradients}: no gradients at layer '{layer}' of the CAVs in {cavs}")
            if grads.feature_size(layer) != layer_cavs.vectors.shape[1]:
                raise IncompatibleError(f"{gradients}: layer '{layer}' has a different size than in {cavs}")
            constancy = ConstancyCheck()
            batches = constancy.watch(_finite(grads, name, layer, options.skip_nonfinite, warn))
            if options.permute_gradients:
                batches = (permute_features(b, rng) for b in batches)
            derivatives = directional_derivatives(batches, layer_cavs.vectors)
            sign_count, magnitude = tcav_scores(derivatives)
            if constancy.constant and derivatives.shape[0] > 1:
                warn(f"{gradients}: the gradient at layer '{layer}' is the same for every input (the layer "
                     f"feeds a linear read-out); its TCAV scores can only be 0 or 1")
            for column, (row, s, m) in enumerate(zip(layer_cavs.table, sign_count, magnitude)):
                records.append(ScoreRecord(
                    target=target, layer=layer, concept=row["concept"], against=row["against"], kind=row["kind"],
                    replicate=int(row["replicate"]), score=round(float(s), 6), magnitude=float(m),
                    cav_accuracy=round(float(row["accuracy"]), 6), n_inputs=int(derivatives.shape[0]),
                    classifier=cav_file.provenance.get("classifier"),
                    model=(cav_file.provenance.get("model") or {}).get("arch"),
                    cav_run=cav_file.run_id, gradients_run=grads.run_id,
                    control=control, n_clips=_clips_a_side(row),
                    derivatives=[float(f"{d:.5g}") for d in derivatives[:, column]] if options.per_input else None))
    return records


def _clips_a_side(row: dict) -> int | None:
    if "n_train" in row and "n_test" in row:
        return int(row["n_train"] + row["n_test"]) // 2
    return None


def _inputs_set(grads: Embeddings, set_name: str) -> str:
    with_grads = [s.name for s in grads.sets() if s.has_grads]
    name = set_name or (with_grads[0] if len(with_grads) == 1 else "")
    if not name:
        raise UsageError(f"{grads.path}: choose the inputs with --set (sets with gradients: "
                         f"{', '.join(with_grads) or 'none'})")
    if name not in with_grads:
        raise VtcavError(f"{grads.path}: set '{name}' has no gradients")
    return name


def _finite(grads: Embeddings, name: str, layer: str, skip: bool, warn: Callable[[str], None]):
    """The gradient batches, refusing (or, with ``skip``, dropping and counting) non-finite inputs."""
    start, skipped = 0, 0
    rows = max(1, min(256, BATCH_BYTES // (4 * grads.feature_size(layer))))
    for batch in grads.iter_flat(name, layer, "grads", rows):
        finite = np.isfinite(batch).all(axis=1)
        if not finite.all():
            if not skip:
                row = start + int(np.flatnonzero(~finite)[0])
                raise VtcavError(f"{grads.path}: non-finite gradient at layer '{layer}', set '{name}', input {row} "
                                 f"({grads.ids(name)[row]}) (--skip-nonfinite drops such inputs)")
            skipped += int((~finite).sum())
            batch = batch[finite]
        start += len(finite)
        yield batch
    if skipped:
        warn(f"{grads.path}: layer '{layer}': skipped {skipped} input(s) with non-finite gradients")
    if skipped == start and start:
        raise VtcavError(f"{grads.path}: every input has non-finite gradients at layer '{layer}'")
