"""Which CAVs to fit, and fitting them layer by layer from activations streamed from HDF5."""

from __future__ import annotations

import importlib
import itertools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..formats import cavs as cavs_file
from .cav import ActivationSpace, CAVFit, check_classifier, fit_cav
from ..formats.clips import parse_twin
from ..formats.embeddings import MODEL_KEYS, Embeddings, require_same_model
from ..core.errors import UsageError, VtcavError
from .streaming import (Budget, LayerRows, Linalg, Part, available_memory, choose_linalg, memory_budget,
                        worker_threads)

RESAMPLE_FRACTION = 0.8
NULL_PARTNERS = 10      # each random set against this many others (all others when R <= 11)


@dataclass(frozen=True)
class CAVTask:
    concept: str            # positive set
    against: str            # negative set
    kind: str               # "concept", "null" or "relative"
    replicate: int
    resample: bool = False  # relative CAVs are fitted on resampled clips


def null_pairs(n: int, partners: int = NULL_PARTNERS) -> list[tuple[int, int]]:
    """The random-vs-random CAVs: each of ``n`` random sets against its ``partners`` nearest sets
    on a ring (``partners // 2`` on each side; every other set when ``partners >= n - 1``), each
    unordered pair once.

    Why pairs on a ring: the set-level test (stats/setlevel.py) lets every random set play the
    concept's part against the others, so each set needs several partners; a CAV of i against j
    read from j's side is the same boundary reversed, so one fit serves both.  A ring bounds the
    cost at ``n * partners / 2`` CAVs instead of ``n (n - 1) / 2``; every set has as many partners.

    >>> null_pairs(4)
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    >>> null_pairs(6, partners=2)
    [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5)]
    """
    if n < 2:
        return []
    if partners >= n - 1:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    pairs = []
    for distance in range(1, max(1, partners // 2) + 1):
        for i in range(n):
            pair = tuple(sorted((i, (i + distance) % n)))
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def plan(concepts: list[str], randoms: list[str], relative: list[tuple[str, str]],
         relative_resamples: int, null_partners: int = NULL_PARTNERS) -> list[CAVTask]:
    """Every concept x random set, the random-vs-random null, and relative pairs."""
    if len(randoms) < 2:
        raise VtcavError(f"need at least 2 random sets for the null distribution, got {len(randoms)}")
    tasks = [CAVTask(c, r, "concept", i) for c in concepts for i, r in enumerate(randoms)]
    # Null: random sets against each other (null_pairs), scored exactly like the concepts.
    tasks += [CAVTask(randoms[i], randoms[j], "null", number)
              for number, (i, j) in enumerate(null_pairs(len(randoms), null_partners))]
    tasks += [CAVTask(a, b, "relative", i, resample=True)
              for a, b in relative for i in range(relative_resamples)]
    return tasks


def task_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] % (2 ** 31 - 1))


@dataclass
class FitOptions:
    classifier: str = "sgd"
    seed: int = 0
    agreement: bool = False           # also the mean-difference CAV, and its cosine with each CAV
    device: str = "auto"
    max_memory: int | None = None     # bytes; None: the memory the kernel says is available
    skip_nonfinite: bool = False      # drop clips with non-finite activations instead of refusing
    null_partners: int = NULL_PARTNERS  # random sets each random set is fitted against (the null)


@dataclass
class FitSummary:
    layers: list[str]
    tasks: list[CAVTask]
    linalg: str
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)   # layer -> kind -> mean
    skipped: dict[str, int] = field(default_factory=dict)                 # layer -> clips dropped


