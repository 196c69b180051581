"""Which CAVs to fit, fitting them per layer, and the CAV file (kind ``cavs``).

Layout::

    / attrs: provenance = {"model", "input", "layers", "classifier", "seed", "sources", ...}
    /layers/<layer>/vectors    k x D float32, unit norm, pointing toward ``concept``
    /layers/<layer>/concept    str k      the positive set
    /layers/<layer>/against    str k      the negative set (a random set, or concept B)
    /layers/<layer>/kind       str k      "concept" | "null" | "relative"
    /layers/<layer>/replicate  int k      which random set / resample
    /layers/<layer>/accuracy   float k    held-out accuracy of the linear classifier
    /layers/<layer>/n_train, n_test  int k
    /layers/<layer>/fastcav_cosine  float k   (with --agreement) cosine to the mean-difference CAV
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import h5io
from .cav import ActivationSpace, fit_cav, finalize
from .errors import UsageError, VtcavError

RESAMPLE_FRACTION = 0.8


@dataclass(frozen=True)
class CAVTask:
    concept: str            # positive set
    against: str            # negative set
    kind: str               # "concept", "null" or "relative"
    replicate: int
    resample: bool = False  # relative CAVs are fitted on resampled clips


def plan(concepts: list[str], randoms: list[str], relative: list[tuple[str, str]],
         relative_resamples: int) -> list[CAVTask]:
    """Every concept x random set, the random-vs-random null, and relative pairs."""
    if len(randoms) < 2:
        raise UsageError(f"need at least 2 random sets for the null distribution, got {len(randoms)}")
    tasks = [CAVTask(c, r, "concept", i) for c in concepts for i, r in enumerate(randoms)]
    # Null: each random set against the next one, scored exactly like the concepts.
    tasks += [CAVTask(r, randoms[(i + 1) % len(randoms)], "null", i) for i, r in enumerate(randoms)]
    tasks += [CAVTask(a, b, "relative", i, resample=True)
              for a, b in relative for i in range(relative_resamples)]
    return tasks


def _seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] % (2 ** 31 - 1))


def fit_layer(rows: np.ndarray, counts: dict[str, int], tasks: list[CAVTask], classifier: str, seed: int,
              layer_index: int, agreement: bool = False) -> dict[str, np.ndarray]:
    """Fit every task's CAV at one layer, sharing one activation space.

    ``rows`` stacks every set's activations (``M x D``) in the order of ``counts``.
    """
    names = list(counts)
    offsets = np.cumsum([0] + [counts[n] for n in names])
    where = {n: np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
    space = ActivationSpace(rows)
    fits, mean_fits = [], []
    for number, task in enumerate(tasks):
        task_seed = _seed(seed, layer_index, number)
        positive, negative = where[task.concept], where[task.against]
        if task.resample:
            rng = np.random.default_rng(task_seed)
            positive = np.sort(rng.choice(positive, max(3, int(RESAMPLE_FRACTION * len(positive))), replace=False))
            negative = np.sort(rng.choice(negative, max(3, int(RESAMPLE_FRACTION * len(negative))), replace=False))
        try:
            fits.append(fit_cav(space, positive, negative, classifier, task_seed))
            if agreement:
                mean_fits.append(fit_cav(space, positive, negative, "mean", task_seed))
        except ValueError as err:
            raise VtcavError(f"CAV {task.concept} vs {task.against}: {err}") from None
    result = {
        "vectors": finalize(space, fits),
        "accuracy": np.array([f.accuracy for f in fits], np.float32),
        "n_train": np.array([f.n_train for f in fits], np.int32),
        "n_test": np.array([f.n_test for f in fits], np.int32),
    }
    if agreement:
        mean_vectors = finalize(space, mean_fits)
        result["fastcav_cosine"] = np.sum(result["vectors"] * mean_vectors, axis=1).astype(np.float32)
        result["fastcav_accuracy"] = np.array([f.accuracy for f in mean_fits], np.float32)
    return result


def write_layer(handle, layer: str, tasks: list[CAVTask], fitted: dict[str, np.ndarray]) -> None:
    group = handle.require_group("layers").create_group(layer)
    # Unit vectors of floats do not compress: gzip only cost time here.
    h5io.dataset(group, "vectors", fitted["vectors"], chunks=(1, fitted["vectors"].shape[1]), compression=None)
    h5io.string_dataset(group, "concept", [t.concept for t in tasks])
    h5io.string_dataset(group, "against", [t.against for t in tasks])
    h5io.string_dataset(group, "kind", [t.kind for t in tasks])
    h5io.dataset(group, "replicate", np.array([t.replicate for t in tasks], np.int32))
    for name, values in fitted.items():
        if name != "vectors":
            h5io.dataset(group, name, values)


@dataclass
class LayerCAVs:
    layer: str
    vectors: np.ndarray
    table: list[dict]   # one row per CAV: concept, against, kind, replicate, accuracy, ...


def read_cavs(path: str | Path) -> tuple[dict, list[LayerCAVs]]:
    """Provenance and every layer's CAVs."""
    with h5io.open_file(path, "cavs") as handle:
        provenance = h5io.provenance(handle)
        if "layers" not in handle:
            raise VtcavError(f"{path}: CAV file has no /layers group")
        layers = []
        for layer, group in handle["layers"].items():
            columns = {name: (h5io.read_strings(group[name]) if group[name].dtype.kind in "OS"
                              else group[name][()].tolist())
                       for name in group if name != "vectors"}
            count = group["vectors"].shape[0]
            table = [{name: values[i] for name, values in columns.items()} for i in range(count)]
            layers.append(LayerCAVs(layer, group["vectors"][()], table))
    return provenance, layers
