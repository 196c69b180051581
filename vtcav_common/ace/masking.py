"""Concepts discovered inside the model's features, step 2: importance by masking, with a null.

VTCD ranks concepts by CRIS: many random masks over the concepts of all layers together,
the model's output recorded for each. This module does that on the real videos and adds
what VTCD lacks, an interval per concept and a null:

**Groups.** In a video, a concept's *positions* at its layer are the grid weights of the
video's tubelets that belong to it (:mod:`.vtcd`; the share of each grid cell they
cover). Beside every concept ``c`` it makes ``R`` *null copies*: ``c``'s own positions in
that video shifted by a random offset along time, height and width (circularly): the
same layer, the same number and shape of positions, anywhere. Real concepts and null
copies are *groups*, ``P = C (1 + R)`` of them.

**Masks.** Each of ``M`` random masks of a video draws every group independently with
probability ``rate``; at each layer the drawn groups' positions are multiplied by
``1 - weight`` (zero where a group covers a cell wholly) in the layer's output, through
forward hooks, all layers in one forward pass. The target's logit is recorded per mask.

**Effect.** Per video, the logit is regressed on the groups' indicators (a group absent
from the video has none), with the video's own intercept: the sufficient statistics
(``X'X``, ``X'y`` after removing the video's means) are all that is kept, so memory is
``P^2`` a video, whatever ``M``, and a file of them is written one video a row (kind
``masking``; ``--shard`` writes a block of videos, ``vt-merge`` joins them). Pooled over
videos, the least-squares coefficient of a group is the logit's change when it is
masked; a concept's **effect** is minus that (positive: masking it lowers the class's
logit). Its **excess** is the effect minus the mean effect of its ``R`` null copies: what
the concept does beyond masking as many positions at random.

**Interval and test.** A Poisson bootstrap over videos (each video weighted by a
Poisson(1) draw seeded by its row, so shards give the same replicates) re-estimates
everything ``B`` times: a 95% percentile interval of each effect, null mean and excess; a
two-sided normal p of the excess from its bootstrap standard error, Holm-corrected over
the concepts. A concept is *above chance* or *below chance* when its corrected p is under
alpha, *at chance* otherwise. The same test applied to each null copy against its sibling
copies gives the null's own false-positive rate, reported beside the ranking.

Example (in a project folder, after vt-ace tubelets: tubelets.h5 of two videos of 'right', and
vt-ace vtcd --concepts-only: their concepts vtcd.h5):
    >>> from vtcav_common.ace.masking import MaskOptions, rank_concepts, write_mask_stats
    >>> from vtcav_common.ace.vtcd import read_concept_model, read_tubelets
    >>> from vtcav_common.ace.vtcd_run import video_paths
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> model, tubelets = read_concept_model("vtcd.h5"), read_tubelets("tubelets.h5")
    >>> options = MaskOptions(masks=32, bootstrap=50)
    >>> write_mask_stats(loaded, model, tubelets, video_paths("world/labels.jsonl"), "right", options, "stats.h5")
    2
    >>> ranking, summary = rank_concepts("stats.h5", model, options)
    >>> [(r["rank"], r["concept"], r["verdict"]) for r in ranking]      # by excess over the null, 2 videos
    [(1, 'vtcd_block2_02', 'at chance'), (2, 'vtcd_block3_02', 'at chance'), (3, 'vtcd_block2_01', 'at chance'),
     (4, 'vtcd_block2_00', 'at chance'), (5, 'vtcd_block3_01', 'at chance'), (6, 'vtcd_block3_00', 'below chance')]
    >>> {key: summary[key] for key in ("videos", "concepts", "null_copies", "groups", "null_tests")}
    {'videos': 2, 'concepts': 6, 'null_copies': 4, 'groups': 30, 'null_tests': 24}
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats as sstats

from ..core import messages
from ..core import h5io
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..models.base import LayerHooks, LoadedModel, first_tensor, preprocess
from ..models.layers import model_device
from ..scale.shard import Shard
from .supervoxels import load_volume
from .vtcd import TOOL, ConceptModel, LayerGrid, Tubelets

KIND = "masking"
RESPONSES = ("logprob", "logit")
CELLS = ("owner", "share")


@dataclass(frozen=True)
class MaskOptions:
    masks: int = 128          # random masks per video
    # Probability that a group is masked in a draw. Low on purpose: with P groups a draw masks
    # about rate x P of them, and when most of a layer is masked at once the output saturates
    # and every marginal effect shrinks toward zero (at 0.2 the motion world's ball concept
    # moved the log-probability by 0.06, at 0.05 by 0.46, as much as masking it alone).
    rate: float = 0.05
    null_copies: int = 4      # R: shifted copies of each concept
    bootstrap: int = 200      # B: bootstrap replicates over videos
    alpha: float = 0.05
    seed: int = 0
    batch_size: int = 16
    response: str = "logprob"  # what is regressed: the target's log-probability or its logit
    cells: str = "owner"       # a grid cell belongs wholly to the tubelet covering most of it, or "share"

    def check(self) -> None:
        if self.response not in RESPONSES:
            raise UsageError(f"--response must be one of {', '.join(RESPONSES)}, got {self.response!r}")
        if self.cells not in CELLS:
            raise UsageError(f"--cells must be one of {', '.join(CELLS)}, got {self.cells!r}")
        if self.masks < 2:
            raise UsageError(f"--masks must be at least 2, got {self.masks}")
        if not 0 < self.rate < 1:
            raise UsageError(f"--rate must be in (0, 1), got {self.rate}")
        if self.null_copies < 2:
            raise UsageError(f"--null-copies must be at least 2, got {self.null_copies}")
        if self.bootstrap < 20:
            raise UsageError(f"--bootstrap must be at least 20, got {self.bootstrap}")

    def design(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if k in ("masks", "rate", "null_copies", "seed", "response", "cells")}


# --------------------------------------------------------------------------- groups of a video
@dataclass
class VideoGroups:
    """The groups (concepts, then null copies) of one video, by layer."""

    weights: dict[str, np.ndarray]     # layer -> n_groups_at_layer x G
    members: dict[str, np.ndarray]     # layer -> the groups' global indices
    present: np.ndarray                # P bool
    coverage: np.ndarray               # P: share of the layer's positions covered


def concept_positions(model: ConceptModel, tubelets: Tubelets, video_id: str, cells: str = "owner"
                      ) -> dict[int, np.ndarray]:
    """Concept index -> its grid weights in this video (the union of its tubelets' weights).

    With ``cells="owner"`` each grid cell goes wholly to the tubelet that covers most of it
    (a partition of the layer's grid, as SLIC on the feature grid would give); with
    ``"share"`` a tubelet weighs a cell by the share of it that it covers.
    """
    start, stop = tubelets.spans[video_id]
    rows = slice(start, stop)
    out: dict[int, np.ndarray] = {}
    for layer in dict.fromkeys(model.layers):
        assigned = model.assign(layer, tubelets.features(layer, rows))
        weights = tubelets.weights(layer, rows)
        if cells == "owner":
            owner = weights.argmax(axis=0)
            weights = ((np.arange(len(weights))[:, None] == owner[None]) & (weights > 0)).astype(np.float32)
        for concept in model.of_layer(layer):
            chosen = weights[assigned == concept]
            out[concept] = chosen.max(axis=0) if len(chosen) else np.zeros(weights.shape[1], np.float32)
    return out


def video_groups(model: ConceptModel, tubelets: Tubelets, video_id: str, row: int, options: MaskOptions
                 ) -> VideoGroups:
    """Concept positions and their null copies (random circular shifts seeded by the video's row)."""
    grids = {g.name: g for g in model.grids}
    positions = concept_positions(model, tubelets, video_id, options.cells)
    n, r = len(model.names), options.null_copies
    rng = np.random.default_rng([options.seed, 1, row])
    all_weights: list[np.ndarray] = [positions[c] for c in range(n)]
    for c in range(n):
        grid = grids[model.layers[c]].grid
        cube = positions[c].reshape(grid)
        for _ in range(r):
            shift = tuple(int(rng.integers(s)) for s in grid)
            all_weights.append(np.roll(cube, shift, axis=(0, 1, 2)).reshape(-1))
    layer_of = list(model.layers) + [model.layers[c] for c in range(n) for _ in range(r)]
    weights, members = {}, {}
    for layer in dict.fromkeys(model.layers):
        idx = np.array([g for g, name in enumerate(layer_of) if name == layer])
        members[layer] = idx
        weights[layer] = np.stack([all_weights[g] for g in idx]).astype(np.float32)
    present = np.array([w.sum() > 0 for w in all_weights])
    coverage = np.array([float(w.mean()) for w in all_weights])
    return VideoGroups(weights, members, present, coverage)


# --------------------------------------------------------------------------- masking through hooks
class FeatureMasks(LayerHooks):
    """Forward hooks that multiply layers' outputs by per-sample keep maps (``b x G`` each)."""

    def __init__(self, loaded: LoadedModel, grids: list[LayerGrid]):
        super().__init__(loaded.module, [g.name for g in grids])
        self.grids = {g.name: g for g in grids}
        self.keep: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        grid = self.grids[name]

        def hook(_module, _inputs, output):
            keep = self.keep.get(name)
            if keep is None:
                return None
            if not isinstance(output, torch.Tensor):
                first_tensor(output)
                raise VtcavError(f"layer {name} returns a {type(output).__name__}, not a tensor: VTCD cannot "
                                 f"mask it; choose another layer")
            shape = [keep.shape[0], *grid.grid]
            k = keep.reshape(shape).unsqueeze(grid.channel_axis + 1)
            return output * k.to(output.dtype)
        return hook

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.keep = {}


def keep_maps(groups: VideoGroups, draws: np.ndarray) -> dict[str, np.ndarray]:
    """``b x P`` drawn groups -> per layer ``b x G``: the product of ``1 - weight`` of the drawn groups."""
    out = {}
    for layer, idx in groups.members.items():
        w = groups.weights[layer]                          # n x G
        z = draws[:, idx].astype(np.float32)               # b x n
        out[layer] = np.prod(1.0 - z[:, :, None] * w[None], axis=1)
    return out


class MaskedModel:
    """The target's logit for a video under many keep maps, in batches."""

    def __init__(self, loaded: LoadedModel, grids: list[LayerGrid], batch_size: int):
        self.loaded = loaded
        self.hooks = FeatureMasks(loaded, grids)
        self.batch_size = batch_size
        self.device = model_device(loaded.module)

    def logits(self, volume: np.ndarray, maps: list[dict[str, np.ndarray]]) -> np.ndarray:
        """``len(maps) x K`` logits; each map is layer -> ``G`` (a missing layer is left alone)."""
        x = preprocess(volume[None], self.loaded.input_spec, self.device)
        out = []
        with self.hooks, torch.no_grad():
            for start in range(0, len(maps), self.batch_size):
                part = maps[start:start + self.batch_size]
                self.hooks.keep = {}
                for layer in self.hooks.grids:
                    stacked = [m.get(layer) for m in part]
                    if all(s is None for s in stacked):
                        continue
                    size = self.hooks.grids[layer].positions
                    stacked = [np.ones(size, np.float32) if s is None else s for s in stacked]
                    self.hooks.keep[layer] = torch.from_numpy(np.stack(stacked)).to(self.device)
                logits = self.loaded.module(x.expand(len(part), *x.shape[1:]))
                logits = logits[0] if isinstance(logits, (tuple, list)) else logits
                out.append(logits.float().cpu().numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------- per-video statistics
STAT_NAMES = ("n", "sx", "sy", "sxx", "sxy", "syy", "baseline", "present", "coverage")


def video_statistics(masked: MaskedModel, volume: np.ndarray, groups: VideoGroups, target: int, row: int,
                     options: MaskOptions) -> dict[str, np.ndarray]:
    """The regression's sufficient statistics of one video's ``M`` masks (streamed in batches)."""
    p = len(groups.present)
    rng = np.random.default_rng([options.seed, 2, row])
    sx, sxx, sxy = np.zeros(p), np.zeros((p, p)), np.zeros(p)
    sy = syy = 0.0
    baseline = float(_response(masked.logits(volume, [{}]), target, options.response)[0])
    chunk = max(options.batch_size, 1) * 4
    done = 0
    while done < options.masks:
        b = min(chunk, options.masks - done)
        draws = rng.random((b, p)) < options.rate
        maps = keep_maps(groups, draws)
        logits = masked.logits(volume, [{k: v[i] for k, v in maps.items()} for i in range(b)])
        y = _response(logits, target, options.response)
        x = (draws & groups.present[None]).astype(np.float64)
        sx += x.sum(0)
        sxx += x.T @ x
        sxy += x.T @ y
        sy += float(y.sum())
        syy += float(y @ y)
        done += b
    return {"n": np.float64(options.masks), "sx": sx, "sy": np.float64(sy), "sxx": sxx, "sxy": sxy,
            "syy": np.float64(syy), "baseline": np.float64(baseline), "present": groups.present,
            "coverage": groups.coverage}


def _response(logits: np.ndarray, target: int, response: str) -> np.ndarray:
    """The target's logit, or its log-probability (the logit less the log-sum-exp of all logits)."""
    logits = logits.astype(np.float64)
    if response == "logit":
        return logits[:, target]
    top = logits.max(axis=1)
    return logits[:, target] - top - np.log(np.exp(logits - top[:, None]).sum(axis=1))


def write_mask_stats(loaded: LoadedModel, model: ConceptModel, tubelets: Tubelets, paths: dict[str, str],
                     target: str, options: MaskOptions, out: str | Path, shard: Shard | None = None,
                     provenance: dict | None = None) -> int:
    """Mask every video of ``tubelets`` (or a shard's block); one row of statistics a video."""
    options.check()
    target_index = loaded.class_index(target)
    videos = list(tubelets.order)
    missing = [v for v in videos if v not in paths]
    if missing:
        raise VtcavError(f"{tubelets.path}: video {missing[0]} is not in the --videos manifest")
    record = {**(provenance or {}), "model": loaded.provenance, "input": loaded.input_spec.to_dict(),
              "target": target, "concepts": list(model.names), "concept_layers": list(model.layers),
              "concepts_run_id": model.provenance.get("run_id", ""), "tubelets": Path(tubelets.path).name,
              "design": options.design(), "groups": len(model.names) * (1 + options.null_copies)}
    rows = range(len(videos))
    if shard is not None:
        record["shard"] = shard.identity({"videos": len(videos)})
        rows = shard.rows(len(videos))
    record["videos"] = len(rows)
    masked = MaskedModel(loaded, model.grids, options.batch_size)
    p = record["groups"]
    with h5io.create(out, KIND, TOOL, record) as handle:
        data = {name: _growing(handle, name, shape, dtype) for name, shape, dtype in (
            ("n", (), np.float64), ("sx", (p,), np.float64), ("sy", (), np.float64), ("sxx", (p, p), np.float64),
            ("sxy", (p,), np.float64), ("syy", (), np.float64), ("baseline", (), np.float64),
            ("present", (p,), bool), ("coverage", (p,), np.float32), ("row", (), np.int64))}
        ids = []
        for row in messages.progress(rows, len(rows), "videos"):
            vid = videos[row]
            volume, _ = load_volume(paths[vid], loaded.input_spec.frames)
            groups = video_groups(model, tubelets, vid, row, options)
            values = video_statistics(masked, volume, groups, target_index, row, options)
            values["row"] = np.int64(row)
            for name, dataset in data.items():
                dataset.resize(dataset.shape[0] + 1, axis=0)
                dataset[-1] = values[name]
            ids.append(vid)
        h5io.string_dataset(handle, "video_id", ids)
    return len(ids)


def _growing(handle, name: str, shape: tuple, dtype):
    return h5io.dataset(handle, name, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype=dtype)


# --------------------------------------------------------------------------- ranking
def read_stats_provenance(path: str, model: ConceptModel, options: MaskOptions) -> dict:
    with h5io.open_file(path, KIND) as handle:
        provenance = h5io.provenance(handle)
    if "shard" in provenance:
        shard = provenance["shard"]
        raise VtcavError(f"{path}: shard {shard.get('index')}/{shard.get('count')} of the masking statistics; join "
                         f"the shards with vt-merge first")
    if provenance.get("concepts") != list(model.names) or provenance.get("concept_layers") != list(model.layers):
        raise IncompatibleError(f"{path}: masking statistics of other concepts than the concept file's")
    if provenance.get("design", {}).get("null_copies") != options.null_copies:
        raise IncompatibleError(f"{path}: made with --null-copies {provenance.get('design', {}).get('null_copies')}"
                                f", not {options.null_copies}")
    return provenance


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares from normal equations; groups never present get a unit diagonal (coefficient 0)."""
    a = a.copy()
    diag = np.einsum("...ii->...i", a)
    scale = np.maximum(diag.max(axis=-1, keepdims=True), 1e-12)
    diag += np.where(diag <= 1e-12, 1.0, 1e-9 * scale)
    return np.linalg.solve(a, b[..., None])[..., 0]


def estimate(path: str, options: MaskOptions) -> tuple[np.ndarray, np.ndarray, dict]:
    """Effects (minus the coefficients) of all groups: the estimate (``P``) and ``B x P`` bootstrap replicates."""
    b = options.bootstrap
    with h5io.open_file(path, KIND) as handle:
        v, p = handle["sxx"].shape[0], handle["sxx"].shape[1]
        a = np.zeros((b + 1, p, p))
        c = np.zeros((b + 1, p))
        present = np.zeros(p)
        coverage = np.zeros(p)
        baselines = []
        for i in range(v):
            n, sx, sy = float(handle["n"][i]), handle["sx"][i], float(handle["sy"][i])
            xtx = handle["sxx"][i] - np.outer(sx, sx) / n
            xty = handle["sxy"][i] - sx * sy / n
            row = int(handle["row"][i])
            weights = np.concatenate([[1.0], np.random.default_rng([options.seed, 3, row]).poisson(1.0, b)])
            a += weights[:, None, None] * xtx[None]
            c += weights[:, None] * xty[None]
            present += handle["present"][i]
            coverage += handle["coverage"][i] * handle["present"][i]
            baselines.append(float(handle["baseline"][i]))
    effects = -_solve(a, c)
    info = {"videos": v, "present": present, "coverage": coverage / np.maximum(present, 1),
            "baseline": float(np.mean(baselines)) if baselines else float("nan")}
    return effects[0], effects[1:], info


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _normal_p(estimate: np.ndarray, replicates: np.ndarray) -> np.ndarray:
    se = replicates.std(axis=0, ddof=1)
    z = np.where(se > 0, estimate / np.maximum(se, 1e-300), 0.0)
    return 2 * sstats.norm.sf(np.abs(z))


def rank_concepts(stats_path: str, model: ConceptModel, options: MaskOptions, sizes: dict[str, dict] | None = None
                  ) -> tuple[list[dict], dict]:
    """The ranking records (most important first) and a summary (the null's own false-positive rate)."""
    provenance = read_stats_provenance(stats_path, model, options)
    point, boot, info = estimate(stats_path, options)
    n, r = len(model.names), options.null_copies
    nulls = point[n:].reshape(n, r)
    boot_nulls = boot[:, n:].reshape(len(boot), n, r)
    effect, boot_effect = point[:n], boot[:, :n]
    null_mean, boot_null_mean = nulls.mean(1), boot_nulls.mean(2)
    excess, boot_excess = effect - null_mean, boot_effect - boot_null_mean
    p = _normal_p(excess, boot_excess)
    p_corrected = _holm(p)

    def ci(values: np.ndarray) -> list[float]:
        return [round(float(v), 6) for v in np.percentile(values, [2.5, 97.5])]

    records = []
    for c in range(n):
        significant = bool(p_corrected[c] < options.alpha)
        verdict = "at chance" if not significant else ("above chance" if excess[c] > 0 else "below chance")
        extra = (sizes or {}).get(model.names[c], {})
        records.append({
            "concept": model.names[c], "layer": model.layers[c], "target": provenance.get("target"),
            "effect": round(float(effect[c]), 6), "effect_ci": ci(boot_effect[:, c]),
            "null_mean": round(float(null_mean[c]), 6), "null_ci": ci(boot_null_mean[:, c]),
            "null_copies": [round(float(v), 6) for v in nulls[c]],
            "excess": round(float(excess[c]), 6), "excess_ci": ci(boot_excess[:, c]),
            "p": float(p[c]), "p_corrected": float(p_corrected[c]), "correction": "holm",
            "significant": significant, "verdict": verdict, "direction": "+" if excess[c] > 0 else "-",
            "videos_present": int(info["present"][c]), "videos": int(info["videos"]),
            "coverage": round(float(info["coverage"][c]), 6), "masks_per_video": provenance["design"]["masks"],
            "rate": provenance["design"]["rate"], "bootstrap": options.bootstrap, **extra})
    records.sort(key=lambda rec: (-rec["excess"], rec["concept"]))
    by_layer: dict[str, int] = defaultdict(int)
    for rank, rec in enumerate(records, start=1):
        by_layer[rec["layer"]] += 1
        rec["rank"], rec["layer_rank"] = rank, by_layer[rec["layer"]]
    # The null's own calibration: each copy tested against its sibling copies, as a concept is.
    siblings = (nulls.sum(1, keepdims=True) - nulls) / (r - 1)
    boot_siblings = (boot_nulls.sum(2, keepdims=True) - boot_nulls) / (r - 1)
    null_p = _normal_p((nulls - siblings).reshape(-1), (boot_nulls - boot_siblings).reshape(len(boot), -1))
    summary = {"videos": int(info["videos"]), "concepts": n, "null_copies": r, "groups": n * (1 + r),
               "baseline_logit": round(info["baseline"], 6), "alpha": options.alpha,
               "null_false_positive_rate": round(float((null_p < options.alpha).mean()), 6),
               "null_tests": int(null_p.size)}
    return records, summary


# --------------------------------------------------------------------------- faithfulness in feature space
def faithfulness(loaded: LoadedModel, model: ConceptModel, tubelets: Tubelets, paths: dict[str, str], target: str,
                 ranking: list[dict], max_concepts: int = 3, repeats: int = 5, seed: int = 0,
                 batch_size: int = 16, cells: str = "owner") -> list[dict]:
    """Per layer, accuracy and class probability when the layer's top / random / least concepts are kept
    alone (add: every other position of the layer zeroed) or zeroed (remove), as 3D-ACE's tables."""
    from .faithfulness import _records, _softmax, concept_orders

    target_index = loaded.class_index(target)
    masked = MaskedModel(loaded, model.grids, batch_size)
    layers = list(dict.fromkeys(model.layers))
    names = {layer: [rec["concept"] for rec in ranking if rec["layer"] == layer] for layer in layers}
    orders = {layer: concept_orders(names[layer], max_concepts, repeats, seed) for layer in layers}
    outcomes: dict[str, dict[tuple, list[tuple[bool, float]]]] = {layer: defaultdict(list) for layer in layers}
    for vid in messages.progress(tubelets.order, len(tubelets.order), "faithfulness"):
        volume, _ = load_volume(paths[vid], loaded.input_spec.frames)
        positions = concept_positions(model, tubelets, vid, cells)
        for layer in layers:
            w = np.stack([positions[model.names.index(name)] for name in names[layer]])
            keys = [("baseline", "", 0, 0), ("add", "none", 0, 0)]
            maps = [{}, {layer: np.zeros(w.shape[1], np.float32)}]
            for (order, k), draws in orders[layer].items():
                for draw, chosen in enumerate(draws):
                    union = 1.0 - np.prod(1.0 - w[chosen], axis=0)
                    keys += [("add", order, k, draw), ("remove", order, k, draw)]
                    maps += [{layer: union.astype(np.float32)}, {layer: (1.0 - union).astype(np.float32)}]
            logits = masked.logits(volume, maps)
            probs = _softmax(logits)[:, target_index]
            for key, logit, prob in zip(keys, logits, probs):
                outcomes[layer][key].append((int(logit.argmax()) == target_index, float(prob)))
    rows = []
    for layer in layers:
        rows += _records(outcomes[layer], target, len(tubelets.order), len(names[layer]), layer)
    return rows


# --------------------------------------------------------------------------- ground truth (known answers)
def gt_overlap(model: ConceptModel, tubelets: Tubelets, gt_path: str) -> dict[str, dict]:
    """For each concept, over all its tubelets: the share of its voxels inside each ground-truth
    class's boxes of the same frame (``gt_overlap``), the share of that class's box voxels it covers
    (``gt_recall``), and the share of its voxels on the class's *track*, the union of the class's
    boxes over the clip (``gt_track_overlap``: for a moving object, where it passes; for a static
    one, the same as its box).

    ``gt_path`` is detection JSONL with true boxes (vt-synth's gt.jsonl, or a tracker's output).
    """
    from ..formats.records import read_jsonl
    from ..formats.supervoxels import read_column, source_mask
    from .vtcd import TUBELET_SET

    boxes: dict[tuple[str, int], list[tuple[str, list[float]]]] = defaultdict(list)
    for _, record in read_jsonl(gt_path):
        boxes[(str(record["video_id"]), int(record["frame"]))].append((str(record["class_name"]), record["box"]))
    classes = sorted({name for values in boxes.values() for name, _ in values})
    frames = read_column(tubelets.path, TUBELET_SET, "frames")
    windows = read_column(tubelets.path, TUBELET_SET, "boxes")
    shapes = read_column(tubelets.path, TUBELET_SET, "source_shape")
    inside = np.zeros((len(model.names), len(classes)))
    voxels = np.zeros(len(model.names))
    class_voxels = np.zeros((len(model.names), len(classes)))
    on_track = np.zeros((len(model.names), len(classes)))
    import h5py

    with h5py.File(tubelets.path, "r") as handle:
        masks = handle["concepts"][TUBELET_SET]["masks"]
        for vid in tubelets.order:
            start, stop = tubelets.spans[vid]
            t, h, w = (int(v) for v in shapes[start])
            truth = np.zeros((len(classes), t, h, w), bool)
            for i, frame in enumerate(frames[start]):
                for name, (x1, y1, x2, y2) in boxes.get((vid, int(frame)), []):
                    truth[classes.index(name), i, max(int(y1), 0):max(int(np.ceil(y2)), 0),
                          max(int(x1), 0):max(int(np.ceil(x2)), 0)] = True
            track = np.repeat(truth.any(axis=1, keepdims=True), t, axis=1)
            sources = [source_mask(masks[row], windows[row, 0], shapes[row]) for row in range(start, stop)]
            for layer in dict.fromkeys(model.layers):
                assigned = model.assign(layer, tubelets.features(layer, slice(start, stop)))
                for concept in model.of_layer(layer):
                    chosen = [s for s, a in zip(sources, assigned) if a == concept]
                    if not chosen:
                        continue
                    union = np.logical_or.reduce(chosen)
                    voxels[concept] += union.sum()
                    inside[concept] += (truth & union[None]).reshape(len(classes), -1).sum(1)
                    class_voxels[concept] += truth.reshape(len(classes), -1).sum(1)
                    on_track[concept] += (track & union[None]).reshape(len(classes), -1).sum(1)
    out = {}
    for c, name in enumerate(model.names):
        out[name] = {"gt_overlap": {k: round(float(inside[c, i] / max(voxels[c], 1)), 4)
                                    for i, k in enumerate(classes)},
                     "gt_recall": {k: round(float(inside[c, i] / max(class_voxels[c, i], 1)), 4)
                                   for i, k in enumerate(classes)},
                     "gt_track_overlap": {k: round(float(on_track[c, i] / max(voxels[c], 1)), 4)
                                          for i, k in enumerate(classes)}}
    return out

