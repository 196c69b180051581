"""``vt-ace faithfulness``: do the top-ranked concepts carry the class? (Ji et al. 2022, tables 1-2)

For each test video of the class:

1. cut it into supervoxels exactly as discovery's candidates were cut (the
   segmentation and sampling are read from the concept file's provenance);
2. embed each supervoxel's clip at the discovery layer and give it to the concept
   whose centre is nearest (every supervoxel belongs to one concept);
3. **add**: start from an all-grey video and put back the supervoxels of the top-k /
   random-k / least-k important concepts (k = 1..K, importance = the ranking's order);
   **remove**: start from the original and fill those supervoxels with grey;
4. classify every variant.

The result is the classifier's accuracy on the class (the fraction of videos still
predicted as the class) for each mode, order and k, next to the accuracy on the
original videos (baseline) and on all-grey videos. Random orders draw ``repeats``
random sets of k concepts (the same draws for every video) and average over them.
The mean softmax probability of the class is reported beside each accuracy: with few
test videos it separates orders that accuracy rounds to the same number.

Example (in a project folder, after vt-ace discover: ace.h5 and ranking.jsonl, three concepts of 'right'):
    >>> from vtcav_common.ace.candidates import select_videos
    >>> from vtcav_common.ace.faithfulness import FaithfulnessOptions, faithfulness, format_tables
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> videos = select_videos("world/labels.jsonl", label="right", split="test")
    >>> records = faithfulness(loaded, "ace.h5", "ranking.jsonl", videos, FaithfulnessOptions(max_concepts=3))
    >>> for line in format_tables(records, "mean_prob"):          # the class's mean probability
    ...     print(line)
    class 'right', 2 videos, mean_prob: original 0.916, all grey 0.287
    add            1       2       3
      top      0.291   0.582   0.916
      random   0.471   0.795   0.916
      least    0.620   0.908   0.916
    remove         1       2       3
      top      0.908   0.620   0.287
      random   0.730   0.405   0.287
      least    0.582   0.291   0.287
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..core import messages
from ..formats import clips as clipsets
from ..core import h5io
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..models.base import LoadedModel
from ..formats.records import VideoLabel, read_jsonl
from .features import Embedder
from .supervoxels import SegmentParams, compose, load_volume, video_candidates

MODES = ("add", "remove")
ORDERS = ("top", "random", "least")


@dataclass(frozen=True)
class FaithfulnessOptions:
    max_concepts: int = 5
    repeats: int = 5
    seed: int = 0
    batch_size: int = 16


@dataclass
class ConceptModel:
    """What the faithfulness check needs from a concept file."""

    names: list[str]
    centres: np.ndarray          # n_concepts x F
    layer: str
    grid: int
    params: SegmentParams
    sampling: clipsets.Sampling
    target: str
    model: dict


def read_concept_model(path: str) -> ConceptModel:
    """The concepts' centres, the layer, the pooling and the segmentation of a discovery's output."""
    with clipsets.open_clipset(path) as handle:
        provenance = h5io.provenance(handle)
        if "features" not in provenance or "segmentation" not in provenance:
            raise VtcavError(f"{path}: not a vt-ace discover output (no features/segmentation in provenance)")
        names, centres = [], []
        for name, group in handle[clipsets.ROOT].items():
            if group.attrs.get("role") == "concept" and "centre" in group:
                names.append(name)
                centres.append(group["centre"][()])
    if not names:
        raise VtcavError(f"{path}: holds no discovered concepts (sets with a 'centre')")
    return ConceptModel(names, np.stack(centres).astype(np.float32), provenance["features"]["layer"],
                        int(provenance["features"]["grid"]),
                        SegmentParams.from_dict(provenance["segmentation"], path),
                        clipsets.Sampling.from_dict(provenance.get("sampling") or {}, path),
                        str(provenance.get("target")), provenance.get("model") or {})


def read_ranking(path: str, known: list[str]) -> list[str]:
    """Concept names, most important first (by ``rank``, else line order)."""
    rows = []
    for where, record in read_jsonl(path):
        if "concept" not in record:
            raise VtcavError(f"{where}: ranking record has no 'concept'")
        if record["concept"] not in known:
            raise IncompatibleError(f"{where}: concept '{record['concept']}' is not in the concept file "
                                    f"(it has {', '.join(known)})")
        rows.append((record.get("rank", len(rows) + 1), len(rows), record["concept"]))
    if not rows:
        raise VtcavError(f"{path}: empty ranking")
    return [name for _, _, name in sorted(rows)]


def require_same_model(concepts: ConceptModel, loaded: LoadedModel, where: str) -> None:
    for key in ("arch", "weights_sha256", "num_classes"):
        if concepts.model.get(key) != loaded.provenance.get(key):
            raise IncompatibleError(f"{where}: concepts were discovered with a different model "
                                    f"({key} {str(concepts.model.get(key))[:16]} vs "
                                    f"{str(loaded.provenance.get(key))[:16]}); use the same --model and --weights")


# --------------------------------------------------------------------------- the orders
def concept_orders(ranking: list[str], max_concepts: int, repeats: int, seed: int
                   ) -> dict[tuple[str, int], list[list[int]]]:
    """For each (order, k): the draws of concept positions (one draw except for random)."""
    n = len(ranking)
    rng = np.random.default_rng(seed)
    orders = {}
    for k in range(1, min(max_concepts, n) + 1):
        orders[("top", k)] = [list(range(k))]
        orders[("least", k)] = [list(range(n - k, n))]
        orders[("random", k)] = [sorted(rng.choice(n, k, replace=False).tolist()) for _ in range(repeats)]
    return orders


def assign_concepts(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The nearest centre of each row (ties to the lower index)."""
    distances = ((features[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)


# --------------------------------------------------------------------------- one video
def concept_masks(volume: np.ndarray, concepts: ConceptModel, embedder: Embedder, ranking: list[str]
                  ) -> np.ndarray:
    """``n_ranked x T x H x W`` bool: the supervoxels of the video given to each ranked concept."""
    candidates = list(video_candidates(volume, concepts.params, concepts.sampling.size))
    masks = np.zeros((len(ranking), *volume.shape[:3]), bool)
    if not candidates:
        return masks
    features = embedder(np.stack([c.clip for c in candidates]))
    nearest = assign_concepts(features, concepts.centres)
    position = {concepts.names.index(name): i for i, name in enumerate(ranking)}
    for candidate, centre in zip(candidates, nearest):
        if int(centre) in position:
            masks[position[int(centre)]] |= candidate.mask
    return masks


def video_variants(volume: np.ndarray, masks: np.ndarray, orders: dict, fill: int
                   ) -> Iterator[tuple[tuple, np.ndarray]]:
    """``((mode, order, k, draw), clip)`` for every variant of one video, plus the baseline and empty."""
    yield ("baseline", "", 0, 0), volume
    yield ("add", "none", 0, 0), compose(volume, np.zeros(volume.shape[:3], bool), fill)
    for (order, k), draws in orders.items():
        for draw, positions in enumerate(draws):
            keep = masks[positions].any(axis=0)
            yield ("add", order, k, draw), compose(volume, keep, fill)
            yield ("remove", order, k, draw), compose(volume, ~keep, fill)


# --------------------------------------------------------------------------- the whole check
def faithfulness(loaded: LoadedModel, concepts_path: str, ranking_path: str, videos: list[VideoLabel],
                 options: FaithfulnessOptions, target: str | None = None) -> list[dict]:
    """Accuracy (and mean class probability) for every mode, order and k; see the module doc."""
    concepts = read_concept_model(concepts_path)
    require_same_model(concepts, loaded, concepts_path)
    ranking = read_ranking(ranking_path, concepts.names)
    target = target or concepts.target
    target_index = loaded.class_index(target)
    if options.max_concepts < 1 or options.repeats < 1:
        raise UsageError("--max-concepts and --repeats must be at least 1")
    if len(ranking) < 2:
        messages.warn(f"{ranking_path}: only {len(ranking)} concept; top, random and least are the same")
    embedder = Embedder(loaded, concepts.layer, concepts.grid, options.batch_size)
    orders = concept_orders(ranking, options.max_concepts, options.repeats, options.seed)
    outcomes: dict[tuple, list[tuple[bool, float]]] = defaultdict(list)
    for entry in messages.progress(videos, len(videos), "videos"):
        volume, _ = load_volume(entry.path, concepts.sampling.frames)
        masks = concept_masks(volume, concepts, embedder, ranking)
        keys, clips = zip(*video_variants(volume, masks, orders, concepts.params.fill))
        logits = embedder.logits(np.stack(clips))
        probs = _softmax(logits)[:, target_index]
        for key, row, prob in zip(keys, logits, probs):
            outcomes[key].append((int(row.argmax()) == target_index, float(prob)))
    return _records(outcomes, target, len(videos), len(ranking), concepts.layer)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _records(outcomes: dict, target: str, n_videos: int, n_concepts: int, layer: str) -> list[dict]:
    grouped: dict[tuple, list[tuple[bool, float]]] = defaultdict(list)
    for (mode, order, k, _draw), values in outcomes.items():
        grouped[(mode, order, k)].extend(values)
    records = []
    for (mode, order, k), values in grouped.items():
        correct, probs = zip(*values)
        records.append({"target": target, "layer": layer, "mode": mode, "order": order, "k": k,
                        "accuracy": round(float(np.mean(correct)), 6), "mean_prob": round(float(np.mean(probs)), 6),
                        "n_videos": n_videos, "n_variants": len(values), "n_concepts": n_concepts})
    rank = {"baseline": 0, "add": 1, "remove": 2}
    order_rank = {"": 0, "none": 0, "top": 1, "random": 2, "least": 3}
    records.sort(key=lambda r: (rank[r["mode"]], order_rank[r["order"]], r["k"]))
    return records


def format_tables(records: list[dict], value: str = "accuracy") -> list[str]:
    """The paper's two tables (rows top / random / least, columns k = 1..K), as text lines."""
    baseline = next((r for r in records if r["mode"] == "baseline"), None)
    empty = next((r for r in records if r["mode"] == "add" and r["order"] == "none"), None)
    ks = sorted({r["k"] for r in records if r["order"] in ORDERS})
    lines = []
    if baseline:
        lines.append(f"class '{baseline['target']}', {baseline['n_videos']} videos, {value}: original "
                     f"{baseline[value]:.3f}" + (f", all grey {empty[value]:.3f}" if empty else ""))
    for mode in MODES:
        lines.append(f"{mode:<8}" + "".join(f"{k:>8d}" for k in ks))
        for order in ORDERS:
            cells = {r["k"]: r[value] for r in records if r["mode"] == mode and r["order"] == order}
            lines.append(f"  {order:<6}" + "".join(f"{cells[k]:>8.3f}" if k in cells else f"{'':>8}" for k in ks))
    return lines


def markdown_tables(records: list[dict]) -> str:
    """The two tables in Markdown, accuracy with the mean class probability in brackets."""
    ks = sorted({r["k"] for r in records if r["order"] in ORDERS})
    baseline = next((r for r in records if r["mode"] == "baseline"), None)
    empty = next((r for r in records if r["mode"] == "add" and r["order"] == "none"), None)
    out = []
    if baseline:
        out.append(f"Class `{baseline['target']}`, layer `{baseline['layer']}`, {baseline['n_videos']} test videos, "
                   f"{baseline['n_concepts']} concepts. Baseline accuracy (original videos) "
                   f"{baseline['accuracy']:.3f} (p {baseline['mean_prob']:.3f})"
                   + (f"; all-grey videos {empty['accuracy']:.3f} (p {empty['mean_prob']:.3f})" if empty else "")
                   + ".\n")
    for mode in MODES:
        out.append(f"**{'Adding' if mode == 'add' else 'Removing'} concepts** (accuracy, mean class probability)\n")
        out.append("| concepts | " + " | ".join(str(k) for k in ks) + " |")
        out.append("|---|" + "---|" * len(ks))
        for order in ORDERS:
            cells = {r["k"]: r for r in records if r["mode"] == mode and r["order"] == order}
            out.append(f"| {order} | " + " | ".join(
                f"{cells[k]['accuracy']:.2f} ({cells[k]['mean_prob']:.2f})" if k in cells else "" for k in ks) + " |")
        out.append("")
    return "\n".join(out)