def fit_layer(rows: LayerRows, tasks: list[CAVTask], options: FitOptions, layer_index: int,
              linalg: Linalg, budget: Budget, warn: Callable[[str], None] = lambda message: None
              ) -> dict[str, np.ndarray]:
    """Every task's CAV at one layer: one streamed pass for the Gram matrix, one for the vectors
    (over the blocks the budget could not keep from the first)."""
    gram = np.zeros((rows.m, rows.m), np.float64)
    kept: dict[int, np.ndarray] = {}
    room = budget.keep_bytes
    for first, block in rows.column_blocks(budget.columns):
        linalg.gram_add(gram, block)
        if block.nbytes <= room:
            kept[first] = block.copy()
            room -= block.nbytes
    bad = np.flatnonzero(~np.isfinite(np.diag(gram)))
    if len(bad):
        if not options.skip_nonfinite:
            part, row = rows.where(int(bad[0]))
            item = part.emb.ids(part.name)[row]
            raise VtcavError(f"{part.emb.path}: non-finite activations at layer '{rows.layer}', set '{part.name}', "
                             f"clip {row} ({item}); {len(bad)} clip(s) in all (--skip-nonfinite drops them)")
        warn(f"layer '{rows.layer}': skipped {len(bad)} clip(s) with non-finite activations")
    good = np.ones(rows.m, bool)
    good[bad] = False
    space = ActivationSpace.from_gram(gram[np.ix_(good, good)] if len(bad) else gram)
    del gram
    renumber = np.cumsum(good) - 1                       # global row -> row of the space
    offsets = np.cumsum([0] + rows.counts)
    where = {p.name: renumber[np.arange(offsets[i], offsets[i + 1])[good[offsets[i]:offsets[i + 1]]]]
             for i, p in enumerate(rows.parts)}
    fits, mean_fits = _fit_all(space, where, tasks, options, layer_index,
                               f"{', '.join(sorted({p.emb.path for p in rows.parts}))}: layer '{rows.layer}'",
                               _paired_tasks(tasks, rows, good))
    everything = fits + mean_fits
    mix = np.zeros((rows.m, len(everything)), np.float32)
    mix[good] = space.mix(np.stack([f.coef for f in everything]))
    vectors = np.empty((len(everything), rows.width), np.float32)
    for first, block in itertools.chain(kept.items(), rows.column_blocks(budget.columns, skip=kept)):
        if len(bad):
            block[bad] = 0                               # 0 weight times NaN would still be NaN
        vectors[:, first:first + block.shape[1]] = linalg.project(mix, block)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    del kept
    result = {
        "vectors": vectors[:len(fits)],
        "accuracy": np.array([f.accuracy for f in fits], np.float32),
        "n_train": np.array([f.n_train for f in fits], np.int32),
        "n_test": np.array([f.n_test for f in fits], np.int32),
    }
    if options.agreement:
        result["fastcav_cosine"] = np.sum(vectors[:len(fits)] * vectors[len(fits):], axis=1).astype(np.float32)
        result["fastcav_accuracy"] = np.array([f.accuracy for f in mean_fits], np.float32)
    result["skipped"] = len(bad)
    return result


def _paired_tasks(tasks: list[CAVTask], rows: LayerRows, good: np.ndarray) -> set[int]:
    """The tasks that fit a set against its own temporal twin (``SET`` vs ``SET~frozen``) whose
    two sides hold the same clips in the same order, every one finite: fitted pair by pair."""
    offsets = np.cumsum([0] + rows.counts)
    parts = {p.name: (i, p) for i, p in enumerate(rows.parts)}
    paired = set()
    for number, task in enumerate(tasks):
        twin = parse_twin(task.against)
        if twin is None or twin[0] != task.concept or task.concept not in parts or task.against not in parts:
            continue
        (i, a), (j, b) = parts[task.concept], parts[task.against]
        if rows.counts[i] == rows.counts[j] and list(a.emb.ids(a.name)) == list(b.emb.ids(b.name)) \
                and good[offsets[i]:offsets[i + 1]].all() and good[offsets[j]:offsets[j + 1]].all():
            paired.add(number)
    return paired


