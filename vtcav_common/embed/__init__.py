"""vt-embed's engine: activations (and target-logit gradients) of many layers, streamed to HDF5.

For each batch of clips there is ONE forward pass with hooks on every requested layer
and, with a target class, ONE backward pass that gives the gradient at every layer
(:mod:`vtcav_common.embed.layer_pass`). Each batch is written to its rows of the output file
(:mod:`vtcav_common.formats.embeddings`) before the next batch is read, so memory holds one batch
whatever the number of clips. ``pool`` (``vt-embed --pool``, :mod:`vtcav_common.embed.pooling`)
average-pools activations and gradients alike, which is exact for TCAV.

Importing this module is cheap (no torch, no video decoding): the front end declares its
options from it and answers ``--help`` at once; the heavy parts load when they run.

Output layout (kind ``embeddings``, schema 1)::

    / attrs: vtcav_kind, schema_version, tool, tool_version, provenance (JSON):
             {"model": {...}, "layers": [...], "input": InputSpec, "target", "target_index",
              "dtype", "grad_dtype", "inputs": <file name>, "sets": [...], "seed",
              "precision", "pool": "2x4x4" | "time" | "space" | null, ["unpooled_shapes"],
              "control": null | {"name", "kind", "seed", ["reinitialised", "kept"]}}
    /sets/<name>/          attrs: kind, role, n
        ids         str      N      "video_id#i" (clip i of a clip set) or the manifest's video_id
        labels      str      N      (manifest inputs only) each video's label
        logits      float32  N x K
        acts/<layer>    dtype        N x (layer's per-sample shape, after pooling)
        grads/<layer>   grad_dtype   N x (same)        (only with a target)
    /layers/<layer>        attrs: name, shape, channel_axis, channels_last, type

Layer names are used as HDF5 names, except that ``%`` and ``/`` are escaped as ``%25``
and ``%2F`` (a ``/`` would make a nested group); the real name is kept in each
dataset's and ``/layers`` group's ``name`` attribute.

Example (run by tests/test_examples.py, after the concepts example)::

    from vtcav_common.embed import clipset_inputs, embed
    from vtcav_common.models import load_model

    loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    sets = clipset_inputs("concepts.h5", [])                          # every set of the file
    embed(loaded, ["block2", "block3"], sets, "acts.h5", target="right", inputs_name="concepts.h5")
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ..core.errors import UsageError, VtcavError
from ..core.files import display_name
from ..core.messages import info, progress
from .pooling import Pooling, pooled_shape
from .precision import PRECISIONS  # noqa: F401  (the front end lists them)
from ..formats.records import filter_manifest, read_manifest

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..models.controls import Control

    from ..models.base import LoadedModel

TOOL = "vt-embed"
DTYPES = ("float16", "float32")        # storage types of activations and gradients
MANIFEST_SET = "inputs"


def __getattr__(name: str):
    """Names that moved to embed_pass (torch) or embeddings (h5py), importable from here as before."""
    if name in ("LayerPass", "BatchResult", "to_tensor", "resolve_precision"):
        from . import layer_pass as embed_pass

        return getattr(embed_pass, name)
    if name in ("EmbeddingsWriter", "SetSink", "_cast", "h5_name", "layer_from_h5"):
        from ..formats import embeddings

        return getattr(embeddings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- inputs
@dataclass
class InputBatch:
    ids: list[str]
    clips: np.ndarray | list[np.ndarray]   # uint8 n x T x H x W x 3, or one T x H x W x 3 per video
    labels: list[str] | None = None


@dataclass
class InputSet:
    """One group of the output: a name, attributes, and its clips as lazy batches."""

    name: str
    kind: str
    role: str
    n: int
    batches: Callable[[int], Iterator[InputBatch]]
    has_labels: bool = False


def clipset_inputs(path: str, names: list[str]) -> list[InputSet]:
    """The sets of a clip-set file (all, or ``names`` in that order), streamed from disk."""
    from ..formats import clips as clipsets

    infos = {info.name: info for info in clipsets.list_sets(path)}
    for name in names:
        if name not in infos:
            raise UsageError(f"{path}: no clip set '{name}' (sets: {', '.join(infos) or 'none'})")
    chosen = [infos[n] for n in names] if names else list(infos.values())
    if not chosen:
        raise VtcavError(f"{path}: clip-set file holds no sets")
    return [InputSet(info.name, info.kind, info.role, info.n, _clip_batches(path, info.name)) for info in chosen]


def _clip_batches(path: str, name: str) -> Callable[[int], Iterator[InputBatch]]:
    from ..formats import clips as clipsets

    def batches(batch_size: int, rows: range | None = None) -> Iterator[InputBatch]:
        with clipsets.open_clipset(path) as handle:
            group = handle[clipsets.ROOT][name]
            clips, video_ids = group["clips"], group["video_id"]
            rows = rows if rows is not None else range(clips.shape[0])   # a shard's rows (vtcav_common.scale.shard)
            for start in range(rows.start, rows.stop, batch_size):
                stop = min(start + batch_size, rows.stop)
                ids = [v.decode() if isinstance(v, bytes) else str(v) for v in video_ids[start:stop]]
                yield InputBatch([f"{vid}#{i}" for i, vid in zip(range(start, stop), ids)], clips[start:stop])
    return batches


def manifest_inputs(path: str, frames: int, labels: list[str], split: str | None,
                    name: str = MANIFEST_SET) -> list[InputSet]:
    """The videos of a labels manifest (filtered by label and split) as one set."""
    videos = filter_manifest(read_manifest(path), labels, split, display_name(path))

    def batches(batch_size: int, rows: range | None = None) -> Iterator[InputBatch]:
        chosen = videos if rows is None else videos[rows.start:rows.stop]   # a shard's rows
        for start in range(0, len(chosen), batch_size):
            chunk = chosen[start:start + batch_size]
            yield InputBatch([v.video_id for v in chunk], [sample_video(v.path, frames) for v in chunk],
                             [v.label for v in chunk])

    return [InputSet(name, "inputs", "inputs", len(videos), batches, has_labels=True)]


def sample_video(path: str, frames: int) -> np.ndarray:
    """``frames`` frames spread uniformly over the video, decoding only up to the last one needed."""
    import numpy as np

    from ..models.sampling import temporal_indices
    from ..core.video import probe, read_frames, read_video

    count = probe(path).frames
    if count > 0:
        indices = temporal_indices(count, frames)
        try:
            decoded = read_frames(path, sorted(set(indices.tolist())))
            return np.stack([decoded[i] for i in indices])
        except VtcavError:
            pass  # the container's frame count was wrong: decode everything instead
    video = read_video(path)
    return video[temporal_indices(len(video), frames)]


# --------------------------------------------------------------------------- the whole run
def embed(loaded: LoadedModel, layers: list[str], input_sets: list[InputSet], out: str | Path, *,
          target: str | None = None, dtype: str = "float16", grad_dtype: str = "float32",
          batch_size: int = 8, seed: int = 0, inputs_name: str = "", tool: str = TOOL,
          compress: bool = False, precision: str = "auto", shard: dict | None = None,
          pool: Pooling | None = None, grad_sets: list[str] | None = None,
          control: Control | None = None) -> dict:
    """Compute and write the embeddings file; returns a small summary.

    With a ``target``, the sets named in ``grad_sets`` (default: all) also get the target
    logit's gradients; the others only a forward pass. ``control`` (vt-embed --control,
    :mod:`vtcav_common.models.controls`) randomises the model (in place) or the gradients.
    """
    import numpy as np
    import torch

    from .layer_pass import LayerPass, resolve_precision, to_tensor
    from ..formats.embeddings import EmbeddingsWriter, refuse_nonfinite
    from ..core.heap import Heap
    from ..models.controls import draw_classes, permute_gradients, randomise
    from ..models.layers import describe_layers, model_device, resolve_layers

    if dtype not in DTYPES or grad_dtype not in DTYPES:
        raise UsageError(f"--dtype/--grad-dtype must be one of {', '.join(DTYPES)}")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if not layers:
        raise UsageError("give at least one layer with --layers (see --list-layers)")
    resolve_layers(loaded, layers)
    names = [s.name for s in input_sets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"set name(s) {', '.join(repeated)} given twice (a manifest's set is renamed with --name)")
    target_index = None if target is None else loaded.class_index(str(target))
    with_grads = set() if target_index is None else set(names if grad_sets is None else grad_sets)
    unknown = sorted(with_grads - set(names))
    if unknown:
        raise UsageError(f"--grad-set: no set {', '.join(unknown)} among {', '.join(names)}")
    control_record = None
    if control is not None:   # before anything looks at the model: every layer's shape stays the same
        control_record = {"name": control.name, "kind": control.kind, "seed": control.seed}
        if control.changes_model:
            control_record.update(randomise(loaded, control))
            info(f"{tool}: control {control.name}: re-initialised {len(control_record['reinitialised'])} "
                 f"module(s) (seed {control.seed})"
                 + (f"; kept {', '.join(control_record['kept'])} (no reset_parameters)" if control_record["kept"]
                    else ""))
        elif not with_grads:
            info(f"{tool}: control {control.name} changes only gradients, and this run records none: its "
                 f"activations are the trained model's (recorded as of this control, for vt-cav and vt-score)")
    torch.manual_seed(seed)
    described = describe_layers(loaded)
    infos = {name: described[name] for name in layers}
    never = [name for name, layer in infos.items() if layer.shape is None]
    if never:
        raise VtcavError(f"layer(s) {', '.join(never)} never ran (or gave no tensor) in a forward pass; "
                         f"choose others (see --list-layers)")
    stored = {name: replace(layer, shape=pooled_shape(layer.shape, layer.channel_axis, pool, name))
              for name, layer in infos.items()}
    provenance = {"model": loaded.provenance, "layers": layers, "input": loaded.input_spec.to_dict(),
                  "target": None if target_index is None else loaded.class_names[target_index],
                  "target_index": target_index, "dtype": dtype,
                  "grad_dtype": grad_dtype if target_index is not None else None,
                  "inputs": inputs_name, "sets": names, "seed": seed,
                  "grad_sets": [n for n in names if n in with_grads],
                  "pool": pool.text if pool else None, "control": control_record}
    if pool is not None:
        provenance["unpooled_shapes"] = {name: list(layer.shape) for name, layer in infos.items()}
    device = model_device(loaded.module)
    precision = resolve_precision(precision, device)
    provenance["precision"] = precision
    if shard is not None:  # the shard's identity (vtcav_common.scale.shard); vt-merge drops it
        provenance["shard"] = shard
    axes = {name: layer.channel_axis for name, layer in infos.items()}
    forward_only = LayerPass(loaded, layers, None, precision, pooling=pool, channel_axes=axes)
    with_backward = None if target_index is None else \
        LayerPass(loaded, layers, target_index, precision, pooling=pool, channel_axes=axes)
    total, heap = 0, Heap()
    with EmbeddingsWriter(out, tool, provenance, stored) as writer:
        for input_set in input_sets:
            backward = input_set.name in with_grads
            sink = writer.add_set(input_set, len(loaded.class_names), np.dtype(dtype).type,
                                  np.dtype(grad_dtype).type if backward else None, batch_size, compress)
            layer_pass = with_backward if backward else forward_only
            batches = progress(input_set.batches(batch_size), total=input_set.n,
                               description=f"{input_set.name} clips", size=lambda batch: len(batch.ids))
            for batch in batches:
                classes = None
                if backward and control is not None and control.kind == "permute-labels":
                    classes = draw_classes(control, input_set.name, batch.ids, len(loaded.class_names),
                                           target_index)
                result = layer_pass(to_tensor(batch, loaded, device), classes)
                refuse_nonfinite(input_set.name, batch.ids, result, str(out))   # outputs checked as inputs are
                if backward and control is not None and control.kind == "permute-grads":
                    result.grads = permute_gradients(control, input_set.name, batch.ids, result.grads)
                sink.write(batch, result)
                heap.batch_done()
            sink.close()
            total += input_set.n
            info(f"{tool}: {input_set.name}: {input_set.n} clips")
    return {"sets": len(input_sets), "clips": total, "layers": len(layers), "target_index": target_index}