def _fit_all(space: ActivationSpace, where: dict[str, np.ndarray], tasks: list[CAVTask], options: FitOptions,
             layer_index: int, context: str, paired: set[int] = frozenset()) -> tuple[list[CAVFit], list[CAVFit]]:
    """Every task's fit, on a few threads (scikit-learn's SGD loop releases the GIL); each fit
    has its own seed, so the result does not depend on the order they finish in. ``paired``:
    the tasks whose two sides are the same clips, row by row (a set and its twin)."""
    def fit_one(number: int) -> tuple[CAVFit, CAVFit | None]:
        task = tasks[number]
        seed = task_seed(options.seed, layer_index, number)
        positive, negative = where[task.concept], where[task.against]
        pair = number in paired
        if task.resample:
            rng = np.random.default_rng(seed)
            if pair:   # the same clips on both sides
                keep = np.sort(rng.choice(len(positive), max(3, int(RESAMPLE_FRACTION * len(positive))),
                                          replace=False))
                positive, negative = positive[keep], negative[keep]
            else:
                positive = np.sort(rng.choice(positive, max(3, int(RESAMPLE_FRACTION * len(positive))),
                                              replace=False))
                negative = np.sort(rng.choice(negative, max(3, int(RESAMPLE_FRACTION * len(negative))),
                                              replace=False))
        try:
            return (fit_cav(space, positive, negative, options.classifier, seed, paired=pair),
                    fit_cav(space, positive, negative, "mean", seed, paired=pair) if options.agreement else None)
        except ValueError as err:
            raise VtcavError(f"{context}: CAV {task.concept} vs {task.against}: {err}") from None

    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        pairs = list(pool.map(fit_one, range(len(tasks))))
    return [fit for fit, _ in pairs], [mean for _, mean in pairs if mean is not None]


def fit_cavs(sources: list[str | Path], output: str | Path, *, layers: list[str] | None = None,
             concepts: list[str] | None = None, relative: list[tuple[str, str]] = (),
             relative_resamples: int = 0, options: FitOptions = FitOptions(), tool: str = "vt-cav",
             info: Callable[[str], None] = lambda message: None,
             warn: Callable[[str], None] = lambda message: None) -> FitSummary:
    """Fit every concept x random set, the null and relative CAVs at every layer; write the CAV file.

    ``sources`` are embeddings files of one model and input sampling; sets with role
    ``random`` are the random sets, ``concepts`` (default: every other set) the concepts.
    """
    check_classifier(options.classifier)
    files = [Embeddings(path) for path in sources]
    try:
        return _fit_files(files, output, layers, concepts, list(relative), relative_resamples, options, tool,
                          info, warn)
    finally:
        for emb in files:
            emb.close()


def _fit_files(files: list[Embeddings], output, layers, concepts, relative, relative_resamples, options, tool,
               info, warn) -> FitSummary:
    first = files[0]
    for other in files[1:]:
        require_same_model(first.path, first.provenance, other.path, other.provenance)
    where, infos = {}, {}
    for emb in files:
        for info_ in emb.sets():
            if info_.name in where:
                raise UsageError(f"{emb.path}: set '{info_.name}' also in {where[info_.name].path}")
            where[info_.name], infos[info_.name] = emb, info_
    randoms = sorted(n for n, i in infos.items() if i.role == "random")
    concept_names = list(concepts or [n for n, i in infos.items() if i.role == "concept"])
    unknown = [n for n in concept_names + [x for p in relative for x in p] if n not in where]
    if unknown:
        raise UsageError(f"unknown set(s) {', '.join(sorted(set(unknown)))}; the files have {', '.join(where)}")
    chosen = list(layers or first.layers)
    missing = [layer for layer in chosen if layer not in first.layers]
    if missing:
        raise UsageError(f"{first.path}: no layer(s) {', '.join(missing)}; it has {', '.join(first.layers)}")
    if len(randoms) < 2:
        raise VtcavError(f"{', '.join(emb.path for emb in files)}: need at least 2 sets of role 'random' for the "
                         f"null distribution (vt-concepts random --sets), found {len(randoms)}")
    tasks = plan(concept_names, randoms, relative, relative_resamples or len(randoms), options.null_partners)
    used = sorted({t.concept for t in tasks} | {t.against for t in tasks})
    small = [name for name in used if infos[name].n < 3]
    if small:   # caught before any work, naming the file (fit_cav would say it per CAV, file unknown)
        name = small[0]
        raise VtcavError(f"{where[name].path}: set '{name}' has {infos[name].n} clip(s); a CAV needs at least 3 "
                         f"on each side{f' ({len(small)} such sets)' if len(small) > 1 else ''}")
    parts = [Part(where[name], name, infos[name].n) for name in used]
    layer_rows = [LayerRows(parts, layer) for layer in chosen]
    k = len(tasks) * (2 if options.agreement else 1)
    max_memory = options.max_memory or available_memory()
    budgets = {rows.layer: memory_budget(rows.m, rows.width, k, max_memory, f"{first.path}: layer '{rows.layer}'")
               for rows in layer_rows}                   # every layer checked before any work
    linalg = choose_linalg(options.device)
    provenance = {key: first.provenance.get(key) for key in MODEL_KEYS}
    provenance.update(layers=chosen, classifier=options.classifier, seed=options.seed,
                      # file names, not the paths as typed: `acts.h5`, `./acts.h5`, its absolute path or a link
                      # give the same bytes and run id (the run ids identify the sources)
                      sources=[Path(os.path.realpath(emb.path)).name for emb in files],
                      source_runs=[emb.run_id for emb in files],
                      concepts=concept_names, randoms=randoms, relative=[list(p) for p in relative],
                      null_partners=min(options.null_partners, len(randoms) - 1))
    if options.skip_nonfinite:
        provenance["skip_nonfinite"] = True
    n_null = sum(t.kind == "null" for t in tasks)
    n_relative = len(tasks) - len(concept_names) * len(randoms) - n_null
    info(f"{len(tasks)} CAVs per layer ({len(concept_names)} concept(s) x {len(randoms)} random sets, "
         f"{n_null} null, {n_relative} relative) at {len(chosen)} layer(s), classifier {options.classifier}, "
         f"{layer_rows[0].m} clips, products on {linalg.name}")
    summary = FitSummary(chosen, tasks, linalg.name)
    import_in_background("sklearn.model_selection", "sklearn.linear_model")
    with cavs_file.CAVWriter(output, tool, provenance) as writer:
        for index, rows in enumerate(layer_rows):
            fitted = fit_layer(rows, tasks, options, index, linalg, budgets[rows.layer], warn)
            summary.skipped[rows.layer] = fitted.pop("skipped")
            writer.write_layer(rows.layer, [t.concept for t in tasks], [t.against for t in tasks],
                               [t.kind for t in tasks], [t.replicate for t in tasks], fitted)
            summary.accuracy[rows.layer] = _mean_accuracy(tasks, fitted)
            extra = (f", cosine to FastCAV {float(fitted['fastcav_cosine'].mean()):.2f}"
                     if "fastcav_cosine" in fitted else "")
            info(f"  {rows.layer}: " + ", ".join(f"{kind} acc {acc:.2f}"
                                                for kind, acc in summary.accuracy[rows.layer].items()) + extra)
    return summary


def import_in_background(*modules: str) -> threading.Thread:
    """Import ``modules`` on a thread while the first Gram matrix is computed.

    scikit-learn takes about 1.8 s to import (scipy.stats with it) and is first needed when
    the first layer's CAVs are fitted; HDF5 reads, float16 conversion and BLAS release the GIL,
    so most of the import overlaps them. Python's import lock makes the later ``import`` in
    the fitting code wait for this one. Not a daemon: the interpreter never exits mid-import.
    """
    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:   # noqa: BLE001  (the import in the fitting code raises it where it matters)
                return

    thread = threading.Thread(target=run, name="vtcav-preload")
    thread.start()
    return thread


def _mean_accuracy(tasks: list[CAVTask], fitted: dict) -> dict[str, float]:
    kinds: dict[str, list[float]] = {}
    for task, accuracy in zip(tasks, fitted["accuracy"]):
        kinds.setdefault(task.kind, []).append(float(accuracy))
    return {kind: sum(v) / len(v) for kind, v in kinds.items()}


def quiet_convergence(function, *args, warn: Callable[[str], None] = lambda message: None, **kwargs):
    """Call ``function`` with scikit-learn's per-fit convergence warnings summed up in one line."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = function(*args, **kwargs)
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    if unconverged:
        warn(f"{unconverged} CAV fit(s) reached the iteration limit before converging")
    return result
